"""The canonical sample: the one contract every stage reads and writes.

LLaVA's conversation format (so any LLaVA-family trainer can read our output), made strict: the models
reject what DESIGN §3 forbids instead of repairing it, so an adapter must either apply a documented repair
or emit a `Reject`. `schemas/*.schema.json` are generated from these models (`imp-data schemas`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

IMAGE_TOKEN = "<image>"
SOURCE_NAME_RE = r"^[a-z][a-z0-9_]*$"
REASON_RE = r"^[a-z][a-z0-9_]*(:[A-Za-z0-9_.\-]+)?$"

Role = Literal["human", "gpt"]
Stage = Literal["fetch", "normalize", "select", "dedup", "decontaminate", "render", "write"]


class Turn(BaseModel):
    """One message. `from` is a Python keyword, hence the alias."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    from_: Role = Field(alias="from", description="Who speaks: 'human' (the user) or 'gpt' (the assistant).")
    value: str = Field(description="The message text; never empty or whitespace-only.")

    @field_validator("value")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("turn value is empty")
        return value


class Sample(BaseModel):
    """A training record in canonical form (DESIGN §3)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(
        description="'<source>/<source_id>', plus '#N' for the N-th repeat of a native id (file order).",
        min_length=3,
    )
    source: str = Field(pattern=SOURCE_NAME_RE, description="The recipe's source name.")
    source_id: str = Field(min_length=1, description="The native id exactly as published, as a string.")
    image: str | None = Field(
        default=None,
        description="Image path relative to the source's raw root, archive member, or URL; null = text-only.",
    )
    conversations: list[Turn] = Field(min_length=2, description="Alternating human/gpt turns, human first.")
    meta: dict[str, Any] = Field(default_factory=dict, description="Small JSON-serialisable source extras.")

    @field_validator("image")
    @classmethod
    def _safe_image_path(cls, image: str | None) -> str | None:
        if image is None:
            return None
        if not image.strip():
            raise ValueError("image path is empty (use null for a text-only sample)")
        if "\x00" in image:
            raise ValueError("image path contains NUL")
        if re.match(r"^[a-z][a-z0-9+.-]*://", image):
            return image  # URL-only sources (LAION-GPT-V)
        if image.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", image):
            raise ValueError(f"image path {image!r} is absolute; it must be relative to the source's image root")
        if ".." in re.split(r"[/\\]", image):
            raise ValueError(f"image path {image!r} contains '..'")
        return image

    @model_validator(mode="after")
    def _check_rules(self) -> Sample:
        problems: list[str] = []
        base = f"{self.source}/{self.source_id}"
        if self.id != base and not re.fullmatch(re.escape(base) + r"#([2-9]|[1-9][0-9]+)", self.id):
            problems.append(f"id {self.id!r} must be {base!r} or {base + '#N'!r} with N >= 2")
        for i, turn in enumerate(self.conversations):
            expected = "human" if i % 2 == 0 else "gpt"
            if turn.from_ != expected:
                problems.append(f"turn {i} is from {turn.from_!r}, expected {expected!r} (roles must alternate)")
                break
        if len(self.conversations) % 2:
            problems.append("conversation ends with a human turn (no answer)")
        counts = [turn.value.count(IMAGE_TOKEN) for turn in self.conversations]
        if self.image is None:
            if any(counts):
                problems.append("text-only sample (image is null) contains an <image> token")
        else:
            if counts[0] != 1:
                problems.append(f"first human turn must hold exactly one <image> token, found {counts[0]}")
            if any(counts[1:]):
                problems.append("<image> token appears outside the first human turn")
        if problems:
            raise ValueError("; ".join(problems))
        return self


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

    path: str = Field(description="The image path as the source record gave it.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the source image bytes.")
    phash: str = Field(pattern=r"^[0-9a-f]{16}$", description="64-bit perceptual hash (imagehash.phash).")
    orig_width: int = Field(ge=1)
    orig_height: int = Field(ge=1)
    width: int = Field(ge=1, description="Rendered width (= resolution).")
    height: int = Field(ge=1, description="Rendered height (= resolution).")
    mode: Literal["pad", "squash", "expand2square"]
    fill: tuple[int, int, int]
    resolution: int = Field(ge=1)


class ShardRecord(BaseModel):
    """A shard member `KEY.json`: the sample plus its key, mix and lineage (DESIGN §4)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(pattern=r"^[0-9]{9}$", description="Zero-padded position of the sample in the mix.")
    id: str
    source: str
    source_id: str
    conversations: list[Turn]
    meta: dict[str, Any] = Field(default_factory=dict)
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
