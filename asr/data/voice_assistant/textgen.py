"""Voice-assistant sentences from the templates and slot lists in `asr/data/voice_assistant/text/`.

A template such as `remind me to {task} at {time}` is filled with slot values: open slots (names,
places, items, artists ...) come from `text/slots/<domain>/<slot>.txt`, closed ones (rooms, list
names ...) from `text/slots/common/`, and spoken numbers, times and dates are generated here with
`asr.text`. Each open slot list is cut, by a stable hash of the value, into a train pool and a
test-only pool, so that test sentences hold words no training sentence has: words the model must
spell from sound. Update domains redefine open slots with values never seen before and reuse every
base template whose open slots they redefine, next to their own new intents.

Free-form sentences are mixed into `base` where a text source is installed: Debian's `fortunes`
(sentences) and `wamerican` (words for the dictionary intent). `$ASR_FORTUNES_DIR` and
`$ASR_WORDS_FILE` point at copies of them on a machine without apt (tools/gpu_oneshot.sh).
"""
import dataclasses
import functools
import hashlib
import os
import pathlib
import re


from asr import text

TEXT_DIR = pathlib.Path(__file__).parent / 'text'
FORTUNES_DIR = pathlib.Path(os.environ.get('ASR_FORTUNES_DIR') or '/usr/share/games/fortunes')
WORDS_FILE = pathlib.Path(os.environ.get('ASR_WORDS_FILE') or '/usr/share/dict/american-english')

BASE = 'base'
COMMON = 'common'
# Slots built from other slots, and the lists they draw on.
COMPOSITE_SLOTS = {'person': ('first_name', 'last_name'), 'contact': ('first_name', 'last_name'),
                   'address': ('street',)}
NUMERIC_SLOTS = ('duration', 'time', 'number', 'small_number', 'percent', 'temperature', 'date',
                 'phone', 'ordinal', 'year')
DICT_SLOT = 'dict_word'
TEST_ONLY_SHARE = 0.2          # share of each open slot list held back for test sentences
TEST_NEW_VALUE_PROB = 0.5      # chance that a test sentence's open slot takes a held-back value
QUESTION_WORDS = frozenset(
    'what whats what\'s when where who whos who\'s how is are do does did will can could should '
    'which why'.split())


class TemplateError(ValueError):
  """A template or slot file that cannot be used, naming the file and line."""


def stable_fraction(*parts: str) -> float:
  """A number in [0, 1) fixed by the strings (unlike `hash`, the same in every process)."""
  digest = hashlib.sha1('\x1f'.join(parts).encode()).digest()
  return int.from_bytes(digest[:8], 'big') / 2**64


@dataclasses.dataclass(frozen=True)
class Template:
  domain: str
  intent: str
  pattern: str
  source: str          # 'templates.tsv:LINE', for error messages

  @property
  def slots(self) -> tuple[str, ...]:
    return tuple(re.findall(r'\{(\w+)\}', self.pattern))


@dataclasses.dataclass(frozen=True)
class Sentence:
  display: str         # what the TTS engine reads: cased, punctuated, numbers already in words
  transcript: str      # text.normalize(display)
  intent: str


def load_templates(path: pathlib.Path = TEXT_DIR / 'templates.tsv') -> list[Template]:
  templates = []
  for number, line in enumerate(path.read_text(encoding='utf-8').splitlines(), 1):
    if not line.strip() or line.startswith('#'):
      continue
    fields = line.split('\t')
    if len(fields) != 3:
      raise TemplateError(f'{path}:{number}: expected domain<TAB>intent<TAB>template: {line!r}')
    templates.append(Template(fields[0].strip(), fields[1].strip(), fields[2].strip(),
                              f'{path.name}:{number}'))
  return templates


def load_slot_lists(slot_dir: pathlib.Path = TEXT_DIR / 'slots') -> dict[str, dict[str, tuple]]:
  """{domain or 'common': {slot: values}}; values de-duplicated in file order."""
  lists = {}
  for domain_dir in sorted(p for p in slot_dir.iterdir() if p.is_dir()):
    lists[domain_dir.name] = {}
    for path in sorted(domain_dir.glob('*.txt')):
      values = []
      for number, line in enumerate(path.read_text(encoding='utf-8').splitlines(), 1):
        value = line.strip()
        if not value or value.startswith('#'):
          continue
        if not value.isascii():
          raise TemplateError(f'{path}:{number}: slot values must be ASCII: {value!r}')
        try:
          text.normalize(value)
        except text.TranscriptError as e:
          raise TemplateError(f'{path}:{number}: {e}') from None
        values.append(value)
      lists[domain_dir.name][path.stem] = tuple(dict.fromkeys(values))
  return lists


