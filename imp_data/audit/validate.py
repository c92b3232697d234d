"""`imp-data validate`: recipes, parquet tables and shards checked against the schema models.

Users' CI runs this on their recipes and outputs. Every problem is one line naming the file and the
record; checking goes on after the first problem so one run lists them all (up to a cap). A file or folder
holding nothing we know how to check is a problem too, never a silent OK: parquet tables are told apart by
their columns (`table_kind`), and a mix's other tables are checked through its directory — as a whole,
against each other, today's code and its recipe (imp_data.audit.validate_mix).
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from imp_data.audit.sample_check import check_sample, problem_text
from imp_data.core.errors import ImpDataError
from imp_data.core.io import read_table, read_table_schema
from imp_data.core.layout import MixDir
from imp_data.core.recipe import load_recipe
from imp_data.core.schema import Reject, Sample


def validate_normalized(path: Path, limit: int) -> list[str]:
    from imp_data.normalize import row_to_sample_dict

    problems = []
    frame = read_table(path)
    for n, row in enumerate(frame.iter_rows(named=True)):
        try:
            Sample.model_validate(row_to_sample_dict(row))
        except ValidationError as err:
            problems.append(f"{path}: row {n} (id {row.get('id')!r}): {problem_text(err)}")
        if len(problems) >= limit:
            break
    ids = frame["id"]
    if ids.n_unique() != frame.height:
        dup = ids.filter(ids.is_duplicated()).head(1).item()
        problems.append(f"{path}: ids are not unique (e.g. {dup!r})")
    return problems


def validate_rejects(path: Path, limit: int) -> list[str]:
    problems = []
    for n, row in enumerate(read_table(path).iter_rows(named=True)):
        try:
            Reject.model_validate({k: row[k] for k in ("source", "source_id", "stage", "reason", "detail")})
        except (ValidationError, KeyError) as err:
            problems.append(f"{path}: row {n}: {problem_text(err) if isinstance(err, ValidationError) else err}")
        if len(problems) >= limit:
            break
    return problems


def validate_tar(path: Path, limit: int) -> list[str]:
    """Every KEY.json against ShardRecord; every KEY.jpg decodes to resolution x resolution."""
    from imp_data.shards.reader import iter_tar_samples

    problems = []
    try:
        for key, record, jpg in iter_tar_samples(path):
            problems += check_sample(f"{path}: sample {key}", key, record, jpg)
            if len(problems) >= limit:
                break
    except ImpDataError as err:
        problems.append(str(err))
    return problems


def validate_mix_dir(path: Path, limit: int, recipes: dict | None = None) -> list[str]:
    """A mix as a whole (imp_data.audit.validate_mix): its shards, plan, index and stats must agree with each
    other, with today's code and with any recipe validated alongside that declares it."""
    from imp_data.audit.validate_mix import check_mix

    return check_mix(path, limit, recipes)


def validate_recipe(path: Path) -> list[str]:
    """A mix recipe (manifests/*.yaml) or a run recipe (manifests/runs/*.yaml: top-level `stage`, no `sources`)."""
    from imp_data.train.config import load_run

    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError, RecursionError):
        raw = None  # load_recipe reports it with the YAML position
    is_run = isinstance(raw, dict) and "stage" in raw and "sources" not in raw
    try:
        (load_run if is_run else load_recipe)(path)
        return []
    except ImpDataError as err:
        return [str(err)]


KNOWN = "recipe (.yaml), shard (.tar), mix directory, or parquet table of normalized samples, rejects or a mix index"


def table_kind(path: Path) -> str | None:
    """Which of our parquet tables `path` is, told by its columns (and, for an index, its mix directory).

    `normalized` covers normalized/<source>.parquet and a mix's plan.parquet (both hold whole samples);
    `rejects` covers rejects/<source>.parquet and a mix's rejects/drops/removals; `index` is a mix's
    index.parquet, which is only meaningful checked against its shards. None: not one we can validate.
    """
    cols = read_table_schema(path)
    if {"id", "source", "source_id", "image", "conversations", "meta", "order"} <= set(cols):
        return "normalized"
    if {"source", "source_id", "stage", "reason", "detail"} <= set(cols):
        return "rejects"
    if path == MixDir(path.parent).index and {"key", "shard_name", "shard_sha256"} <= set(cols) \
            and MixDir(path.parent).shards.is_dir():
        return "index"
    return None


def validate_path(path: Path, limit: int = 50, recipes: dict | None = None) -> list[str]:
    """Problems with one path (recipe, parquet, tar or directory); an unknown kind of file is a problem.

    `recipes`: mix name -> [(recipe path, Recipe)] validated alongside (validate_mix.declared_mixes), so a
    mix is also checked against what its recipe asks for now."""
    if not path.exists():
        return [f"{path}: does not exist"]
    if path.is_dir():
        if MixDir(path).index.is_file():
            return validate_mix_dir(path, limit, recipes)
        children = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml", ".parquet", ".tar")
                          or MixDir(p).index.is_file())  # mixes/: each mix directory in it
        if not children:
            return [f"{path}: nothing to validate in this directory (expected a {KNOWN})"]
        problems = []
        for child in children:
            problems += validate_path(child, limit - len(problems), recipes)
        return problems
    if path.suffix in (".yaml", ".yml"):
        return validate_recipe(path)
    if path.suffix == ".tar":
        return validate_tar(path, limit)
    if path.suffix == ".parquet":
        try:
            kind = table_kind(path)
        except Exception as err:  # polars raises several types for a file that is not parquet at all
            return [f"{path}: not a readable parquet file ({err})"]
        if kind == "normalized":
            return validate_normalized(path, limit)
        if kind == "rejects":
            return validate_rejects(path, limit)
        if kind == "index":
            return validate_mix_dir(path.parent, limit, recipes)
        return [f"{path}: unknown parquet table (columns: {_columns(path)}); imp-data validates normalized "
                f"samples, rejects and a mix's index.parquet — or pass the whole mix directory"]
    return [f"{path}: don't know how to validate this kind of file (expected a {KNOWN})"]


def _columns(path: Path) -> str:
    names = list(read_table_schema(path))
    return ", ".join(names[:8] + ["…"] * (len(names) > 8))


def validate_paths(paths: list[Path], max_report: int = 50) -> list[str]:
    """Problems with every path, at most `max_report` lines; recipes among them are read first so a mix
    validated with its recipe is held to it (stale if the recipe changed what a stage reads)."""
    from imp_data.audit.validate_mix import declared_mixes

    recipes = declared_mixes([p for p in paths if p.exists()])
    problems: list[str] = []
    for path in paths:
        try:
            problems += validate_path(path, max(1, max_report - len(problems)), recipes)
        except ImpDataError as err:  # one unreadable file is one problem line; the other paths are still checked
            problems.append(str(err))
        if len(problems) >= max_report:
            break
    return problems[:max_report]
