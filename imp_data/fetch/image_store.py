"""Resolve a record's image path to bytes, wherever the images live.

Each source lists image roots (recipe `images:`): a record-path prefix (e.g. `coco/train2017/`) maps to a
directory, an archive, or a glob of archive chunks (ALLaVA's `images_*.zip`), with an optional member
prefix that replaces it (ShareGPT-4V's `wikiart/images/` lives at `data/wikiart/images/` in its zip).
The longest matching prefix wins; a root that lacks the image lets a shorter one try. A member prefix
of `**/` matches by file name anywhere in the archive, as `unzip -j` flattens (first occurrence wins).
URL-only sources (LAION-GPT-V) map `https://` paths to the URL downloader's folder, where each image is
stored under the sha1 of its URL (`url_filename`).

Record paths come from untrusted files: in a directory root, a path with `..` or a leading `/` is refused
(`image_path_unsafe`) rather than resolved outside the root, and so is a file reached through a symlink
that leads out of the root (`image_outside_root`: a mirror must not read what the recipe never named);
in an archive every name is only a key. A file past `limits.max_member_bytes` is `image_too_large`
before it is read. An archive that cannot be opened stops the build when the store opens it
(`ArchiveError`, one line naming the file). The store is built in the process that reads (a factory is
what crosses process boundaries), so open archive handles are never shared across a fork.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import os
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from imp_data.core.context import BuildContext
from imp_data.core.errors import ImageError
from imp_data.core.limits import active
from imp_data.core.locations import local_location
from imp_data.core.recipe import ImageRoot
from imp_data.fetch.archives import Archive, is_archive

URL_PREFIXES = ("http://", "https://")
BASENAME_PREFIX = "**/"


def url_filename(url: str) -> str:
    """Where the URL downloader stores an image: `<sha1(url)>.jpg` (name fixed, content sniffed on read).

    Example:
        >>> len(url_filename("https://example.com/a.png"))
        44
    """
    return hashlib.sha1(url.encode("utf-8")).hexdigest() + ".jpg"


def _unsafe(path: str) -> bool:
    return path.startswith(("/", "\\")) or ".." in PurePosixPath(path.replace("\\", "/")).parts


class _Root:
    """One image root: a directory, or one or more archives searched in sorted order."""

    def __init__(self, prefix: str, location: str, member_prefix: str, label: str | None = None):
        self.prefix, self.member_prefix, self.location = prefix, member_prefix, location
        self.label = label or location  # how messages name it: the recipe's spelling, no machine paths
        self.archives: list[Archive] = []
        self._index: dict[str, Archive] = {}  # member -> first archive (chunks) holding it
        self.duplicates = 0
        path = Path(location)
        if any(c in location for c in "*?["):
            self.archives = [Archive(m) for m in sorted(glob.glob(location)) if is_archive(m)]
        elif path.is_file() and is_archive(path):
            self.archives = [Archive(path)]
        self.directory = None if self.archives or any(c in location for c in "*?[") else path
        self._real = os.path.join(os.path.realpath(path), "") if self.directory is not None else ""
        self._real_dirs: dict[str, str] = {}  # folder under the root -> its resolved path (few folders, many images)
        for archive in self.archives:
            self.duplicates += archive.duplicates
            for name in archive.names():
                if name in self._index:
                    self.duplicates += 1  # the same name in two chunks: the first chunk wins
                else:
                    self._index[name] = archive

    @property
    def kind(self) -> str:
        return "directory" if self.directory is not None else f"{len(self.archives)} archive(s)"

    def member(self, image: str) -> str:
        rest = url_filename(image) if image.startswith(URL_PREFIXES) else image[len(self.prefix):]
        return rest if self.member_prefix == BASENAME_PREFIX else self.member_prefix + rest

    def _locate(self, image: str) -> tuple[Archive, str] | Path | None:
        member = self.member(image)
        if self.directory is not None:
            if _unsafe(member):
                raise ImageError("image_path_unsafe", f"{image}: '..' or absolute path refused under {self.label}")
            real = self._resolve(member)
            if real is not None and not real.startswith(self._real):
                raise ImageError("image_outside_root", f"{image}: a symlink leads out of {self.label}")
            return Path(real) if real is not None else None
        if self.member_prefix == BASENAME_PREFIX:
            for archive in self.archives:
                if (found := archive.find_basename(member)) is not None:
                    return archive, found
            return None
        archive = self._index.get(member)
        return (archive, member) if archive is not None else None

    def _resolve(self, member: str) -> str | None:
        """The regular file `member` names in this directory root with every symlink resolved, or None. Folders
        are resolved once each, so an image costs one lstat unless it is itself a link."""
        folder, _, name = member.rpartition("/")
        real_folder = self._real_dirs.get(folder)
        if real_folder is None:
            real_folder = self._real_dirs[folder] = os.path.realpath(self.directory / folder)
        path = os.path.join(real_folder, name)
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            return None
        if stat.S_ISLNK(mode):
            path = os.path.realpath(path)
            return path if os.path.isfile(path) else None
        return path if stat.S_ISREG(mode) else None

    def exists(self, image: str) -> bool:
        return self._locate(image) is not None

    def identity(self, image: str, file_sha256) -> str | None:
        """What the image's bytes are, without decoding: the file's content hash, or the archive's
        content hash plus the member name (None when this root lacks it)."""
        found = self._locate(image)
        if found is None:
            return None
        if isinstance(found, Path):
            return "sha256:" + file_sha256(found)
        archive, member = found
        own = archive.member_identity(member)  # zip: CRC-32 + size, so editing one member redoes one render
        return f"member:{member}:{own}" if own else f"member:{member}:archive-sha256:{file_sha256(archive.path)}"

    def read(self, image: str) -> bytes | None:
        found = self._locate(image)
        if found is None:
            return None
        if isinstance(found, Path):
            return _read_file(found, image)
        archive, member = found
        try:
            return archive.read(member)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError) as err:
            raise ImageError("image_unreadable", f"{image}: member {member} of {self.label}: {err}") from None

    def close(self) -> None:
        for archive in self.archives:
            archive.close()


def _read_file(path: Path, image: str) -> bytes:
    cap = active().max_member_bytes
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > cap:
                raise ImageError("image_too_large", f"{image}: {size:,} bytes > limit {cap:,} "
                                 "(limits.max_member_bytes)")
            data = f.read()
    except OSError as err:
        raise ImageError("image_unreadable", f"{image}: {err.strerror or type(err).__name__}") from None
    if len(data) > cap:  # it grew while read
        raise ImageError("image_too_large", f"{image}: more than {cap:,} bytes (limits.max_member_bytes)")
    return data


class ImageStore:
    """The image roots of one source; `read(path)` returns bytes or raises ImageError('image_missing').

    Args:
        roots: Objects with `prefix`, `location` (a local directory, archive, or glob of archives, already
            resolved by `resolve_location`) and `member_prefix` — the recipe's `ImageRoot`.
        labels: How messages name each root (the recipe's location string), so reject details carry no
            machine-specific paths; default: the location.
    """

    def __init__(self, roots, labels: list[str | None] | None = None):
        labels = labels or [None] * len(roots)
        built = [_Root(r.prefix, str(r.location), r.member_prefix, label)
                 for r, label in zip(roots, labels, strict=True)]
        self._roots = sorted(built, key=lambda r: -len(r.prefix))  # stable: recipe order among equal prefixes

    def _candidates(self, image: str) -> list[_Root]:
        return [r for r in self._roots if image.startswith(r.prefix)]

    def read(self, image: str) -> bytes:
        """The image's bytes.

        Raises:
            ImageError: `image_missing` (the detail names the path and every root searched),
                `image_path_unsafe`, `image_outside_root`, `image_unreadable` (a corrupt archive member, an
                unreadable file), `image_too_large` or `image_bomb` (past a cap in `limits.active()`).
        """
        candidates = self._candidates(image)
        for root in candidates:
            data = root.read(image)
            if data is not None:
                return data
        searched = "; ".join(f"{r.label} as {r.member(image)!r}" for r in candidates)
        searched = searched or "no image root has a matching prefix"
        raise ImageError("image_missing", f"{image} not found (searched: {searched})")

    def identity(self, image: str, file_sha256) -> str | None:
        """The content identity of the bytes `read(image)` would return (None when no root has it), for
        content-addressed render caching; `file_sha256(path)` hashes a file (cached by the caller).

        Raises:
            ImageError: `image_path_unsafe`, as `read` would.
        """
        for root in self._candidates(image):
            found = root.identity(image, file_sha256)
            if found is not None:
                return found
        return None

    def exists(self, image: str) -> bool:
        """Whether `read(image)` would find it, without reading any bytes."""
        try:
            return any(root.exists(image) for root in self._candidates(image))
        except ImageError:
            return False

    def stats(self) -> list[dict]:
        """Per root: prefix, location, kind, and duplicate member names skipped (first occurrence won)."""
        return [{"prefix": r.prefix, "location": r.label, "kind": r.kind, "duplicates": r.duplicates}
                for r in self._roots]

    def close(self) -> None:
        for root in self._roots:
            root.close()


def make_image_store(roots: tuple[tuple[str, str, str, str], ...]):
    """An ImageStore from (prefix, resolved location, member_prefix, recipe location) (picklable factory)."""
    return ImageStore([ImageRoot(prefix=p, location=loc, member_prefix=m) for p, loc, m, _ in roots],
                      labels=[label for *_, label in roots])


def image_store_factory(ctx: BuildContext, source: str):
    """A picklable zero-argument factory for the source's image store, for worker processes."""
    spec = ctx.source(source)
    resolved = []
    for root in spec.images:
        local = local_location(root.location, ctx.data_root)
        if local is None:
            from imp_data.fetch.locations import resolve_location

            local = resolve_location(root.location, ctx.data_root, files=None, cache_dir=ctx.layout.raw(source))
        resolved.append((root.prefix, str(local), root.member_prefix, root.location))
    return functools.partial(make_image_store, tuple(resolved))