# Fortune files hold a few jokes a voice assistant corpus is better without.
_UNSUITABLE = re.compile(r"(sex|drug|suicid|rape|kill|murder|damn|hell$|bitch|bastard|whore|"
                         r"nigg|fag|porn|naked|nude|dick$|ass$|shit|fuck|crap|drunk|gay)")


def _clean_fortune(sentence: str) -> str | None:
  """A fortune sentence that a TTS engine reads exactly as its transcript says, else None."""
  sentence = ' '.join(sentence.split())
  if not 4 <= len(re.findall(r"[A-Za-z']+", sentence)) <= 22:
    return None
  # A capital, then letters, apostrophes and plain punctuation only: digits, quotes,
  # abbreviations ("Dr."), acronyms and symbols are read by engines in ways the transcript
  # cannot know; a lower-case start is a fragment of a longer sentence.
  if not re.fullmatch(r"[A-Z][A-Za-z ',;:!?.-]*[.!?]", sentence):
    return None
  words = re.findall(r"[A-Za-z']+", sentence)
  if any(len(w) > 1 and w.isupper() for w in words) or '--' in sentence:
    return None
  if re.search(r"\b[A-Za-z]\.|\.\w|\b(Mr|Mrs|Ms|Dr|St|Jr|Sr|vs|etc)\b", sentence):
    return None
  if any(len(w) == 1 and w not in ('a', 'A', 'I') for w in words):
    return None
  if any(_UNSUITABLE.match(w.lower()) for w in words):
    return None
  return sentence


@functools.lru_cache(maxsize=4)
def fortune_sentences(fortunes_dir: str = str(FORTUNES_DIR)) -> tuple[str, ...]:
  """Sentences from the fortune files (sorted, unique); () where `fortunes` is not installed."""
  root = pathlib.Path(fortunes_dir)
  if not root.is_dir():
    return ()
  found = set()
  for path in sorted(root.iterdir()):
    if path.suffix or not path.is_file():      # skip the .dat / .u8 indexes
      continue
    try:
      content = path.read_text(encoding='utf-8')
    except (UnicodeDecodeError, OSError):
      continue
    for fortune in content.split('\n%\n'):
      if '\t' in fortune or re.search(r'^\s', fortune, re.M):   # verse, dialogue, tables
        continue
      for sentence in re.split(r'(?<=[.!?])\s+', ' '.join(fortune.split())):
        cleaned = _clean_fortune(sentence)
        if cleaned is not None:
          try:
            text.normalize(cleaned)
          except text.TranscriptError:
            continue
          found.add(cleaned)
  return tuple(sorted(found))


@functools.lru_cache(maxsize=4)
def dictionary_words(words_file: str = str(WORDS_FILE)) -> tuple[str, ...]:
  """Lower-case words of 5-14 letters from `wamerican`; () where it is not installed."""
  if not os.path.isfile(words_file):
    return ()
  with open(words_file, encoding='utf-8', errors='replace') as f:
    words = {w.strip() for w in f}
  return tuple(sorted(w for w in words if re.fullmatch(r'[a-z]{5,14}', w)))


def text_sources() -> dict[str, int]:
  """Free-form text sources found on this machine and how many items each gives."""
  found = {}
  if fortune_sentences():
    found['fortunes'] = len(fortune_sentences())
  if dictionary_words():
    found['wamerican'] = len(dictionary_words())
  return found


def _spoken_year(rng) -> str:
  year = int(rng.integers(1950, 2031))
  if 2000 <= year < 2010:
    return text.number_to_words(year)
  return text.number_to_words(year // 100) + ' ' + (
      'hundred' if year % 100 == 0 else text.number_to_words(year % 100) if year % 100 >= 10
      else 'oh ' + text.number_to_words(year % 100))


def _spoken_duration(rng) -> str:
  kind = rng.integers(8)
  if kind < 4:
    n = int(rng.choice([1, 2, 3, 4, 5, 7, 8, 10, 12, 15, 20, 25, 30, 40, 45, 50, 60, 90]))
    return text.number_to_words(n) + (' minute' if n == 1 else ' minutes')
  if kind == 4:
    return text.number_to_words(int(rng.integers(2, 19)) * 5) + ' seconds'
  if kind == 5:
    n = int(rng.integers(1, 5))
    return 'an hour' if n == 1 else text.number_to_words(n) + ' hours'
  if kind == 6:
    return str(rng.choice(['half an hour', 'an hour and a half', 'a minute', 'ninety seconds']))
  return (text.number_to_words(int(rng.integers(1, 4))) + ' hours and ' +
          text.number_to_words(int(rng.integers(1, 12)) * 5) + ' minutes').replace(
              'one hours', 'one hour')


