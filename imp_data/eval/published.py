"""Reading the benchmarks' published files (jsonl, json, TSV with base64 images), every error naming the file
and the record: one place for the LLaVA-layout loaders (`benchmarks`), the upload writers (`submission`) and
the lmms-lab loaders to share.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

from imp_data.core.errors import ImpDataError, SourceFormatError

# What pandas.read_table (LLaVA's MMBench reader) turns into NaN, plus LLaVA's is_none ("nan"/"none", any case).
PANDAS_NA = {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A",
             "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}


def _missing_file(path: Path) -> ImpDataError:
    return ImpDataError(f"{path}: missing — lay the benchmark out as LLaVA's playground/data/eval")


def read_jsonl(path: Path) -> list[tuple[str, dict]]:
    """(where, record) per non-blank line; `where` names file and line for later field errors."""
    if not path.is_file():
        raise _missing_file(path)
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            raise SourceFormatError(f"{path} line {n}: malformed JSON ({err.msg})") from None
        if not isinstance(rec, dict):
            raise SourceFormatError(f"{path} line {n}: expected a JSON object, found {type(rec).__name__}")
        rows.append((f"{path} line {n}", rec))
    return rows


def _json(path: Path):
    if not path.is_file():
        raise _missing_file(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise SourceFormatError(f"{path}: malformed JSON at line {err.lineno} ({err.msg})") from None


def _get(rec: dict, key: str, where: str):
    if key not in rec:
        raise SourceFormatError(f"{where}: missing field {key!r} (has {', '.join(map(str, rec)) or 'none'})")
    return rec[key]


def is_missing(value) -> bool:
    """A TSV cell LLaVA's MMBench reader treats as absent: pandas' NaN strings or "nan"/"none" in any case.

    Example:
        >>> is_missing("nan"), is_missing("NONE"), is_missing("N/A"), is_missing("none of these")
        (True, True, True, False)
    """
    return value is None or value in PANDAS_NA or (isinstance(value, str) and value.lower() in ("nan", "none"))


def read_tsv_rows(path: Path) -> Iterator[list[str]]:
    """The rows of a TSV whose cells may be whole base64 images (past csv's default 128 KiB field limit)."""
    if not path.is_file():
        raise _missing_file(path)
    csv.field_size_limit(2**31 - 1)
    with open(path, newline="", encoding="utf-8") as f:
        yield from csv.reader(f, delimiter="\t")


def read_mmbench_tsv(path: Path) -> list[tuple[str, dict]]:
    """(where, row) per TSV row, checking the columns LLaVA's reader needs."""
    rows = read_tsv_rows(path)
    header = next(rows, None)
    missing = {"index", "question", "image"} - set(header or ())
    if missing:
        raise SourceFormatError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    out = []
    for n, row in enumerate(rows, start=1):
        if len(row) != len(header):
            raise SourceFormatError(f"{path} row {n}: {len(row)} fields, the header has {len(header)}")
        out.append((f"{path} row {n}", dict(zip(header, row))))
    return out
