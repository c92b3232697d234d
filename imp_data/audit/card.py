"""The dataset card: `README.md` in the mix folder, made only from `stats.json` (as report.md is).

The Hugging Face Hub reads a dataset repo's README.md: its YAML front matter gives the licences, the
`configs` (which files are the data: the shard pattern), the `features` (so `datasets` reads every field
with the writer's types instead of guessing them from the first five samples) and the size and task
categories; the body is what a person reads before training on the mix. Written by the report stage, so
a built mix carries its card and `imp-data publish` uploads it with the shards.

What each source *is* (licence, task, paper) is not in stats.json: it is known per adapter (below). A
`license` that stats.json records for a source (the recipe's own note) is shown in its place.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from imp_data.core.citations import CITATIONS, IMP_CITATION
from imp_data.core.fingerprint import digest
from imp_data.core.io import write_text_atomic
from imp_data.core.layout import MixDir

VQA, CAPTIONS, CHAT = "visual-question-answering", "image-to-text", "image-text-to-text"

# adapter -> (dataset, Hub licence id, licence in words, Hub task categories, citation key)
SOURCES = {
    "llava_665k": ("LLaVA-1.5 mix665k", "cc-by-4.0", ("CC BY 4.0 (abide by OpenAI's terms); images keep their own "
                   "licences (COCO, GQA, OCR-VQA, TextVQA, Visual Genome)"), (VQA, CHAT), "liu2024improved"),
    "llava_pretrain": ("LLaVA LCS-558K", "other", "LAION/CC/SBU image terms; BLIP captions", (CAPTIONS,),
                       "liu2023visual"),
    "dvqa": ("DVQA", "cc-by-nc-4.0", "CC BY-NC 4.0", (VQA,), "kafle2018dvqa"),
    "chartqa": ("ChartQA", "gpl-3.0", "GPL-3.0", (VQA,), "masry2022chartqa"),
    "docvqa": ("DocVQA", "other", ("RRC terms of use (registration); documents from the UCSF Industry Documents "
               "Library"), (VQA, "document-question-answering"), "mathew2021docvqa"),
    "ai2d": ("AI2D", "other", "AI2's terms for AI2 Diagrams (allenai.org/data/diagrams)", (VQA,),
             "kembhavi2016diagram"),
    "infographicvqa": ("InfographicVQA", "other", "RRC terms of use (registration)", (VQA,),
                       "mathew2022infographicvqa"),
    "sharegpt4v": ("ShareGPT4V", "cc-by-nc-4.0", ("CC BY-NC 4.0 (abide by OpenAI's terms); images keep their own "
                   "licences"), (CAPTIONS,), "chen2023sharegpt4v"),
    "laion_gpt4v": ("LAION GPT-4V", "cc0-1.0", "CC0 1.0 (text); the images are web URLs under their owners' terms",
                    (CAPTIONS,), "laion2023gpt4v"),
    "allava": ("ALLaVA-4V", "apache-2.0", "Apache-2.0 (text); LAION and Vision-Flan images keep their own terms",
               (CAPTIONS, VQA), "chen2024allava"),
}
UNKNOWN = ("(unknown adapter)", "unknown", "unknown: check the source's own terms", (), None)

_S, _I = {"dtype": "string"}, {"dtype": "int64"}
# The writer's record (shards/assemble.py `sample_json`) as `datasets` features; tests hold it equal to what
# `datasets` infers from a built mix. `meta` is JSON text: its keys differ per source.
FEATURES = [
    {"name": "json", "struct": [
        {"name": "conversations", "list": [{"name": "from", **_S}, {"name": "value", **_S}]},
        {"name": "id", **_S},
        {"name": "image", "struct": [
            {"name": "exif_transpose", "dtype": "bool"}, {"name": "fill", "list": "int64"},
            {"name": "height", **_I}, {"name": "mode", **_S}, {"name": "orig_height", **_I},
            {"name": "orig_width", **_I}, {"name": "path", **_S}, {"name": "phash", **_S},
            {"name": "resampler", **_S}, {"name": "resolution", **_I}, {"name": "sha256", **_S},
            {"name": "width", **_I}]},
        {"name": "key", **_S}, {"name": "location", **_S}, {"name": "meta", **_S}, {"name": "mix", **_S},
        {"name": "source", **_S}, {"name": "source_id", **_S}]},
    {"name": "jpg", "dtype": "image"},
    {"name": "__key__", **_S},
    {"name": "__url__", **_S},
]
SIZE_CATEGORIES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                   (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")]


def _fmt(n) -> str:
    return f"{n:,}" if isinstance(n, int) else str(n)


def source_facts(entry: dict) -> tuple:
    facts = SOURCES.get(entry.get("adapter"), UNKNOWN)
    return facts if not entry.get("license") else (*facts[:2], entry["license"], *facts[3:])


def size_category(n: int) -> str:
    return next((label for top, label in SIZE_CATEGORIES if n < top), "n>1B")


def recipe_digest(stats: dict) -> str:
    """One digest of every recipe field this mix was built from: the recipe halves of `built_by` (each stage's
    `CODE-RECIPEDIGEST`). Equal digests mean the recipe asked for the same mix, whatever else it declares."""
    halves = {stage: str(v).partition("-")[2] for stage, v in (stats.get("built_by") or {}).items()}
    return digest(halves)[:16]


def shard_pattern(stats: dict) -> str:
    return f"shards/{stats['mix']}-*.tar"


def front_matter(stats: dict) -> dict:
    """The Hub's YAML metadata for the mix."""
    facts = [source_facts(e) for e in stats["sources"].values()]
    licenses = sorted({f[1] for f in facts})
    tasks = sorted({t for f in facts for t in f[3]} | {CHAT})
    taken = stats["totals"]["taken"]
    meta = {"pretty_name": f"Imp {stats['mix']} (stage {stats['stage']})", "license": licenses}
    if "other" in licenses:
        meta.update(license_name="per-source-terms", license_link="README.md#sources-and-licences")
    meta.update({
        "language": ["en"], "size_categories": [size_category(taken)], "task_categories": tasks,
        "tags": ["webdataset", "multimodal", "instruction-tuning", "imp", "llava"],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": shard_pattern(stats)}]}],
        "dataset_info": {"features": FEATURES, "download_size": stats["totals"]["shard_bytes"]},
    })
    return meta