def _spoken_time(rng) -> str:
  kind = rng.integers(10)
  hour = int(rng.integers(1, 13))
  if kind == 0:
    return str(rng.choice(['noon', 'midnight']))
  if kind == 1:
    return str(rng.choice(['half past ', 'quarter past ', 'quarter to '])) + \
        text.number_to_words(hour)
  minute = int(rng.choice([0, 0, 5, 10, 15, 20, 30, 30, 45, int(rng.integers(0, 60))]))
  suffix = str(rng.choice(['', '', '', ' in the morning', ' in the evening', ' at night',
                           ' in the afternoon']))
  return text.time_to_words(hour, minute) + suffix


def numeric_slot(slot: str, rng) -> str:
  """A spoken number, time or date, already in words."""
  if slot == 'duration':
    return _spoken_duration(rng)
  if slot == 'time':
    return _spoken_time(rng)
  if slot == 'number':
    n = int(rng.integers(2, 101)) if rng.random() < 0.8 else int(rng.integers(101, 5000))
    return text.number_to_words(n)
  if slot == 'small_number':
    return text.number_to_words(int(rng.integers(2, 13)))
  if slot == 'percent':
    return text.number_to_words(int(rng.integers(1, 21)) * 5) + ' percent'
  if slot == 'temperature':
    return text.number_to_words(int(rng.integers(60, 81) if rng.random() < 0.6
                                    else rng.integers(15, 29)))
  if slot == 'date':
    day = text.ordinal_to_words(int(rng.integers(1, 29)))
    month = str(rng.choice('january february march april may june july august september '
                           'october november december'.split()))
    return f'{month} {day}' if rng.random() < 0.7 else f'the {day}'
  if slot == 'phone':
    digits = rng.integers(0, 10, size=int(rng.choice([7, 10])))
    return ' '.join(text.number_to_words(int(d)) for d in digits)
  if slot == 'ordinal':
    return text.ordinal_to_words(int(rng.integers(1, 32)))
  if slot == 'year':
    return _spoken_year(rng)
  raise KeyError(slot)


def _expand_choices(pattern: str, rng) -> str:
  """Resolves `[optional]` and `(a|b)` groups, innermost first."""
  while True:
    match = re.search(r'\(([^()\[\]]*)\)|\[([^()\[\]]*)\]', pattern)
    if match is None:
      return pattern
    if match.group(1) is not None:
      options = match.group(1).split('|')
      choice = options[int(rng.integers(len(options)))]
    else:
      choice = match.group(2) if rng.random() < 0.5 else ''
    pattern = pattern[:match.start()] + choice + pattern[match.end():]


def display_form(words: str) -> str:
  """'what's the weather in Oslo' -> "What's the weather in Oslo?" (what the TTS reads)."""
  words = ' '.join(words.split())
  words = re.sub(r'\b(the|a) (?=the\b)', '', words, flags=re.I)   # 'of the {team}' + 'the Mets'
  words = re.sub(r"\bi(?=\b|')", 'I', words)
  first = words.split()[0].lower()
  end = '?' if first in QUESTION_WORDS else '.'
  return words[0].upper() + words[1:] + end


