"""Tests for the embedded corpus: text generation, augmentation, planning, engines, the tfds
builder (`tiny` is built twice: contract, held-out voices, determinism), stats and LibriSpeech."""
import json
import os
import shutil
import stat
import subprocess
import time
import types

import numpy as np
import pytest

from asr import text
from asr.data.voice_assistant import augment
from asr.data.voice_assistant import builder
from asr.data.voice_assistant import corpus
from asr.data.voice_assistant import engines
from asr.data import librispeech
from asr.data.voice_assistant import plan
from asr.data.voice_assistant import speakers
from asr.data.voice_assistant import synth
from asr.data.voice_assistant import stats
from asr.data.voice_assistant import textgen

HAVE_TINY_ENGINES = bool(shutil.which('flite') or shutil.which('espeak-ng'))
needs_engines = pytest.mark.skipif(not HAVE_TINY_ENGINES,
                                   reason='flite/espeak-ng not installed (tools/setup.sh)')
TINY_DOMAINS = ('base', 'update_1', 'update_2')


def _read_all(config, data_dir):
  builder = corpus.VoiceAssistant(config=config, data_dir=data_dir)
  return {split: [corpus.load(config, split, data_dir)[i]
                  for i in range(builder.info.splits[split].num_examples)]
          for split in builder.info.splits.keys()}


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
  if not HAVE_TINY_ENGINES:
    pytest.skip('flite/espeak-ng not installed (tools/setup.sh)')
  data_dir = str(tmp_path_factory.mktemp('tfds_one_worker'))
  start = time.time()
  builder = corpus.build('tiny', data_dir, workers=1)
  seconds = time.time() - start
  return types.SimpleNamespace(builder=builder, data_dir=data_dir, seconds=seconds,
                               examples=_read_all('tiny', data_dir),
                               metadata=dict(builder.info.metadata))


# --- the built corpus ------------------------------------------------------------------------

@needs_engines
def test_tiny_builds_in_time_with_every_split(tiny):
  assert tiny.seconds <= 60
  expected = {f'{d}_{k}' for d in TINY_DOMAINS for k in ('train', 'test', 'test_seen')}
  assert set(tiny.examples) == expected
  assert all(len(v) > 0 for v in tiny.examples.values())
  assert sum(len(v) for v in tiny.examples.values()) <= 200
  # Base holds the most data; each update is smaller.
  sizes = {d: len(tiny.examples[f'{d}_train']) for d in TINY_DOMAINS}
  assert sizes['base'] > sizes['update_1'] and sizes['base'] > sizes['update_2']


@needs_engines
def test_examples_follow_the_contract(tiny):
  tokenizer = text.CharTokenizer()
  ids = set()
  for split, examples in tiny.examples.items():
    domain = split.rsplit('_test', 1)[0].rsplit('_train', 1)[0]
    for ex in examples:
      assert set(ex) == {'audio', 'transcript', 'voice', 'domain', 'id'}
      assert ex['audio'].dtype == np.int16 and ex['audio'].ndim == 1
      assert 0.3 * 16000 < len(ex['audio']) < 20 * 16000
      assert np.abs(ex['audio']).max() > 300          # not silence
      assert all(isinstance(ex[k], str) for k in ('transcript', 'voice', 'domain', 'id'))
      assert text.normalize(ex['transcript']) == ex['transcript']
      assert tokenizer.decode(tokenizer.encode(ex['transcript'])) == ex['transcript']
      assert ex['domain'] == domain
      assert ex['id'] not in ids
      ids.add(ex['id'])


@needs_engines
def test_audio_length_follows_its_transcript(tiny):
  # If audio and transcripts were paired wrongly, length would not track the text.
  examples = [ex for exs in tiny.examples.values() for ex in exs]
  chars = np.array([len(ex['transcript']) for ex in examples])
  seconds = np.array([len(ex['audio']) / 16000 for ex in examples])
  assert np.corrcoef(chars, seconds)[0, 1] > 0.6
  per_char = seconds / chars
  assert 0.02 < np.median(per_char) < 0.2


