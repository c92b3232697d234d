"""Progress bars with rate and ETA for long work (tqdm), silent when not on a terminal.

Disabled when stderr is not a TTY or IMP_DATA_PROGRESS=0, so logs and CI stay clean; enabled work
still counts, so callers never branch on whether a bar is shown.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm import tqdm


def progress_enabled(requested: bool = True) -> bool:
    if not requested or os.environ.get("IMP_DATA_PROGRESS", "1") == "0":
        return False
    return sys.stderr.isatty()


@contextmanager
def progress_bar(*, total: int | None = None, desc: str = "", unit: str = "it", enabled: bool = True) -> Iterator[tqdm]:
    """A tqdm bar (rate and ETA when `total` is known); a disabled bar still accepts `update(n)`.

    Example:
        >>> with progress_bar(total=3, desc="demo", enabled=False) as bar:
        ...     bar.update(3)
    """
    bar = tqdm(total=total, desc=desc, unit=unit, disable=not progress_enabled(enabled), dynamic_ncols=True,
               smoothing=0.1, mininterval=0.5)
    try:
        yield bar
    finally:
        bar.close()
