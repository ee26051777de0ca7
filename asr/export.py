"""An exported model: a folder anyone can load without the training run's checkpoints.

    model.npz           the parameters, one array per '/'-joined path (numpy only; the same
                        layout the update packages' device side reads and writes)
    config.json         the model's config (the training config, as JSON)
    feature_stats.json  the log-mel mean/std the model was trained with
    tokenizer.json      the tokenizer: the alphabet (ids 1..N; 0 is the blank), or for word
                        pieces the sha256 of tokenizer.model
    tokenizer.model     the sentencepiece model, for word pieces (`asr.text_pieces`); the
                        export's config.json names it as data.tokenizer='pieces:tokenizer.model',
                        a path inside the export (`tokenizer_spec` gives the full one)
    model_card.md       what it is, how it was made, what it scores (written by the caller)

`load(folder)` returns (params, stats); `is_exported(folder)` tells an export from a workdir,
so that `init_from`, evaluation and transcription accept either.
"""
import io
import json
import os

import numpy as np

from asr import frontend
from asr import files
from asr import text as text_lib
from asr import text_pieces

PARAMS = 'model.npz'
PIECES = 'tokenizer.model'
FILES = (PARAMS, 'config.json', 'feature_stats.json', 'tokenizer.json')


def flatten(tree, prefix: str = '') -> dict[str, np.ndarray]:
  out = {}
  for key, value in tree.items():
    path = f'{prefix}/{key}' if prefix else key
    if isinstance(value, dict):
      out.update(flatten(value, path))
    else:
      out[path] = np.asarray(value)
  return out


def unflatten(flat: dict) -> dict:
  root = {}
  for path, value in flat.items():
    node = root
    *parents, last = path.split('/')
    for part in parents:
      node = node.setdefault(part, {})
    node[last] = value
  return root



def write(folder: str, params, config_json: str, stats: dict, card: str,
          tokenizer=None) -> None:
  """Writes every file of an export into `folder`, each atomically. `tokenizer`: the model's
  (characters by default); a word-piece one is copied in."""
  os.makedirs(folder, exist_ok=True)
  buffer = io.BytesIO()
  np.savez(buffer, **flatten(params))
  files.atomic_write(os.path.join(folder, PARAMS), buffer.getvalue())
  files.atomic_write(os.path.join(folder, 'config.json'), config_json.encode())
  frontend.save_stats(os.path.join(folder, 'feature_stats.json'), stats['mean'], stats['std'])
  if isinstance(tokenizer, text_pieces.PieceTokenizer):
    files.atomic_write(os.path.join(folder, PIECES), tokenizer.model_bytes)
    meta = {'kind': 'pieces', 'model': PIECES, 'sha256': tokenizer.sha256,
            'vocab_size': tokenizer.vocab_size, 'blank_id': tokenizer.blank_id}
  else:
    meta = {'kind': 'chars', 'alphabet': text_lib.ALPHABET,
            'blank_id': text_lib.CharTokenizer.blank_id}
  files.atomic_write(os.path.join(folder, 'tokenizer.json'), json.dumps(meta).encode())
  files.atomic_write(os.path.join(folder, 'model_card.md'), card.encode())


def is_exported(folder: str) -> bool:
  return os.path.isfile(os.path.join(folder, PARAMS))


def load(folder: str):
  """(params as nested numpy dicts, feature stats) of an export; refuses a tokenizer other
  than this code's, since the ids would then mean other characters."""
  missing = [f for f in FILES if not os.path.isfile(os.path.join(folder, f))]
  if missing:
    raise FileNotFoundError(f'{folder}: not an exported model (missing {", ".join(missing)})')
  _tokenizer_meta(folder)
  with np.load(os.path.join(folder, PARAMS), allow_pickle=False) as npz:
    # A float16 copy (`half_copy`) loads as float32, the dtype every model here computes in.
    params = unflatten({key: _widened(npz[key]) for key in npz.files})
  mean, std = frontend.load_stats(os.path.join(folder, 'feature_stats.json'))
  return params, {'mean': np.asarray(mean, np.float32), 'std': np.asarray(std, np.float32)}


def _tokenizer_meta(folder: str) -> dict:
  """tokenizer.json, checked: the alphabet is this code's, or tokenizer.model is the file the
  model was trained with."""
  with open(os.path.join(folder, 'tokenizer.json')) as f:
    meta = json.load(f)
  if meta.get('kind', 'chars') == 'pieces':
    path = os.path.join(folder, meta.get('model', PIECES))
    pieces = text_pieces.load(text_pieces.PREFIX + path, key=f'{folder}/tokenizer.json')
    if pieces.sha256 != meta.get('sha256'):
      raise ValueError(f'{path}: sha256 {pieces.sha256[:16]}... is not the one in '
                       f'{folder}/tokenizer.json ({str(meta.get("sha256"))[:16]}...)')
  elif meta.get('alphabet') != text_lib.ALPHABET:
    raise ValueError(f'{folder}/tokenizer.json: alphabet {meta.get("alphabet")!r} is not '
                     f'this code\'s {text_lib.ALPHABET!r}')
  return meta


def tokenizer_spec(folder: str) -> str:
  """The `data.tokenizer` value of an export's own tokenizer: 'chars' or 'pieces:PATH'."""
  meta = _tokenizer_meta(folder)
  if meta.get('kind', 'chars') == 'pieces':
    return text_pieces.PREFIX + os.path.join(folder, meta.get('model', PIECES))
  return text_pieces.CHARS


def check_tokenizer(folder: str, tokenizer) -> None:
  """Raises unless `tokenizer` (a config's) is the one the export was trained with: the same
  ids must mean the same text."""
  meta = _tokenizer_meta(folder)
  kind = meta.get('kind', 'chars')
  ours = 'pieces' if isinstance(tokenizer, text_pieces.PieceTokenizer) else 'chars'
  if kind != ours or (ours == 'pieces' and tokenizer.sha256 != meta.get('sha256')):
    raise ValueError(f'{folder}: the model was trained with the {kind} tokenizer of its '
                     f'tokenizer.json, not this config\'s data.tokenizer ({ours}'
                     + (f' {tokenizer.path}' if ours == 'pieces' else '') + '); set '
                     f'data.tokenizer={tokenizer_spec(folder)}')


def config_json(folder: str) -> str:
  with open(os.path.join(folder, 'config.json')) as f:
    return f.read()


def _halved(value: np.ndarray) -> np.ndarray:
  return value.astype(np.float16) if value.dtype == np.float32 else value


def _widened(value: np.ndarray) -> np.ndarray:
  return value.astype(np.float32) if value.dtype == np.float16 else value


def half_copy(folder: str, dest: str) -> int:
  """`folder`'s export with its float32 parameters stored as float16, half the bytes (a GPU
  run's paper-size base, 67 MB, comes back in 34 MB); returns the bytes of dest's model.npz."""
  import shutil  # pylint: disable=g-import-not-at-top
  os.makedirs(dest, exist_ok=True)
  for name in os.listdir(folder):
    if name != PARAMS and os.path.isfile(os.path.join(folder, name)):
      shutil.copy2(os.path.join(folder, name), os.path.join(dest, name))
  with np.load(os.path.join(folder, PARAMS), allow_pickle=False) as npz:
    flat = {k: _halved(npz[k]) for k in npz.files}
  buffer = io.BytesIO()
  np.savez(buffer, **flat)
  files.atomic_write(os.path.join(dest, PARAMS), buffer.getvalue())
  return len(buffer.getvalue())
