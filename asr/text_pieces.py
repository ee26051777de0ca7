"""Word pieces: a sentencepiece model over the normalised alphabet, beside `text.CharTokenizer`.

A config chooses the tokenizer with `data.tokenizer`: 'chars' (the default) or 'pieces:PATH',
a model trained here on the training transcripts:

  python -m asr.text_pieces train --vocab_size=256 --out=tokenizers/ls960.model \
      --librispeech_dir=/path/LibriSpeech --splits=train-clean-100+train-clean-360+train-other-500
  python -m asr.text_pieces train --vocab_size=256 --out=tok.model --transcripts=lines.txt

(`--transcripts`: one transcript per line, normalised as training normalises them.) Id 0 stays
the RNN-T/CTC blank: sentencepiece's ids are shifted up by one. The model is trained with every
character of `text.ALPHABET` required, so a normalised transcript never encodes to sentencepiece's
unknown piece, and without normalisation rules, so decoding returns the text that was encoded.
"""
import functools
import hashlib
import io
import os
import sys

from asr import files
from asr import text as text_lib

CHARS = 'chars'
PREFIX = 'pieces:'


class TokenizerError(ValueError):
  """A `data.tokenizer` value or tokenizer model file that cannot be used (one line)."""


class PieceTokenizer:
  """Sentencepiece pieces <-> ids 1..N (sentencepiece id + 1); 0 is the RNN-T/CTC blank."""
  blank_id = text_lib.BLANK_ID

  def __init__(self, path: str):
    import sentencepiece as spm  # pylint: disable=g-import-not-at-top
    self.path = path
    try:
      with open(path, 'rb') as f:
        self.model_bytes = f.read()
    except FileNotFoundError:
      raise TokenizerError(f'{path}: tokenizer model not found') from None
    self._sp = spm.SentencePieceProcessor()
    try:
      self._sp.LoadFromSerializedProto(self.model_bytes)
    except (RuntimeError, OSError) as e:
      raise TokenizerError(f'{path}: not a sentencepiece model ({str(e).splitlines()[0]})'
                           ) from None
    self.sha256 = hashlib.sha256(self.model_bytes).hexdigest()
    self.vocab_size = self._sp.get_piece_size() + 1
    self._unk = self._sp.unk_id()

  def encode(self, text: str) -> list[int]:
    """Ids of a normalised transcript; `TranscriptError` if a character has no piece."""
    ids = self._sp.encode(text, out_type=int)
    if self._unk in ids:
      raise text_lib.TranscriptError(f'transcript {text!r} has characters without a piece in '
                                     f'{self.path}')
    return [i + 1 for i in ids]

  def _valid(self, ids) -> list[int]:
    # Blank, unknown and out-of-range ids decode to nothing: a model's stray unknown piece
    # would otherwise print as sentencepiece's ' ⁇ '.
    out = []
    for i in ids:
      i = int(i) - 1
      if 0 <= i < self.vocab_size - 1 and i != self._unk and not self._sp.is_control(i):
        out.append(i)
    return out

  def decode(self, ids) -> str:
    return ' '.join(self._sp.decode(self._valid(ids)).split())

  def token_text(self, token: int) -> str:
    """One id's text, with a leading space where it starts a word (for word times)."""
    valid = self._valid([token])
    return self._sp.id_to_piece(valid[0]).replace('\u2581', ' ') if valid else ''


def parse(spec: str, key: str = 'data.tokenizer') -> str:
  """'' for 'chars', the model path for 'pieces:PATH'; `TokenizerError` naming `key`."""
  if spec == CHARS:
    return ''
  if isinstance(spec, str) and spec.startswith(PREFIX) and spec[len(PREFIX):]:
    return spec[len(PREFIX):]
  raise TokenizerError(f'config.{key}: {spec!r} is not {CHARS!r} or {PREFIX!r}PATH (a model '
                       'trained by `python -m asr.text_pieces train`)')


@functools.lru_cache(maxsize=8)
def _load(path: str, mtime_ns: int, size: int) -> PieceTokenizer:
  del mtime_ns, size        # the cache key only: a retrained file is read again
  return PieceTokenizer(path)


