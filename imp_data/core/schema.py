"""The canonical sample: the one contract every stage reads and writes.

LLaVA's conversation format (so any LLaVA-family trainer can read our output), made strict: the models
reject what docs/design.md §3 forbids instead of repairing it, so an adapter must either apply a documented repair
or emit a `Reject`. `schemas/*.schema.json` are generated from these models (`imp-data schemas`).
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Json,
    TypeAdapter,
    WithJsonSchema,
    field_validator,
    model_validator,
)

IMAGE_TOKEN = "<image>"
SOURCE_NAME_RE = r"^[a-z][a-z0-9_]*$"
REASON_RE = r"^[a-z][a-z0-9_]*(:[A-Za-z0-9_.\-]+)?$"

Role = Literal["human", "gpt"]

# JSON Schema renderings of the rules below that pydantic runs as Python (a validator is invisible to JSON
# Schema), so `schemas/` refuses what the models refuse; tests/test_schema_parity.py holds them to it.
# A meta value, recursively: `$dynamicRef`, as pydantic takes every `$ref` for one of its own definitions.
_FINITE = 1.7976931348623157e308  # the largest double: rules out inf (NaN is no JSON value: a parser's rule)
_JSON_VALUE = {"$dynamicAnchor": "json-value", "type": ["null", "boolean", "number", "string", "array", "object"],
               "minimum": -_FINITE, "maximum": _FINITE, "propertyNames": {"type": "string"},
               "items": {"$dynamicRef": "#json-value"}, "additionalProperties": {"$dynamicRef": "#json-value"}}
_IMAGE_PATH = {"type": "string", "pattern": r"\S", "not": {"pattern": r"\u0000"},  # image_path_problem
               "anyOf": [{"pattern": r"^[a-z][a-z0-9+.-]*://"},
                         {"not": {"pattern": r"^[/\\]|^[A-Za-z]:|(^|[/\\])\.\.([/\\]|$)"}}]}


def _conversation_rules(with_image: dict, **fields: dict) -> dict:
    """`conversation_problems` as far as JSON Schema reaches: human then gpt first, one <image> token in the
    first turn when `image` matches `with_image`, none elsewhere (parity of roles past the second turn and
    the id rule cannot be said in JSON Schema: see the test's exceptions). `fields`: constraints that a model
    enforces through its nested Sample check."""
    def edit(schema: dict) -> None:
        for name, extra in fields.items():
            schema["properties"][name].update(extra)
        no_token = {"properties": {"value": {"not": {"pattern": IMAGE_TOKEN}}}}
        twice = {"pattern": rf"{IMAGE_TOKEN}[\s\S]*{IMAGE_TOKEN}"}
        one_token = {"properties": {"value": {"pattern": IMAGE_TOKEN, "not": twice}}}
        schema["allOf"] = [
            {"properties": {"conversations": {"prefixItems": [{"properties": {"from": {"const": role}}}
                                                              for role in ("human", "gpt")]}}},
            {"if": {"properties": {"image": with_image}, "required": ["image"]},
             "then": {"properties": {"conversations": {"prefixItems": [one_token], "items": no_token}}},
             "else": {"properties": {"conversations": {"items": no_token}}}}]
    return edit


# Meta travels as JSON (parquet string column, shard KEY.json): anything but plain JSON values is refused,
# NaN/inf included (json.dumps would write them as non-standard tokens). The rule lives below with the others.
Meta = Annotated[dict[str, Any], AfterValidator(lambda meta: _json_meta(meta)), WithJsonSchema(
    {"type": "object", "propertyNames": {"type": "string"}, "additionalProperties": _JSON_VALUE})]
ImagePath = Annotated[str, WithJsonSchema(_IMAGE_PATH)]
Stage = Literal["fetch", "normalize", "select", "dedup", "decontaminate", "render", "write"]


class Turn(BaseModel):
    """One message. `from` is a Python keyword, hence the alias."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    from_: Role = Field(alias="from", description="Who speaks: 'human' (the user) or 'gpt' (the assistant).")
    value: str = Field(description="The message text; never empty or whitespace-only.",
                       json_schema_extra={"pattern": r"\S"})  # _not_empty

    @field_validator("value")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("turn value is empty")
        return value


class Sample(BaseModel):
    """A training record in canonical form (docs/design.md §3)."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_conversation_rules({"type": "string"}))

    id: str = Field(
        description="'<source>/<source_id>', plus '#N' for the N-th repeat of a native id (file order).",
        min_length=3,
    )
    source: str = Field(pattern=SOURCE_NAME_RE, description="The recipe's source name.")
    source_id: str = Field(min_length=1, description="The native id exactly as published, as a string.")
    image: ImagePath | None = Field(
        default=None,
        description="Image path relative to the source's raw root, archive member, or URL; null = text-only.",
    )
    conversations: list[Turn] = Field(min_length=2, description="Alternating human/gpt turns, human first.")
    meta: Meta = Field(default_factory=dict, description="Small JSON-serialisable source extras.")

    @field_validator("image")
    @classmethod
    def _safe_image_path(cls, image: str | None) -> str | None:
        problem = image_path_problem(image)
        if problem:
            raise ValueError(problem)
        return image

    @model_validator(mode="after")
    def _check_rules(self) -> Sample:
        turns = [(t.from_, t.value) for t in self.conversations]
        problems = conversation_problems(self.id, self.source, self.source_id, self.image, turns)
        if problems:
            raise ValueError("; ".join(message for _, message in problems))
        return self


# ---------------------------------------------------------------------------------------------------------
# The rules as plain functions: the models above call them, and the normaliser calls them directly on
# millions of records (same rules, no model construction), getting a reason code per broken rule.

_URL_RE = re.compile(r"^[a-z][a-z0-9+.-]*://")
_DRIVE_RE = re.compile(r"^[A-Za-z]:")
_SEP_RE = re.compile(r"[/\\]")
_REPEAT_RE = re.compile(r"#([2-9]|[1-9][0-9]+)")


def image_path_problem(image: str | None) -> str | None:
    """Why an image path is unsafe or malformed (None when fine)."""
    if image is None:
        return None
    if not image.strip():
        return "image path is empty (use null for a text-only sample)"
    if "\x00" in image:
        return "image path contains NUL"
    if _URL_RE.match(image):
        return None  # URL-only sources (LAION-GPT-V)
    if image.startswith(("/", "\\")) or _DRIVE_RE.match(image):
        return f"image path {image!r} is absolute; it must be relative to the source's image root"
    if ".." in _SEP_RE.split(image):
        return f"image path {image!r} contains '..'"
    return None


def meta_problem(meta: Any, where: str = "meta") -> str | None:
    """Why `meta` is not plain JSON (None when it is): names the first offending key path and value type.

    Example:
        >>> meta_problem({"split": "train", "qid": [1, 2]}) is None
        True
        >>> meta_problem({"x": {"y": float("nan")}})
        "meta['x']['y'] is not JSON-serialisable (float nan)"
    """
    if isinstance(meta, dict):
        for key, value in meta.items():
            if not isinstance(key, str):
                return f"{where} key {key!r} is not a string (JSON object keys are strings)"
            if problem := meta_problem(value, f"{where}[{key!r}]"):
                return problem
        return None
    if isinstance(meta, (list, tuple)):
        return next((p for i, v in enumerate(meta) if (p := meta_problem(v, f"{where}[{i}]"))), None)
    if meta is None or isinstance(meta, (str, bool, int)):
        return None
    if isinstance(meta, float):
        return None if math.isfinite(meta) else f"{where} is not JSON-serialisable (float {meta})"
    return f"{where} is not JSON-serialisable ({type(meta).__name__} {meta!r:.60})"


def _json_meta(meta: dict[str, Any]) -> dict[str, Any]:
    if problem := meta_problem(meta):
        raise ValueError(problem)
    return meta


def conversation_problems(
    sample_id: str, source: str, source_id: str, image: str | None, turns: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """Every broken docs/design.md §3 rule as (reason code, message); empty when the sample is valid."""
    problems: list[tuple[str, str]] = []
    base = f"{source}/{source_id}"
    if sample_id != base and not (sample_id.startswith(base) and _REPEAT_RE.fullmatch(sample_id[len(base):])):
        problems.append(("bad_id", f"id {sample_id!r} must be {base!r} or {base + '#N'!r} with N >= 2"))
    tokens_first, tokens_later = 0, 0
    bad_role = None
    for i, (role, value) in enumerate(turns):
        if bad_role is None and role != ("human" if i % 2 == 0 else "gpt"):
            bad_role = i
        n = value.count(IMAGE_TOKEN)
        if i == 0:
            tokens_first = n
        else:
            tokens_later += n
    if bad_role is not None:
        role, expected = turns[bad_role][0], "human" if bad_role % 2 == 0 else "gpt"
        problems.append(("bad_roles",
                         f"turn {bad_role} is from {role!r}, expected {expected!r} (roles must alternate)"))
    if len(turns) % 2:
        problems.append(("no_answer", "conversation ends with a human turn (no answer)"))
    if image is None:
        if tokens_first or tokens_later:
            problems.append(("image_token", "text-only sample (image is null) contains an <image> token"))
    elif turns:
        if tokens_first != 1:
            problems.append(("image_token",
                             f"first human turn must hold exactly one <image> token, found {tokens_first}"))
        if tokens_later:
            problems.append(("image_token", "<image> token appears outside the first human turn"))
    return problems


_ROLES = ("human", "gpt")


def candidate_problems(sample_id: str, source: str, source_id: str, image, conversations) -> list[tuple[str, str]]:
    """`conversation_problems` plus the type and field checks pydantic would make, for raw dicts."""
    if not isinstance(source_id, str) or not source_id:
        return [("missing_field", "source_id is empty")]
    if image is not None:
        if not isinstance(image, str):
            return [("bad_type", "image must be a string or null")]
        problem = image_path_problem(image)
        if problem:
            return [("bad_image_path", problem)]
    if not isinstance(conversations, list) or len(conversations) < 2:
        return [("too_few_turns", "conversations must hold at least 2 items")]
    turns = []
    for i, t in enumerate(conversations):
        try:
            role, value = t["from"], t["value"]
        except (TypeError, KeyError):
            return [("bad_type", f"turn {i} must be {{'from': 'human'|'gpt', 'value': str}}")]
        if len(t) != 2 or role not in _ROLES or not isinstance(value, str):
            return [("bad_type", f"turn {i} must be {{'from': 'human'|'gpt', 'value': str}}")]
        if not value or value.isspace():
            return [("empty_value", f"turn {i}: turn value is empty")]
        turns.append((role, value))
    return conversation_problems(sample_id, source, source_id, image, turns)


class Reject(BaseModel):
    """A record that did not make it into a mix, and why. Reasons are short codes, counted in stats."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(description="The recipe's source name.")
    source_id: str = Field(description="Native id (or '@<file>:<n>' when the record had none).")
    stage: Stage = Field(description="The pipeline stage that rejected it.")
    reason: Annotated[str, Field(pattern=REASON_RE)] = Field(
        description="Short snake_case code, optionally ':qualifier' (e.g. 'contaminated:textvqa')."
    )
    detail: str = Field(default="", description="Human-readable explanation naming file and record.")


# Reasons for a record that could not be read or converted at all (issue 16: one bad record is one reject,
# never the build). The caps are the recipe's `limits`.
UNREADABLE_REASONS: dict[str, str] = {
    "record_too_large": "the record's JSON is larger than limits.max_record_bytes (skipped, not decoded)",
    "record_too_deep": "the record nests containers deeper than limits.max_json_depth",
    "bad_unicode": "the record's text holds a lone surrogate (a \\ud800-\\udfff escape outside a pair), which "
                   "no UTF-8 writer accepts",
    "bad_number": "an integer too long to convert (more digits than Python's int limit)",
    "non_finite_number": "NaN or Infinity in the record's extra fields (meta): not valid JSON",
    "corrupt_row": "a parquet data page covering the row cannot be read (corrupt or truncated)",
    "bad_record": "the record trips the batch conversion in a way no rule names (the detail says how)",
}


class DropRecord(BaseModel):
    """A record removed on purpose by a named recipe rule (not an error): TextCaps, take-N, dedup."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    source: str
    rule: str = Field(pattern=REASON_RE, description="The rule that dropped it, e.g. 'textcaps', 'take'.")
    kept_id: str | None = Field(default=None, description="For dedup: the sample kept instead.")
    distance: int | None = Field(default=None, description="For dedup/decontamination: Hamming distance.")
    detail: str = ""


class ShardImage(BaseModel):
    """The image info carried in a shard's KEY.json (lineage + geometry of the rendering)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: ImagePath = Field(description="The image path as the source record gave it.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the source image bytes.")
    phash: str = Field(pattern=r"^[0-9a-f]{16}$", description="64-bit perceptual hash (imagehash.phash).")
    orig_width: int = Field(ge=1)
    orig_height: int = Field(ge=1)
    width: int = Field(ge=1, description="Rendered width (= resolution).")
    height: int = Field(ge=1, description="Rendered height (= resolution).")
    mode: Literal["pad", "squash", "expand2square"]
    fill: tuple[int, int, int]
    resolution: int = Field(ge=1)
    resampler: Literal["torch", "pillow"] = Field(default="torch", description="The resize kernel (recipe render).")
    exif_transpose: bool = Field(default=False, description="Whether the EXIF orientation was applied (recipe "
                                 "render); off, the pixels are the stored frame.")


# KEY.json carries meta as JSON text, not an object (shards/assemble.py `sample_json` says why): parsed and
# checked as a Meta on validation; JSON Schema declares a string whose content is a Meta.
MetaText = Annotated[Json[Meta], WithJsonSchema({
    "type": "string", "contentMediaType": "application/json", "contentSchema": TypeAdapter(Meta).json_schema(),
    "description": "The sample's meta as JSON text: an object of source extras."})]


class ShardRecord(BaseModel):
    """A shard member `KEY.json`: the sample plus its key, mix and lineage (docs/design.md §4)."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_conversation_rules(
        {"type": "object"}, id={"minLength": 3}, source={"pattern": SOURCE_NAME_RE}, source_id={"minLength": 1},
        conversations={"minItems": 2}))  # the Sample that _sample_rules builds checks these

    key: str = Field(pattern=r"^[0-9]{9}$", description="Zero-padded position of the sample in the mix.")
    id: str
    source: str
    source_id: str
    conversations: list[Turn]
    meta: MetaText = Field(default_factory=dict)
    mix: str = Field(description="The mix this shard belongs to.")
    location: str = Field(description="The source's location (with revision) in the recipe: lineage.")
    image: ShardImage | None

    @model_validator(mode="after")
    def _sample_rules(self) -> ShardRecord:
        Sample(id=self.id, source=self.source, source_id=self.source_id,
               image=self.image.path if self.image else None, conversations=self.conversations, meta=self.meta)
        return self


def sample_text(sample: dict | Sample) -> str:
    """All turn text of a sample, joined by newlines (for length statistics)."""
    turns = sample.conversations if isinstance(sample, Sample) else sample["conversations"]
    return "\n".join(t.value if isinstance(t, Turn) else t["value"] for t in turns)


def sample_to_dict(sample: Sample) -> dict[str, Any]:
    """JSON-ready dict with the `from` key spelled as published."""
    return sample.model_dump(by_alias=True)


SCHEMA_MODELS: dict[str, type[BaseModel]] = {
    "sample": Sample, "turn": Turn, "reject": Reject, "drop": DropRecord, "shard_record": ShardRecord,
}
