"""Read images inside zip/tar archives in place: never extracted, indexed once, read by seeking.

The image sets ship as archives of tens of GB (COCO `train2017.zip`, LLaVA-Pretrain `images.zip`,
ALLaVA's `images_{0..9}.zip` chunks, ShareGPT-4V's web zips with nested `data/<name>/images/`). An
`Archive` reads the member directory once, then serves `read(name)`: zip members through `zipfile`
(its shared handle is locked internally, so threads may read concurrently), plain-tar members with one
`os.pread` at the offset recorded in the index (no lock, no tarfile state). Compressed tars cannot be
read at random without decompressing from the start, so they work but slowly; a warning names the fix.

Safety, the one design choice: member names are only ever dictionary keys. Nothing is written to disk,
so a member named `../../etc/x` or `/etc/x` is just an odd key that a record path must match literally;
path traversal cannot happen. When a name occurs twice, the first occurrence in the archive's own order
wins, deterministically, and the rest are counted in `duplicates` (names kept in `duplicate_names`).

Hostile archives: a file that cannot be opened as an archive (empty, cut short, not an archive) is
structural, an `ArchiveError` naming it, raised on open. A member is a per-image matter: its size (and a
zip member's compression ratio) is checked against `limits.active()` from the directory before a byte is
inflated (`image_too_large`, `image_bomb`), and the inflate itself stops at the size the directory
claims, so a directory that lies about a bomb costs no more than its claim (the member then fails its
CRC: `image_unreadable`).
"""

from __future__ import annotations

import logging
import os
import posixpath
import tarfile
import threading
import zipfile
from pathlib import Path

from imp_data.core.errors import ArchiveError, ImageError
from imp_data.core.limits import active

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
MAX_DUPLICATE_NAMES = 100  # names kept for the report; the count is exact
RATIO_FLOOR = 1 << 20  # a member this small is no bomb whatever its ratio (a blank BMP deflates 500:1)

log = logging.getLogger(__name__)


def is_archive(path: str | Path) -> bool:
    """Whether a path names a zip or tar archive (by suffix).

    Example:
        >>> is_archive("images_3.zip"), is_archive("x/y.tar.gz"), is_archive("a.jpg")
        (True, True, False)
    """
    return str(path).lower().endswith(ARCHIVE_SUFFIXES)


def normal_name(name: str) -> str:
    """A member name as a lookup key: forward slashes, no leading './' (nothing else is touched).

    Example:
        >>> normal_name("./images\\\\00453/004539375.jpg")
        'images/00453/004539375.jpg'
    """
    name = name.replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    return name