@needs_engines
def test_test_splits_use_held_out_voices_only(tiny):
  held_out = set(tiny.metadata['speakers']['held_out'])
  train_voices = set(tiny.metadata['speakers']['train'])
  assert held_out and not held_out & train_voices
  for split, examples in tiny.examples.items():
    voices = {ex['voice'] for ex in examples}
    if split.endswith('_test'):
      assert voices <= held_out, split
    else:
      assert voices <= train_voices, split
  heard_in_training = {ex['voice'] for d in TINY_DOMAINS for ex in tiny.examples[f'{d}_train']}
  assert not heard_in_training & held_out
  # No speaker derived from a held-out base voice is heard in training.
  held_bases = set(tiny.metadata['base_voices']['held_out'])
  assert held_bases and not {v.rsplit('/', 1)[0] for v in heard_in_training} & held_bases
  assert {v.rsplit('/', 1)[0] for v in held_out} == held_bases
  for split, count in tiny.metadata['speakers_per_split'].items():
    assert count == len({ex['voice'] for ex in tiny.examples[split]}), split
  assert len(heard_in_training) >= 40
  settings = tiny.metadata['speaker_settings']
  assert set(settings) == held_out | train_voices
  assert all(settings[v]['base'] == v.rsplit('/', 1)[0] for v in settings)


@needs_engines
def test_test_sentences_are_not_in_any_train_split(tiny):
  train = {ex['transcript'] for d in TINY_DOMAINS for ex in tiny.examples[f'{d}_train']}
  for split, examples in tiny.examples.items():
    if not split.endswith('_train'):
      assert not {ex['transcript'] for ex in examples} & train, split


@needs_engines
def test_update_domains_bring_words_unheard_before(tiny):
  heard = set()
  for i, domain in enumerate(TINY_DOMAINS):
    if i:
      words = [w for ex in tiny.examples[f'{domain}_test'] for w in ex['transcript'].split()]
      share = sum(w not in heard for w in words) / len(words)
      assert share > 0.15, domain
      assert share == pytest.approx(tiny.metadata['oov_share_vs_earlier_domains'][domain],
                                    abs=1e-4)
    heard |= {w for ex in tiny.examples[f'{domain}_train'] for w in ex['transcript'].split()}


@needs_engines
def test_metadata_records_engines_and_hours(tiny):
  meta = tiny.metadata
  assert set(meta['engines']) <= {'flite', 'espeak'} and meta['engines']
  # What was asked for and what was missing, so that a corpus built elsewhere (a GPU machine
  # with packed engines only) tells its own story.
  assert meta['engines_wanted'] == ['flite', 'espeak']
  assert meta['engines_missing'] == sorted({'flite', 'espeak'} - set(meta['engines']))
  assert meta['engine_source'] == 'system'
  voices_used = {ex['voice'] for exs in tiny.examples.values() for ex in exs}
  assert {v.split('/')[0] for v in voices_used} == set(meta['engines'])
  seconds = sum(len(ex['audio']) for exs in tiny.examples.values() for ex in exs) / 16000
  assert sum(meta['hours']['split'].values()) * 3600 == pytest.approx(seconds, rel=1e-3)


@needs_engines
def test_same_config_and_seed_give_identical_corpus(tiny, tmp_path, monkeypatch):
  # Another build, with a pool of two workers instead of one process, and with tfds told to
  # move splits out of memory past 1 kB (through tf.io.gfile, absent without TensorFlow): the
  # builder must keep them in memory, as it does for full's 1.2 GB base_train.
  from tensorflow_datasets.core import shuffle  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(shuffle, 'MAX_MEM_BUFFER_SIZE', 1024)
  corpus.build('tiny', str(tmp_path), workers=2)
  assert shuffle.MAX_MEM_BUFFER_SIZE == 1024
  again = _read_all('tiny', str(tmp_path))
  assert set(again) == set(tiny.examples)
  for split, examples in tiny.examples.items():
    assert len(again[split]) == len(examples)
    for a, b in zip(examples, again[split]):
      assert a['id'] == b['id'] and a['transcript'] == b['transcript']
      assert a['voice'] == b['voice']
      assert a['audio'].tobytes() == b['audio'].tobytes(), a['id']
  # The same corpus has the same fingerprint (a model card's), however its workers summed the
  # hours; a changed plan does not.
  one, two = _fingerprint(tiny.data_dir), _fingerprint(str(tmp_path))
  assert one == two and one.startswith('voice_assistant/tiny ')
  path, = tmp_path.glob('voice_assistant/tiny/*/metadata.json')
  meta = json.loads(path.read_text())
  meta['hours']['split'] = {k: v + 1 for k, v in meta['hours']['split'].items()}
  path.write_text(json.dumps(meta, indent=3))
  assert _fingerprint(str(tmp_path)) == one
  meta['speakers']['held_out'] = meta['speakers']['held_out'][1:]
  path.write_text(json.dumps(meta))
  assert _fingerprint(str(tmp_path)) != one


