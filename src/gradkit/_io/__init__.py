"""Files, read and written without trusting them: atomic writes, regular-file opens (:mod:`.files`) and
``.npz`` archives read with every size checked first (:mod:`.archive`)."""

from .files import (
    atomic_open,
    file_kind,
    open_regular,
    remove_stale_temps,
    resolve_target,
    save_png,
    staged_outputs,
    temp_prefix,
    writable_dir,
)

__all__ = [
    "atomic_open",
    "file_kind",
    "open_regular",
    "remove_stale_temps",
    "resolve_target",
    "save_png",
    "staged_outputs",
    "temp_prefix",
    "writable_dir",
]
