"""One shard sample against the contract: its KEY.json against `ShardRecord`, its KEY.jpg decoding to
the mix's resolution. Shared by `imp-data validate` on a tar (imp_data.audit.validate) and on a whole mix
(imp_data.audit.validate_mix)."""

from __future__ import annotations

import io

from PIL import Image
from pydantic import ValidationError

from imp_data.core.schema import ShardRecord


def problem_text(err: ValidationError) -> str:
    """A pydantic error as one line: each field path and its message."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'record'}: {e['msg']}" for e in err.errors())


def check_sample(where: str, key: str, record: dict | None, jpg: bytes | None,
                 resolution: int | None = None) -> list[str]:
    """One sample of a tar: KEY.json against ShardRecord, KEY.jpg decodes to resolution x resolution
    (`resolution` = the mix's, from stats.json, when known; else the record's own)."""
    if record is None:
        return [f"{where}: no {key}.json member"]
    try:
        rec = ShardRecord.model_validate(record)
    except ValidationError as err:
        return [f"{where}: {problem_text(err)}"]
    if (rec.image is None) != (jpg is None):
        return [f"{where}: image info and {key}.jpg disagree (one is missing)"]
    if jpg is None:
        return []
    try:
        with Image.open(io.BytesIO(jpg)) as img:
            img.load()
            size = img.size
    except Exception as err:  # any decoder failure is a problem to report, not a crash
        return [f"{where}: {key}.jpg does not decode ({err})"]
    r = resolution or rec.image.resolution
    if size != (r, r):
        return [f"{where}: {key}.jpg is {size[0]}x{size[1]}, expected {r}x{r}"]
    return []
