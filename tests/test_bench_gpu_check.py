"""bench/gpu_check.sh in its reduced CPU mode (tiny shapes, a few steps), run as on the GPU machine: a fresh
process in which polars and pydantic cannot be imported (that machine has neither), so the check cannot
rot into needing them or into not running at all.

Run: pytest tests/test_bench_gpu_check.py
"""

from __future__ import annotations

import json
import os
import subprocess

from tests.conftest import ROOT


def test_gpu_check_runs_reduced_on_cpu_without_polars_or_pydantic(tmp_path):
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    for name in ("polars", "pydantic"):  # found before site-packages: importing either fails, as there
        (blocked / f"{name}.py").write_text(f"raise ImportError('{name} is not installed on the GPU machine')\n")
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "PYTHONPATH": str(blocked), "OUT": str(tmp_path / "unused")}
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--cpu", "--json", str(out)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]

    result = json.loads(out.read_text())
    assert result["mode"] == "cpu" and set(result["stages"]) == {"stage1", "stage2"}
    for stage in result["stages"].values():
        padded, packed = stage["padded"], stage["packed"]
        for mode in (padded, packed):
            assert mode["samples_per_s"] > 0 and mode["tokens_per_s"] > 0 and mode["peak_memory_gib"] > 0
            assert mode["mfu"] is None and mode["tflops_per_s"] > 0  # no GPU peak to divide by on a CPU
        assert packed["padding_share"] == 0 < padded["padding_share"]
        assert stage["packed_loss_rel_diff"] < 1e-5
        assert stage["loader_samples_per_s"] > 0 and stage["loader_headroom"] > 0
    assert result["stages"]["stage2"]["params_trainable"] < result["stages"]["stage2"]["params_total"]
    assert "packed / padded" in proc.stdout and f"wrote {out}" in proc.stdout
