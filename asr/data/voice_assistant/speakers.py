"""Speakers: many voices derived from the few base voices the engines ship.

A speaker is (engine, base voice, variant, pitch, rate, shift):

  base voice  an engine's own voice (`engines.VOICES`): flite/awb, festival/kal, piper/joe, pico/lh, and
              for espeak-ng an accent (espeak/en-us ...)
  variant     espeak-ng only: one of its voice variants (+m3, +f2, +klatt, +Andy ...), which set
              formants, pitch range and voice quality
  pitch       a factor on the base voice's pitch (flite's f0 target, espeak's -p)
  rate        speaking rate (flite/festival duration stretch, espeak -s, piper length_scale, pico rate)
  shift       the rendered audio is resampled so that pitch and formants rise by this factor, as
              from a shorter (> 1) or longer (< 1) vocal tract; the engine is asked for
              `rate / shift`, so that the resampled audio keeps the speaker's rate

flite, festival, piper and pico voices give `DERIVED_PER_VOICE` speakers each (number 00 is the voice as
shipped); each espeak-ng accent gives one speaker per variant. All values come from a hash of the
speaker's name: the same on every machine.

Held out from every training split (`split_speakers`): the base voices `engines.HELD_OUT` with
every speaker derived from them, and for espeak-ng also the variant families of
`HELD_OUT_VARIANTS`. An espeak-ng speaker is held out only when both its accent and its variant
are, and trains only when neither is; the mixed ones are used nowhere, so that no held-out speaker
shares an accent or a variant with a training speaker.

piper's noise scales stay at 0: its onnx graph draws noise from an unseeded generator whose state
depends on every earlier call in the process, so audio would change with the worker's history.
"""
import dataclasses
import functools
import re
import subprocess

import numpy as np

from asr.data.voice_assistant import engines
from asr.data.voice_assistant import textgen

DERIVED_PER_VOICE = 16
# espeak-ng variants that stay intelligible (whisper, croak, the robots and the announcer do
# not), by their file names in espeak-ng-data/voices/!v.
ESPEAK_VARIANTS = (
    'm1', 'm2', 'm3', 'm4', 'm5', 'm6', 'm7', 'm8', 'f1', 'f2', 'f3', 'f4', 'f5',
    'klatt', 'klatt2', 'klatt3', 'klatt4', 'Alex', 'Andy', 'Annie', 'adam', 'aunty', 'belinda',
    'benjamin', 'caleb', 'david', 'ed', 'edward', 'iven', 'iven2', 'john', 'linda', 'Lee', 'max',
    'Michael', 'norbert', 'paul', 'quincy', 'rob', 'robert', 'steph', 'steph2', 'travis', 'zac')
# Variant families (a name without its trailing digits: steph, steph2 -> steph; m1 ... m8 and
# f1 ... f5 are each their own) held out with the held-out accents.
HELD_OUT_VARIANTS = ('m6', 'f4', 'Andy', 'linda', 'steph', 'travis')
PITCH_RANGE = (0.85, 1.2)
RATE_RANGE = (0.88, 1.12)
SHIFT_RANGE = (0.9, 1.12)
UTTERANCE_JITTER = 0.05      # each utterance varies pitch and rate by up to 5% around these


class SpeakerError(ValueError):
  """A speaker name that no base voice or variant here gives."""


@dataclasses.dataclass(frozen=True)
class Speaker:
  name: str            # 'flite/awb/07', 'espeak/en-us/m3': the corpus's `voice` feature
  base: str            # the base voice, 'flite/awb' (the speaker group)
  variant: str         # espeak-ng variant, '' for the other engines
  pitch: float
  rate: float
  shift: float
  weight: float        # share of utterances among the speakers of a split

  @property
  def engine(self) -> str:
    return self.base.split('/')[0]

  def prosody(self, seed: int) -> engines.Prosody:
    """What the engine is asked for, for the utterance with this seed."""
    rng = np.random.default_rng([seed, 7])
    jitter = rng.uniform(1 - UTTERANCE_JITTER, 1 + UTTERANCE_JITTER, size=2)
    return engines.Prosody(rate=round(float(self.rate * jitter[0] / self.shift), 3),
                           pitch=round(float(self.pitch * jitter[1]), 3), variant=self.variant)

  def describe(self) -> dict:
    return {'base': self.base, 'variant': self.variant, 'pitch': self.pitch, 'rate': self.rate,
            'shift': self.shift}


