"""Containment: a path imp-data writes that is built from a name stays under the folder it belongs to.

Names reach paths from places we do not control — a recipe's mix and source names, a mix index's keys and
shard names. `contained(root, *parts)` is the one check: every part relative, free of `..`, non-empty,
and the result, symlinks resolved, under the resolved root. The root itself is trusted (an operator may
make `DATA/mixes` a link to another disk); what is refused is a name that leads out of it.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePath

from imp_data.core.errors import ImpDataError


class PathEscapeError(ImpDataError):
    """A path built from a name would leave the folder it must stay in; the message names root and path."""


def _refuse(root: Path, path: str, why: str) -> PathEscapeError:
    return PathEscapeError(f"{path}: refusing to write outside {root} ({why})")


def contained(root: str | os.PathLike, *parts: str | os.PathLike) -> Path:
    """`root / parts`, after checking it stays under `root`; raises `PathEscapeError` otherwise.

    Example:
        >>> contained("/data/mixes", "demo_stage2").as_posix()
        '/data/mixes/demo_stage2'
        >>> contained("/data/mixes", "../x")
        Traceback (most recent call last):
        ...
        imp_data.core.paths.PathEscapeError: ../x: refusing to write outside /data/mixes ('..' in a name)
    """
    root = Path(root)
    for part in parts:
        pure = PurePath(part)
        if pure.is_absolute() or pure.drive:
            raise _refuse(root, os.fspath(part), "an absolute path where a name belongs")
        if ".." in pure.parts:
            raise _refuse(root, os.fspath(part), "'..' in a name")
        if not pure.parts:  # "" or ".": the root itself would stand in for a missing name
            raise _refuse(root, f"{root}/{os.fspath(part)!r}", "an empty name")
        if "\0" in os.fspath(part):
            raise _refuse(root, repr(os.fspath(part)), "a NUL byte in a name")
    path = root.joinpath(*parts)
    real_root, real = root.resolve(), path.resolve()
    if real != real_root and real_root not in real.parents:
        raise _refuse(root, os.fspath(path), f"a symlink leads to {real}")
    return path


def name_part(name: str, what: str) -> str:
    """`name` when it is one plain path component (no separator, not empty, not `.`/`..`)."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise PathEscapeError(f"{what} {name!r}: not a plain name (it names one file or folder: no '/', not empty)")
    return name