def _fingerprint(data_dir):
  from experiments import data as data_lib  # pylint: disable=import-outside-toplevel
  import ml_collections  # pylint: disable=import-outside-toplevel
  return data_lib.fingerprint(ml_collections.ConfigDict(
      {'data': {'source': 'voice_assistant', 'corpus': 'tiny', 'data_dir': data_dir}}))


@needs_engines
def test_build_reuses_a_built_corpus(tiny, capsys):
  corpus.build('tiny', tiny.data_dir)
  assert 'already built' in capsys.readouterr().out


def test_loading_an_unbuilt_corpus_says_how_to_build_it(tmp_path):
  with pytest.raises(corpus.NotBuiltError,
                     match='python -m asr.data.voice_assistant.corpus --config=small'):
    corpus.load('small', 'base_train', str(tmp_path))
  with pytest.raises(ValueError, match='unknown voice_assistant config'):
    corpus.load('huge', 'base_train', str(tmp_path))


@needs_engines
def test_stats_report_every_split(tiny):
  report = stats.format_stats(stats.collect('tiny', tiny.data_dir))
  for split, examples in tiny.examples.items():
    assert f'| {split} | {len(examples)} |' in report
  assert 'out of vocabulary for all earlier domains' in report
  assert 'test only (held out)' in report
  for split, examples in tiny.examples.items():
    speakers_heard = len({ex['voice'] for ex in examples})
    assert f'| {split} | {len(examples)} | ' in report
    row = next(line for line in report.splitlines() if line.startswith(f'| {split} |'))
    assert row.split(' | ')[3] == str(speakers_heard), row
  for group in {ex['voice'].rsplit('/', 1)[0] for exs in tiny.examples.values() for ex in exs}:
    assert f'| {group} | ' in report, group


def test_default_data_dir_is_in_the_repo_or_the_env_var():
  expected = os.environ.get('ASR_DATA_DIR') or os.path.join(
      os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'data', 'tfds')
  assert corpus.DEFAULT_DATA_DIR == expected


# --- engines -----------------------------------------------------------------------------------

def test_no_engine_gives_a_message_that_says_what_to_install():
  env = engines.engine_env(search_system=False)
  with pytest.raises(engines.NoEngineError, match='tools/setup.sh'):
    engines.find_voices(('flite', 'espeak', 'festival'), env)
  with pytest.raises(ValueError, match='unknown TTS engine'):
    engines.find_voices(('sam',), env)


def test_engine_failure_names_the_engine_and_the_text(tmp_path):
  (tmp_path / 'bin').mkdir()
  fake = tmp_path / 'bin' / 'flite'
  fake.write_text('#!/bin/sh\necho "voice exploded" >&2\nexit 3\n')
  fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
  env = engines.engine_env(str(tmp_path), search_system=False)
  voice = engines.VOICES_BY_NAME['flite/slt']
  with pytest.raises(engines.EngineError, match=r"flite .*'Call Ingrid\.'.*voice exploded"):
    engines.synthesize(voice, ['Call Ingrid.'], [engines.Prosody()], env)


@pytest.mark.skipif(not shutil.which('flite'), reason='flite not installed')
def test_flite_alone_still_gives_a_held_out_voice():
  voices = engines.find_voices(('flite',))
  train, held_out = engines.split_voices(voices)
  assert {v.engine for v in voices} == {'flite'}
  assert [v.name for v in held_out] == ['flite/rms']
  assert len(train) >= 1 and not set(train) & set(held_out)


