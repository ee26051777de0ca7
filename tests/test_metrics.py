"""WER / CER: hand-made cases, a plain recursive edit distance, and jiwer on random text."""
import functools
import math

import numpy as np
import pytest

from asr import metrics


def recursive_edit_distance(a, b) -> int:
  """Textbook recursion, memoised: independent of the vectorised DP under test."""
  @functools.lru_cache(maxsize=None)
  def d(i, j):
    if i == 0 or j == 0:
      return i + j
    return min(d(i - 1, j) + 1, d(i, j - 1) + 1, d(i - 1, j - 1) + (a[i - 1] != b[j - 1]))
  return d(len(a), len(b))


@pytest.mark.parametrize('ref,hyp,expected', [
    ('', '', 0), ('abc', '', 3), ('', 'abc', 3), ('kitten', 'sitting', 3),
    ('flaw', 'lawn', 2), ('abc', 'abc', 0), ('abc', 'cba', 2), ('intention', 'execution', 5)])
def test_edit_distance_known_values(ref, hyp, expected):
  assert metrics.edit_distance(ref, hyp) == expected
  assert metrics.edit_distance(list(ref), list(hyp)) == expected


def test_edit_distance_matches_recursion_on_random_sequences():
  rng = np.random.default_rng(0)
  for _ in range(300):
    a = tuple(rng.integers(0, 4, size=rng.integers(0, 9)))
    b = tuple(rng.integers(0, 4, size=rng.integers(0, 9)))
    assert metrics.edit_distance(a, b) == recursive_edit_distance(a, b)


def test_wer_and_cer_hand_cases():
  # one substitution, one deletion, one insertion over 3 + 2 reference words
  refs = ['the cat sat', 'on mats']
  hyps = ['the bat sat down', 'on']
  assert metrics.wer(refs, hyps) == pytest.approx(3 / 5)
  # whitespace is normalised: runs and ends do not count
  assert metrics.wer(['  a   b '], ['a b']) == 0.0
  assert metrics.cer(['  a   b '], ['a b']) == 0.0
  # chars of 'ab cd' = 5 (the space counts); 'ab d' is one deletion
  assert metrics.cer(['ab cd'], ['ab d']) == pytest.approx(1 / 5)


def test_empty_references():
  # An empty reference among others: its hypothesis words are insertions.
  assert metrics.wer(['a b', ''], ['a b', 'x y']) == pytest.approx(2 / 2)
  # No reference words at all: nan, whatever the hypotheses.
  assert math.isnan(metrics.wer([''], ['']))
  assert math.isnan(metrics.wer(['', ' '], ['x', '']))
  assert math.isnan(metrics.cer([''], ['x']))
  assert math.isnan(metrics.wer([], []))


def test_bad_inputs_raise():
  with pytest.raises(metrics.MetricsError, match='2 references but 1 hypotheses'):
    metrics.wer(['a', 'b'], ['a'])
  with pytest.raises(metrics.MetricsError, match='bare string'):
    metrics.cer('abc', 'abd')
  with pytest.raises(metrics.MetricsError, match='two strings'):
    metrics.ErrorRate().update(['a'], 'a')


def random_sentences(rng, count, allow_empty):
  vocab = ['a', 'b', 'ab', 'ba', 'abc', 'c']
  out = []
  for _ in range(count):
    n = rng.integers(0 if allow_empty else 1, 7)
    out.append(' '.join(rng.choice(vocab, size=n)))
  return out


def test_against_jiwer_on_random_text():
  import jiwer    # tests only
  rng = np.random.default_rng(1)
  for _ in range(20):
    refs = random_sentences(rng, 8, allow_empty=False)
    hyps = random_sentences(rng, 8, allow_empty=True)
    assert metrics.wer(refs, hyps) == pytest.approx(jiwer.wer(refs, hyps), abs=1e-12)
    assert metrics.cer(refs, hyps) == pytest.approx(jiwer.cer(refs, hyps), abs=1e-12)


def test_accumulator_equals_corpus_functions():
  rng = np.random.default_rng(2)
  refs = random_sentences(rng, 30, allow_empty=True)
  hyps = random_sentences(rng, 30, allow_empty=True)
  acc = metrics.ErrorRate()
  for ref, hyp in zip(refs[:10], hyps[:10]):
    acc.update(ref, hyp)
  acc.update_many(refs[10:], hyps[10:])
  result = acc.result()
  assert result['wer'] == pytest.approx(metrics.wer(refs, hyps))
  assert result['cer'] == pytest.approx(metrics.cer(refs, hyps))
  assert result['words'] == sum(len(r.split()) for r in refs)
  assert result['hyp_words'] == sum(len(h.split()) for h in hyps)
  assert result['utterances'] == 30
  assert result['sentence_errors'] == sum(r.split() != h.split() for r, h in zip(refs, hyps))
  empty = metrics.ErrorRate().result()
  assert math.isnan(empty['wer']) and math.isnan(empty['ser']) and empty['words'] == 0
