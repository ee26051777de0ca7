import pytest

from asr import text


@pytest.mark.parametrize('raw, expected', [
    ('Play "Yesterday" by The Beatles!', 'play yesterday by the beatles'),
    ("Set a timer for 25 minutes", 'set a timer for twenty five minutes'),
    ('Wake me at 7:05', 'wake me at seven oh five'),
    ('Wake me at 7:00', "wake me at seven o'clock"),
    ('Meet on the 21st', 'meet on the twenty first'),
    ('It costs 1,250', 'it costs one thousand two hundred fifty'),
    ("Don't stop - Café", "don't stop cafe"),
    ("'quoted' words", 'quoted words'),
    ('3.14', 'three point one four'),
    ('Rock & Roll 100%', 'rock and roll one hundred percent'),
])
def test_normalize(raw, expected):
  assert text.normalize(raw) == expected


def test_number_words():
  assert text.number_to_words(0) == 'zero'
  assert text.number_to_words(13) == 'thirteen'
  assert text.number_to_words(90) == 'ninety'
  assert text.number_to_words(101) == 'one hundred one'
  assert text.number_to_words(2_000_019) == 'two million nineteen'
  assert text.ordinal_to_words(12) == 'twelfth'
  assert text.ordinal_to_words(40) == 'fortieth'
  assert text.ordinal_to_words(3) == 'third'


def test_unrepresentable_transcript_names_it():
  with pytest.raises(text.TranscriptError, match='日本'):
    text.normalize('call 日本')


def test_tokenizer_round_trip_and_blank():
  tok = text.CharTokenizer()
  ids = tok.encode("it's ok")
  assert 0 not in ids and max(ids) < tok.vocab_size
  assert tok.decode(ids) == "it's ok"
  assert tok.decode([0] + ids + [0]) == "it's ok"
  with pytest.raises(text.TranscriptError, match='Caps'):
    tok.encode('Caps')
