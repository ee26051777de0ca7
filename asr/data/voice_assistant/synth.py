"""Turns planned utterances into augmented 16 kHz int16 audio; runs in pool workers.

A task is one base voice and a few utterances, each with its own speaker derived from that voice
(festival speaks a whole batch per process, and a voice costs more to load than an utterance to
speak). The audio of an utterance depends only on its text, speaker and seed, never on the worker
that made it or on the other utterances of its task.
"""
import dataclasses

import numpy as np

from asr.data.voice_assistant import augment
from asr.data.voice_assistant import engines
from asr.data.voice_assistant import speakers

_STATE = {}


@dataclasses.dataclass(frozen=True)
class Task:
  voice: str            # the base voice, 'flite/awb'
  items: tuple          # ((utterance id, text, seed, speaker name), ...)


def init_worker(env: engines.EngineEnv, config: augment.AugmentConfig) -> None:
  _STATE['env'] = env
  _STATE['config'] = config


def _speak(voice, texts, prosodies, env):
  try:
    return engines.synthesize(voice, texts, prosodies, env)
  except engines.EngineError:
    if len(texts) == 1:
      raise
    # Retry one by one, so that the error names the one text the engine cannot say.
    return [engines.synthesize(voice, [t], [p], env)[0] for t, p in zip(texts, prosodies)]


def speaker_audio(wave: np.ndarray, sr: int, speaker: speakers.Speaker) -> np.ndarray:
  """Engine output -> 16 kHz float audio with the speaker's pitch and formant shift."""
  return augment.change_speed(augment.resample(np.asarray(wave, np.float32), sr), speaker.shift)


def render(task: Task) -> list[tuple[str, np.ndarray]]:
  """[(utterance id, int16 audio at 16 kHz)] for the task's utterances."""
  voice = engines.VOICES_BY_NAME[task.voice]
  ids, texts, seeds, names = zip(*task.items)
  who = [speakers.get(n) for n in names]
  waves = _speak(voice, texts, [s.prosody(seed) for s, seed in zip(who, seeds)], _STATE['env'])
  out = []
  for utt_id, seed, speaker, (wave, sr) in zip(ids, seeds, who, waves):
    rng = np.random.default_rng([seed, 1])
    audio = speaker_audio(wave, sr, speaker)
    out.append((utt_id, augment.augment(audio, augment.SAMPLE_RATE, rng, _STATE['config'])))
  return out


def make_tasks(utterances, batch_size: int) -> list[Task]:
  """Groups a split's utterances by base voice into tasks of at most `batch_size`."""
  by_voice = {}
  for u in utterances:
    base = speakers.get(u.voice).base
    by_voice.setdefault(base, []).append((u.id, u.text, u.seed, u.voice))
  tasks = []
  for voice in sorted(by_voice):
    items = by_voice[voice]
    for start in range(0, len(items), batch_size):
      tasks.append(Task(voice, tuple(items[start:start + batch_size])))
  # Slow voices first, so the pool does not end a split waiting on one long task.
  return sorted(tasks, key=lambda t: (engines.VOICES_BY_NAME[t.voice].engine != 'piper',
                                      t.voice, t.items[0][0]))
