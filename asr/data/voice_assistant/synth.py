"""Turns planned utterances into augmented 16 kHz int16 audio; runs in pool workers.

A task is one voice and a few utterances (festival speaks a whole batch per process). The audio
of an utterance depends only on its text, voice and seed, never on the worker that made it or on
the other utterances of its task.
"""
import dataclasses

import numpy as np

from asr.data.voice_assistant import augment
from asr.data.voice_assistant import engines

_STATE = {}


@dataclasses.dataclass(frozen=True)
class Task:
  voice: str
  items: tuple          # ((utterance id, text, seed), ...)


def init_worker(env: engines.EngineEnv, config: augment.AugmentConfig) -> None:
  _STATE['env'] = env
  _STATE['config'] = config


def _speak(voice, texts, seeds, env):
  prosodies = [engines.Prosody.from_seed(s) for s in seeds]
  try:
    return engines.synthesize(voice, texts, prosodies, env)
  except engines.EngineError:
    if len(texts) == 1:
      raise
    # Retry one by one, so that the error names the one text the engine cannot say.
    return [engines.synthesize(voice, [t], [p], env)[0] for t, p in zip(texts, prosodies)]


def render(task: Task) -> list[tuple[str, np.ndarray]]:
  """[(utterance id, int16 audio at 16 kHz)] for the task's utterances."""
  voice = engines.VOICES_BY_NAME[task.voice]
  ids, texts, seeds = zip(*task.items)
  waves = _speak(voice, texts, seeds, _STATE['env'])
  out = []
  for utt_id, seed, (wave, sr) in zip(ids, seeds, waves):
    rng = np.random.default_rng([seed, 1])
    out.append((utt_id, augment.augment(wave, sr, rng, _STATE['config'])))
  return out


def make_tasks(utterances, batch_size: int) -> list[Task]:
  """Groups a split's utterances by voice into tasks of at most `batch_size`."""
  by_voice = {}
  for u in utterances:
    by_voice.setdefault(u.voice, []).append((u.id, u.text, u.seed))
  tasks = []
  for voice in sorted(by_voice):
    items = by_voice[voice]
    for start in range(0, len(items), batch_size):
      tasks.append(Task(voice, tuple(items[start:start + batch_size])))
  # Slow voices first, so the pool does not end a split waiting on one long task.
  return sorted(tasks, key=lambda t: (engines.VOICES_BY_NAME[t.voice].engine != 'piper',
                                      t.voice, t.items[0][0]))
