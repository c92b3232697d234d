"""LAION-GPT-V (`data/train-*.parquet`, HF laion/gpt4v-dataset), SOURCES §10.

Columns `link, caption, message_id, timestamp, image` (image is null: URLs only). There is no
instruction text, so the human turn is a caption request drawn from a fixed pool by a keyed hash of the
message id — deterministic, independent of row order. Images are fetched by the URL downloader; rows
whose download failed are rejected at render (`image_missing`), never kept without pixels.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from imp_data.sources.base import Adapter, Candidate, Problem, Record, resolve_files
from imp_data.schema import IMAGE_TOKEN

# ALLaVA's caption-instruction pool style (FreedomIntelligence/ALLaVA prompts/instructions_for_captions.txt).
CAPTION_PROMPTS = [
    "Please depict the image in words.",
    "What do you see in this image?",
    "Describe the image in detail.",
    "Could you describe the contents of this image for me?",
    "Provide a detailed description of the image.",
    "How would you describe the image to someone who cannot see it?",
    "Write a detailed caption for this image.",
    "Explain what is shown in the picture.",
    "Give an elaborate explanation of the image you see.",
    "What is happening in this image? Describe it thoroughly.",
]


class LaionOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompts: list[str] = Field(default=CAPTION_PROMPTS, min_length=1,
                               description="Caption requests; one is picked per row by a keyed hash of message_id.")


def pick_prompt(message_id: str, prompts: list[str]) -> str:
    digest = hashlib.blake2b(message_id.encode(), digest_size=8, person=b"imp-laion").digest()
    return prompts[int.from_bytes(digest, "big") % len(prompts)]


class LaionGPT4VAdapter(Adapter):
    name = "laion_gpt4v"
    description = "LAION-GPT-V GPT-4V captions of web images (URLs)"
    default_files = ["data/train-*.parquet"]
    Options = LaionOptions

    def read(self, root: Path, files: list[str], options: LaionOptions) -> Iterator[Record]:
        for path in resolve_files(root, files):
            name = str(path.relative_to(root))
            n = 0
            for batch in pq.ParquetFile(path).iter_batches(batch_size=4096, columns=["link", "caption", "message_id", "timestamp"]):
                for row in batch.to_pylist():
                    where = f"{name} row {n}"
                    sid = row.get("message_id") or f"@{name}:{n}"
                    n += 1
                    link, caption = row.get("link"), row.get("caption")
                    if not link or not isinstance(link, str):
                        yield Problem(sid, "missing_field", f"{where}: no link")
                        continue
                    if not caption or not caption.strip():
                        yield Problem(sid, "empty_answer", f"{where}: empty caption")
                        continue
                    conv = [{"from": "human", "value": f"{IMAGE_TOKEN}\n{pick_prompt(sid, options.prompts)}"},
                            {"from": "gpt", "value": caption}]
                    yield Candidate(sid, link, conv, {"timestamp": row.get("timestamp")}, where)
