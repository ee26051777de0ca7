"""What the corpus will say, by whom, in which split: decided before any audio is made.

A plan is a dict split name -> list of `Utterance`; it depends only on the config, the seed, the
voices found and the text sources installed, never on the number of workers. Every transcript in
the corpus is unique, and all train splits are drawn first, so `D_test_seen` (training voices)
and `D_test` (held-out voices) only hold sentences no train split has.
"""
import collections
import dataclasses
import zlib

import numpy as np

from asr.data.voice_assistant import textgen

SPLIT_KINDS = ('train', 'test', 'test_seen')
MAX_TRIES = 200


@dataclasses.dataclass(frozen=True)
class Utterance:
  id: str
  domain: str
  split: str
  text: str          # what the engine reads
  transcript: str
  intent: str
  voice: str
  seed: int          # fixes prosody and augmentation


@dataclasses.dataclass(frozen=True)
class PlanSpec:
  domains: tuple[str, ...]
  base_sizes: tuple[int, int, int]        # (train, test, test_seen) utterances
  update_sizes: tuple[int, int, int]
  seed: int = 0
  max_words: int = 0                      # 0: no limit (tiny keeps sentences short)
  free_form_share: float = 0.0


def split_name(domain: str, kind: str) -> str:
  return f'{domain}_{kind}'


def _rng(seed: int, *names: str) -> np.random.Generator:
  return np.random.default_rng([seed] + [zlib.crc32(n.encode()) for n in names])


def _pick_voice(rng, voices) -> str:
  weights = np.array([v.weight for v in voices], dtype=float)
  return voices[int(rng.choice(len(voices), p=weights / weights.sum()))].name


def make_plan(spec: PlanSpec, train_voices, held_out_voices,
              use_text_sources: bool = True) -> dict[str, list[Utterance]]:
  samplers = {d: textgen.make_sampler(d, spec.free_form_share, use_text_sources)
              for d in spec.domains}
  seen = set()
  plan = {}
  order = [(d, 'train') for d in spec.domains] + [(d, k) for d in spec.domains
                                                   for k in SPLIT_KINDS[1:]]
  for domain, kind in order:
    sizes = spec.base_sizes if domain == textgen.BASE else spec.update_sizes
    count = sizes[SPLIT_KINDS.index(kind)]
    rng = _rng(spec.seed, domain, kind)
    voices = held_out_voices if kind == 'test' else train_voices
    role = 'train' if kind == 'train' else 'test'
    name = split_name(domain, kind)
    utterances = []
    for index in range(count):
      for _ in range(MAX_TRIES):
        sentence = samplers[domain].sample(role, rng)
        if sentence.transcript in seen:
          continue
        if spec.max_words and len(sentence.transcript.split()) > spec.max_words:
          continue
        break
      else:
        raise ValueError(f'could not draw a new sentence for {name} after {MAX_TRIES} tries: '
                         'the templates of this domain are too few for the requested size')
      seen.add(sentence.transcript)
      utterances.append(Utterance(
          id=f'{domain}/{kind}/{index:06d}', domain=domain, split=name, text=sentence.display,
          transcript=sentence.transcript, intent=sentence.intent,
          voice=_pick_voice(rng, voices), seed=int(rng.integers(2**31))))
    plan[name] = utterances
  return plan


def word_counts(transcripts) -> collections.Counter:
  counts = collections.Counter()
  for t in transcripts:
    counts.update(t.split())
  return counts


def oov_share(transcripts, vocabulary) -> float:
  """Share of the running words of `transcripts` that are not in `vocabulary`."""
  counts = word_counts(transcripts)
  total = sum(counts.values())
  return sum(c for w, c in counts.items() if w not in vocabulary) / max(total, 1)


def update_oov_shares(transcripts_by_split: dict[str, list[str]],
                      domains: tuple[str, ...]) -> dict[str, float]:
  """For each update domain: share of its `D_test` words unseen in every earlier domain's train
  split (the words an on-device model updated in sequence has never heard)."""
  shares = {}
  vocabulary = set()
  for i, domain in enumerate(domains):
    if i > 0:
      shares[domain] = oov_share(transcripts_by_split[split_name(domain, 'test')], vocabulary)
    vocabulary |= set(word_counts(transcripts_by_split[split_name(domain, 'train')]))
  return shares
