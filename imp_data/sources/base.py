"""What a source adapter is: native published records in, canonical candidates out.

An adapter only *reads and converts*: it yields a `Candidate` per output record (or a `Problem` for a
native record it cannot convert). Everything common — id disambiguation (`#2`, `#3`), exact-duplicate
detection, schema validation, parquet writing and counting — happens once, in `imp_data.normalize`,
so ten adapters cannot disagree about it. Adapters stream: they must never hold a whole file in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel

from imp_data.core.errors import SourceFormatError
from imp_data.core.schema import IMAGE_TOKEN
from imp_data.core.source_options import NoOptions


@dataclass
class Candidate:
    """A converted record, not yet validated. `where` locates it for error messages ("file.json record 12")."""

    source_id: str
    image: str | None
    conversations: list[dict[str, str]]
    meta: dict[str, Any] = field(default_factory=dict)
    where: str = ""


@dataclass
class Problem:
    """A native record that cannot be converted; becomes a `Reject(stage='normalize')`."""

    source_id: str
    reason: str
    detail: str


Record = Candidate | Problem


class Adapter:
    """Base class: subclasses set the class attributes and implement `read`."""

    name: ClassVar[str]
    description: ClassVar[str]
    default_files: ClassVar[list[str]]
    # Bump when a change in this adapter changes the records it yields: its sources are normalized again
    # (and everything made from them is checked), see imp_data.core.fingerprint.
    version: ClassVar[str] = "1"
    Options: ClassVar[type[BaseModel]] = NoOptions

    def read(self, root: Path, files: list[str], options: BaseModel) -> Iterator[Record]:
        """Yield one `Record` per output record, in file order (order defines `#N` suffixes)."""
        raise NotImplementedError

    def parse_options(self, options: dict[str, Any]) -> BaseModel:
        return self.Options.model_validate(options or {})


def resolve_files(root: Path, files: list[str]) -> list[Path]:
    """Expand globs relative to root, sorted; one error listing every pattern that matched nothing."""
    found: list[Path] = []
    missing: list[str] = []
    for pattern in files:
        matches = sorted(root.glob(pattern)) if any(c in pattern for c in "*?[") else [root / pattern]
        matches = [m for m in matches if m.is_file()]
        if not matches:
            missing.append(pattern)
        found += matches
    if missing:
        raise SourceFormatError(f"{root}: expected file(s) not found: {', '.join(missing)}")
    return found


def native_id(value: Any) -> str | None:
    """The native id as a string exactly as published (ints become decimal strings); None if absent/empty."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value
    return None


def move_image_token_first(text: str) -> str:
    """LLaVA's preprocess_multimodal: remove `<image>` wherever it is, strip, prepend `<image>\\n`.

    Example:
        >>> move_image_token_first("Describe it.\\n<image>")
        '<image>\\nDescribe it.'
    """
    return IMAGE_TOKEN + "\n" + text.replace(IMAGE_TOKEN, "").strip()


def qa_conversation(pairs: list[tuple[str, str]], *, with_image: bool, suffix: str | None) -> list[dict[str, str]]:
    """Questions and answers about one image as a LLaVA multi-turn conversation.

    The format suffix goes on the first question only and `<image>` leads the first turn, as in
    LLaVA-1.5's merged VQA records (docs/sources.md §2, docs/training.md §5.2).

    Example:
        >>> qa_conversation([("Q1?", "a"), ("Q2?", "b")], with_image=True, suffix="Answer briefly.")[0]
        {'from': 'human', 'value': '<image>\\nQ1?\\nAnswer briefly.'}
    """
    turns: list[dict[str, str]] = []
    for i, (question, answer) in enumerate(pairs):
        text = question.strip()
        if i == 0:
            if suffix:
                text = f"{text}\n{suffix}"
            if with_image:
                text = f"{IMAGE_TOKEN}\n{text}"
        turns.append({"from": "human", "value": text})
        turns.append({"from": "gpt", "value": answer})
    return turns


def lettered_options(options: list[str]) -> str:
    """`A. opt\\nB. opt...` as LLaVA/lmms-eval format multiple-choice questions."""
    return "\n".join(f"{chr(ord('A') + i)}. {opt}" for i, opt in enumerate(options))
