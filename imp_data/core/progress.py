"""Progress bars with rate and ETA for long work (tqdm), silent when not on a terminal.

Disabled when stderr is not a TTY or IMP_DATA_PROGRESS=0, so logs and CI stay clean; a disabled bar still
accepts `update(n)`, `reset(total=...)` and `set_postfix_str(...)`, so callers never branch on whether a bar
is shown. Byte counts use `unit="B", unit_scale=True` (shows MB/s and sizes with SI prefixes).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm import tqdm


def progress_enabled(requested: bool = True) -> bool:
    """Whether a bar would be drawn: requested, not switched off by IMP_DATA_PROGRESS=0, stderr a TTY."""
    if not requested or os.environ.get("IMP_DATA_PROGRESS", "1") == "0":
        return False
    return sys.stderr.isatty()


@contextmanager
def progress_bar(*, total: int | None = None, desc: str = "", unit: str = "it", unit_scale: bool = False,
                 enabled: bool = True) -> Iterator[tqdm]:
    """A tqdm bar (rate and ETA when `total` is known); a disabled bar still accepts `update(n)`.

    tqdm's `update` takes a lock, so worker threads may share one bar.

    Example:
        >>> with progress_bar(total=3, desc="demo", enabled=False) as bar:
        ...     bar.update(3)
        >>> with progress_bar(total=2048, desc="bytes", unit="B", unit_scale=True, enabled=False) as bar:
        ...     bar.update(1024)
    """
    bar = tqdm(total=total, desc=desc, unit=unit, unit_scale=unit_scale, unit_divisor=1024 if unit == "B" else 1000,
               disable=not progress_enabled(enabled), dynamic_ncols=True, smoothing=0.1, mininterval=0.5)
    try:
        yield bar
    finally:
        bar.close()
