"""A training run SIGKILLed between checkpoints resumes to the run it would have been (issue 7): the
killed process (a real `imp-data train` in a subprocess, slowed by IMP_DATA_THROTTLE_STEPS) leaves its
last complete checkpoint; `--resume` goes on from it with the same batches, and the log ends up equal to an
uninterrupted run's — the steps logged after that checkpoint and before the kill are not logged twice.

Run: pytest tests/test_train_kill_resume.py
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from imp_data.train.checkpoint import latest_checkpoint, load_resume_state
from imp_data.train.loop import train
from tests.conftest import guarded_env
from tests.train_support import RUNS, demo_data_root, one_thread  # noqa: F401 (autouse fixture)

COMMON = ["train.epochs=1", "lora.dropout=0.05", "train.batch_size=8", "model.init_projector=null",
          "train.save_every=2"]


def losses(run_dir) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in map(json.loads, (run_dir / "log.jsonl").read_text().splitlines())]


def test_sigkill_between_checkpoints_then_resume(demo_build, tmp_path):
    data_root = demo_data_root(demo_build[0], tmp_path)
    straight = train(RUNS / "tiny_stage2.yaml", data_root=data_root, overrides=COMMON + ["name=straight"])
    expected = losses(straight)
    assert len(expected) >= 6

    cmd = [sys.executable, "-m", "imp_data.cli", "train", str(RUNS / "tiny_stage2.yaml"), "--data-root",
           str(data_root), *[a for o in COMMON + ["name=killed"] for a in ("--set", o)]]
    env = guarded_env({**os.environ, "IMP_DATA_THROTTLE_STEPS": "0.4", "IMP_DATA_PROGRESS": "0"})
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    run_dir = data_root / "runs" / "killed"
    try:
        deadline = time.time() + 120
        # kill once a checkpoint exists and a later step has been logged: that step must not survive twice
        while time.time() < deadline and proc.poll() is None:
            ckpt = latest_checkpoint(run_dir)
            logged = losses(run_dir) if (run_dir / "log.jsonl").is_file() else []
            if ckpt is not None and logged and logged[-1][0] > load_resume_state(ckpt)["step"]:
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()[-2000:]}"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    at = load_resume_state(latest_checkpoint(run_dir))["step"]
    assert 0 < at < len(expected) and losses(run_dir)[-1][0] > at, "killed between checkpoints, mid-epoch"

    train(RUNS / "tiny_stage2.yaml", data_root=data_root, resume=True, overrides=COMMON + ["name=killed"])
    got = losses(run_dir)
    assert [s for s, _ in got] == [s for s, _ in expected], "each step logged once"
    assert [loss for _, loss in got] == pytest.approx([loss for _, loss in expected], rel=1e-5, abs=1e-6)
