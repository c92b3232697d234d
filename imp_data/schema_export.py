"""Generate `schemas/*.schema.json` from the pydantic models (the models are the source of truth).

A test regenerates them in memory and fails when the committed files differ, so a schema change
without its JSON Schema (which users' CI validates against) cannot land.
"""

from __future__ import annotations

import json
from pathlib import Path

from imp_data.core.io import write_text_atomic
from imp_data.core.recipe import Recipe
from imp_data.core.schema import SCHEMA_MODELS

MODELS = {**SCHEMA_MODELS, "recipe": Recipe}


def schema_texts() -> dict[str, str]:
    """File name -> JSON text for every exported model."""
    out = {}
    for name, model in MODELS.items():
        schema = model.model_json_schema(by_alias=True)
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://imp-data.dev/schemas/{name}.schema.json"
        out[f"{name}.schema.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out


def write_schemas(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    return [write_text_atomic(out_dir / name, text) for name, text in schema_texts().items()]


def stale_schemas(out_dir: Path) -> list[str]:
    """Names of schema files that are missing or differ from the models."""
    return [name for name, text in schema_texts().items()
            if not (out_dir / name).is_file() or (out_dir / name).read_text() != text]
