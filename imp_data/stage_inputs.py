"""What each build stage reads from the recipe: the recipe half of every unit's fingerprint.

One function, used twice: the build fingerprints each unit with it (so editing a field redoes exactly the
stages that read it), and the Dagster assets put its digest into their `code_version` (so the UI marks
exactly those assets stale after a recipe edit). A field missing here would be a stale-output bug: the
stage reading it must list it.
"""

from __future__ import annotations

from imp_data.core.fingerprint import CODE_VERSIONS, digest
from imp_data.core.recipe import Recipe
from imp_data.core.stages import MIX_STAGES, SOURCE_STAGES, STAGE_NAMES


def recipe_inputs(recipe: Recipe, stage: str, subject: str) -> dict:
    """The recipe fields `stage` reads for `subject` (a source for normalize, a mix for the rest)."""
    if stage == "fetch":
        spec = recipe.sources[subject]
        return {"location": spec.location, "files": spec.files,
                "images": [r.model_dump(mode="json") for r in spec.images], "download_images": spec.download_images}
    if stage == "normalize":
        from imp_data.sources.registry import get_adapter

        spec = recipe.sources[subject]
        return {"source": subject, "adapter": spec.adapter, "adapter_version": get_adapter(spec.adapter).version,
                "files": spec.files, "options": spec.options,
                "limits": recipe.limits.model_dump(include={"max_record_bytes", "max_json_depth"})}
    if stage == "download":
        return {"download_images": recipe.sources[subject].download_images}
    mix = recipe.mixes[subject]
    render = recipe.mix_render(subject).model_dump(mode="json")
    # lists, not mappings: canonical JSON sorts keys, and the order of a mix's sources orders its tables
    if stage == "select":
        return {"mix": subject, "seed": recipe.seed,
                "sources": [[s, share.model_dump(mode="json")] for s, share in mix.sources.items()]}
    if stage == "render":
        return {"render": render, "limits": recipe.limits.model_dump(
                    include={"max_image_pixels", "max_member_bytes", "max_compression_ratio"}),
                "images": [[s, [r.model_dump(mode="json") for r in recipe.sources[s].images]] for s in mix.sources]}
    if stage == "dedup":
        return {"dedup": mix.dedup.model_dump(mode="json"), "decontaminate": mix.decontaminate.model_dump(mode="json")}
    if stage == "plan":
        return {"mix": subject, "seed": recipe.seed, "shard_size": recipe.mix_shard_size(subject)}
    if stage == "shards":
        return {"mix": subject, "render": render,
                "locations": {s: recipe.sources[s].location for s in mix.sources}}
    if stage == "finalize":
        return {"recipe": recipe.name, "mix": subject, "spec": mix.model_dump(mode="json"),
                "source_order": list(mix.sources), "render": render,
                "seed": recipe.seed, "shard_size": recipe.mix_shard_size(subject),
                "max_reject_rate": recipe.mix_max_reject_rate(subject),
                "sources": {s: recipe.sources[s].model_dump(mode="json") for s in mix.sources}}
    if stage == "report":
        return {}
    raise KeyError(f"unknown stage {stage!r}; stages: {', '.join(STAGE_NAMES)}")


def code_version(recipe: Recipe, stage: str, subject: str) -> str:
    """The stage's code version plus the digest of the recipe fields it reads (Dagster's code_version)."""
    return f"{CODE_VERSIONS[stage]}-{digest(recipe_inputs(recipe, stage, subject))[:16]}"


def asset_code_version(recipe: Recipe, stage: str, subject: str) -> str:
    """Dagster's code_version of the asset running `stage`: its own and every upstream stage's code version
    and recipe fields, so a recipe edit marks at once the asset that reads the field and every asset made
    from it (a stale `renders` with a fresh `plan` would let a run write shards from a stale plan)."""
    if stage in SOURCE_STAGES:
        parts = [code_version(recipe, s, subject) for s in SOURCE_STAGES[: SOURCE_STAGES.index(stage) + 1]]
    else:
        parts = [code_version(recipe, s, src) for src in recipe.mixes[subject].sources for s in ("fetch", "normalize")]
        parts += [code_version(recipe, s, subject) for s in MIX_STAGES[: MIX_STAGES.index(stage) + 1]]
    return f"{CODE_VERSIONS[stage]}-{digest(parts)[:16]}"
