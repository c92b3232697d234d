"""The caps of the running build (recipe `limits:`), visible to the code that reads untrusted bytes.

Adapters, the JSON streamer, archive readers and the image decoder sit far below the stage that knows
the recipe; threading a `Limits` through every signature would touch each of them for one value. The
stage sets the active limits for the work it runs (`applied`), worker processes set them from their job,
and readers ask `active()`. Outside a build the defaults apply.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from imp_data.core.recipe import Limits

_ACTIVE: ContextVar[Limits | None] = ContextVar("imp_data_limits", default=None)
DEFAULTS = Limits()


def active() -> Limits:
    """The caps in force: the recipe's during a build, the defaults elsewhere."""
    return _ACTIVE.get() or DEFAULTS


@contextmanager
def applied(limits: Limits | dict | None) -> Iterator[Limits]:
    """Make `limits` the active caps for the block (a dict is validated as `Limits`)."""
    value = Limits.model_validate(limits) if isinstance(limits, dict) else (limits or DEFAULTS)
    token = _ACTIVE.set(value)
    try:
        yield value
    finally:
        _ACTIVE.reset(token)
