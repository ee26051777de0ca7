"""Statistics of a built `voice_assistant` config, as Markdown tables.

  python -m asr.data.voice_assistant.stats --config=small [--data_dir=DIR]

Utterances, hours and speakers per split, hours and speakers per speaker group (base voice) and per
domain (from the stored audio), vocabulary sizes, and out-of-vocabulary rates: for each split the
share of its running words unseen in its own domain's train split, and unseen in the train splits
of every earlier domain (what a model updated in sequence has heard).
"""
import collections
import sys

from asr.data.voice_assistant import corpus
from asr.data.voice_assistant import plan

SAMPLE_RATE = 16000


def collect(config_name: str, data_dir: str | None = None) -> dict:
  """Reads every example's length, voice and transcript (not kept: memory stays small)."""
  builder = corpus.VoiceAssistant(config=config_name, data_dir=data_dir or corpus.DEFAULT_DATA_DIR)
  if not builder.is_prepared():
    corpus.load(config_name, 'base_train', data_dir)   # raises the not-built error
  seconds = collections.defaultdict(float)
  counts = collections.Counter()
  transcripts = collections.defaultdict(list)
  speakers = collections.defaultdict(set)
  for split in builder.info.splits.keys():
    source = corpus.load(config_name, split, data_dir)
    for i in range(len(source)):
      example = source[i]
      duration = len(example['audio']) / SAMPLE_RATE
      seconds[('split', split)] += duration
      seconds[('voice', example['voice'])] += duration
      seconds[('group', _group(example['voice']))] += duration
      counts[('group', _group(example['voice']))] += 1
      speakers[('split', split)].add(example['voice'])
      speakers[('group', _group(example['voice']))].add(example['voice'])
      seconds[('domain', example['domain'])] += duration
      counts[('split', split)] += 1
      counts[('voice', example['voice'])] += 1
      transcripts[split].append(example['transcript'])
  return {'seconds': seconds, 'counts': counts, 'transcripts': dict(transcripts),
          'speakers': dict(speakers),
          'metadata': dict(builder.info.metadata), 'config': builder.builder_config}


def _group(voice: str) -> str:
  """The base voice of a speaker ('flite/awb/07' -> 'flite/awb')."""
  return voice.rsplit('/', 1)[0]


def _hours(seconds: float) -> str:
  return f'{seconds / 3600:.2f}'


def format_stats(stats: dict) -> str:
  config = stats['config']
  meta = stats['metadata']
  seconds, counts, transcripts = stats['seconds'], stats['counts'], stats['transcripts']
  domains = [d for d in config.domains if plan.split_name(d, 'train') in transcripts]
  train_vocab = {d: set(plan.word_counts(transcripts[plan.split_name(d, 'train')]))
                 for d in domains}
  speakers = stats['speakers']
  spk = meta.get('speakers', {})
  lines = [f'voice_assistant/{config.name}: engines {meta.get("engines", {})}',
           f'speakers: {len(spk.get("train", []))} training, {len(spk.get("held_out", []))} held '
           f'out; held-out base voices: {meta.get("base_voices", {}).get("held_out")}',
           f'text sources: {meta.get("text_sources")}', '',
           '| split | utterances | hours | speakers | OOV vs own train | OOV vs earlier domains |',
           '|---|---:|---:|---:|---:|---:|']
  total = 0.0
  for i, domain in enumerate(domains):
    earlier = set().union(*(train_vocab[d] for d in domains[:i]))
    for kind in plan.SPLIT_KINDS:
      split = plan.split_name(domain, kind)
      if split not in transcripts:
        continue
      own = ('' if kind == 'train' else
             f'{plan.oov_share(transcripts[split], train_vocab[domain]):.1%}')
      prior = f'{plan.oov_share(transcripts[split], earlier):.1%}' if i > 0 else ''
      total += seconds[('split', split)]
      lines.append(f'| {split} | {counts[("split", split)]} | '
                   f'{_hours(seconds[("split", split)])} | {len(speakers[("split", split)])} | '
                   f'{own} | {prior} |')
  every = set().union(*(v for k, v in speakers.items() if k[0] == 'split'))
  lines.append(f'| **all** | {sum(counts[k] for k in counts if k[0] == "split")} | '
               f'{_hours(total)} | {len(every)} | | |')
  lines += ['', '| speaker group (base voice) | speakers heard | utterances | hours | in |',
            '|---|---:|---:|---:|---|']
  held_out = set(meta.get('base_voices', {}).get('held_out', []))
  for kind, group in sorted(k for k in seconds if k[0] == 'group'):
    lines.append(f'| {group} | {len(speakers[(kind, group)])} | {counts[(kind, group)]} | '
                 f'{_hours(seconds[(kind, group)])} | '
                 f'{"test only (held out)" if group in held_out else "train, test_seen"} |')
  lines += ['', '| domain | hours | train vocabulary |', '|---|---:|---:|']
  for domain in domains:
    lines.append(f'| {domain} | {_hours(seconds[("domain", domain)])} | '
                 f'{len(train_vocab[domain])} |')
  all_train = set().union(*train_vocab.values())
  all_words = set(plan.word_counts(t for ts in transcripts.values() for t in ts))
  lines += ['', f'vocabulary: {len(all_train)} words in the train splits, {len(all_words)} in '
            'all splits']
  for domain, share in meta.get('oov_share_vs_earlier_domains', {}).items():
    lines.append(f'{domain}: {share:.1%} of {domain}_test words are out of vocabulary for all '
                 'earlier domains')
  return '\n'.join(lines)


def main(argv):
  del argv
  from absl import flags  # pylint: disable=import-outside-toplevel
  print(format_stats(collect(flags.FLAGS.config, flags.FLAGS.data_dir)))


if __name__ == '__main__':
  from absl import app
  from absl import flags
  flags.DEFINE_string('config', 'small', 'tiny, demo, small or full')
  flags.DEFINE_string('data_dir', None, f'default {corpus.DEFAULT_DATA_DIR} ($ASR_DATA_DIR)')
  sys.exit(app.run(main))
