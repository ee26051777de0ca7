"""Word and character error rates, corpus-level.

WER = (total word edits) / (total reference words) over a corpus, not a mean of per-utterance
rates; CER likewise over characters. Edits are Levenshtein distances (substitution, deletion,
insertion each cost 1).

Tokenisation: words are `str.split()` (any run of whitespace separates, leading/trailing dropped).
Characters are those of the words re-joined with single spaces, so the spaces between words
count as characters (as in jiwer's CER on text without repeated spaces).

Division by zero: a rate is float('nan') exactly when the corpus has no reference words (no
reference characters for CER) at all. Empty references inside a non-empty corpus are fine: their
hypothesis words count as insertions against the corpus total.
"""
from typing import Hashable, Sequence

import numpy as np


class MetricsError(ValueError):
  """Reference and hypothesis lists that do not pair up."""


def edit_distance(ref: Sequence[Hashable], hyp: Sequence[Hashable]) -> int:
  """Levenshtein distance between two sequences of hashable items (words, characters, ids)."""
  if len(ref) < len(hyp):                  # distance is symmetric; keep the row short
    ref, hyp = hyp, ref
  if not hyp:
    return len(ref)
  ids: dict[Hashable, int] = {}
  ref_ids = np.array([ids.setdefault(x, len(ids)) for x in ref])
  hyp_ids = np.array([ids.setdefault(x, len(ids)) for x in hyp])
  cols = np.arange(len(hyp_ids) + 1)
  row = cols.copy()                        # distances from ref[:0] to hyp[:j]
  for i, r in enumerate(ref_ids, start=1):
    # Substitution/match and deletion come from the previous row, vectorised; insertions chain
    # along the new row: new[j] = min_k<=j (tmp[k] + j - k), a running minimum.
    tmp = np.empty_like(row)
    tmp[0] = i
    tmp[1:] = np.minimum(row[:-1] + (hyp_ids != r), row[1:] + 1)
    row = np.minimum.accumulate(tmp - cols) + cols
  return int(row[-1])


def _words(text: str) -> list[str]:
  return text.split()


def _chars(text: str) -> str:
  return ' '.join(text.split())


def _check_pairs(refs, hyps):
  if isinstance(refs, str) or isinstance(hyps, str):
    raise MetricsError('refs and hyps must be lists of strings, got a bare string')
  if len(refs) != len(hyps):
    raise MetricsError(f'{len(refs)} references but {len(hyps)} hypotheses')


def _rate(edits: int, total: int) -> float:
  return edits / total if total else float('nan')


def wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
  """Corpus word error rate; nan when the references hold no word at all."""
  _check_pairs(refs, hyps)
  edits = sum(edit_distance(_words(r), _words(h)) for r, h in zip(refs, hyps))
  return _rate(edits, sum(len(_words(r)) for r in refs))


def cer(refs: Sequence[str], hyps: Sequence[str]) -> float:
  """Corpus character error rate; nan when the references hold no character at all."""
  _check_pairs(refs, hyps)
  edits = sum(edit_distance(_chars(r), _chars(h)) for r, h in zip(refs, hyps))
  return _rate(edits, sum(len(_chars(r)) for r in refs))


class ErrorRate:
  """Accumulates word and character edits over utterances.

  `result()` returns: wer, cer (nan when no reference words / characters so far), words, chars
  (reference totals), word_edits, char_edits, hyp_words, utterances, and sentence_errors and ser
  (utterances whose word sequence is not exactly right, and their fraction; nan for none).
  """

  def __init__(self):
    self.word_edits = self.words = self.hyp_words = 0
    self.char_edits = self.chars = 0
    self.utterances = self.sentence_errors = 0

  def update(self, ref: str, hyp: str) -> None:
    if not isinstance(ref, str) or not isinstance(hyp, str):
      raise MetricsError(f'update(ref, hyp) takes two strings, got {type(ref).__name__} and '
                         f'{type(hyp).__name__}')
    ref_words, hyp_words = _words(ref), _words(hyp)
    word_edits = edit_distance(ref_words, hyp_words)
    self.word_edits += word_edits
    self.words += len(ref_words)
    self.hyp_words += len(hyp_words)
    self.char_edits += edit_distance(_chars(ref), _chars(hyp))
    self.chars += len(_chars(ref))
    self.utterances += 1
    self.sentence_errors += int(word_edits > 0)

  def update_many(self, refs: Sequence[str], hyps: Sequence[str]) -> None:
    _check_pairs(refs, hyps)
    for ref, hyp in zip(refs, hyps):
      self.update(ref, hyp)

  def result(self) -> dict:
    return dict(wer=_rate(self.word_edits, self.words), cer=_rate(self.char_edits, self.chars),
                words=self.words, chars=self.chars, word_edits=self.word_edits,
                char_edits=self.char_edits, hyp_words=self.hyp_words,
                utterances=self.utterances, sentence_errors=self.sentence_errors,
                ser=_rate(self.sentence_errors, self.utterances))
