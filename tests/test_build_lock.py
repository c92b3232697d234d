"""One build per data root (issue 15, deliverable 5), with real processes: a second `imp-data build` is
refused in one line naming the holder while another runs and succeeds once it is done; a SIGKILLed
holder leaves no stale lock; two writers of one path never share a temp file and a killed build's temp
files are swept at the next start; pool workers die with a SIGKILLed parent.

Run: pytest tests/test_build_lock.py
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from imp_data.core.errors import BuildLocked
from imp_data.core.io import atomic_path, remove_stale_temps, tmp_path_for
from imp_data.storage.buildlock import OWNER_NAME, build_running, hold_build_lock, lock_path, refuse_if_building
from tests.conftest import DEMO_RECIPE, ROOT


@pytest.fixture(scope="module")
def mirror(tmp_path_factory) -> Path:
    from imp_data.fixtures import write_mirror

    out = tmp_path_factory.mktemp("lock-mirror") / "mirror"
    write_mirror(out, scale=1, seed=0)
    return out


def data_root(tmp_path: Path, mirror: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    (data / "mirror").symlink_to(mirror, target_is_directory=True)
    return data


def build_cmd(data: Path, mix: str) -> list[str]:
    return [sys.executable, "-m", "imp_data.cli", "build", str(DEMO_RECIPE), "--data-root", str(data),
            "--mix", mix, "--quiet"]


def run(cmd: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, env={**os.environ, "IMP_DATA_PROGRESS": "0", **env}, capture_output=True,
                          text=True, timeout=300)


def wait_for(predicate, what: str, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def assert_refused(proc: subprocess.CompletedProcess, holder_pid: int) -> None:
    """Exit 1, one stderr line naming the lock file, the holder's pid and host, and what to do."""
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    line = lines[0]
    assert line.startswith("imp-data build: error: ") and "build.lock" in line
    assert f"pid {holder_pid} on {socket.gethostname()}" in line
    assert "wait for it to finish, or stop it" in line


def owner_pid(data: Path) -> int | None:
    try:
        return json.loads((data / ".imp-data" / OWNER_NAME).read_text())["pid"]
    except (OSError, ValueError):
        return None


HOLDER = """
import sys
from imp_data.storage.buildlock import hold_build_lock
with hold_build_lock(sys.argv[1], "imp-data build manifests/demo.yaml (test holder)"):
    print("held", flush=True)
    sys.stdin.readline()
"""


def test_second_build_refused_in_one_line_then_runs_once_the_first_is_done(tmp_path, mirror):
    data = data_root(tmp_path, mirror)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(data)], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        second = run(build_cmd(data, "demo_stage1"))
        assert_refused(second, holder.pid)
        assert "(test holder)" in second.stderr and "started 20" in second.stderr
        assert f"pid {holder.pid} on" in build_running(data)
        with pytest.raises(BuildLocked, match=rf"pid {holder.pid} on .*wait for it to finish, or stop it"):
            refuse_if_building(data)
        from imp_data.core.recipe import load_recipe
        from pipelines.resources import DataRoot

        with pytest.raises(BuildLocked, match=rf"pid {holder.pid} on"):  # every Dagster step starts here
            DataRoot(path=str(data)).context(load_recipe(ROOT / "manifests" / "demo.yaml"))
        assert not (data / "mixes").exists(), "the refused build wrote nothing"
    finally:
        holder.communicate("done\n", timeout=30)  # the first one finishes
    assert holder.returncode == 0
    assert build_running(data) is None and not (data / ".imp-data" / OWNER_NAME).exists()
    again = run(build_cmd(data, "demo_stage1"))
    assert again.returncode == 0, again.stderr
    assert (data / "mixes" / "demo_stage1" / "index.parquet").is_file()


