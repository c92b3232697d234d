"""The run's log: one JSON line per logged step in RUN/log.jsonl, and the same figures printed.

Each line carries the step's loss, learning rate and gradient norm, and the throughput of the window since
the previous line (samples/s, tokens/s, padding share, MFU on a known GPU, ETA). Rank 0 writes; every
rank counts its window the same way, so no rank needs to know which one it is.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from imp_data.core.io import write_text_atomic
from imp_data.train.flops import step_flops
from imp_data.train.packing import position_counts

WINDOW = {"samples": 0, "tokens": 0, "positions": 0, "flops": 0.0, "truncated": 0, "mismatch": 0}


def clock(seconds: float) -> str:
    """Seconds as h:mm:ss, for the ETA.

    Example:
        >>> clock(3725)
        '1:02:05'
    """
    minutes, sec = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{sec:02d}"


def truncate_log(path: Path, step: int) -> None:
    """Keep the log lines up to `step`: a run killed after its last checkpoint logged steps that the resumed
    run does again, and they must not appear twice."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = []
    for line in lines:
        try:
            if json.loads(line)["step"] > step:
                break
        except (ValueError, KeyError, TypeError):  # a line cut short by the kill
            break
        kept.append(line)
    if len(kept) != len(lines):
        write_text_atomic(path, "".join(kept))


class StepLog:
    """RUN/log.jsonl (rank 0; `path` None elsewhere) and the throughput window between two of its lines.

    A fresh run starts a fresh log; a resumed one continues the log as it was at its checkpoint.
    """

    def __init__(self, path: Path | None, *, step: int, total: int, resumed: bool, world: int, counts: dict,
                 peak: float | None, packing: bool):
        self.total, self.world, self.counts, self.peak, self.packing = total, world, counts, peak, packing
        self.file = None
        if path is not None:
            if resumed:
                truncate_log(path, step)
            self.file = open(path, "a" if resumed else "w")
        self.started, self.first_step = time.time(), step  # the ETA is this process's rate over the steps left
        self._new_window()

    def _new_window(self) -> None:
        self.window, self.window_start = dict(WINDOW), time.time()

    def count(self, batch: dict) -> None:
        """Add one micro-batch to the window."""
        tokens, positions, attended = position_counts(batch, self.counts["num_patches"], self.packing)
        n_images = 0 if batch["pixel_values"] is None else len(batch["pixel_values"])
        w = self.window
        w["samples"] += len(batch["input_ids"])
        w["tokens"] += tokens
        w["positions"] += positions  # computed by the LLM: tokens + padding
        w["flops"] += step_flops(self.counts, tokens, n_images, attended)
        for key in ("truncated", "mismatch"):
            w[key] += batch["stats"][key]

    def write(self, step: int, *, epoch: int, loss: float, lr: float, grad_norm, skipped: int) -> None:
        """Log `step` with the window's throughput (rank 0 writes and prints), then start a new window."""
        if self.file is not None:
            w, now = self.window, time.time()
            dt = max(now - self.window_start, 1e-9)
            record = {"step": step, "epoch": epoch, "loss": round(loss, 6), "lr": lr,
                      "grad_norm": round(float(grad_norm), 4),
                      "samples_per_s": round(w["samples"] * self.world / dt, 2),
                      "tokens_per_s": round(w["tokens"] * self.world / dt, 1),
                      "padding_share": round(1 - w["tokens"] / max(w["positions"], 1), 4),
                      "eta_s": round((self.total - step) * (now - self.started) / (step - self.first_step)),
                      "skipped": skipped, "truncated": w["truncated"], "mismatch": w["mismatch"]}
            if self.peak:
                record["mfu"] = round(w["flops"] / dt / self.peak, 4)
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()
            mfu = f" | mfu {record['mfu']:.1%}" if self.peak else ""
            print(f"step {step}/{self.total} | loss {loss:.4f} | lr {record['lr']:.2e} | "
                  f"{record['samples_per_s']:.1f} samples/s | {record['tokens_per_s']:,.0f} tok/s{mfu} | "
                  f"padding {record['padding_share']:.1%} | eta {clock(record['eta_s'])}")
        self._new_window()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
