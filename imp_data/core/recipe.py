"""Recipes: what a mix is made of, declared once in YAML and validated all at once.

A recipe has two halves. `sources` say how to READ each dataset (adapter, where it is published, its
image roots, the conversion choices the paper leaves open). `mixes` say what to TAKE from them (take-N,
drop rules, dedup) and how to render it. One source can feed several mixes (the demo builds stage 1 and
stage 2 from one recipe). `load_recipe` reports every problem at once, each with its YAML path.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidationError,
    field_validator,
)

from imp_data.core.errors import RecipeError
from imp_data.core.recipe_checks import cross_field_problems, problem_line
from imp_data.core.schema import SOURCE_NAME_RE
from imp_data.core.source_options import ADAPTER_OPTIONS

ImageMode = Literal["pad", "squash", "expand2square"]


def _no_bool(value: object) -> object:
    """YAML's true/false are Python ints (True == 1): refuse them where a number goes, e.g. `take: true`."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {str(value).lower()}")  # noqa: TRY004 - pydantic reports ValueError
    return value


Int = Annotated[int, Strict()]  # no bools, no "5", no 5.0: a recipe's numbers are written as numbers
Num = Annotated[float, BeforeValidator(_no_bool)]
Rate = Annotated[float, Field(ge=0, le=1), BeforeValidator(_no_bool)]
Count = Position = Annotated[int, Strict(), Field(ge=0)]
Byte = Annotated[int, Strict(), Field(ge=0, le=255)]
# Source and mix names become folder and file names under the data root (raw/<source>/, mixes/<mix>/).
Name = Annotated[str, StringConstraints(pattern=SOURCE_NAME_RE)]


def _name_keys(*fields: str, reserved: dict[str, str] | None = None):
    """JSON schema of name-keyed maps: every key must be a name (pydantic's patternProperties would let any
    other key through unchecked), and not the map's reserved name if it has one."""
    def edit(schema: dict) -> None:
        for field in fields:
            prop = schema["properties"][field]
            ((pattern, value),) = prop.pop("patternProperties").items()
            prop["additionalProperties"], prop["propertyNames"] = value, {"pattern": pattern}
            if field in (reserved or {}):
                prop["propertyNames"]["not"] = {"const": reserved[field]}
    return edit


def _adapter_rules(schema: dict) -> None:
    """JSON schema of a source: the adapter names and, per adapter, its options (what
    `recipe_checks.cross_field_problems` checks in Python), so a CI validating recipes with stock JSON Schema
    tools catches the same typos."""
    schema["properties"]["adapter"]["enum"] = sorted(ADAPTER_OPTIONS)
    by_options: dict[str, list[str]] = {}  # adapters sharing an Options model share one rule
    for name in sorted(ADAPTER_OPTIONS):
        options = {k: v for k, v in ADAPTER_OPTIONS[name].model_json_schema().items() if k != "title"}
        by_options.setdefault(json.dumps(options, sort_keys=True), []).append(name)
    schema["allOf"] = [{"if": {"properties": {"adapter": {"enum": names}}, "required": ["adapter"]},
                        "then": {"properties": {"options": json.loads(options)}}}
                       for options, names in by_options.items()]