def load(spec: str, key: str = 'data.tokenizer'):
  """The tokenizer a `data.tokenizer` value names."""
  path = parse(spec, key)
  if not path:
    return text_lib.CharTokenizer()
  try:
    st = os.stat(path)
  except FileNotFoundError:
    raise TokenizerError(f'{path}: tokenizer model not found (named by config.{key})') from None
  return _load(path, st.st_mtime_ns, st.st_size)


def from_config(cfg):
  """The tokenizer of a config (`cfg.data.tokenizer`; 'chars' where the key is absent)."""
  data = cfg.get('data', None) if hasattr(cfg, 'get') else None
  spec = data.get('tokenizer', CHARS) if data is not None else CHARS
  return load(spec)



def train(transcripts, vocab_size: int, out: str, threads: int = 0) -> PieceTokenizer:
  """Trains a unigram model of at most `vocab_size` pieces (blank not counted) on normalised
  transcripts and writes it to `out` atomically."""
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top
  transcripts = [t for t in transcripts if t]
  if not transcripts:
    raise TokenizerError('no transcripts to train the tokenizer on')
  letters = ''.join(ch for ch in text_lib.ALPHABET if ch != ' ')
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(transcripts), model_writer=model, vocab_size=vocab_size,
      model_type='unigram', character_coverage=1.0, required_chars=letters,
      normalization_rule_name='identity', unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1,
      # A small corpus holds fewer pieces than asked for: fewer, not a failure.
      hard_vocab_limit=False, num_threads=threads or os.cpu_count() or 1,
      minloglevel=2)
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  files.atomic_write(out, model.getvalue())
  return PieceTokenizer(out)


def _read_lines(path: str) -> tuple[list[str], int]:
  """(normalised transcripts, lines that do not normalise) of a one-per-line file."""
  try:
    with open(path, encoding='utf-8') as f:
      lines = f.read().splitlines()
  except FileNotFoundError:
    raise TokenizerError(f'{path}: transcripts file not found') from None
  except UnicodeDecodeError as e:
    raise TokenizerError(f'{path}: not UTF-8 ({e.reason} at byte {e.start})') from None
  out, bad = [], 0
  for line in lines:
    try:
      out.append(text_lib.normalize(line))
    except text_lib.TranscriptError:
      bad += 1
  return out, bad


def main(argv=None) -> int:
  import argparse  # pylint: disable=import-outside-toplevel
  parser = argparse.ArgumentParser(prog='python -m asr.text_pieces',
                                   description='Train a word-piece tokenizer.')
  sub = parser.add_subparsers(dest='command', required=True)
  t = sub.add_parser('train', help='train a sentencepiece model on training transcripts')
  t.add_argument('--vocab_size', type=int, default=256,
                 help='pieces at most, the blank not counted')
  t.add_argument('--out', required=True, help='the model file to write')
  t.add_argument('--transcripts', default='', help='a file of transcripts, one per line')
  t.add_argument('--librispeech_dir', default='', help='the LibriSpeech folder ...')
  t.add_argument('--splits', default='', help='... and its training splits, +-joined')
  t.add_argument('--threads', type=int, default=0, help='0 = every CPU')
  args = parser.parse_args(argv)
  try:
    if bool(args.transcripts) == bool(args.librispeech_dir):
      raise TokenizerError('give --transcripts=FILE or --librispeech_dir=ROOT --splits=SPLITS')
    if args.vocab_size < 2:
      raise TokenizerError(f'--vocab_size={args.vocab_size}: must be >= 2')
    if args.transcripts:
      transcripts, bad = _read_lines(args.transcripts)
      if bad:
        print(f'{args.transcripts}: {bad} lines do not normalise, left out', file=sys.stderr)
    else:
      from asr.data import librispeech_dir  # pylint: disable=g-import-not-at-top
      if not args.splits:
        raise TokenizerError('--librispeech_dir needs --splits, e.g. train-clean-100')
      src, report = librispeech_dir.load(args.librispeech_dir, args.splits)
      print(report.summary(), file=sys.stderr)
      transcripts = src.transcripts
    tokenizer = train(transcripts, args.vocab_size, args.out, args.threads)
  except (TokenizerError, text_lib.TranscriptError, OSError, ValueError) as e:
    print(f'error: {str(e).splitlines()[0] if str(e) else e!r}', file=sys.stderr)
    return 1
  print(f'{args.out}: {tokenizer.vocab_size - 1} pieces from {len(transcripts)} transcripts; '
        f'use --config.data.tokenizer=pieces:{args.out}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
