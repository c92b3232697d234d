"""`imp-data eval RUN`: evaluate a trained run on every benchmark found under `DATA/eval/<name>/`.

The model is the run's latest checkpoint (`imp_data.train.generate.load_generate`: greedy, stop at
`</s>`, images rendered as the training mix was); results go to `DATA/runs/<run>/eval/`.
"""

from __future__ import annotations

from pathlib import Path

from imp_data.errors import ImpDataError
from imp_data.eval.benchmarks import LOADERS
from imp_data.eval.runner import render_table, run_eval


def evaluate_run(run: str | Path, *, data_root: str | None = None, overrides=(), benchmarks_root: str | None = None,
                 max_new_tokens: int = 16) -> Path:
    from imp_data.train.config import load_run
    from imp_data.train.generate import load_generate

    cfg = load_run(run, list(overrides))
    root = Path(data_root or cfg.data_root).resolve()
    run_dir = root / "runs" / cfg.name
    bench_root = Path(benchmarks_root) if benchmarks_root else root / "eval"
    benchmarks = {name: bench_root / name for name in LOADERS if (bench_root / name).is_dir()}
    if not benchmarks:
        raise ImpDataError(f"{bench_root}: no benchmark folders ({', '.join(LOADERS)}) — lay them out as LLaVA's "
                           "playground/data/eval (the demo writes small ones)")
    generate = load_generate(run_dir, max_new_tokens=max_new_tokens)
    results = run_eval(benchmarks, generate, run_dir / "eval")
    print(render_table(results))
    return run_dir / "eval" / "metrics.json"
