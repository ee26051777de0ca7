"""Config -> bucketed splits (`asr.data.batching.Dataset`) from the configured source."""
import json
import os

from asr import features
from asr import multihost
from asr import text_pieces
from asr.data import batching

SOURCES = ('voice_assistant', 'folder', 'librispeech', 'librispeech_dir')


def source(cfg, split: str, log=print):
  """The raw random-access source of a split (dicts with audio, transcript, id, ...)."""
  data_cfg = cfg.data
  if data_cfg.source == 'voice_assistant':
    from asr.data.voice_assistant import corpus  # pylint: disable=g-import-not-at-top
    data_dir = data_cfg.data_dir or corpus.DEFAULT_DATA_DIR
    with multihost.main_first(f'corpus {data_cfg.corpus}'):
      corpus.build(data_cfg.corpus, data_dir)     # no-op when already built
    return corpus.load(data_cfg.corpus, split, data_dir)
  if data_cfg.source == 'folder':
    from asr.data import folder  # pylint: disable=g-import-not-at-top
    examples, report = folder.load_folder(data_cfg.folder, data_cfg.transcripts or None)
    log(report.summary())
    return examples
  if data_cfg.source == 'librispeech':
    from asr.data import librispeech  # pylint: disable=g-import-not-at-top
    return librispeech.load_librispeech(split, data_cfg.data_dir or None)
  if data_cfg.source == 'librispeech_dir':
    from asr.data import librispeech_dir  # pylint: disable=g-import-not-at-top
    examples, report = librispeech_dir.load(data_cfg.librispeech_dir, split)
    log(report.summary())
    return examples
  raise ValueError(f'data.source={data_cfg.source!r} is not one of {", ".join(SOURCES)}')


# Metadata that a rebuild of the same corpus may change: audio hours summed in the order the
# synthesis workers finish, and where the engines were found.
MEASURED_METADATA = ('hours', 'engine_source')


def fingerprint(cfg) -> str:
  """What the training data was: the corpus name, version and a sha256 of its plan (the
  metadata's config, seed, engines, speakers, text sources, augmentation and split sizes, as
  sorted JSON; not `MEASURED_METADATA`), or the source for other sources."""
  data_cfg = cfg.data
  if data_cfg.source != 'voice_assistant':
    where = data_cfg.folder or data_cfg.librispeech_dir or data_cfg.data_dir or 'default'
    return f'{data_cfg.source}: {where}'
  import glob  # pylint: disable=g-import-not-at-top
  import hashlib  # pylint: disable=g-import-not-at-top
  from asr.data.voice_assistant import corpus  # pylint: disable=g-import-not-at-top
  root = os.path.join(data_cfg.data_dir or corpus.DEFAULT_DATA_DIR, 'voice_assistant',
                      data_cfg.corpus)
  versions = sorted(glob.glob(os.path.join(root, '*', 'metadata.json')))
  if not versions:
    return f'voice_assistant/{data_cfg.corpus} (not built)'
  path = versions[-1]
  with open(path, encoding='utf-8') as f:
    try:
      meta = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f'{path}: not JSON ({e}); rebuild the corpus') from None
  plan = {k: v for k, v in meta.items() if k not in MEASURED_METADATA}
  digest = hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()[:16]
  version = os.path.basename(os.path.dirname(path))
  return f'voice_assistant/{data_cfg.corpus} {version} sha256:{digest}'


def buckets(cfg) -> batching.Buckets:
  return batching.Buckets(tuple(cfg.data.bucket_seconds), cfg.data.chars_per_second)


def load_split(cfg, split: str, log=print, train: bool = False) -> batching.Dataset:
  """A split in memory (a training split with `data.lazy_audio`: its index, the audio read per
  batch). A training split skips what CTC cannot align and what no bucket holds;
  an evaluation split keeps every readable example (long ones in an extra bucket)."""
  ctc = (features.frame_seconds(cfg.frontend) / cfg.model.ctc_upsample
         if cfg.model.ctc_weight > 0 and train else None)
  # Only a training split is lazy: evaluation splits are small, and an unreadable file found
  # while evaluating would otherwise count as a deletion of its whole transcript.
  lazy = train and cfg.data.get('lazy_audio', False)
  dataset = batching.Dataset(source(cfg, split, log), buckets(cfg),
                             tokenizer=text_pieces.from_config(cfg), name=split,
                             ctc_frame_seconds=ctc, keep_long=not train, lazy=lazy)
  log(f'{split}: {len(dataset)} utterances, {dataset.seconds() / 3600:.2f} h; '
      + dataset.skipped.summary(split))
  return dataset
