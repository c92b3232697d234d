"""bench/train_throughput.py on the tiny shape (CPU, a few steps), so the bench stays runnable:
- with no --mix it builds the demo's stage-2 mix itself, runs warm-up + timed steps through the real
  loader, and prints and writes (--json) positive samples/s, tokens/s and a loader headroom;
- with --mix (the session's demo stage-2 mix) and a loader worker process, the headroom is the loader's
  per-worker rate over the step loop's rate;
- a mix rendered at another resolution than the tower's is refused with the fix in the message.

Run: pytest tests/test_bench_train_throughput.py
"""

from __future__ import annotations

import json
import math

import pytest

from bench.train_throughput import main
from imp_data.core.errors import ImpDataError
from tests.train_support import one_thread  # noqa: F401 (autouse fixture)


def check_figures(result: dict) -> None:
    for key in ("samples_per_s", "tokens_per_s", "loader_samples_per_s_per_worker", "loader_headroom",
                "warmup_s", "timed_s"):
        assert result[key] > 0 and math.isfinite(result[key]), (key, result[key])
    per_worker, steps = result["loader_samples_per_s_per_worker"], result["samples_per_s"]
    assert result["loader_headroom"] == pytest.approx(per_worker / steps)
    assert result["tokens_per_sample"] > 16  # every image adds its 16 patches to the text
    assert result["mfu"] is None  # no GPU peak on a CPU
    assert math.isfinite(result["loss"])


def test_tiny_bench_builds_its_mix_and_reports(tmp_path, capsys):
    out = tmp_path / "bench.json"
    result = main(["--shape", "tiny", "--steps", "3", "--warmup", "1", "--batch-size", "2", "--json", str(out)])
    check_figures(result)
    assert (result["shape"], result["steps"], result["samples"], result["workers"]) == ("tiny", 3, 6, 0)
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert "samples/s" in summary and "tok/s" in summary and "headroom" in summary and "MFU n/a" in summary


def test_tiny_bench_on_a_given_mix_with_a_worker(demo_build):
    mix = demo_build[0] / "mixes" / "demo_stage2"
    result = main(["--shape", "tiny", "--mix", str(mix), "--steps", "2", "--warmup", "1", "--workers", "1",
                   "--grad-accum", "2", "--grad-checkpointing"])
    check_figures(result)
    assert (result["workers"], result["grad_accum"], result["gradient_checkpointing"]) == (1, 2, True)
    assert result["samples"] == 2 * 2 * 4  # steps x accum x the recipe's batch
    assert result["workers_needed"] == math.ceil(1 / result["loader_headroom"])


def test_mix_at_the_wrong_resolution_is_refused(demo_build):
    mix = demo_build[0] / "mixes" / "demo_stage2"  # rendered at 64 px; the tower below takes 32
    with pytest.raises(ImpDataError, match="rendered at 32 px"):
        main(["--shape", "tiny", "--mix", str(mix), "--steps", "1", "--set", "model.vision.image_size=32"])
