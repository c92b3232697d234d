"""The one-sheet .xlsx of the MMBench upload, written with openpyxl as LLaVA's converter writes it
(`DataFrame.to_excel(engine="openpyxl")`, docs/eval.md §11), and read back with it for the tests.

What is added to openpyxl is reproducibility: openpyxl stamps the workbook's `modified` property and every
zip entry with the clock, so the same table would give other bytes each second. Here the properties and
the entries carry one fixed date instead. Characters XML 1.0 cannot carry (openpyxl refuses them) are dropped.
"""

from __future__ import annotations

import datetime
import zipfile
from collections.abc import Sequence
from pathlib import Path

from imp_data.core.errors import ImpDataError

_STAMP = (2023, 7, 12, 0, 0, 0)  # MMBench dev 20230712


def _openpyxl():
    try:
        import openpyxl
    except ImportError:
        raise ImpDataError("the MMBench .xlsx upload needs openpyxl: pip install 'imp-data[train]'") from None
    return openpyxl


def column_letter(index: int) -> str:
    """0 -> "A", 25 -> "Z", 26 -> "AA".

    Example:
        >>> column_letter(0), column_letter(27), column_letter(702)
        ('A', 'AB', 'AAA')
    """
    return _openpyxl().utils.get_column_letter(index + 1)


class _StampedZip(zipfile.ZipFile):
    """A zip whose entries all carry `_STAMP`: openpyxl adds parts by name (stamped with the clock) and
    sheets from a temporary file (stamped with its mtime)."""

    def writestr(self, name, data, *args, **kwargs):
        if isinstance(name, str):
            name = zipfile.ZipInfo(name, _STAMP)
            name.compress_type = zipfile.ZIP_DEFLATED
        return super().writestr(name, data, *args, **kwargs)

    def write(self, filename, arcname=None, *args, **kwargs):
        return self.writestr(arcname or Path(filename).name, Path(filename).read_bytes())


def _value(value):
    """A cell value: numbers as numbers, None empty, anything else as its text without XML-illegal characters."""
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return value
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    return ILLEGAL_CHARACTERS_RE.sub("", str(value))


def write_xlsx(path: str | Path, header: Sequence[str], rows: Sequence[Sequence]) -> Path:
    """Write one sheet ("Sheet1"): the header row, then `rows` (str, int, float or None per cell); the same
    table gives the same bytes."""
    openpyxl = _openpyxl()
    from openpyxl.writer.excel import ExcelWriter  # save_workbook would stamp `modified` with the clock

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Sheet1"
    for row in [header, *rows]:
        sheet.append([_value(v) for v in row])
    book.properties.created = book.properties.modified = datetime.datetime(*_STAMP)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    ExcelWriter(book, _StampedZip(tmp, "w", zipfile.ZIP_DEFLATED)).save()  # writes and closes the zip
    tmp.replace(path)
    return path


def read_xlsx(path: str | Path) -> list[list]:
    """The first sheet's rows as lists (numbers as int/float, empty cells as None), each up to its last value."""
    book = _openpyxl().load_workbook(path, read_only=True, data_only=True)
    try:
        table = []
        for row in book.worksheets[0].iter_rows(values_only=True):
            row = list(row)
            while row and row[-1] is None:
                row.pop()
            table.append(row)
        return table
    finally:
        book.close()
