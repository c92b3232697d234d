"""Run-level errors. Per-sample failures are data (a `Reject` row), never exceptions.

Every message names the file/record at fault and, where there is one, the fix.
"""


class ImpDataError(Exception):
    """Base of every error imp-data raises on purpose; the CLI prints it as one line, exit 1."""


class RecipeError(ImpDataError):
    """A recipe failed validation; the message lists every problem with its YAML path."""


class SourceFormatError(ImpDataError):
    """A source file is not in the published format (malformed JSON, wrong top-level type...)."""


class FetchError(ImpDataError):
    """A location could not be fetched or is missing expected files. `transient`: the network or the server
    failed (connection errors, 5xx, 429, a download cut short), so trying again later may succeed (Dagster
    retries those); a missing file, a 404 or a malformed location is not."""

    def __init__(self, message: str, *, transient: bool = False):
        super().__init__(message)
        self.transient = transient


class ArchiveError(ImpDataError):
    """An image archive cannot be opened (empty, cut short, not an archive): structural, so the build stops
    with one line naming the file, instead of every one of its images becoming a reject."""


class ImageError(ImpDataError):
    """An image could not be rendered. `reason` is the short code written to the rejects table."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class ShardError(ImpDataError):
    """A shard is missing, corrupt, or disagrees with the index."""


class BuildLocked(ImpDataError):
    """Another build holds the data root's build lock; the message names its pid, host, start and command."""
