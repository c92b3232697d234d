"""`imp-data eval RUN`: evaluate a trained run on every benchmark split found under `DATA/eval/<name>/`.

The model is the run's latest checkpoint (`imp_data.train.generate.load_generate`: greedy, images rendered as
the training mix was); answers end at the template's stop string, and each split gets its own
`max_new_tokens` (`imp_data.eval.splits`). Results go to `DATA/runs/<run>/eval/`.
"""

from __future__ import annotations

import gc
from collections.abc import Mapping
from pathlib import Path

from imp_data.core.layout import Layout
from imp_data.eval.runner import Generate, render_table, run_eval
from imp_data.eval.splits import STOP_STRINGS, find_splits, resolve_max_new_tokens


def checkpoint_generate(run_dir: Path) -> Generate:
    """`generate(items, max_new_tokens)` over a run's latest checkpoint.

    `load_generate` fixes the cap when it builds the model, so the model is rebuilt (the previous one
    released first) when the cap changes; the runner groups splits by cap, so that is once per distinct value.
    """
    from imp_data.train.generate import load_generate

    state: dict = {}

    def generate(items, max_new_tokens: int) -> list[str]:
        if state.get("cap") != max_new_tokens:
            state.clear()
            gc.collect()
            state.update(cap=max_new_tokens, fn=load_generate(run_dir, max_new_tokens=max_new_tokens))
        return state["fn"](items)

    return generate


def evaluate_run(run: str | Path, *, data_root: str | None = None, overrides=(), benchmarks_root: str | None = None,
                 max_new_tokens: int | None = None, max_new_tokens_for: Mapping[str, int] | None = None,
                 only: list[str] | None = None) -> Path:
    """Run every benchmark split laid out under `benchmarks_root` (default DATA/eval) and write the tables.

    Args:
        max_new_tokens: one cap for every split (default: each split's LLaVA setting, at most the run's
            `train.model_max_length`).
        max_new_tokens_for: per split key or benchmark name; wins over `max_new_tokens`.
        only: split keys or benchmark names to run (default all found).

    Returns:
        The path of `metrics.json`.
    """
    from imp_data.train.config import load_run

    cfg = load_run(run, list(overrides))
    root = Path(data_root or cfg.data_root).resolve()
    layout = Layout(root)
    run_dir = layout.run(cfg.name)
    splits = find_splits(Path(benchmarks_root) if benchmarks_root else layout.benchmarks(), only)
    caps = resolve_max_new_tokens(splits, every=max_new_tokens, per=max_new_tokens_for,
                                  cap=cfg.train.model_max_length)
    results = run_eval(splits, checkpoint_generate(run_dir), layout.run_eval(cfg.name), max_new_tokens=caps,
                       stop=STOP_STRINGS.get(cfg.template), model_id=cfg.name)
    print(render_table(results))
    return layout.run_eval(cfg.name) / "metrics.json"
