"""How `imp-data` says a failure: one line on stderr naming the file or record and what to do.

A known error (ImpDataError, or a ValueError listing valid names) is its own message; a full disk or an
unwritable output names the path and the option that moves it; anything else is one line with its type,
and `--debug` adds the traceback (printed by imp_data.cli).
"""

from __future__ import annotations

import argparse
import errno
import os
from pathlib import Path

from imp_data.core.errors import ImpDataError
from imp_data.core.locations import is_url

# where each command writes, for a full disk or read-only output: (what, the option that moves it, its value)
_OUTPUT = {"build": ("data root", "--data-root", "data_root"), "demo": ("data root", "--data-root", "data_root"),
           "train": ("data root", "--data-root", "data_root"), "eval": ("data root", "--data-root", "data_root"),
           "export-llava": ("output folder", "OUT_DIR", "out_dir"), "fixtures": ("output folder", "OUT_DIR", "out_dir"),
           "schemas": ("output folder", "--out-dir", "out_dir"), "publish": ("destination", "URL", "url")}


def os_error_line(err: OSError, args: argparse.Namespace) -> str | None:
    """A full disk, or an output that cannot be written, as the path and what to do; None for other errors."""
    what, option, attr = _OUTPUT.get(args.command, ("output", "another output", ""))
    root = getattr(args, attr, None) if attr else None
    if what == "data root" and root is not None and is_url(root):  # a bucket: the writes go to its local cache
        from imp_data.storage.dataroot import default_cache

        what, option, root = "cache", "--cache", str(args.cache or default_cache(root))
    path = err.filename or root or "(unknown path)"
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{path}: no space left on the device — free space on {root or path} (the {what}) and rerun"
    if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        if root is not None and (err.filename is None or _under(err.filename, root)):
            return f"{path}: {err.strerror} — the {what} {root} is read-only: choose a writable {option}"
        return f"{path}: {err.strerror} — check its permissions"
    return None


def _under(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    path, root = Path(os.path.abspath(path)), Path(os.path.abspath(root))
    return path == root or root in path.parents


def _one_line(text: str, limit: int = 2000) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + " …"


def error_line(err: Exception, args: argparse.Namespace) -> str:
    """The one stderr line for an exception that ended command `args.command`."""
    line = os_error_line(err, args) if isinstance(err, OSError) else None
    if isinstance(err, (ImpDataError, ValueError)):  # ValueError: unknown names (adapter, preset) list the valid ones
        line = str(err)
    if line is not None:
        return f"imp-data {args.command}: error: {line}"
    hint = "" if getattr(args, "debug", False) else " (run with --debug for the traceback)"
    return f"imp-data: unexpected error: {type(err).__name__}: {_one_line(err)}{hint}"
