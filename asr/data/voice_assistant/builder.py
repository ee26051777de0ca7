"""`voice_assistant`: the embedded synthetic speech corpus, as a tfds builder (array_record).

Voice-assistant commands (and free-form sentences where a text source is installed) spoken by the
TTS engines present on the machine (see `engines.py`) as a few hundred speakers derived from their
voices (see `speakers.py`), augmented (speed, reverberation, noise, gain) and stored as int16
16 kHz audio without TensorFlow. Splits per domain D: `D_train`, `D_test` (held-out speakers
only: none shares a base voice with a training speaker) and `D_test_seen` (training speakers),
both with sentences in no train split of any config.
Domains: `base`, then `update_1` ... `update_5`, each bringing slot values never heard before and
at least one new intent, for sequential model updates.

Build and read through `asr.data.voice_assistant.corpus` (`build`, `load`); this module holds
only the builder so that `python -m asr.data.voice_assistant.corpus` does not register it twice.
"""
import collections
import contextlib
import dataclasses
import importlib.util
import multiprocessing
import os

from etils import epath
import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core import shuffle as tfds_shuffle
import tqdm

from asr.data.voice_assistant import augment
from asr.data.voice_assistant import engines
from asr.data.voice_assistant import plan
from asr.data.voice_assistant import speakers
from asr.data.voice_assistant import synth
from asr.data.voice_assistant import textgen

UPDATE_DOMAINS = tuple(f'update_{i}' for i in range(1, 6))


@contextlib.contextmanager
def _splits_stay_in_memory():
  """tfds moves a split of over 1 GB from memory to temporary files through `tf.io.gfile`,
  which needs TensorFlow. Without it, the split stays in memory (full's base_train: ~1.2 GB)."""
  if importlib.util.find_spec('tensorflow') is not None:
    yield
    return
  saved = tfds_shuffle.MAX_MEM_BUFFER_SIZE
  tfds_shuffle.MAX_MEM_BUFFER_SIZE = max(saved, 1 << 40)
  try:
    yield
  finally:
    tfds_shuffle.MAX_MEM_BUFFER_SIZE = saved


@dataclasses.dataclass(eq=False)
class CorpusConfig(tfds.core.BuilderConfig):
  """Sizes are utterances per (train, test, test_seen) split."""
  domains: tuple = ()
  base_sizes: tuple = (0, 0, 0)
  update_sizes: tuple = (0, 0, 0)
  tts_engines: tuple = engines.ENGINES
  max_words: int = 0
  free_form_share: float = 0.12
  batch_size: int = 16
  seed: int = 0
  # The config this one is a subset of: each of its splits draws only from the sentences of
  # that config's split (same seed, same streams), so a model trained on the larger config has
  # never heard any test sentence of the smaller one.
  subset_of: str = ''


CONFIGS = (
    CorpusConfig(
        name='tiny', description='188 short utterances, flite and espeak-ng only: tests and CI.',
        domains=('base', 'update_1', 'update_2'), base_sizes=(60, 16, 16),
        update_sizes=(24, 12, 12), tts_engines=('flite', 'espeak'), max_words=7, batch_size=8,
        subset_of='small'),
    CorpusConfig(
        name='demo', description='About 35 minutes, all engines: `make demo` (a part of small).',
        domains=('base', 'update_1', 'update_2'), base_sizes=(300, 120, 40),
        update_sizes=(90, 40, 20), subset_of='small'),
    CorpusConfig(
        name='small', description='About 2 hours, all engines: the AmNet and diff sweeps on a CPU.',
        domains=('base',) + UPDATE_DOMAINS, base_sizes=(1100, 120, 120),
        update_sizes=(180, 40, 40), subset_of='full'),
    CorpusConfig(
        name='full', description='20+ hours, all engines, base plus five update domains.',
        domains=('base',) + UPDATE_DOMAINS, base_sizes=(12000, 800, 800),
        update_sizes=(1800, 400, 400)),
)


CONFIGS_BY_NAME = {c.name: c for c in CONFIGS}