def test_sigkilled_build_leaves_no_stale_lock_and_its_temps_are_swept(tmp_path, mirror):
    data = data_root(tmp_path, mirror)
    cmd = build_cmd(data, "demo_stage2")
    env = {**os.environ, "IMP_DATA_PROGRESS": "0", "IMP_DATA_THROTTLE_SHARDS": "2"}  # slow: it is killed first
    first = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: owner_pid(data) == first.pid, "the first build to take the lock")
        assert_refused(run(cmd), first.pid)  # a real build holds it
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert owner_pid(data) == first.pid, "the killed holder's owner file stays behind"
    assert build_running(data) is None, "the kernel dropped the lock with its holder"
    stale = [data / "mixes" / "demo_stage2" / f".plan.parquet.{first.pid}.0badc0de.tmp",
             data / "normalized" / ".allava.parquet.tmp",  # the old pid-free name
             data / "mixes" / "demo_stage2" / "shards" / ".demo_stage2-000000.tar.1.2.tmp"]
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half written")
    kept = data / "mirror" / ".not-ours.tmp"  # inputs are not the build's to sweep
    kept.write_bytes(b"x")
    try:
        again = run(cmd)
        assert again.returncode == 0, again.stderr
        swept = re.search(r"removed (\d+) temp file\(s\) left by an interrupted build", again.stdout)
        assert swept and int(swept[1]) >= len(stale), again.stdout  # plus any the killed build left
        assert not [p for p in stale if p.exists()]
        assert not list(data.glob("mixes/**/.*.tmp")) and (data / "mixes" / "demo_stage2" / "index.parquet").is_file()
        assert kept.exists()
    finally:
        kept.unlink()  # the mirror is shared by the module


WRITER = """
import sys, time
from pathlib import Path
from imp_data.core.io import atomic_path
out, tag, barrier = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
with atomic_path(out) as tmp:
    with open(tmp, "w") as fh:
        fh.write(tag * 100_000)
        print(tmp, flush=True)
        while not barrier.exists():  # both writers are mid-write at once
            fh.write(tag)
            time.sleep(0.01)
"""


