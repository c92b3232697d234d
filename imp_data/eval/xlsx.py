"""A one-sheet .xlsx writer (and reader) in the standard library, for the MMBench upload.

LLaVA writes the upload with `DataFrame.to_excel(engine="openpyxl")` (EVAL §11); openpyxl is not a project
dependency, and a sheet of strings and numbers needs only five small XML parts of the Office Open XML
package. Strings are inline (no shared-string table), None is an empty cell, and the zip entries carry a
fixed timestamp so the same table gives the same bytes. `read_xlsx` reads such a sheet back (and the
plain cells of other writers' sheets) for the tests.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Sequence
from pathlib import Path
from xml.etree import ElementTree
from xml.sax.saxutils import escape

_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
# Characters XML 1.0 cannot carry (openpyxl refuses them with IllegalCharacterError); dropped.
_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")
_STAMP = (2023, 7, 12, 0, 0, 0)

_PARTS = {
    "[Content_Types].xml": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/xl/workbook.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
        '<Override PartName="/xl/worksheets/sheet1.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>'),
    "_rels/.rels": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
        'officeDocument" Target="xl/workbook.xml"/></Relationships>'),
    "xl/workbook.xml": (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<workbook xmlns="{_NS}" xmlns:r="{_REL}">'
        '<sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>'),
    "xl/_rels/workbook.xml.rels": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
        'worksheet" Target="worksheets/sheet1.xml"/></Relationships>'),
}


def column_letter(index: int) -> str:
    """0 -> "A", 25 -> "Z", 26 -> "AA".

    Example:
        >>> column_letter(0), column_letter(27), column_letter(702)
        ('A', 'AB', 'AAA')
    """
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def _cell(ref: str, value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        text = escape(_ILLEGAL.sub("", str(value)))
        return f'<c r="{ref}" t="inlineStr"><is><t xml:space="preserve">{text}</t></is></c>'
    return f'<c r="{ref}"><v>{value!r}</v></c>'


def write_xlsx(path: str | Path, header: Sequence[str], rows: Sequence[Sequence]) -> Path:
    """Write one sheet ("Sheet1"): the header row, then `rows` (str, int, float or None per cell)."""
    lines = []
    for r, row in enumerate([list(header), *map(list, rows)], start=1):
        cells = "".join(_cell(f"{column_letter(c)}{r}", v) for c, v in enumerate(row))
        lines.append(f'<row r="{r}">{cells}</row>')
    sheet = (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<worksheet xmlns="{_NS}">'
             f'<sheetData>{"".join(lines)}</sheetData></worksheet>')
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in [*_PARTS.items(), ("xl/worksheets/sheet1.xml", sheet)]:
            zf.writestr(zipfile.ZipInfo(name, _STAMP), text.encode("utf-8"), zipfile.ZIP_DEFLATED)
    tmp.replace(path)
    return path


def read_xlsx(path: str | Path) -> list[list]:
    """The first sheet's rows as lists (numbers as int/float, empty cells as None), gaps filled."""
    with zipfile.ZipFile(path) as zf:
        root = ElementTree.fromstring(zf.read("xl/worksheets/sheet1.xml"))
        shared = []
        if "xl/sharedStrings.xml" in zf.namelist():  # other writers (openpyxl) use a shared-string table
            sst = ElementTree.fromstring(zf.read("xl/sharedStrings.xml"))
            shared = ["".join(t.text or "" for t in si.iter(f"{{{_NS}}}t")) for si in sst.iter(f"{{{_NS}}}si")]
    table = []
    for row in root.iter(f"{{{_NS}}}row"):
        values: dict[int, object] = {}
        for c in row.iter(f"{{{_NS}}}c"):
            col = _column_index(re.match(r"[A-Z]+", c.get("r")).group())
            kind, v = c.get("t"), c.find(f"{{{_NS}}}v")
            if kind == "inlineStr":
                values[col] = "".join(t.text or "" for t in c.iter(f"{{{_NS}}}t"))
            elif kind == "s":
                values[col] = shared[int(v.text)]
            elif kind == "str":
                values[col] = v.text or ""
            elif v is not None:
                values[col] = float(v.text) if any(ch in v.text for ch in ".eE") else int(v.text)
        table.append([values.get(k) for k in range(max(values, default=-1) + 1)])
    return table


def _column_index(letters: str) -> int:
    index = 0
    for ch in letters:
        index = index * 26 + ord(ch) - 64
    return index - 1