# Reasons the build itself records drops and removals under (select.py: not_sampled; mix/dedup.py:
# duplicate_exact, duplicate_near, contaminated:<benchmark>). A drop rule's name is a reason too, counted in
# the same `dropped` table, so a rule may not take one of these.
RESERVED_REASONS = {
    "not_sampled": "take-N records the records it leaves out",
    "duplicate_exact": "dedup records exact duplicate images",
    "duplicate_near": "dedup records near-duplicate images",
    "contaminated": "decontamination records benchmark matches (as contaminated:<benchmark>)",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImageRoot(_Strict):
    """Where the images a source's records point at live."""

    prefix: str = Field(default="", description="Record image-path prefix this root serves ('' = all).")
    location: str = Field(description="Directory, zip/tar file (or glob of them), hf:// or https:// URL.")
    member_prefix: str = Field(default="", description="Prefix inside the location that replaces `prefix`.")


class RenderSpec(_Strict):
    """How images are rendered into shards (docs/design.md §4)."""

    resolution: Int = Field(default=384, ge=8, le=4096, description="Side of the square output in pixels.")
    mode: ImageMode = Field(default="pad", description="pad = resize-then-pad (paper); squash; expand2square.")
    fill: tuple[Byte, Byte, Byte] = Field(default=(127, 127, 127), description="Pad colour (SigLIP mean 0.5).")
    quality: Int = Field(default=95, ge=1, le=100, description="JPEG quality of the rendered image.")
    exif_transpose: bool = Field(
        default=False,
        description="Apply the EXIF orientation before rendering. Off: the stored pixel frame, as LLaVA and Imp "
        "load images and as the boxes in LLaVA's region-level conversations assume.")
    resampler: Literal["torch", "pillow"] = Field(
        default="torch",
        description="Bicubic resize kernel: torch (same bytes on every CPU, SIMD on x86 AVX2) or pillow.")


class SourceSpec(_Strict):
    """How to read one published dataset."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_adapter_rules)

    adapter: str = Field(description="Adapter name from imp_data.sources (e.g. 'llava_665k').")
    location: str = Field(description="hf://datasets/<repo>@<rev>/<glob>, https://..., or a local directory.")
    files: list[str] | None = Field(
        default=None, description="Annotation files relative to location.",
        json_schema_extra={"items": {"minLength": 1, "not": {"pattern": r"^/|(^|/)\.\.(/|$)"}}})  # _relative
    images: list[ImageRoot] = Field(default_factory=list, description="Image roots, longest prefix wins.")
    options: dict[str, Any] = Field(default_factory=dict, description="Adapter options (see its Options).")
    download_images: bool = Field(
        default=False,
        description="URL-only source (LAION-GPT-V): after normalising, fetch every image URL with the URL "
        "downloader into raw/<source>/ (images/ + downloads.parquet); point an image root there.",
    )
    license: str | None = Field(default=None, description="Licence of the text, for the report.")

    @field_validator("files")
    @classmethod
    def _relative(cls, files: list[str] | None) -> list[str] | None:
        """A file list names files inside `location`; reading elsewhere is what `location` is for."""
        for f in files or []:
            if not f or PurePosixPath(f).is_absolute() or ".." in PurePosixPath(f).parts:
                raise ValueError(f"{f!r}: files are paths relative to `location`, without '..' "
                                 "(to read another folder, make it the location)")
        return files


class DropRule(_Strict):
    """Drop records matching a condition; dropped records are counted under the rule's name."""

    name: str = Field(pattern=SOURCE_NAME_RE, description="Rule name shown in stats, e.g. 'textcaps'.",
                      json_schema_extra={"not": {"enum": sorted(RESERVED_REASONS)}})  # _not_reserved
    image_prefix: str | None = Field(default=None, description="Drop records whose image path starts so.")
    text_only: bool | None = Field(default=None, description="True: drop text-only records.")
    source_ids: list[str] | None = Field(default=None, description="Drop these native ids.")
    file_positions: list[Position] | None = Field(
        default=None, description="Drop the records at these 0-based positions of the published file "
        "(meta.file_index, kept by llava_665k), as a trainer deleting list items by index does.")

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name in RESERVED_REASONS:
            raise ValueError(f"{name!r} is reserved ({RESERVED_REASONS[name]}): give the rule another name")
        return name


class MixSource(_Strict):
    """One source's share of a mix."""

    take: Count | Literal["all"] = Field(default="all", description="Records to sample (seeded), or 'all'.")
    drop: list[DropRule] = Field(default_factory=list)

    @field_validator("take", mode="before")
    @classmethod
    def _number_or_all(cls, take: object) -> object:
        if take != "all" and (type(take) is not int or take < 0):  # one message, not one per union member
            shown = str(take).lower() if isinstance(take, bool) else repr(take)
            raise ValueError(f"take must be a whole number >= 0 or 'all', got {shown}")
        return take

    @field_validator("drop")
    @classmethod
    def _unique_names(cls, drop: list[DropRule]) -> list[DropRule]:
        """Each rule's drops are counted under its name; two rules with one name would merge their counts."""
        first: dict[str, int] = {}
        for i, rule in enumerate(drop):
            if rule.name in first:
                raise ValueError(f"rules {first[rule.name]} and {i} are both named {rule.name!r}: "
                                 "each rule needs its own name")
            first[rule.name] = i
        return drop


def _or_false(schema: dict) -> None:
    """JSON schema of `DedupSpec.mode`: false is `off`, as `_yaml_off` reads it."""
    schema["anyOf"] = [{"enum": schema.pop("enum"), "type": schema.pop("type")}, {"const": False}]


class DedupSpec(_Strict):
    """Image dedup across the mix (perceptual hash)."""

    mode: Literal["off", "within_source", "across_sources"] = Field(default="off", json_schema_extra=_or_false)
    max_distance: Int = Field(default=4, ge=0, le=32, description="phash Hamming distance for near dups.")
    source_priority: list[str] = Field(default_factory=list, description="Which copy to keep first.")

    @field_validator("mode", mode="before")
    @classmethod
    def _yaml_off(cls, mode: object) -> object:
        return "off" if mode is False else mode  # YAML 1.1 reads a bare `off` as false


class DecontamSpec(_Strict):
    """Drop training images that match evaluation benchmark images."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_name_keys("benchmarks"))

    benchmarks: dict[Name, str] = Field(
        default_factory=dict,
        description="benchmark name -> location: a folder laid out as LLaVA's playground/data/eval/<name> (read "
        "by the eval job's adapter for that benchmark), or an image archive / glob of archives as published.")
    scope: Literal["asked", "all"] = Field(
        default="asked",
        description="For a benchmark folder in the eval layout: 'asked' = the images its questions ask about "
        "(POPE's 500 val2014 images), 'all' = every image of its download, all splits.")
    max_distance: Int = Field(default=4, ge=0, le=32, description="phash Hamming distance that counts as a match.")
    drop: bool = Field(default=True, description="False: report only.")
    max_remaining: Int | None = Field(
        default=None, ge=0,
        description="Matching samples the blocking check lets into the plan (default: 0 when drop, no limit when "
        "report only).")

    def remaining_limit(self) -> int | None:
        """What the contamination check allows to remain in the mix (None = no limit)."""
        if self.max_remaining is not None:
            return self.max_remaining
        return 0 if self.drop else None


class MixSpec(_Strict):
    """A mix to build into mixes/<name>/."""

    stage: Annotated[Literal[1, 2], BeforeValidator(_no_bool)] = Field(
        description="1 = projector pre-training captions, 2 = instruction tuning.")
    sources: dict[str, MixSource] = Field(min_length=1)
    render: RenderSpec | None = Field(default=None, description="Overrides the recipe's render settings.")
    shard_size: Int | None = Field(default=None, ge=1, description="Overrides the recipe's shard size.")
    dedup: DedupSpec = Field(default_factory=DedupSpec)
    decontaminate: DecontamSpec = Field(default_factory=DecontamSpec)
    max_reject_rate: Rate | None = None
    partitions: Int = Field(
        default=8, ge=1, le=5000,
        description="Dagster partitions of the shards asset; shard s belongs to partition s mod N "
        "(the shard count is only known once the plan exists, the partition set must be known before).",
    )


class Limits(_Strict):
    """What one untrusted input may cost: past a cap, that record or image is a reject (never the build)."""

    max_record_bytes: Int = Field(default=64 * 2**20, ge=1024,
                                  description="Bytes of one JSON record; larger is a `record_too_large` reject.")
    max_json_depth: Int = Field(default=64, ge=4, le=10_000,
                                description="Nesting depth of what a record keeps (its meta); deeper, or nested past "
                                "what the JSON parser reads at all, is a `record_too_deep` reject.")
    max_image_pixels: Int = Field(default=89_478_485, ge=1,
                                  description="Decoded pixels of one image (PIL's bomb limit); more is "
                                  "`image_too_large`.")
    max_member_bytes: Int = Field(default=256 * 2**20, ge=1,
                                  description="Uncompressed bytes of one archive member (one image); more is "
                                  "`image_too_large`, found before anything is decompressed.")
    max_compression_ratio: Num = Field(default=100.0, ge=1,
                                         description="Uncompressed / compressed size of one archive member; higher "
                                         "is an `image_bomb` reject.")


class Recipe(_Strict):
    """A whole recipe file."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_name_keys(
        "sources", "mixes", reserved={"sources": "benchmarks"}))  # raw/benchmarks/: see recipe_checks

    name: str = Field(pattern=SOURCE_NAME_RE)
    description: str = ""
    seed: Int = Field(default=0, description="Seeds take-N and the shuffle; same seed, same bytes.")
    render: RenderSpec = Field(default_factory=RenderSpec)
    shard_size: Int = Field(default=1000, ge=1, description="Samples per shard.")
    max_reject_rate: Rate = Field(default=0.05, description="Blocking check threshold.")
    limits: Limits = Field(default_factory=Limits, description="Caps on hostile or broken inputs.")
    sources: dict[Name, SourceSpec] = Field(min_length=1)
    mixes: dict[Name, MixSpec] = Field(min_length=1)

    def mix_render(self, mix: str) -> RenderSpec:
        return self.mixes[mix].render or self.render

    def mix_shard_size(self, mix: str) -> int:
        return self.mixes[mix].shard_size or self.shard_size

    def mix_max_reject_rate(self, mix: str) -> float:
        rate = self.mixes[mix].max_reject_rate
        return self.max_reject_rate if rate is None else rate


