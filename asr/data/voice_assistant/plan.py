"""What the corpus will say, by whom, in which split: decided before any audio is made.

A plan is a dict split name -> list of `Utterance`; it depends only on the config, the seed, the
voices found and the text sources installed, never on the number of workers.

Sentences come from one stream per (domain, kind), the same for every config: a config takes the
first sentences of each stream (those of at most `max_words` words, where it sets a limit) from
within the first `limits` positions, so a smaller config's splits are subsets of a larger one's.
Which kind a sentence may go to is fixed by a hash of its transcript (`kind_of`), whatever the
domain, config or position: no transcript of a `D_test` or `D_test_seen` split is in any train
split of any config. Transcripts are unique within a split; utterance ids name the stream
position, so the same sentence has the same id in every config.

Speakers are drawn per utterance from a separate generator keyed by the utterance id: the
sentences do not depend on which voices a machine has.
"""
import collections
import dataclasses
import zlib

import numpy as np

from asr.data.voice_assistant import textgen

SPLIT_KINDS = ('train', 'test', 'test_seen')
# Hash bands of `kind_of`: a tenth of all sentences may only be test (held-out voices), a tenth
# only test_seen (training voices), the rest only train.
KIND_BANDS = {'test': (0.0, 0.1), 'test_seen': (0.1, 0.2), 'train': (0.2, 1.0)}
MAX_TRIES = 400


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
  # Stream positions each split may take its sentences from, (train, test, test_seen); None: as
  # many as it takes. A config's limits are the sizes of the config it must be a subset of.
  base_limits: tuple[int, int, int] | None = None
  update_limits: tuple[int, int, int] | None = None


def split_name(domain: str, kind: str) -> str:
  return f'{domain}_{kind}'


def kind_of(transcript: str) -> str:
  """The only split kind `transcript` may appear in (the same in every domain and config)."""
  fraction = textgen.stable_fraction('split_kind', transcript)
  for kind, (low, high) in KIND_BANDS.items():
    if low <= fraction < high:
      return kind
  raise AssertionError(fraction)


def _rng(seed: int, *names: str) -> np.random.Generator:
  return np.random.default_rng([seed] + [zlib.crc32(n.encode()) for n in names])


def _pick_voice(rng, voices) -> str:
  weights = np.array([v.weight for v in voices], dtype=float)
  return voices[int(rng.choice(len(voices), p=weights / weights.sum()))].name


def sentence_stream(sampler: textgen.DomainSampler, seed: int, kind: str):
  """The sentences of one (domain, kind), in order, each new to the stream and of that kind."""
  rng = _rng(seed, sampler.domain, kind)
  role = 'train' if kind == 'train' else 'test'
  seen = set()
  while True:
    for _ in range(MAX_TRIES):
      sentence = sampler.sample(role, rng)
      if sentence.transcript not in seen and kind_of(sentence.transcript) == kind:
        break
    else:
      raise ValueError(f'could not draw a new sentence for {split_name(sampler.domain, kind)} '
                       f'after {MAX_TRIES} tries: the templates of this domain are too few for '
                       'the requested size')
    seen.add(sentence.transcript)
    yield sentence


def plan_sentences(spec: PlanSpec, use_text_sources: bool = True
                   ) -> dict[str, list[tuple[int, textgen.Sentence]]]:
  """split name -> [(stream position, sentence)]: the text of a plan, without speakers."""
  out = {}
  for domain in spec.domains:
    sampler = textgen.make_sampler(domain, spec.free_form_share, use_text_sources)
    is_base = domain == textgen.BASE
    sizes = spec.base_sizes if is_base else spec.update_sizes
    limits = spec.base_limits if is_base else spec.update_limits
    for index, kind in enumerate(SPLIT_KINDS):
      count = sizes[index]
      limit = None if limits is None else limits[index]
      name = split_name(domain, kind)
      if limit is not None and count > limit:
        raise ValueError(f'{name}: {count} utterances asked for, but it may only draw from the '
                         f'first {limit} sentences (the split of the config it is part of)')
      chosen = []
      if count:
        for position, sentence in enumerate(sentence_stream(sampler, spec.seed, kind)):
          if limit is not None and position >= limit:
            raise ValueError(
                f'{name}: only {len(chosen)} of the first {limit} sentences have at most '
                f'{spec.max_words} words; {count} asked for')
          if not spec.max_words or len(sentence.transcript.split()) <= spec.max_words:
            chosen.append((position, sentence))
            if len(chosen) == count:
              break
      out[name] = chosen
  return out


def make_plan(spec: PlanSpec, train_voices, held_out_voices,
              use_text_sources: bool = True) -> dict[str, list[Utterance]]:
  plan = {}
  for name, sentences in plan_sentences(spec, use_text_sources).items():
    domain, kind = _domain_and_kind(name, spec.domains)
    voices = held_out_voices if kind == 'test' else train_voices
    utterances = []
    for position, sentence in sentences:
      utt_id = f'{domain}/{kind}/{position:06d}'
      rng = _rng(spec.seed, 'speaker', utt_id)
      utterances.append(Utterance(
          id=utt_id, domain=domain, split=name, text=sentence.display,
          transcript=sentence.transcript, intent=sentence.intent,
          voice=_pick_voice(rng, voices), seed=int(rng.integers(2**31))))
    plan[name] = utterances
  return plan


def _domain_and_kind(name: str, domains) -> tuple[str, str]:
  for domain in domains:
    for kind in SPLIT_KINDS:
      if name == split_name(domain, kind):
        return domain, kind
  raise KeyError(name)


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
