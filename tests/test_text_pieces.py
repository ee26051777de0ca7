"""Word pieces (asr/text_pieces.py): sentencepiece's own ids and text shifted past the blank, a
tiny RNN-T trained and evaluated with them, and an export that carries the model file."""
import os

import numpy as np
import pytest
import sentencepiece as spm

from asr import evaluate as evaluate_lib
from asr import export
from asr import text as text_lib
from asr import text_pieces
from asr import train as train_lib
from asr import transcribe
from asr.data import batching
from experiments import models
from experiments import modes
from experiments import validate
from experiments.configs import from_workdir
from tests import helpers

WORDS = helpers.WORDS + ["wizard's", 'jazz', 'quick', 'the', 'fox']


def _transcripts(n=48, seed=0):
  rng = np.random.default_rng(seed)
  return [' '.join(rng.choice(WORDS, size=rng.integers(1, 6))) for _ in range(n)]


@pytest.fixture(scope='module')
def pieces(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('pieces') / 'tok' / 'tokenizer.model')
  lines = path + '.txt'
  os.makedirs(os.path.dirname(path))
  with open(lines, 'w') as f:
    # Raw text: the command normalises it as training does (upper case, a number).
    f.write('\n'.join(t.upper() for t in _transcripts()) + '\nGO 2 THE FOX\n')
  assert text_pieces.main(['train', f'--transcripts={lines}', '--vocab_size=40',
                           f'--out={path}', '--threads=1']) == 0
  return path


def test_ids_are_sentencepieces_shifted_past_the_blank_and_decode_to_the_text(pieces):
  reference = spm.SentencePieceProcessor(model_file=pieces)
  tok = text_pieces.load(f'pieces:{pieces}')
  assert tok.blank_id == 0 and tok.vocab_size == reference.get_piece_size() + 1
  assert reference.get_piece_size() <= 40
  # Held-out text, with letters the transcripts never used: every letter is a piece.
  held_out = _transcripts(20, seed=1) + ['quiz vexing mj', "o'er the bzz"]
  for text in held_out:
    ids = tok.encode(text)
    assert ids == [i + 1 for i in reference.encode(text, out_type=int)]
    assert 0 not in ids and min(ids) >= 1 and max(ids) < tok.vocab_size
    assert tok.decode(ids) == reference.decode([i - 1 for i in ids]) == text
  # Blank, unknown and out-of-range ids are dropped, never printed.
  unk = reference.unk_id() + 1
  assert tok.decode([0, unk, tok.vocab_size, *tok.encode('go up')]) == 'go up'
  text_of = ''.join(tok.token_text(i) for i in range(tok.vocab_size))
  assert set(text_of) <= set(text_lib.ALPHABET)
  # Word times: a piece that starts with sentencepiece's word mark starts a word.
  ids = tok.encode("the quick wizard's fox")
  text, words = transcribe.words_with_times(ids, list(range(len(ids))), 0.03, tok)
  assert text == "the quick wizard's fox"
  assert [w['word'] for w in words] == text.split()
  # A word starts at its first letter's frame: a lone mark piece, like the character
  # tokenizer's space, is no part of it.
  starts, pending = [], False
  for i, piece in enumerate(reference.id_to_piece([i - 1 for i in ids])):
    pending = pending or piece.startswith('\u2581')
    if pending and piece.strip('\u2581'):
      starts.append(i)
      pending = False
  assert [w['start_s'] for w in words] == [round(0.03 * i, 3) for i in starts]


def test_unknown_values_and_missing_files_fail_in_one_line_naming_them(tmp_path):
  cfg = helpers.tiny_config()
  cfg.data.tokenizer = 'words'
  with pytest.raises(validate.ConfigError, match="^config.data.tokenizer: 'words' is not "
                                                 "'chars' or 'pieces:'PATH") as raised:
    validate.check(cfg)
  assert '\n' not in str(raised.value)
  missing = str(tmp_path / 'none.model')
  cfg.data.tokenizer = f'pieces:{missing}'
  with pytest.raises(validate.ConfigError, match=f'^{missing}: tokenizer model not found '
                                                 r'\(named by config.data.tokenizer\)$'):
    validate.check(cfg)
  with pytest.raises(text_pieces.TokenizerError, match=f'^{missing}: tokenizer model'):
    models.build_model(cfg)
  (tmp_path / 'junk.model').write_bytes(b'not a model')
  with pytest.raises(text_pieces.TokenizerError, match='junk.model: not a sentencepiece model'):
    text_pieces.load(f'pieces:{tmp_path / "junk.model"}')
  assert text_pieces.main(['train', '--out=x.model']) == 1          # no transcripts given
  assert text_pieces.main(['train', f'--transcripts={missing}', '--out=x.model']) == 1
  assert not os.path.exists('x.model')


def test_a_tiny_rnnt_trains_evaluates_and_exports_with_word_pieces(pieces, tmp_path):
  cfg = helpers.tiny_config(**{'train.steps': 2, 'data.prefetch_batches': 2})
  cfg.data.tokenizer = f'pieces:{pieces}'
  validate.check(cfg)
  tok = text_pieces.from_config(cfg)
  data = batching.Dataset(helpers.synthetic_examples(16), batching.Buckets(
      tuple(cfg.data.bucket_seconds), cfg.data.chars_per_second), tokenizer=tok)
  assert len(data) == 16 and not data.skipped.count
  for labels, transcript in zip(data.labels, data.transcripts):
    assert tok.decode(labels) == transcript
  model = models.build_model(cfg)
  assert model.vocab_size == tok.vocab_size != text_lib.CharTokenizer.vocab_size
  workdir = str(tmp_path / 'run')
  variables, stats, _ = train_lib.train(cfg, workdir, model, data, log=lambda *_: None)
  evaluator = evaluate_lib.Evaluator(model, cfg)
  result, rows = evaluator(variables, data, stats, limit=4, return_rows=True)
  assert 0.0 <= result['wer'] and len(rows) == 4
  assert any(row['hyp'] for row in rows)   # an untrained model emits pieces all the same
  for row in rows:                       # decoded through the pieces, back to plain text
    assert set(row['hyp']) <= set(text_lib.ALPHABET), row['hyp']
    assert row['ref'] in data.transcripts
  # The export carries the tokenizer: moved away from the training files, it still decodes.
  out = str(tmp_path / 'exported')
  modes.export(cfg, workdir, export_dir=out)
  assert sorted(os.listdir(out)) == sorted(export.FILES + ('model_card.md', export.PIECES))
  with open(os.path.join(out, export.PIECES), 'rb') as f, open(pieces, 'rb') as g:
    assert f.read() == g.read()
  moved = str(tmp_path / 'moved')
  os.rename(out, moved)
  loaded = from_workdir.load(moved)
  assert loaded.data.tokenizer == f'pieces:{moved}/{export.PIECES}'
  exported_vars, _ = train_lib.load_trained(loaded, moved, models.build_model(loaded), data)
  again, _, _ = evaluate_lib.Evaluator(models.build_model(loaded), loaded).transcribe_batch(
      exported_vars, stats, data.batch([0, 1], int(data.bucket[0]), 2))
  first, _, _ = evaluator.transcribe_batch(variables, stats,
                                           data.batch([0, 1], int(data.bucket[0]), 2))
  assert again == first
  # A config with the character tokenizer cannot read the word-piece model's ids.
  chars = helpers.tiny_config()
  with pytest.raises(ValueError, match='trained with the pieces tokenizer'):
    export.check_tokenizer(moved, text_pieces.from_config(chars))
