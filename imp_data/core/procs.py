"""Worker processes that die with their parent.

A `ProcessPoolExecutor`'s workers notice a vanished parent only when they next read their task queue,
so a build killed with SIGKILL can leave workers rendering or writing shards for minutes, racing the
rerun for the same files. `worker_pool` asks the kernel (Linux `prctl(PR_SET_PDEATHSIG, SIGKILL)`) to
kill each worker the moment its parent dies; elsewhere that is a no-op and the executor's own checks apply.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _set_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
    """Have the kernel send `sig` to this process when its parent exits. False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):  # no libc symbol (e.g. a static or unusual runtime)
        return False


def _init_worker(parent_pid: int, initializer: Callable[..., Any] | None, initargs: tuple) -> None:
    """Pool initializer: arm the death signal, then leave if the parent already died, then the caller's."""
    _set_parent_death_signal()
    if os.getppid() != parent_pid:  # the parent died before prctl: no signal will ever come
        os._exit(1)
    if initializer is not None:
        initializer(*initargs)


def worker_pool(max_workers: int, initializer: Callable[..., Any] | None = None, initargs: tuple = (),
                **kwargs: Any) -> ProcessPoolExecutor:
    """A `ProcessPoolExecutor` whose workers are killed when the process that made them dies.

    Same use as the executor (`with worker_pool(4) as pool: pool.map(...)`); `initializer(*initargs)`
    runs in each worker after the death signal is armed; other keywords (`mp_context`, …) pass through.
    The kernel ties the signal to the *thread* that started the worker, so submit from a thread that
    outlives the pool (the usual `with` block does).
    """
    return ProcessPoolExecutor(max_workers, initializer=_init_worker,
                               initargs=(os.getpid(), initializer, tuple(initargs)), **kwargs)