class DomainSampler:
  """Draws sentences of one domain; `role` 'train' keeps held-back slot values out."""

  def __init__(self, domain: str, templates: list[Template], slot_lists: dict, *,
               fortunes: tuple = (), words: tuple = (), free_form_share: float = 0.0):
    self.domain = domain
    self.slots = dict(slot_lists.get(COMMON, {}))
    own = slot_lists.get(domain, {})
    self.open_slots = set(own)
    self.slots.update(own)
    self._pools = {}
    # Dictionary words, cut like the open slots into a train pool and a test-only pool.
    self.words = words
    self.word_pools = {
        'train': tuple(w for w in words if stable_fraction('dict', w) >= TEST_ONLY_SHARE),
        'test': tuple(w for w in words if stable_fraction('dict', w) < TEST_ONLY_SHARE)}
    usable = [t for t in templates if t.domain == domain and self._fillable(t)]
    if domain != BASE:
      # Base templates are reused only where every open slot takes this domain's new values.
      reused = [t for t in templates if t.domain == BASE and self._reusable(t)]
    else:
      reused = []
    if not usable:
      raise TemplateError(f'domain {domain!r} has no usable templates')
    self.own_intents = self._by_intent(usable)
    self.reused_intents = self._by_intent(reused)
    self.fortunes = fortunes
    self.free_form_share = free_form_share if fortunes else 0.0

  @staticmethod
  def _by_intent(templates):
    grouped = {}
    for t in templates:
      grouped.setdefault(t.intent, []).append(t)
    return sorted(grouped.items())

  def _needs(self, slot: str) -> tuple[str, ...]:
    return COMPOSITE_SLOTS.get(slot, (slot,))

  def _fillable(self, template: Template) -> bool:
    for slot in template.slots:
      if slot in NUMERIC_SLOTS:
        continue
      if slot == DICT_SLOT:
        if not self.words:
          return False
        continue
      if not all(s in self.slots for s in self._needs(slot)):
        raise TemplateError(f'{template.source}: slot {{{slot}}} has no list for domain '
                            f'{self.domain!r}')
    return True

  def _reusable(self, template: Template) -> bool:
    if DICT_SLOT in template.slots:
      return False
    needed = [s for slot in template.slots if slot not in NUMERIC_SLOTS for s in self._needs(slot)]
    # Every slot closed (common) or redefined by this domain, and at least one redefined.
    return all(s in self.slots for s in needed) and any(s in self.open_slots for s in needed)

  def _split_pool(self, slot: str) -> tuple[tuple, tuple]:
    """(held back for test sentences, kept), hashed once per slot: the hashing, not the
    drawing, is most of a sentence's cost."""
    if slot not in self._pools:
      values = self.slots[slot]
      held_back = tuple(v for v in values
                        if stable_fraction(self.domain, slot, v) < TEST_ONLY_SHARE)
      self._pools[slot] = held_back, tuple(v for v in values if v not in held_back)
    return self._pools[slot]

  def _pool(self, slot: str, role: str, rng) -> tuple:
    if slot not in self.open_slots:
      return self.slots[slot]
    held_back, kept = self._split_pool(slot)
    if role == 'train' or not held_back:
      return kept
    return held_back if rng.random() < TEST_NEW_VALUE_PROB else kept

  def _value(self, slot: str, role: str, rng) -> str:
    if slot in NUMERIC_SLOTS:
      return numeric_slot(slot, rng)
    if slot == DICT_SLOT:
      words = self.word_pools['train' if role == 'train' else 'test']
      return str(words[int(rng.integers(len(words)))])
    if slot in ('person', 'contact'):
      if slot == 'contact' and rng.random() < 0.3:
        return self._pick('relation', role, rng)
      first = self._pick('first_name', role, rng)
      return first if rng.random() < 0.35 else first + ' ' + self._pick('last_name', role, rng)
    if slot == 'address':
      return text.number_to_words(int(rng.integers(1, 2000))) + ' ' + \
          self._pick('street', role, rng)
    return self._pick(slot, role, rng)

  def _pick(self, slot, role, rng) -> str:
    pool = self._pool(slot, role, rng)
    return str(pool[int(rng.integers(len(pool)))])

  def _fortune(self, role: str, rng) -> Sentence:
    # Fortunes are cut by hash too: test sentences are free text never heard in training.
    while True:
      sentence = self.fortunes[int(rng.integers(len(self.fortunes)))]
      if (stable_fraction('fortune', sentence) < TEST_ONLY_SHARE) == (role != 'train'):
        return Sentence(sentence, text.normalize(sentence), 'free_form')

  def sample(self, role: str, rng) -> Sentence:
    """One sentence; role is 'train' or 'test'."""
    if self.free_form_share and rng.random() < self.free_form_share:
      return self._fortune(role, rng)
    groups = self.own_intents
    if self.reused_intents and rng.random() < 0.4:
      groups = self.reused_intents
    intent, templates = groups[int(rng.integers(len(groups)))]
    template = templates[int(rng.integers(len(templates)))]
    pattern = _expand_choices(template.pattern, rng)
    words = re.sub(r'\{(\w+)\}', lambda m: self._value(m.group(1), role, rng), pattern)
    display = display_form(words)
    try:
      transcript = text.normalize(display)
    except text.TranscriptError as e:
      raise TemplateError(f'{template.source}: {e}') from None
    return Sentence(display, transcript, intent)


@functools.lru_cache(maxsize=2)
def default_resources() -> tuple[list[Template], dict]:
  return load_templates(), load_slot_lists()


def make_sampler(domain: str, free_form_share: float = 0.0,
                 use_text_sources: bool = True) -> DomainSampler:
  templates, slot_lists = default_resources()
  is_base = domain == BASE
  return DomainSampler(
      domain, templates, slot_lists,
      fortunes=fortune_sentences() if (use_text_sources and is_base) else (),
      words=dictionary_words() if (use_text_sources and is_base) else (),
      free_form_share=free_form_share if is_base else 0.0)


def domain_slot_values(domain: str) -> dict[str, tuple]:
  """The open slot values a domain defines (for the disjointness checks)."""
  return dict(default_resources()[1].get(domain, {}))