@pytest.mark.skipif(not shutil.which('flite'), reason='flite not installed')
def test_packed_engines_run_from_their_folder_alone(tmp_path):
  # The GPU machine has no apt: engines travel as a folder and nothing else is searched.
  packed = engines.pack(str(tmp_path))
  assert 'flite' in packed
  env = engines.engine_env(str(tmp_path), search_system=False)
  assert env.which('flite') == str(tmp_path / 'bin' / 'flite')
  voices = engines.find_voices(('flite', 'espeak'), env)
  assert 'flite/slt' in {v.name for v in voices}
  (audio, sr), = engines.synthesize(engines.VOICES_BY_NAME['flite/slt'], ['Hello there.'],
                                    [engines.Prosody()], env)
  assert sr == 16000 and len(audio) > 0.3 * sr
  if 'espeak' in packed:
    # English only: the other languages' dictionaries would be 10 MB more to carry.
    data = tmp_path / 'share' / 'espeak-ng-data'
    assert (data / 'en_dict').is_file() and not (data / 'de_dict').exists()
    (audio, _), = engines.synthesize(engines.VOICES_BY_NAME['espeak/en-gb'], ['Hello there.'],
                                     [engines.Prosody()], env)
    assert len(audio) > 0.3 * sr
  # piper is a Python package, never packed: a packed-only search leaves it out.
  assert not env.python_engines
  if 'festival' in packed:
    # Festival must take its voices from the folder, not from /usr/share/festival.
    result = subprocess.run(
        [env.which('festival'), '--libdir', env.festival_libdir, '-b',
         '(print (cdr (assoc (quote kal_diphone) voice-locations)))'],
        env=env.environ, capture_output=True, text=True, check=True)
    assert result.stdout.strip().strip('"').startswith(str(tmp_path))


