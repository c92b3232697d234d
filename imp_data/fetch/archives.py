"""Read images inside zip/tar archives in place — never extracted, never extracted twice.

The image sets ship as archives of tens of GB (COCO `train2017.zip`, LLaVA-Pretrain `images.zip`,
ALLaVA's `images_{0..9}.zip` chunks, ShareGPT-4V's web zips). An `Archive` builds a member-name index
once and then reads members by seeking, so a render worker holds one open handle per archive.
Member names are only ever dictionary keys: a name like `../x` or `/etc/x` is matched literally and
nothing is written to disk, so path traversal cannot happen. When a name occurs twice, the first
occurrence wins (counted in `duplicates`).
"""

from __future__ import annotations

import tarfile
import threading
import zipfile
from pathlib import Path

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


def is_archive(path: str | Path) -> bool:
    name = str(path).lower()
    return name.endswith(ARCHIVE_SUFFIXES)


def _normal(name: str) -> str:
    """Archive member names as keys: forward slashes, no leading './'."""
    name = name.replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    return name


class Archive:
    """A zip or tar file whose members are read by name."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.duplicates = 0
        self._lock = threading.Lock()
        self._zip: zipfile.ZipFile | None = None
        self._tar: tarfile.TarFile | None = None
        self._members: dict[str, object] = {}
        if self.path.suffix.lower() == ".zip":
            self._zip = zipfile.ZipFile(self.path)
            for info in self._zip.infolist():
                if not info.is_dir():
                    self._add(_normal(info.filename), info)
        else:
            self._tar = tarfile.open(self.path, "r:*")
            for info in self._tar.getmembers():
                if info.isfile():
                    self._add(_normal(info.name), info)

    def _add(self, name: str, info: object) -> None:
        if name in self._members:
            self.duplicates += 1  # first occurrence wins, deterministically
        else:
            self._members[name] = info

    def names(self) -> list[str]:
        return list(self._members)

    def __contains__(self, name: str) -> bool:
        return _normal(name) in self._members

    def read(self, name: str) -> bytes:
        """The bytes of member `name`; KeyError if absent."""
        info = self._members[_normal(name)]
        with self._lock:
            if self._zip is not None:
                return self._zip.read(info)
            handle = self._tar.extractfile(info)
            return handle.read() if handle else b""

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
        if self._tar is not None:
            self._tar.close()