def plan_spec(config: CorpusConfig) -> plan.PlanSpec:
  """The plan of a config, bounded by the config it is a subset of (`subset_of`)."""
  outer = CONFIGS_BY_NAME[config.subset_of] if config.subset_of else config
  if config.subset_of:
    if (outer.seed, outer.free_form_share) != (config.seed, config.free_form_share):
      raise ValueError(f'voice_assistant/{config.name}: seed and free_form_share must equal '
                       f'those of {outer.name}, the config it is a subset of')
    missing = sorted(set(config.domains) - set(outer.domains))
    if missing:
      raise ValueError(f'voice_assistant/{config.name}: domains {missing} are not in '
                       f'{outer.name}, the config it is a subset of')
  return plan.PlanSpec(domains=config.domains, base_sizes=config.base_sizes,
                       update_sizes=config.update_sizes, seed=config.seed,
                       max_words=config.max_words, free_form_share=config.free_form_share,
                       base_limits=outer.base_sizes, update_limits=outer.update_sizes)


class VoiceAssistant(tfds.core.GeneratorBasedBuilder):
  """Synthetic voice-assistant speech from the TTS engines installed here."""

  VERSION = tfds.core.Version('2.1.0')
  RELEASE_NOTES = {
      '1.0.0': 'First release.',
      '1.1.0': 'One sentence stream per split for every config: tiny is a subset of small, '
               'small of full, and no test or test_seen sentence of any config is in any train '
               'split (the kind of a sentence is a hash of its transcript). Speakers are drawn '
               'per utterance id. Same sizes, different sentences.',
      '2.0.0': 'Speakers derived from the base voices (speakers.py): 16 per flite, festival and '
               'piper voice (pitch, rate, formant shift), and one per espeak-ng variant for 8 '
               'accents; the `voice` feature names the speaker (flite/awb/07, espeak/en-us/m3). '
               'Held out: flite/rms, festival/ked, espeak-ng en-gb-scotland and en-gb-x-gbcwmd '
               'with every speaker derived from them, and 6 espeak-ng variant families. Metadata '
               'records the speakers, their settings and the number per split.',
      '2.1.0': 'Two more training voices, SVOX Pico en-US (lh) and en-GB (kh), 16 speakers each: '
               'the training voices are six people besides espeak-ng, not four. Same sentences; '
               'the other voices give up a fifth of their utterances to them. Same held-out '
               'speakers.',
  }
  BUILDER_CONFIGS = list(CONFIGS)
  DEFAULT_CONFIG_NAME = 'tiny'

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # tfds's own lookup needs the `importlib_resources` backport for a builder inside a
    # package; the file is all it wants.
    return epath.Path(__file__)

  def __init__(self, *, workers: int | None = None, engine_dir: str | None = None,
               engines_allowed: tuple | None = None, search_system: bool = True, **kwargs):
    """`workers`: synthesis processes (default: all cores; 1: in this process).
    `engine_dir`: a folder with engine binaries (bin/), libraries (lib/) and data (share/).
    `engines_allowed`: restrict the config's engines further (e.g. ('flite',)).
    `search_system`: False takes engines from `engine_dir` alone (no PATH, no piper)."""
    self._workers = workers or os.cpu_count() or 1
    self._engine_dir = engine_dir
    self._engines_allowed = engines_allowed
    self._search_system = search_system
    self._pool = None
    self._progress = None
    self._seconds = collections.defaultdict(float)
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__.split('\n\n')[1],
        features=tfds.features.FeaturesDict({
            # Raw bytes: the default encoding stores int16 as protobuf varints, 5x larger.
            'audio': tfds.features.Tensor(shape=(None,), dtype=np.int16, encoding='bytes'),
            'transcript': tfds.features.Text(),
            'voice': tfds.features.Text(),
            'domain': tfds.features.Text(),
            'id': tfds.features.Text(),
        }),
        supervised_keys=('audio', 'transcript'),
        metadata=tfds.core.MetadataDict(),
    )

  def download_and_prepare(self, *args, **kwargs):
    try:
      with _splits_stay_in_memory():
        return super().download_and_prepare(*args, **kwargs)
    finally:
      if self._pool is not None:
        self._pool.terminate()
        self._pool.join()
        self._pool = None
      if self._progress is not None:
        self._progress.close()
        self._progress = None

  def _split_generators(self, dl_manager):
    del dl_manager
    config = self.builder_config
    env = engines.engine_env(self._engine_dir, self._search_system)
    wanted = tuple(e for e in config.tts_engines
                   if self._engines_allowed is None or e in self._engines_allowed)
    voices = engines.find_voices(wanted, env)
    train_speakers, held_out = speakers.split_speakers(voices, env)
    sources = textgen.text_sources()
    utterances = plan.make_plan(plan_spec(config), train_speakers, held_out)
    transcripts = {name: [u.transcript for u in utts] for name, utts in utterances.items()}
    oov = plan.update_oov_shares(transcripts, config.domains)
    for domain, share in oov.items():
      print(f'{domain}: {share:.1%} of {domain}_test words are out of vocabulary for all '
            'earlier domains')
    used = sorted({v.engine for v in voices})
    self.info.metadata.update({
        'config': config.name,
        'subset_of': config.subset_of,
        'seed': config.seed,
        'engines': {e: engines.engine_version(e, env) for e in used},
        # A corpus built elsewhere (a GPU machine without apt, say) may lack engines: what the
        # config asked for and where the engines came from tell it apart from this one.
        'engines_wanted': list(wanted),
        'engines_missing': sorted(set(wanted) - set(used)),
        'engine_source': ((f'packed folder {os.path.basename(os.path.abspath(self._engine_dir))}'
                           if self._engine_dir else 'system') +
                          ('' if self._search_system else ' only')),
        'base_voices': {'train': sorted({s.base for s in train_speakers}),
                        'held_out': sorted({s.base for s in held_out})},
        'speakers': {'train': [s.name for s in train_speakers],
                     'held_out': [s.name for s in held_out]},
        'speaker_settings': {s.name: s.describe() for s in train_speakers + held_out},
        'speakers_per_split': {name: len({u.voice for u in utts})
                               for name, utts in utterances.items()},
        'text_sources': sources,
        'augmentation': dataclasses.asdict(augment.AugmentConfig()),
        'oov_share_vs_earlier_domains': {d: round(s, 6) for d, s in oov.items()},
        'utterances': {name: len(utts) for name, utts in utterances.items()},
    })
    self._seconds.clear()
    self._progress = tqdm.tqdm(total=sum(len(u) for u in utterances.values()), unit='utt',
                               desc=f'voice_assistant/{config.name}', smoothing=0.05)
    return {name: self._generate_examples(utts) for name, utts in utterances.items()}

  def _map(self, tasks):
    config = augment.AugmentConfig()
    env = engines.engine_env(self._engine_dir, self._search_system)
    if self._workers == 1:
      synth.init_worker(env, config)
      return map(synth.render, tasks)
    if self._pool is None:
      # spawn, not fork: the parent holds threads (tqdm, tfds) that fork would copy mid-lock.
      context = multiprocessing.get_context('spawn')
      self._pool = context.Pool(self._workers, initializer=synth.init_worker,
                                initargs=(env, config))
    return self._pool.imap_unordered(synth.render, tasks)

  def _generate_examples(self, utterances):
    by_id = {u.id: u for u in utterances}
    for results in self._map(synth.make_tasks(utterances, self.builder_config.batch_size)):
      for utt_id, audio in results:
        u = by_id[utt_id]
        seconds = len(audio) / augment.SAMPLE_RATE
        self._seconds[('split', u.split)] += seconds
        self._seconds[('voice', u.voice)] += seconds
        self._seconds[('group', speakers.get(u.voice).base)] += seconds
        self._seconds[('domain', u.domain)] += seconds
        if self._progress is not None:
          self._progress.update(1)
        yield utt_id, {'audio': audio, 'transcript': u.transcript, 'voice': u.voice,
                       'domain': u.domain, 'id': u.id}
    # Written with dataset_info.json once the last split is done.
    hours = collections.defaultdict(dict)
    for (kind, key), seconds in sorted(self._seconds.items()):
      hours[kind][key] = round(seconds / 3600, 4)
    self.info.metadata['hours'] = dict(hours)
