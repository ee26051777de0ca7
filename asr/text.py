"""Transcript normalisation and the character tokenizer.

The vocabulary is blank (id 0), space, apostrophe and a-z. `normalize` turns free text into that
alphabet (lower case, digits and times spelled out, punctuation dropped); text that still holds a
character outside it after normalisation raises `TranscriptError` naming the transcript.
"""
import re
import unicodedata

BLANK_ID = 0
ALPHABET = " '" + "abcdefghijklmnopqrstuvwxyz"   # ids 1..28


class TranscriptError(ValueError):
  """A transcript that cannot be represented in the tokenizer's alphabet."""


_ONES = ('zero one two three four five six seven eight nine ten eleven twelve thirteen '
         'fourteen fifteen sixteen seventeen eighteen nineteen').split()
_TENS = 'twenty thirty forty fifty sixty seventy eighty ninety'.split()
_SCALES = ((10**9, 'billion'), (10**6, 'million'), (1000, 'thousand'), (100, 'hundred'))
_ORDINAL_IRREGULAR = {'one': 'first', 'two': 'second', 'three': 'third', 'five': 'fifth',
                      'eight': 'eighth', 'nine': 'ninth', 'twelve': 'twelfth'}
_SYMBOLS = {'&': ' and ', '%': ' percent ', '+': ' plus ', '@': ' at ', '=': ' equals ',
            '$': ' dollars ', '#': ' number '}


def number_to_words(n: int) -> str:
  """Spells a non-negative integer: 342 -> 'three hundred forty two'."""
  if n < 0:
    return 'minus ' + number_to_words(-n)
  if n < 20:
    return _ONES[n]
  if n < 100:
    tens, ones = divmod(n, 10)
    return _TENS[tens - 2] + ('' if ones == 0 else ' ' + _ONES[ones])
  for scale, name in _SCALES:
    if n >= scale:
      head, rest = divmod(n, scale)
      words = number_to_words(head) + ' ' + name
      return words if rest == 0 else words + ' ' + number_to_words(rest)
  raise AssertionError(n)


def ordinal_to_words(n: int) -> str:
  """21 -> 'twenty first'."""
  words = number_to_words(n).split()
  last = words[-1]
  if last in _ORDINAL_IRREGULAR:
    words[-1] = _ORDINAL_IRREGULAR[last]
  elif last.endswith('y'):
    words[-1] = last[:-1] + 'ieth'
  else:
    words[-1] = last + 'th'
  return ' '.join(words)


def time_to_words(hours: int, minutes: int) -> str:
  """(7, 5) -> 'seven oh five'; (7, 0) -> "seven o'clock"; (7, 30) -> 'seven thirty'."""
  h = number_to_words(hours)
  if minutes == 0:
    return h + " o'clock"
  if minutes < 10:
    return h + ' oh ' + _ONES[minutes]
  return h + ' ' + number_to_words(minutes)


def _spell_numbers(text: str) -> str:
  text = re.sub(r'\b(\d{1,2}):(\d{2})\b',
                lambda m: ' ' + time_to_words(int(m.group(1)), int(m.group(2))) + ' ', text)
  text = re.sub(r'\b(\d+)(st|nd|rd|th)\b', lambda m: ' ' + ordinal_to_words(int(m.group(1))) + ' ',
                text)
  text = re.sub(r'(\d),(?=\d{3}\b)', r'\1', text)             # 1,000 -> 1000
  text = re.sub(r'(\d+)\.(\d+)', lambda m: ' ' + number_to_words(int(m.group(1))) + ' point ' +
                ' '.join(_ONES[int(d)] for d in m.group(2)) + ' ', text)
  return re.sub(r'\d+', lambda m: ' ' + number_to_words(int(m.group(0))) + ' ', text)


def normalize(text: str) -> str:
  """Free text -> the tokenizer's alphabet, or `TranscriptError` naming the text."""
  if not isinstance(text, str):
    raise TranscriptError(f'transcript is not text: {text!r}')
  out = unicodedata.normalize('NFKD', text)
  out = ''.join(ch for ch in out if not unicodedata.combining(ch))   # café -> cafe
  out = out.replace('\u2019', "'").replace('\u2018', "'")
  for symbol, words in _SYMBOLS.items():
    out = out.replace(symbol, words)
  out = _spell_numbers(out).lower()
  out = re.sub(r"[-_/.,;:!?\"()\[\]{}<>*~`|\\^]", ' ', out)
  out = re.sub(r"(^|\s)'+|'+(\s|$)", ' ', out)                        # quotes, not apostrophes
  out = ' '.join(out.split())
  bad = sorted(set(ch for ch in out if ch not in ALPHABET))
  if bad:
    raise TranscriptError(f'transcript {text!r} has characters outside the alphabet: {bad}')
  return out


class CharTokenizer:
  """Characters of `ALPHABET` <-> ids 1..28; 0 is the RNN-T/CTC blank."""
  blank_id = BLANK_ID
  vocab_size = len(ALPHABET) + 1

  def encode(self, text: str) -> list[int]:
    """Ids of an already normalised transcript; raises `TranscriptError` on a foreign char."""
    try:
      return [ALPHABET.index(ch) + 1 for ch in text]
    except ValueError:
      bad = sorted(set(ch for ch in text if ch not in ALPHABET))
      raise TranscriptError(
          f'transcript {text!r} has characters outside the alphabet: {bad}') from None

  def decode(self, ids) -> str:
    return ''.join(ALPHABET[int(i) - 1] for i in ids if 0 < int(i) <= len(ALPHABET))

  def token_text(self, token: int) -> str:
    """One id's text (' ' for the space: a word boundary), as `text_pieces.PieceTokenizer`."""
    return self.decode([token])
