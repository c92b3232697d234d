"""The benchmark splits the eval job knows: how each is loaded, decoded, and scored or submitted.

One `Split` per (benchmark, split). A split is found under `ROOT/<benchmark>/` by its LLaVA question file
(`imp_data.eval.benchmarks`) or, for the splits lmms-lab publishes on the Hugging Face Hub, by that repo's
parquet files as `huggingface_hub.snapshot_download` writes them (`imp_data.eval.lmms.LAYOUTS`), so the job
runs whatever is laid out. When a folder holds both layouts of a split, the LLaVA one is read: it is the
reference the numbers are defined on (docs/eval.md §2.1). Server-scored splits (VQAv2 test-dev, VizWiz test, MMBench
test) produce the upload file instead of a number; MMBench dev is scored here and converted for the server as
well, since the paper's MMB number is the server's (docs/eval.md §11, §14); from an lmms-lab copy, which has no TSV to
copy the upload's columns from, it is only scored.

Decoding follows LLaVA (docs/eval.md §2.3): greedy, `max_new_tokens` 128 for the `model_vqa_loader` benchmarks and
1024 for ScienceQA (`model_vqa_science`) and MMBench (`model_vqa_mmbench`); the answer ends at the
template's stop string. The job caps the defaults at the run's `model_max_length` (a model trained on
shorter sequences has nothing sensible to add past them); explicit overrides are taken as given.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from imp_data.core.errors import ImpDataError
from imp_data.eval import benchmarks as b
from imp_data.eval import lmms
from imp_data.eval import submission as s

# conv.sep2 for phi2/vicuna_v1, conv.sep for plain (docs/training.md §3.1)
STOP_STRINGS = {"phi2": "</s>", "plain": "\n"}
LOADER_TOKENS, LONG_TOKENS = 128, 1024


@dataclass(frozen=True)
class Split:
    """One benchmark split. `submit(answers_jsonl, root, dst_dir) -> stats` writes its server upload (None
    when its layout has nothing to build one from)."""

    key: str  # metrics.json key and answer-file name
    benchmark: str  # the Table 3 column
    split: str
    question_file: str  # its presence under ROOT/<benchmark>/ selects the split (or lmms.LAYOUTS[key]'s files)
    max_new_tokens: int
    server: str | None = None  # who scores it, when not scored here
    submit: Callable[[Path, Path, Path], dict | None] | None = None

    def layout(self, folder: Path) -> str | None:
        """"llava" when the question file is in `folder`, else "lmms-lab" when lmms-lab's files are, else None."""
        if (Path(folder) / self.question_file).is_file():
            return "llava"
        return "lmms-lab" if lmms.has_layout(self.key, folder) else None

    def load(self, root: Path) -> list[b.EvalItem]:
        """The items, from the layout `layout` picks (LLaVA's when neither is there: its error names the file)."""
        if self.layout(root) == "lmms-lab":
            return lmms.load_lmms(self.key, root)
        return b.load_benchmark(self.key, root)


def _vqav2(answers: Path, root: Path, out: Path) -> dict:
    test2015 = root / "llava_vqav2_mscoco_test2015.jsonl"
    if not test2015.is_file():
        raise ImpDataError(f"{test2015}: missing — the VQAv2 upload covers the full test2015 question list "
                           "(docs/eval.md §3.1)")
    return s.write_vqav2_upload(answers, test2015, out / "vqav2_testdev.json")


def _mmbench_dev(answers: Path, root: Path, out: Path) -> dict | None:
    """The dev upload copies the TSV's columns; from an lmms-lab copy (no TSV) there is none: dev is scored here."""
    tsv = root / "mmbench_dev_20230712.tsv"
    return s.write_mmbench_upload(answers, tsv, out / "mmbench_dev.xlsx") if tsv.is_file() else None