class Archive:
    """A zip or tar file whose members are read by name.

    Example:
        >>> import io, tempfile
        >>> path = Path(tempfile.mkdtemp()) / "a.zip"
        >>> with zipfile.ZipFile(path, "w") as z:
        ...     z.writestr("data/wikiart/images/x.jpg", b"jpeg")
        >>> with Archive(path) as archive:
        ...     archive.read("data/wikiart/images/x.jpg")
        b'jpeg'
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.duplicates = 0
        self.duplicate_names: list[str] = []
        self._members: dict[str, object] = {}
        self._basenames: dict[str, str] | None = None
        self._zip: zipfile.ZipFile | None = None
        self._tar: tarfile.TarFile | None = None  # only for compressed tars
        self._fd: int | None = None  # plain tars: one descriptor, read with pread
        self._lock = threading.Lock()
        kind = "zip" if self.path.name.lower().endswith(".zip") else "tar"
        try:
            if zipfile.is_zipfile(self.path):
                kind = "zip"
                self._zip = zipfile.ZipFile(self.path)
                for info in self._zip.infolist():
                    if not info.is_dir():
                        self._add(normal_name(info.filename), info)
            elif kind == "zip":
                raise zipfile.BadZipFile("no zip directory at its end: empty or cut short")
            else:
                self._open_tar()
        except Exception as err:  # noqa: BLE001 - whatever opening raised, the file is not a usable archive
            self.close()
            detail = " ".join(str(err).split()) or type(err).__name__
            raise ArchiveError(f"{self.path}: not a readable {kind} archive ({detail}); fetch it again, or point "
                               "the image root's location at the right file") from None

    def _open_tar(self) -> None:
        try:
            with tarfile.open(self.path, "r:") as tar:  # plain tar: offsets are file offsets
                members = tar.getmembers()
            self._fd = os.open(self.path, os.O_RDONLY)
        except tarfile.ReadError:
            self._tar = tarfile.open(self.path, "r:*")
            members = self._tar.getmembers()
            log.warning("%s is a compressed tar: every out-of-order read decompresses from the start; "
                        "decompress it once to a plain .tar (e.g. `gunzip -k`) to read members in place fast",
                        self.path)
        for info in members:
            if info.isfile():  # links and directories are not images; a link would alias another member
                self._add(normal_name(info.name), info)

    def _add(self, name: str, info: object) -> None:
        if name in self._members:
            self.duplicates += 1  # first occurrence wins, deterministically
            if len(self.duplicate_names) < MAX_DUPLICATE_NAMES:
                self.duplicate_names.append(name)
        else:
            self._members[name] = info

    def __len__(self) -> int:
        return len(self._members)

    def names(self) -> list[str]:
        """Member names (files only) in archive order, duplicates once."""
        return list(self._members)

    def __contains__(self, name: str) -> bool:
        return normal_name(name) in self._members

    def find_basename(self, name: str) -> str | None:
        """The first member whose file name is `name`'s, wherever it sits (`unzip -j` semantics)."""
        if self._basenames is None:
            index: dict[str, str] = {}
            for member in self._members:
                index.setdefault(posixpath.basename(member), member)
            self._basenames = index
        return self._basenames.get(posixpath.basename(normal_name(name)))

    def member_identity(self, name: str) -> str | None:
        """A content identity read from the member directory, without the bytes: a zip member's CRC-32
        and size (changes when the member's bytes do); None for tar members (hash the archive instead)."""
        info = self._members[normal_name(name)]
        if self._zip is not None:
            return f"zip-crc32:{info.CRC:08x}:{info.file_size}"  # type: ignore[attr-defined]
        return None

    def read(self, name: str) -> bytes:
        """The bytes of member `name`; KeyError if there is no such member.

        Raises:
            ImageError: `image_too_large` (past `limits.max_member_bytes`) or `image_bomb` (past
                `limits.max_compression_ratio`), decided from the directory before anything is inflated.
        """
        info = self._members[normal_name(name)]
        size = self._check(name, info)
        if self._zip is not None:
            with self._zip.open(info) as member:  # type: ignore[arg-type]
                data = member.read(size + 1)  # inflates at most what the directory claims (+1), never more
            if len(data) > size:
                raise ImageError("image_bomb", f"member {name} inflates past the {size:,} bytes its directory "
                                 "claims")
            return data
        if self._fd is not None and not info.sparse:  # type: ignore[attr-defined]
            data = os.pread(self._fd, info.size, info.offset_data)  # type: ignore[attr-defined]
            if len(data) != info.size:  # type: ignore[attr-defined]
                raise EOFError(f"{self.path}: member {name} is cut short ({len(data)} of {info.size} bytes)")
            return data
        with self._lock:  # tarfile keeps a file position: one reader at a time
            tar = self._tar or tarfile.open(self.path, "r:")
            self._tar = tar
            handle = tar.extractfile(info)  # type: ignore[arg-type]
            return handle.read() if handle else b""

    def _check(self, name: str, info) -> int:
        """The member's size by its directory entry, after refusing one past a cap."""
        caps = active()
        size = info.file_size if self._zip is not None else info.size
        if size > caps.max_member_bytes:
            raise ImageError("image_too_large", f"member {name} is {size:,} bytes uncompressed > limit "
                             f"{caps.max_member_bytes:,} (limits.max_member_bytes)")
        packed = max(getattr(info, "compress_size", size), 1)
        if size > RATIO_FLOOR and size > packed * caps.max_compression_ratio:
            raise ImageError("image_bomb", f"member {name} inflates {packed:,} bytes to {size:,} (ratio "
                             f"{size / packed:,.0f} > limit {caps.max_compression_ratio:g}, "
                             "limits.max_compression_ratio)")
        return size

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None
        if self._tar is not None:
            self._tar.close()
            self._tar = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