def variant_family(variant: str) -> str:
  return variant if re.fullmatch(r'[mf]\d', variant) else variant.rstrip('0123456789')


def _draw(name: str, what: str, low: float, high: float) -> float:
  return round(low + (high - low) * textgen.stable_fraction('speaker', name, what), 3)


def _derive(voice: engines.Voice, tag: str, variant: str, count: int, plain: bool) -> Speaker:
  name = f'{voice.name}/{tag}'
  if plain:
    return Speaker(name, voice.name, variant, 1.0, 1.0, 1.0, voice.weight / count)
  return Speaker(name, voice.name, variant, _draw(name, 'pitch', *PITCH_RANGE),
                 _draw(name, 'rate', *RATE_RANGE), _draw(name, 'shift', *SHIFT_RANGE),
                 voice.weight / count)


def speakers_of(voice: engines.Voice, variants=ESPEAK_VARIANTS) -> list[Speaker]:
  """Every speaker derived from one base voice; weights share the voice's weight."""
  if voice.engine == 'espeak':
    if not variants:        # an espeak-ng without variants: the accent as shipped
      return [_derive(voice, '00', '', 1, plain=True)]
    return [_derive(voice, v, v, len(variants), plain=False) for v in variants]
  return [_derive(voice, f'{i:02d}', '', DERIVED_PER_VOICE, plain=i == 0)
          for i in range(DERIVED_PER_VOICE)]


@functools.lru_cache(maxsize=1)
def all_speakers() -> dict[str, Speaker]:
  """Every speaker any machine can have, by name (the workers look speakers up here)."""
  return {s.name: s for v in engines.VOICES for variants in (ESPEAK_VARIANTS, ())
          for s in speakers_of(v, variants)}


def get(name: str) -> Speaker:
  try:
    return all_speakers()[name]
  except KeyError:
    raise SpeakerError(f'unknown speaker {name!r}: not one of the {len(all_speakers())} that '
                       'speakers.all_speakers() defines') from None


def espeak_variants(env: engines.EngineEnv) -> set[str]:
  """The variants this espeak-ng has (one `--voices=variant` call)."""
  binary = env.which('espeak-ng')
  if binary is None:
    return set()
  result = subprocess.run([binary, '--voices=variant'], capture_output=True, text=True,
                          env=env.environ, timeout=30, check=False)
  return set(re.findall(r'!v/(\S+)', result.stdout))


def split_speakers(voices: list[engines.Voice], env: engines.EngineEnv | None = None,
                   variants_present: set[str] | None = None
                   ) -> tuple[list[Speaker], list[Speaker]]:
  """(training speakers, held-out speakers) of the base voices found here.

  Weights are renormalised within each list so that a base voice keeps its share of a split
  whatever number of its speakers that list holds. Without any held-out base voice the last one
  found is held out whole, so that every test split has unseen speakers."""
  train_voices, held_voices = engines.split_voices(voices)
  held_names = {v.name for v in held_voices}
  if variants_present is None:
    variants_present = espeak_variants(env or engines.engine_env())
  espeak_list = tuple(v for v in ESPEAK_VARIANTS if v in variants_present)
  missing = [v for v in ESPEAK_VARIANTS if v not in variants_present]
  if missing and any(v.engine == 'espeak' for v in voices):
    print(f'espeak-ng lacks {len(missing)} of {len(ESPEAK_VARIANTS)} variants, skipped: '
          f'{missing}')
  held_variants_here = any(variant_family(v) in HELD_OUT_VARIANTS for v in espeak_list)
  train, held = [], []
  for voice in voices:
    for speaker in speakers_of(voice, espeak_list):
      espeak_held_variant = (speaker.engine == 'espeak' and held_variants_here and
                             variant_family(speaker.variant) in HELD_OUT_VARIANTS)
      if voice.name in held_names:
        if speaker.engine != 'espeak' or not held_variants_here or espeak_held_variant:
          held.append(speaker)
      elif not espeak_held_variant:
        train.append(speaker)
  return _per_voice_weights(train), _per_voice_weights(held)


def _per_voice_weights(speakers: list[Speaker]) -> list[Speaker]:
  counts = {}
  for s in speakers:
    counts[s.base] = counts.get(s.base, 0) + 1
  return [dataclasses.replace(s, weight=engines.VOICES_BY_NAME[s.base].weight / counts[s.base])
          for s in speakers]
