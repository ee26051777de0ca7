"""Atomic file replacement for packages, keys and manifests: `asr.files.atomic_write` (standard
library only, as the device side needs)."""
from asr.files import atomic_write

__all__ = ['atomic_write']