def _reasons(e: dict) -> str:
    parts = [f"{kind}: " + ", ".join(f"`{r}` {_fmt(n)}" for r, n in e[kind].items())
             for kind in ("rejected", "dropped") if e[kind]]
    return "; ".join(parts) or "none"


def sources_table(stats: dict) -> str:
    lines = ["| source | dataset | licence | target | read | rejected | dropped | taken | shortfall | reasons |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for name, e in stats["sources"].items():
        facts = source_facts(e)
        lines.append(f"| {name} | {facts[0]} | {facts[2]} | {_fmt(e['target'])} | {_fmt(e['read'])} | "
                     f"{_fmt(sum(e['rejected'].values()))} | {_fmt(sum(e['dropped'].values()))} | "
                     f"{_fmt(e['taken'])} | {_fmt(e['shortfall'])} | {_reasons(e)} |")
    t = stats["totals"]
    lines.append(f"| **total** | | | | {_fmt(t['read'])} | {_fmt(t['rejected'])} | {_fmt(t['dropped'])} | "
                 f"{_fmt(t['taken'])} | | |")
    return "\n".join(lines)


def _geometry(stats: dict) -> list[str]:
    r, d = stats["render"], stats["distributions"]
    lines = [(f"Every image is rendered to {r['resolution']}×{r['resolution']} px by `{r['mode']}` (fill "
              f"{tuple(r['fill'])}, {r.get('resampler', 'torch')} resampling, EXIF orientation "
              f"{'applied' if r.get('exif_transpose') else 'not applied'}) and stored as JPEG quality {r['quality']}. "
              f"{_fmt(d['with_image'])} samples have an image, {_fmt(d['text_only'])} are text-only (no `.jpg`)."),
             "",
             "| original image | p5 | p50 | p95 | max |", "|---|---:|---:|---:|---:|"]
    for label, q in (("width (px)", d["orig_width"]), ("height (px)", d["orig_height"]),
                     ("aspect (w/h)", d["aspect"]["quantiles"])):
        if q:
            lines.append(f"| {label} | {q['p5']:g} | {q['p50']:g} | {q['p95']:g} | {q['p100']:g} |")
    return lines


def _loading(stats: dict, repo_id: str | None, revision: str | None) -> list[str]:
    repo = repo_id or "ORG/NAME"
    rev = f', revision="{revision}"' if revision else ""
    branch = revision or "main"
    n = stats["totals"]["shards"]
    urls = f"https://huggingface.co/datasets/{repo}/resolve/{branch}/shards/{stats['mix']}-{{000000..{n - 1:06d}}}.tar"
    return [
        ("Each sample is `KEY.json` (the record) plus `KEY.jpg` when it has an image. `json.meta` is JSON *text* "
         "(its keys differ per source): `json.loads(row['json']['meta'])`."), "",
        "```python", "import json", "from datasets import load_dataset", "",
        f'ds = load_dataset("{repo}", split="train"{rev})  # features from this card; add streaming=True to stream',
        "row = ds[0]", 'meta = json.loads(row["json"]["meta"])', "```", "",
        "With `webdataset` (text-only samples have no `jpg`: ask for it with `missing_is_error=False`):", "",
        "```python", "import webdataset as wds", "",
        f'ds = wds.WebDataset("{urls}", shardshuffle=False)',
        'ds = ds.decode("pil").to_tuple("jpg", "json", missing_is_error=False)  # jpg is None when text-only',
        "```", "",
        ("`shards/index.wids.json` lists the shards with their sample counts for `wids` "
         "(`wids.ShardListDataset`); `index.parquet` has one row per sample with member offsets and hashes."),
    ]


def render_card(stats: dict, *, repo_id: str | None = None, revision: str | None = None) -> str:
    """The card's text; `repo_id`/`revision` fill in the loading examples when publishing to the Hub."""
    t = stats["totals"]
    keys = sorted({f[4] for f in (source_facts(e) for e in stats["sources"].values()) if f[4]})
    body = [
        f"# Imp mix `{stats['mix']}`", "",
        (f"A stage-{stats['stage']} training mix for Imp-style multimodal models, built by imp-data from "
         f"recipe `{stats['recipe']}`: **{_fmt(t['taken'])} samples** "
         f"in {_fmt(t['shards'])} WebDataset shards ({t['shard_bytes'] / 1e6:.1f} MB). Every record read is "
         f"accounted for: read {_fmt(t['read'])} = rejected {_fmt(t['rejected'])} + dropped {_fmt(t['dropped'])} "
         f"+ taken {_fmt(t['taken'])}."), "",
        f"- seed: `{stats['seed']}`",
        f"- recipe digest: `{recipe_digest(stats)}` (the recipe fields each stage read; per stage below)",
        f"- shards: `{shard_pattern(stats)}`, {stats.get('shard_size', '?')} samples each", "",
        "## Sources and licences", "",
        ("Each sample keeps its source's licence; the mix is usable only as its most restrictive source "
         "allows. Counts are from `stats.json`."), "",
        sources_table(stats), "",
        "## Image geometry", "", *_geometry(stats), "",
        "## How to load", "", *_loading(stats, repo_id, revision), "",
        "## Build", "", "| stage | code version-recipe digest |", "|---|---|",
        *[f"| {stage} | `{v}` |" for stage, v in (stats.get("built_by") or {}).items()], "",
        "## Citations", "", "Cite Imp and every source the mix draws on:", "",
        "```bibtex", IMP_CITATION, *[CITATIONS[k] for k in keys], "```", "",
    ]
    head = yaml.safe_dump(front_matter(stats), sort_keys=False, allow_unicode=True, width=1000)
    return f"---\n{head}---\n\n" + "\n".join(body)


def split_card(text: str) -> tuple[dict, str]:
    """(front matter, body) of a card: how the Hub reads it."""
    if not text.startswith("---\n"):
        raise ValueError("a dataset card starts with '---' and its YAML front matter")
    head, _, body = text[4:].partition("\n---\n")
    return yaml.safe_load(head), body


def write_card(stats: dict, mix_dir: Path) -> Path:
    return write_text_atomic(MixDir(Path(mix_dir)).card, render_card(stats))
