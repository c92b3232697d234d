"""What a finished run did, in a few numbers: steps, final loss, throughput and the checkpoint it left.

Read back from the files the loop writes (`RUN/log.jsonl`, `RUN/checkpoints/latest`), so the CLI, the
Dagster assets and a notebook all report the same figures without rerunning anything.
"""

from __future__ import annotations

import json
from pathlib import Path

from imp_data.core.errors import ImpDataError
from imp_data.train.checkpoint import latest_checkpoint


def summarize_run(run_dir: str | Path) -> dict:
    """Steps, final loss, throughput, padding, ETA and latest checkpoint of a run directory (DATA/runs/NAME).

    `samples_per_s` / `tokens_per_s` are the harmonic means of the logged windows' rates: the windows hold
    the same number of steps, so that is the rate of the run as a whole (the arithmetic mean would overweight
    fast windows). `padding_share` is the windows' mean share of computed LLM positions that were padding
    (0 with train.packing); `eta_s` is the last window's estimate of the time left to the end of the
    schedule (0 for a finished run; what is left after a time-boxed `stop_after`).

    Example:
        >>> summarize_run("demo-data/runs/tiny_stage1")  # doctest: +SKIP
        {'steps': 18, 'final_loss': 2.91, 'samples_per_s': 131.2, 'checkpoint': '.../step-0000018', ...}
    """
    run_dir = Path(run_dir)
    log = run_dir / "log.jsonl"
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None or not log.is_file():
        raise ImpDataError(f"{run_dir}: no finished run here — train it first (imp-data train RUN)")
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    if not records:
        raise ImpDataError(f"{log}: empty — the run logged no step; train it again (imp-data train RUN)")
    meta = json.loads((ckpt / "meta.json").read_text())
    padding = [r["padding_share"] for r in records if "padding_share" in r]
    return {"steps": records[-1]["step"], "final_loss": records[-1]["loss"],
            "samples_per_s": _harmonic(records, "samples_per_s", 2),
            "tokens_per_s": _harmonic(records, "tokens_per_s", 1),
            "padding_share": round(sum(padding) / len(padding), 4) if padding else None,
            "eta_s": records[-1].get("eta_s"),
            "stage": meta.get("stage"), "mix": meta.get("mix"),
            "checkpoint": str(ckpt), "log": str(log)}


def _harmonic(records: list[dict], key: str, digits: int) -> float | None:
    rates = [r[key] for r in records if r.get(key)]
    return round(len(rates) / sum(1 / r for r in rates), digits) if rates else None