# ---------------------------------------------------------------------------------------------------------
# loading and validation


def parse_recipe(raw: Any, origin: str = "<recipe>") -> Recipe:
    """Validate a parsed YAML document; raise RecipeError listing every problem with its YAML path."""
    if not isinstance(raw, dict):
        raise RecipeError(f"{origin}: a recipe must be a YAML mapping, found {type(raw).__name__}")
    problems: list[str] = []
    recipe = None
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as err:
        problems += [problem_line(e) for e in err.errors()]
    problems += cross_field_problems(raw)
    if problems:
        listing = "\n".join(f"  - {p}" for p in problems)
        raise RecipeError(f"{origin}: {len(problems)} problem(s) in recipe:\n{listing}")
    assert recipe is not None
    return recipe


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file.

    Example:
        >>> load_recipe("manifests/demo.yaml").name
        'demo'
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise RecipeError(f"{path}: cannot read recipe ({err.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except RecursionError:
        raise RecipeError(f"{path}: the YAML is nested too deeply to be a recipe") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise RecipeError(f"{path}: invalid YAML{where}: {getattr(err, 'problem', err)}") from None
    try:
        return parse_recipe(raw, str(path))
    except RecursionError:
        raise RecipeError(f"{path}: a value is nested too deeply to be a recipe") from None
