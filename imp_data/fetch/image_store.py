"""Resolve a record's image path to bytes, wherever the images live.

Each source lists image roots (recipe `images:`): a record prefix (e.g. `coco/train2017/`) maps to a
directory, an archive, or a glob of archive chunks, with an optional member prefix that replaces it
(ShareGPT-4V's `wikiart/images/` lives at `data/wikiart/images/` inside its zip). The longest matching
prefix wins. URL-only sources (LAION-GPT-V) map `https://` paths to the downloader's output folder,
where each image is stored under the sha1 of its URL.
"""

from __future__ import annotations

import glob
import hashlib
from pathlib import Path

from imp_data.errors import ImageError
from imp_data.fetch.archives import Archive, is_archive

URL_PREFIXES = ("http://", "https://")


def url_filename(url: str) -> str:
    """Where the URL downloader stores an image: `<sha1(url)>.jpg` (extension fixed, content sniffed).

    Example:
        >>> len(url_filename("https://example.com/a.png"))
        44
    """
    return hashlib.sha1(url.encode("utf-8")).hexdigest() + ".jpg"


class _Root:
    def __init__(self, prefix: str, location: str, member_prefix: str, label: str | None = None):
        self.prefix = prefix
        self.member_prefix = member_prefix
        self.location = location
        self.label = label or location  # how errors name it (the recipe's spelling: no machine paths)
        path = Path(location)
        self.archives: list[Archive] | None = None
        if any(c in location for c in "*?["):
            matches = sorted(glob.glob(location))
            self.archives = [Archive(m) for m in matches if is_archive(m)]
        elif path.is_file() and is_archive(path):
            self.archives = [Archive(path)]
        self.directory = path if self.archives is None else None

    def read(self, image: str) -> bytes | None:
        if image.startswith(URL_PREFIXES):
            if self.directory is None:
                return None
            candidate = self.directory / url_filename(image)
            return candidate.read_bytes() if candidate.is_file() else None
        member = self.member_prefix + image[len(self.prefix):]
        if self.archives is not None:
            for archive in self.archives:
                if member in archive:
                    return archive.read(member)
            return None
        candidate = self.directory / member
        return candidate.read_bytes() if candidate.is_file() else None


class ImageStore:
    """Image roots of one source; `read(path)` returns bytes or raises ImageError('image_missing')."""

    def __init__(self, roots, labels: list[str] | None = None):
        labels = labels or [None] * len(roots)
        self._roots = sorted((_Root(r.prefix, str(r.location), r.member_prefix, label)
                              for r, label in zip(roots, labels)), key=lambda r: -len(r.prefix))

    def read(self, image: str) -> bytes:
        tried = []
        for root in self._roots:
            if image.startswith(URL_PREFIXES) or image.startswith(root.prefix):
                data = root.read(image)
                if data is not None:
                    return data
                tried.append(root.label)
        where = ", ".join(tried) if tried else "no image root matches this path"
        raise ImageError("image_missing", f"{image} not found (searched: {where})")

    def exists(self, image: str) -> bool:
        try:
            self.read(image)
            return True
        except ImageError:
            return False
