"""Atomic file replacement: a reader (or a device after a crash) sees the old file or the new one.

Standard library only: the device side of the diffs uses it (`diffs/files.py`), as do exports
and tokenizer files.
"""
import os
import tempfile


def atomic_write(path, data: bytes, mode: int | None = None, check=None) -> None:
  """Temp file in the same directory, fsync, `check(temp_path)` if given, os.replace, fsync of
  the directory. `check` sees the bytes as the disk returns them and may raise to abandon the
  write (the temp file is removed, `path` untouched). `mode` defaults to the mode of the file
  being replaced, else rw-r--r--."""
  directory = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(dir=directory, prefix='.' + os.path.basename(path) + '.',
                             suffix='.tmp')
  try:
    if mode is None:   # mkstemp makes the file 0600
      mode = os.stat(path).st_mode & 0o777 if os.path.exists(path) else 0o644
    with os.fdopen(fd, 'wb') as f:
      os.fchmod(f.fileno(), mode)
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    if check is not None:
      check(tmp)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  try:   # make the rename itself durable; not every filesystem lets a directory be fsynced
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
      os.fsync(dir_fd)
    finally:
      os.close(dir_fd)
  except OSError:
    pass