def _median_f0(audio, sr, low=80, high=400):
  """Median pitch of the voiced 40 ms frames, by autocorrelation (numpy only)."""
  frame = int(0.04 * sr)
  f0s = []
  for start in range(0, len(audio) - frame, frame):
    x = audio[start:start + frame] - audio[start:start + frame].mean()
    if np.sqrt(np.mean(x ** 2)) < 0.05 * np.abs(audio).max():
      continue
    ac = np.correlate(x, x, 'full')[frame - 1:]
    lags = np.arange(sr // high, sr // low)
    best = lags[np.argmax(ac[lags])]
    if ac[best] > 0.5 * ac[0]:
      f0s.append(sr / best)
  return float(np.median(f0s))


@pytest.mark.skipif(not engines._pico_present(), reason='ttspico not installed')
def test_pico_is_deterministic_and_follows_rate_and_pitch():
  env = engines.engine_env()
  voice = engines.VOICES_BY_NAME['pico/lh']
  text = 'Turn on the lights in the kitchen.'
  say = lambda t, **p: engines.synthesize(voice, [t], [engines.Prosody(**p)], env)[0]
  plain, sr = say(text)
  assert sr == 16000 and 1.0 < len(plain) / sr < 4.0
  # What was spoken before (at another rate and pitch) leaves no trace.
  say('Something else, slower and higher.', rate=0.8, pitch=1.3)
  np.testing.assert_array_equal(say(text)[0], plain)
  # pico pads about 0.6 s of silence whatever the rate: compare the spoken part.
  spoken = lambda a: np.ptp(np.nonzero(np.abs(a) > 0.02)[0])
  fast, _ = say(text, rate=1.25)
  assert spoken(fast) / spoken(plain) == pytest.approx(1 / 1.25, rel=0.05)
  high, _ = say(text, pitch=1.3)
  assert _median_f0(high, sr) / _median_f0(plain, sr) == pytest.approx(1.3, rel=0.1)


def test_prosody_is_fixed_by_the_speaker_and_the_seed():
  speaker = speakers.get('flite/awb/05')
  assert speaker.prosody(5) == speaker.prosody(5)
  rates = [speaker.prosody(s).rate for s in range(200)]
  pitches = [speaker.prosody(s).pitch for s in range(200)]
  assert len(set(rates)) > 10
  # The engine speaks 1/shift slower, so that after the shift the speaker's own rate remains.
  expected = speaker.rate / speaker.shift
  assert min(rates) >= 0.95 * expected - 1e-3 and max(rates) <= 1.05 * expected + 1e-3
  assert np.mean(rates) == pytest.approx(expected, rel=0.01)
  assert np.mean(pitches) == pytest.approx(speaker.pitch, rel=0.01)
  assert speakers.get('espeak/en-us/m3').prosody(1).variant == 'm3'
  with pytest.raises(speakers.SpeakerError, match="unknown speaker 'flite/awb/99'"):
    speakers.get('flite/awb/99')


def test_speaker_shift_raises_pitch_and_shortens_by_its_factor():
  sr = 22050
  t = np.arange(sr) / sr
  wave = np.sin(2 * np.pi * 200 * t).astype(np.float32)
  speaker = dataclass_replace(speakers.get('flite/awb/00'), shift=1.1)
  out = synth.speaker_audio(wave, sr, speaker)
  assert len(out) == pytest.approx(16000 / 1.1, abs=3)
  assert _peak_hz(out, 16000) == pytest.approx(220, abs=2)


# --- speakers ----------------------------------------------------------------------------------

def _all_speakers_split():
  return speakers.split_speakers(list(engines.VOICES),
                                 variants_present=set(speakers.ESPEAK_VARIANTS))


def _base(name):
  return name.rsplit('/', 1)[0]


def _variant(name):
  return name.rsplit('/', 1)[1] if name.startswith('espeak/') else ''


def test_held_out_base_voices_and_their_variants_never_train():
  train, held = _all_speakers_split()
  train_names, held_names = {s.name for s in train}, {s.name for s in held}
  assert not train_names & held_names
  held_bases = {'flite/rms', 'festival/ked', 'espeak/en-gb-scotland', 'espeak/en-gb-x-gbcwmd'}
  assert {_base(n) for n in held_names} == held_bases
  assert not {_base(n) for n in train_names} & held_bases
  # espeak-ng: no held-out speaker shares an accent or a variant family with a training one.
  family = lambda v: v if len(v) == 2 and v[0] in 'mf' else v.rstrip('0123456789')
  train_families = {family(_variant(n)) for n in train_names if n.startswith('espeak/')}
  held_families = {family(_variant(n)) for n in held_names if n.startswith('espeak/')}
  assert held_families and not train_families & held_families
  # Every speaker of a held-out flite/festival voice is held out.
  assert sum(n.startswith('flite/rms/') for n in held_names) == speakers.DERIVED_PER_VOICE
  assert len(train) >= 200 and len(held) >= 30
  # A base voice keeps its share of the split, whatever the number of its speakers.
  share = {}
  for s in train:
    share[s.base] = share.get(s.base, 0) + s.weight
  for base, weight in share.items():
    assert weight == pytest.approx(engines.VOICES_BY_NAME[base].weight), base


def test_planned_speakers_follow_the_split_kinds(config_texts):
  train, held = _all_speakers_split()
  small = builder.CONFIGS_BY_NAME['small']
  utterances = plan.make_plan(builder.plan_spec(small), train, held)
  held_bases = set(engines.HELD_OUT)
  for split, utts in utterances.items():
    names = {u.voice for u in utts}
    if split.endswith('_test'):
      assert names <= {s.name for s in held}, split
      assert {_base(n) for n in names} <= held_bases, split
    else:
      assert names <= {s.name for s in train}, split
      assert not {_base(n) for n in names} & held_bases, split
    # Sentences are those of the text-level plan, whatever the speakers.
    assert [(u.id, u.transcript) for u in utts] == config_texts['small'][split], split
  base_train = utterances['base_train']
  heard = {u.voice for u in base_train}
  assert len(heard) >= 150 and len({u.voice for u in utterances['base_test']}) >= 25
  for base in {s.base for s in train}:
    assert sum(_base(n) == base for n in heard) >= 5, base
  # Engines keep their share: piper/joe (weight 2 of 9.75) speaks about a fifth, each pico voice
  # (1 of 9.75) about a tenth.
  share = lambda base: sum(_base(u.voice) == base for u in base_train) / len(base_train)
  assert 0.15 < share('piper/joe') < 0.26
  assert 0.07 < share('pico/lh') < 0.14 and 0.07 < share('pico/kh') < 0.14


def test_speaker_settings_depend_on_the_name_only():
  before = dict(speakers.all_speakers())
  speakers.all_speakers.cache_clear()
  assert speakers.all_speakers() == before
  for s in before.values():
    if s.name.endswith('/00'):
      assert (s.pitch, s.rate, s.shift) == (1.0, 1.0, 1.0)
    else:
      assert speakers.PITCH_RANGE[0] <= s.pitch <= speakers.PITCH_RANGE[1]
      assert speakers.RATE_RANGE[0] <= s.rate <= speakers.RATE_RANGE[1]
      assert speakers.SHIFT_RANGE[0] <= s.shift <= speakers.SHIFT_RANGE[1]
  derived = [s for s in before.values() if s.base == 'flite/awb']
  assert len({(s.pitch, s.rate, s.shift) for s in derived}) == len(derived)


def test_missing_espeak_variants_are_named_and_skipped(capsys):
  voices = [engines.VOICES_BY_NAME[n] for n in ('espeak/en-us', 'espeak/en-gb-scotland')]
  train, held = speakers.split_speakers(voices, variants_present={'m1', 'm3', 'm6'})
  assert {s.variant for s in train} == {'m1', 'm3'} and {s.variant for s in held} == {'m6'}
  assert 'espeak-ng lacks' in capsys.readouterr().out


# --- text generation ---------------------------------------------------------------------------

def test_every_domain_fills_its_templates_into_normalised_text():
  rng = np.random.default_rng(0)
  for domain in ('base',) + tuple(f'update_{i}' for i in range(1, 6)):
    sampler = textgen.make_sampler(domain, free_form_share=0.2)
    intents = set()
    for role in ('train', 'test') * 150:
      sentence = sampler.sample(role, rng)
      assert sentence.transcript == text.normalize(sentence.display)
      assert not any(ch.isdigit() for ch in sentence.display)
      assert sentence.display[-1] in '.?!'
      intents.add(sentence.intent)
    own = {intent for intent, _ in sampler.own_intents}
    assert len(intents & own) >= min(3, len(own)), domain


def test_update_domains_add_new_intents_and_never_seen_slot_values():
  templates, lists = textgen.default_resources()
  domains = ['base'] + [f'update_{i}' for i in range(1, 6)]
  earlier_intents, earlier_values = set(), set()
  for domain in domains:
    intents = {t.intent for t in templates if t.domain == domain}
    values = {text.normalize(v) for vs in lists[domain].values() for v in vs}
    if domain != 'base':
      assert intents - earlier_intents, f'{domain} has no new intent'
      assert not values & earlier_values, (domain, sorted(values & earlier_values))
      assert len(values) >= 100, domain          # large open slot lists
    earlier_intents |= intents
    earlier_values |= values
  assert len(lists['base']['first_name']) * len(lists['base']['last_name']) > 10000


def test_held_back_slot_values_reach_test_sentences_only():
  sampler = textgen.make_sampler('update_1')
  names = textgen.default_resources()[1]['update_1']['last_name']
  held_back = {n.lower() for n in names
               if textgen.stable_fraction('update_1', 'last_name', n) < textgen.TEST_ONLY_SHARE}
  assert held_back and held_back != {n.lower() for n in names}
  rng = np.random.default_rng(1)
  train_words = {w for _ in range(400) for w in sampler.sample('train', rng).transcript.split()}
  test_words = {w for _ in range(400) for w in sampler.sample('test', rng).transcript.split()}
  assert not train_words & held_back
  assert test_words & held_back


def test_fortunes_are_read_as_written():
  sentences = textgen.fortune_sentences()
  if not sentences:
    pytest.skip('fortunes not installed')
  for s in sentences:
    assert not any(ch.isdigit() for ch in s) and '"' not in s
    assert 4 <= len(text.normalize(s).split()) <= 22


def test_template_syntax_expands_alternatives_and_options():
  rng = np.random.default_rng(0)
  seen = {' '.join(textgen._expand_choices('(turn|switch) [the] light (on|)', rng).split())
          for _ in range(200)}
  assert seen == {f'{a} {b}light {c}'.strip() for a in ('turn', 'switch') for b in ('the ', '')
                  for c in ('on', '')}
  assert textgen.display_form("what's the score of the the Mets game") == \
      "What's the score of the Mets game?"


# --- planning ----------------------------------------------------------------------------------

def _fake_voices():
  return ([engines.VOICES_BY_NAME[n] for n in ('flite/slt', 'flite/awb', 'piper/joe')],
          [engines.VOICES_BY_NAME['flite/rms']])


def test_plan_is_deterministic_unique_and_sized():
  spec = plan.PlanSpec(domains=('base', 'update_1'), base_sizes=(50, 10, 10),
                       update_sizes=(20, 5, 5), seed=3, max_words=9, free_form_share=0.1)
  train, held = _fake_voices()
  first, second = plan.make_plan(spec, train, held), plan.make_plan(spec, train, held)
  all_train, all_held = _all_speakers_split()
  assert plan.make_plan(spec, all_train, all_held) == plan.make_plan(spec, all_train, all_held)
  assert first == second
  other_seed = plan.make_plan(dataclass_replace(spec, seed=4), train, held)
  assert [u.transcript for u in other_seed['base_train']] != \
      [u.transcript for u in first['base_train']]
  transcripts = [u.transcript for utts in first.values() for u in utts]
  assert len(transcripts) == len(set(transcripts)) == 100
  assert all(len(t.split()) <= 9 for t in transcripts)
  assert {u.voice for u in first['base_test'] + first['update_1_test']} == {'flite/rms'}
  assert 'flite/rms' not in {u.voice for k, utts in first.items() if not k.endswith('_test')
                             for u in utts}


@pytest.fixture(scope='module')
def config_texts():
  """config name -> split -> [(utterance id, transcript)], at the text level (no audio)."""
  out = {}
  for config in builder.CONFIGS:
    sentences = plan.plan_sentences(builder.plan_spec(config))
    out[config.name] = {
        split: [(f'{split.rsplit("_" + _kind(split), 1)[0]}/{_kind(split)}/{p:06d}',
                 s.transcript) for p, s in items]
        for split, items in sentences.items()}
  return out


def _kind(split):
  for kind in ('test_seen', 'test', 'train'):
    if split.endswith('_' + kind):
      return kind
  raise KeyError(split)


def test_no_evaluated_sentence_is_in_any_train_split_of_any_config(config_texts):
  # Every pair, the same config included: a model trained on `full` is evaluated on `tiny`'s
  # and `small`'s test splits too.
  for evaluated, splits in config_texts.items():
    for trained, other in config_texts.items():
      train = {t for split, items in other.items() if _kind(split) == 'train' for _, t in items}
      for split, items in splits.items():
        if _kind(split) != 'train':
          leaked = {t for _, t in items} & train
          assert not leaked, (evaluated, split, trained, sorted(leaked)[:3])


def test_smaller_configs_are_subsets_of_larger_ones(config_texts):
  sizes = {c.name: c for c in builder.CONFIGS}
  assert (sizes['tiny'].subset_of, sizes['demo'].subset_of,
          sizes['small'].subset_of) == ('small', 'small', 'full')
  for inner, outer in (('tiny', 'small'), ('demo', 'small'), ('small', 'full'),
                       ('tiny', 'full'), ('demo', 'full')):
    for split, items in config_texts[inner].items():
      assert set(items) <= set(config_texts[outer][split]), (inner, outer, split)
  # small takes each split's first sentences of full: a prefix, in order.
  for split, items in config_texts['small'].items():
    assert items == config_texts['full'][split][:len(items)], split
  for config in builder.CONFIGS:
    for split, items in config_texts[config.name].items():
      domain = split.rsplit('_' + _kind(split), 1)[0]
      sizes_ = config.base_sizes if domain == 'base' else config.update_sizes
      assert len(items) == sizes_[plan.SPLIT_KINDS.index(_kind(split))], (config.name, split)
      assert len({t for _, t in items}) == len(items), (config.name, split)
      if config.max_words:
        assert all(len(t.split()) <= config.max_words for _, t in items)


def test_a_config_larger_than_the_one_it_is_part_of_is_refused():
  small = builder.CONFIGS_BY_NAME['small']
  tiny = dataclass_replace(builder.CONFIGS_BY_NAME['tiny'], base_sizes=(1101, 16, 16))
  with pytest.raises(ValueError, match=r'base_train: 1101 utterances .* first 1100'):
    plan.plan_sentences(builder.plan_spec(tiny))
  too_few_short = dataclass_replace(builder.CONFIGS_BY_NAME['tiny'], base_sizes=(1100, 16, 16))
  with pytest.raises(ValueError, match=r'base_train: only \d+ of the first 1100 sentences'):
    plan.plan_sentences(builder.plan_spec(too_few_short))
  assert small.base_sizes[0] == 1100


def dataclass_replace(spec, **changes):
  import dataclasses
  return dataclasses.replace(spec, **changes)


def test_oov_share_counts_running_words():
  assert plan.oov_share(['a b c', 'a d'], {'a', 'b'}) == pytest.approx(2 / 5)
  shares = plan.update_oov_shares({'base_train': ['x y'], 'u_test': ['x z z q'],
                                   'u_train': ['q']}, ('base', 'u'))
  assert shares == {'u': pytest.approx(3 / 4)}


# --- augmentation (numpy references) -----------------------------------------------------------

def _peak_hz(x, sr):
  spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
  return np.fft.rfftfreq(len(x), 1 / sr)[np.argmax(spectrum)]


@pytest.mark.parametrize('sr', [8000, 22050, 32000, 44100, 48000])
def test_resample_keeps_duration_and_pitch(sr):
  t = np.arange(sr) / sr
  out = augment.resample(np.sin(2 * np.pi * 440 * t).astype(np.float32), sr)
  assert abs(len(out) - 16000) <= 1
  assert _peak_hz(out, 16000) == pytest.approx(440, abs=2)


def test_speed_changes_duration_and_pitch_together():
  t = np.arange(16000) / 16000
  out = augment.change_speed(np.sin(2 * np.pi * 500 * t).astype(np.float32), 1.1)
  assert len(out) == pytest.approx(16000 / 1.1, abs=2)
  assert _peak_hz(out, 16000) == pytest.approx(550, abs=3)


@pytest.mark.parametrize('snr_db', [10.0, 20.0, 30.0])
def test_noise_is_added_at_the_requested_snr(snr_db):
  rng = np.random.default_rng(0)
  speech = np.sin(np.arange(32000) / 7).astype(np.float32) * 0.3
  power = float(np.mean(speech**2))
  noisy = augment.add_noise(speech, rng, snr_db, power)
  measured = 10 * np.log10(power / np.mean((noisy - speech)**2))
  assert measured == pytest.approx(snr_db, abs=0.1)


def test_room_response_decays_and_keeps_the_direct_path():
  rir = augment.synthetic_rir(np.random.default_rng(0), rt60_s=0.5)
  assert rir[0] == 1.0
  n = len(rir) // 10
  assert np.sum(rir[1:n]**2) > 100 * np.sum(rir[-n:]**2)


def test_augment_is_seeded_and_stays_in_range():
  wave = np.sin(np.arange(22050) / 5).astype(np.float32)
  a = augment.augment(wave, 22050, np.random.default_rng([9, 1]))
  b = augment.augment(wave, 22050, np.random.default_rng([9, 1]))
  c = augment.augment(wave, 22050, np.random.default_rng([10, 1]))
  assert a.dtype == np.int16 and a.tobytes() == b.tobytes() and a.tobytes() != c.tobytes()
  assert np.abs(a.astype(np.int32)).max() <= 0.99 * 32767 + 1
  assert 0.85 * 16000 < len(a) < 2.0 * 16000


def test_to_int16_clips():
  out = augment.to_int16(np.array([-2.0, -1.0, 0.0, 0.5, 2.0], np.float32))
  assert out.tolist() == [-32768, -32767, 0, 16384, 32767]


# --- LibriSpeech -------------------------------------------------------------------------------

def _has_tensorflow():
  try:
    import tensorflow  # pylint: disable=unused-import,import-outside-toplevel
    return True
  except ImportError:
    return False


def test_librispeech_examples_take_the_corpus_shape():
  fake = [{'speech': np.arange(-5, 5, dtype=np.int64), 'text': b'HELLO, MR. O\'NEIL',
           'speaker_id': 1089, 'chapter_id': 134686, 'id': b'1089-134686-0000'}]
  source = librispeech.LibriSpeechSource(fake)
  ex = source[0]
  assert len(source) == 1
  assert ex['audio'].dtype == np.int16 and ex['audio'].tolist() == list(range(-5, 5))
  assert ex['transcript'] == "hello mr o'neil"
  assert ex['voice'] == 'librispeech/1089' and ex['domain'] == 'librispeech'
  assert ex['id'] == '1089-134686-0000'
  with pytest.raises(IndexError):
    source[1]


@pytest.mark.skipif(_has_tensorflow(), reason='TensorFlow is installed')
def test_librispeech_without_tensorflow_says_what_to_install(tmp_path):
  # tfds's librispeech builder (its Audio feature) imports TensorFlow, so neither the builder
  # nor tfds.testing.mock_data can run here: this is the error users get instead.
  with pytest.raises(librispeech.LibriSpeechUnavailable, match='TensorFlow'):
    librispeech.load_librispeech('test_clean', str(tmp_path))
  with pytest.raises(ValueError, match='unknown LibriSpeech split'):
    librispeech.load_librispeech('test_noisy', str(tmp_path))


@pytest.mark.skipif(not _has_tensorflow(), reason='needs TensorFlow (optional extra)')
def test_librispeech_reads_tfds_mock_data(tmp_path):
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  fake = [{'speech': np.zeros(160, np.int16) + i, 'text': 'HELLO WORLD', 'speaker_id': 7,
           'chapter_id': 1, 'id': f'7-1-{i}'} for i in range(3)]
  with tfds.testing.mock_data(num_examples=3, policy=tfds.testing.MockPolicy.USE_CODE,
                              as_data_source_fn=lambda *a, **k: fake):
    source = librispeech.load_librispeech('test_clean', str(tmp_path))
    assert len(source) == 3
    ex = source[0]
  assert ex['audio'].dtype == np.int16 and ex['transcript'] == 'hello world'
  assert ex['domain'] == 'librispeech'
