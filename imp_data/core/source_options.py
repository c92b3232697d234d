"""Each source adapter's recipe options: part of the recipe contract, so they sit on the floor.

A recipe names an adapter and passes it options; `imp_data.core.recipe` validates them (and writes them into
the recipe's JSON Schema) from `ADAPTER_OPTIONS` without importing the adapters, which sit above the floor.
Each adapter in `imp_data.sources` declares the same model as its `Options` (tests/test_architecture.py
checks the two agree). Defaults follow LLaVA-1.5 and the paper; docs/sources.md says why for each source.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SHORT_ANSWER_PROMPT = "Answer the question using a single word or phrase."
MULTIPLE_CHOICE_PROMPT = "Answer with the option's letter from the given choices directly."


class NoOptions(BaseModel):
    """Adapters without options still validate that none are given."""

    model_config = ConfigDict(extra="forbid")


class VQAOptions(BaseModel):
    """Conversion choices the paper leaves open, with the defaults LLaVA-1.5 uses for VQA data."""

    model_config = ConfigDict(extra="forbid")

    group_by_image: bool = Field(
        default=True,
        description="Default true: all questions about one image become one multi-turn record (id = image "
        "path), as LLaVA-1.5 merges VQA data and because the paper's counts are per image (docs/sources.md §13.2). "
        "False: one single-turn record per question (id = question id).")
    prompt: str | None = Field(
        default=SHORT_ANSWER_PROMPT,
        description="Response-format suffix after the first question of a record. Default: LLaVA-1.5's "
        "short-answer prompt, which lmms-eval also uses to evaluate these benchmarks; null for none "
        "(LLaVA-UHD v2 used none for DVQA).")
    answer_choice: Literal["first", "most_common"] = Field(
        default="first",
        description="Rule for multi-answer fields (DocVQA/InfoVQA `answers`): default 'first', the first "
        "non-blank listed answer (annotator order, deterministic, what most converters take); "
        "'most_common': the most frequent non-blank answer, ties going to the earliest listed.")


class AI2DOptions(VQAOptions):
    """VQA options with the multiple-choice suffix as default, plus the test-question exclusion list."""

    prompt: str | None = Field(
        default=MULTIPLE_CHOICE_PROMPT,
        description="Suffix after the lettered options of the first question. Default: LLaVA-1.5's A-OKVQA "
        "prompt, also lmms-eval's AI2D prompt; null for none (LLaVA-UHD v2 used none).")
    exclude_file: str | None = Field(
        default=None,
        description="Text file (relative to the source location) of question ids (`0.png-0`) or image names "
        "(`0.png`) to exclude, one per line, `#` comments allowed — e.g. the test ids of Qwen-VL's "
        "ai2diagram/test.jsonl. Default none: AI2D's files hold train and test questions alike, so "
        "exclude the test ids when the mix is evaluated on AI2D.")


CAPTION_PROMPTS = [
    "Write a comprehensive caption for the image provided.",
    "Can you help me understand the image by providing a detailed caption?",
    "Please provide a vivid description of the image.",
    "Elaborate on the details of the image provided.",
    "Could you please interpret the image and write a detailed caption?",
    "Please depict the image in words.",
    "How would you describe the image to someone who cannot see it?",
    "Please enlighten me with a detailed description of the image.",
    "Can you transform the visual elements of the image into words?",
    "Please provide a detailed written representation of the image.",
    "Could you please transcribe the image into a descriptive paragraph?",
    "Please illustrate the image through your words.",
    "Please provide a detailed narrative of the image.",
    "Could you please express the image in a descriptive format?",
    "Please convert the visual information in the image into a detailed written explanation.",
]


class LaionOptions(BaseModel):
    """The caption-request pool and its hash key."""

    model_config = ConfigDict(extra="forbid")

    prompts: list[str] = Field(
        default=CAPTION_PROMPTS, min_length=1,
        description="Caption requests; one is picked per row by a keyed hash of message_id. Default: ALLaVA's "
        "15 caption instructions (the dataset has no instruction text; docs/sources.md §10).")
    prompt_key: str = Field(
        default="imp-laion", max_length=16,
        description="Key of the hash that picks a row's prompt (blake2b person). Default 'imp-laion'; change it "
        "to draw a different but still deterministic assignment.")


class LLaVA665KOptions(BaseModel):
    """How faithfully to keep the published conversations."""

    model_config = ConfigDict(extra="forbid")

    move_image_token_first: bool = Field(
        default=False,
        description="Rewrite a first turn holding one `<image>` as '<image>\\n' + the rest of its text. Default "
        "false: records stay as published (some end with '\\n<image>'); the trainer moves the token itself, "
        "as LLaVA's preprocess_multimodal does (docs/training.md §3.1), so the data need not.",
    )


ADAPTER_OPTIONS: dict[str, type[BaseModel]] = {
    "llava_665k": LLaVA665KOptions,
    "llava_pretrain": NoOptions,
    "dvqa": VQAOptions,
    "chartqa": VQAOptions,
    "docvqa": VQAOptions,
    "ai2d": AI2DOptions,
    "infographicvqa": VQAOptions,
    "sharegpt4v": NoOptions,
    "laion_gpt4v": LaionOptions,
    "allava": NoOptions,
}
"""Adapter name -> its options model: the adapter names a recipe may use."""

FILE_INDEX_ADAPTERS = frozenset({"llava_665k"})
"""Adapters that keep each record's 0-based position in its file as `meta.file_index`, so a mix may drop
records by position (`file_positions` rules): Imp's train.py deletes two records of the 665K file by index."""