def test_two_writers_of_one_path_never_share_a_temp_file(tmp_path):
    out, barrier = tmp_path / "shared" / "plan.parquet", tmp_path / "go"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(out), tag, str(barrier)], cwd=ROOT,
                                stdout=subprocess.PIPE, text=True) for tag in "ab"]
    tmps = [Path(w.stdout.readline().strip()) for w in writers]
    assert all(t.exists() for t in tmps) and tmps[0] != tmps[1]
    for writer, tmp in zip(writers, tmps):
        assert tmp.parent == out.parent and tmp.name.startswith(f".{out.name}.{writer.pid}.")
        assert tmp.name.endswith(".tmp")
    barrier.touch()
    assert [w.wait(timeout=30) for w in writers] == [0, 0]
    text = out.read_text()
    assert set(text) in ({"a"}, {"b"}) and len(text) >= 100_000, "one writer's complete file, never a mix"
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name], "no temp file left behind"

    names = set()  # and within one process, thread by thread
    threads = [threading.Thread(target=lambda: names.add(tmp_path_for(out).name)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(names) == 8


def test_remove_stale_temps_takes_hidden_temp_files_only(tmp_path):
    tree = tmp_path / "mixes"
    (tree / "m" / "shards").mkdir(parents=True)
    stale = [tree / "m" / ".plan.parquet.12.ab.tmp", tree / "m" / "shards" / ".x.tar.tmp"]
    keep = [tree / "m" / "plan.parquet", tree / "m" / "visible.tmp"]
    for path in stale + keep:
        path.write_bytes(b"x")
    (tree / ".step-0000002.tmp").mkdir()  # a folder (a checkpoint being written) is not a stale file
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / ".linked.tmp").write_bytes(b"x")
    (tree / "link").symlink_to(outside, target_is_directory=True)
    assert remove_stale_temps(tree) == 2
    assert not [p for p in stale if p.exists()] and all(p.exists() for p in keep)
    assert (tree / ".step-0000002.tmp").is_dir() and (outside / ".linked.tmp").exists()
    with atomic_path(tree / "m" / "plan.parquet") as tmp:  # atomic writes still land
        tmp.write_bytes(b"new")
    assert (tree / "m" / "plan.parquet").read_bytes() == b"new"


def test_owner_file_names_the_holder_and_other_processes_see_it(tmp_path):
    with hold_build_lock(tmp_path, "imp-data build x") as lock:
        assert lock == lock_path(tmp_path) and lock.is_file()
        assert build_running(tmp_path) is None, "this process's own checks do not refuse it"
        owner = json.loads((tmp_path / ".imp-data" / OWNER_NAME).read_text())
        assert owner["pid"] == os.getpid() and owner["command"] == "imp-data build x"
        probe = run([sys.executable, "-c", "import sys; from imp_data.storage.buildlock import build_running; "
                     "print(build_running(sys.argv[1]))", str(tmp_path)])
        assert f"pid {os.getpid()} on {socket.gethostname()}" in probe.stdout and "imp-data build x" in probe.stdout
    assert not (tmp_path / ".imp-data" / OWNER_NAME).exists()
    with hold_build_lock(tmp_path, "imp-data build y"):  # released on exit: the next one gets it
        pass


POOL = """
import os, time
from imp_data.core.procs import worker_pool

MARK = "unset"

def mark(value):
    global MARK
    MARK = value

def report_then_sleep(_):  # one write(2) per line: print() may split it, and two workers share the pipe
    os.write(1, f"{os.getpid()} {MARK}\\n".encode())
    time.sleep(120)

if __name__ == "__main__":
    pool = worker_pool(2, initializer=mark, initargs=("armed",))
    for i in range(2):
        pool.submit(report_then_sleep, i)
    time.sleep(120)
"""


def alive(pid: int) -> bool:
    """Running (a zombie waiting for init to reap it counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")
def test_worker_pool_workers_die_with_a_sigkilled_parent(tmp_path):
    script = tmp_path / "pool.py"  # a file, not -c: spawn and forkserver re-import __main__ from it
    script.write_text(POOL)
    parent = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        reports, deadline = {}, time.time() + 60
        while len(reports) < 2 and time.time() < deadline:  # "PID MARK" lines; anything else is not ours
            line = parent.stdout.readline()
            if not line:
                break
            found = re.fullmatch(r"(\d+) (\S+)", line.strip())
            if found:
                reports[int(found[1])] = found[2]
        workers = sorted(reports)
        assert list(reports.values()) == ["armed", "armed"], f"the caller's initializer ran in each worker: {reports}"
        assert len(workers) == 2 and all(alive(pid) for pid in workers)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.time() + 5
    while any(alive(pid) for pid in workers) and time.time() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in workers if alive(pid)], "workers outlived their SIGKILLed parent"


DAGSTER_RUN = """
import sys
from imp_data.core.recipe import load_recipe
from pipelines.resources import DataRoot
with DataRoot(path=sys.argv[1]).process_config_and_initialize_cm() as root:  # what a run's resources do
    root.context(load_recipe(sys.argv[2]))  # its steps still work while it holds the lock shared
    print("held", flush=True)
    sys.stdin.readline()
"""


def test_dagster_runs_share_the_data_root_and_keep_a_cli_build_out(tmp_path, mirror):
    from imp_data.core.recipe import load_recipe
    from imp_data.storage.buildlock import USERS_NAME, share_build_lock
    from pipelines.resources import DataRoot

    data = data_root(tmp_path, mirror)
    dagster_run = subprocess.Popen([sys.executable, "-c", DAGSTER_RUN, str(data), str(DEMO_RECIPE)], cwd=ROOT,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert dagster_run.stdout.readline() == "held\n"
        refused = run(build_cmd(data, "demo_stage1"))  # a CLI build waits for the Dagster run
        assert_refused(refused, dagster_run.pid)
        assert "Dagster is working on it" in refused.stderr and "dagster run" in refused.stderr
        assert not (data / "mixes").exists(), "the refused build wrote nothing"
        assert build_running(data) is None, "a Dagster run is not a build that keeps other runs out"
        with share_build_lock(data, "dagster run two"):  # a second run shares the root with the first
            DataRoot(path=str(data)).context(load_recipe(DEMO_RECIPE))
    finally:
        dagster_run.communicate("done\n", timeout=60)
    assert dagster_run.returncode == 0
    assert not list((data / ".imp-data" / USERS_NAME).glob("*.json")), "each sharer removed its file"
    assert run(build_cmd(data, "demo_stage1")).returncode == 0  # once no run uses it, the build runs


def test_a_dagster_run_cannot_start_while_a_cli_build_runs(tmp_path):
    from pipelines.resources import DataRoot

    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(BuildLocked, match=rf"pid {holder.pid} on .*\(test holder\)"):
            with DataRoot(path=str(tmp_path)).process_config_and_initialize_cm():
                pass
    finally:
        holder.communicate("done\n", timeout=30)
    with DataRoot(path=str(tmp_path)).process_config_and_initialize_cm():  # released: the run starts
        pass
