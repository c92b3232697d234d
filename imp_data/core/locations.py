"""The one answer to "is this location a URL?", and where a local one lies.

A recipe's `location`, a data root and an image path may each be a plain path, a `file://` URL or a
remote URL (`hf://`, `https://`, `s3://`, any fsspec scheme). `file://` is local everywhere: a data root
`file:///x` is the folder /x, not a bucket.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(location: str | os.PathLike) -> bool:
    """A remote location: a scheme other than `file://`.

    Example:
        >>> is_url("s3://bucket/imp"), is_url("file:///data/imp"), is_url("raw/dvqa")
        (True, False, False)
    """
    text = str(location).strip()
    return bool(URL_SCHEME.match(text)) and not text.lower().startswith("file://")


def local_path(location: str | os.PathLike) -> Path | None:
    """A local location as a path (`file://` unquoted, `~` expanded, relative left relative); None for a URL."""
    if is_url(location):
        return None
    text = str(location).strip()
    if text.lower().startswith("file://"):
        text = unquote(urlsplit(text).path)
    return Path(text).expanduser()


def local_location(location: str, data_root: Path) -> Path | None:
    """A local location as a path, a relative one resolved against the data root; None for a URL."""
    path = local_path(location)
    if path is None:
        return None
    return path if path.is_absolute() else data_root / path


def under_root(location: str) -> bool:
    """A relative local location: it lives under the data root, so in the bucket when the root is remote."""
    path = local_path(location)
    return path is not None and not path.is_absolute()