SPLITS: dict[str, Split] = {sp.key: sp for sp in (
    Split("vqav2", "vqav2", "val", "llava_vqav2_mscoco_val.jsonl", LOADER_TOKENS),
    Split("vqav2_testdev", "vqav2", "test-dev", "llava_vqav2_mscoco_test-dev2015.jsonl", LOADER_TOKENS,
          "EvalAI challenge 830", _vqav2),
    Split("gqa", "gqa", "testdev_balanced", "llava_gqa_testdev_balanced.jsonl", LOADER_TOKENS),
    Split("vizwiz", "vizwiz", "val", "val.json", LOADER_TOKENS),
    Split("vizwiz_test", "vizwiz", "test", "llava_test.jsonl", LOADER_TOKENS, "EvalAI challenge 2185",
          lambda a, root, out: s.write_vizwiz_upload(a, root / "llava_test.jsonl", out / "vizwiz_test.json")),
    Split("scienceqa", "scienceqa", "test IMG", "llava_test_CQM-A.json", LONG_TOKENS),
    Split("textvqa", "textvqa", "val", "llava_textvqa_val_v051_ocr.jsonl", LOADER_TOKENS),
    Split("pope", "pope", "test", "llava_pope_test.jsonl", LOADER_TOKENS),
    Split("mme", "mme", "perception", "llava_mme.jsonl", LOADER_TOKENS),
    Split("mmbench", "mmbench", "dev", "mmbench_dev_20230712.tsv", LONG_TOKENS, None, _mmbench_dev),
    Split("mmbench_test", "mmbench", "test", "mmbench_test_20230712.tsv", LONG_TOKENS, "OpenCompass MMBench server",
          lambda a, root, out: s.write_mmbench_upload(a, root / "mmbench_test_20230712.tsv",
                                                      out / "mmbench_test.xlsx")),
)}
BENCHMARKS = tuple(dict.fromkeys(sp.benchmark for sp in SPLITS.values()))


def get_split(key: str) -> Split:
    if key not in SPLITS:
        raise ValueError(f"unknown benchmark split {key!r}; valid: {', '.join(SPLITS)}")
    return SPLITS[key]


def find_splits(bench_root: Path, only: list[str] | None = None) -> dict[str, Path]:
    """{split key: benchmark folder} for every split laid out under `bench_root/<benchmark>/` (`Split.layout`).

    Args:
        only: split keys or benchmark names to keep (default all).

    Raises:
        ImpDataError: nothing is laid out, or a benchmark folder holds none of its question files.
    """
    wanted = set(only or ())
    for name in wanted - set(SPLITS) - set(BENCHMARKS):
        raise ValueError(f"unknown benchmark {name!r}; valid: {', '.join([*BENCHMARKS, *SPLITS])}")
    found: dict[str, Path] = {}
    for name in BENCHMARKS:
        folder = bench_root / name
        if not folder.is_dir():
            continue
        splits = [sp for sp in SPLITS.values() if sp.benchmark == name]
        present = [sp for sp in splits if sp.layout(folder)]
        if not present:
            hub = [p for sp in splits for p in lmms.LAYOUTS.get(sp.key, ())]
            raise ImpDataError(f"{folder}: none of {', '.join(sp.question_file for sp in splits)}"
                               + (f", nor lmms-lab's {', '.join(hub)}" if hub else "")
                               + " — lay it out as LLaVA's playground/data/eval"
                               + (" or snapshot_download the lmms-lab dataset repo into it" if hub else ""))
        found.update({sp.key: folder for sp in present if not wanted or {sp.key, name} & wanted})
    if not found:
        raise ImpDataError(f"{bench_root}: no benchmark folders ({', '.join(BENCHMARKS)})"
                           + (f" matching {sorted(wanted)}" if wanted else "")
                           + " — lay them out as LLaVA's playground/data/eval (the demo writes small ones)")
    return found


def resolve_max_new_tokens(keys, *, every: int | None = None, per: Mapping[str, int] | None = None,
                           cap: int | None = None) -> dict[str, int]:
    """max_new_tokens per split: `per[key]` or `per[benchmark]`, else `every`, else the split's LLaVA default
    clipped to `cap`.

    Example:
        >>> resolve_max_new_tokens(["pope", "mmbench"], cap=512)
        {'pope': 128, 'mmbench': 512}
        >>> resolve_max_new_tokens(["pope", "mmbench"], every=16, per={"mmbench": 64})
        {'pope': 16, 'mmbench': 64}
    """
    per = dict(per or {})
    for name in set(per) - set(SPLITS) - set(BENCHMARKS):
        raise ValueError(f"max_new_tokens for unknown benchmark {name!r}; valid: {', '.join([*BENCHMARKS, *SPLITS])}")
    out = {}
    for key in keys:
        sp = get_split(key)
        n = per.get(key, per.get(sp.benchmark, every))
        if n is None:
            n = min(sp.max_new_tokens, cap) if cap else sp.max_new_tokens
        if n < 1:
            raise ValueError(f"max_new_tokens for {key} must be >= 1, got {n}")
        out[key] = n
    return out


def cut_at_stop(text: str, stop: str | None) -> str:
    """The answer up to the template's stop string, stripped (LLaVA: generation stops at the keyword and the
    keyword is cut off).

    Example:
        >>> cut_at_stop(" Yes</s>USER: more", "</s>"), cut_at_stop("a cat\\nand more", "\\n")
        ('Yes', 'a cat')
    """
    text = text.strip()
    if stop and stop in text:
        text = text[: text.index(stop)]
    return text.strip()
