"""`dagster dev` for real, on a free loopback port, and a small GraphQL client that launches a job and
waits for its run: what tests/test_dagster_ui.py and `bench/dagster_vs_cli.py --ui` drive. And an
instance opened from a given dagster.yaml, for tests/test_instance_storage.py and the bench.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
STOCK_SQLITE = "storage:\n  sqlite:\n    base_dir:\n      env: DAGSTER_HOME\ntelemetry:\n  enabled: false\n"
"""Dagster's default instance storage, spelled out: the comparison for the repository's dagster.yaml."""


@contextmanager
def instance_from(config: str, home: Path):
    """A DagsterInstance whose home (made if missing) holds `config` as its dagster.yaml; $DAGSTER_HOME
    names it meanwhile, as the config's `{env: DAGSTER_HOME}` reads it."""
    import dagster as dg

    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text(config)
    previous = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            yield instance
    finally:
        os.environ.pop("DAGSTER_HOME") if previous is None else os.environ.__setitem__("DAGSTER_HOME", previous)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GraphQL:
    def __init__(self, url: str, log: Path):
        self.url, self.log, self.last_run_id = url, log, None

    def log_tail(self) -> str:
        return self.log.read_text()[-3000:]

    def __call__(self, query: str, **variables) -> dict:
        reply = requests.post(self.url, json={"query": query, "variables": variables}, timeout=60)
        reply.raise_for_status()
        body = reply.json()
        assert "errors" not in body, body["errors"]
        return body["data"]

    def run_job(self, job: str, tags: list[dict] | None = None, timeout: float = 300) -> str:
        launch = self("""mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename
                ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }""",
                      p={"selector": {"repositoryLocationName": "pipelines.definitions",
                                      "repositoryName": "__repository__", "jobName": job},
                         "runConfigData": {}, "executionMetadata": {"tags": tags or []}})["launchRun"]
        assert launch["__typename"] == "LaunchRunSuccess", launch
        run_id = self.last_run_id = launch["run"]["runId"]
        deadline = time.time() + timeout
        while time.time() < deadline:
            status = self("query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }",
                          id=run_id)["runOrError"]["status"]
            if status in ("SUCCESS", "FAILURE", "CANCELED"):
                return status
            time.sleep(0.1)
        raise AssertionError(f"run {run_id} of {job} did not finish in {timeout}s")


@contextmanager
def dagster_dev(home: Path, data: Path, mirror: Path, **env_extra: str):
    """`dagster dev` on a free loopback port, its instance in `home` and its data root `data` (whose mirror
    is `mirror`); yields (base URL, GraphQL client) and stops the whole process group after."""
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    (data / "mirror").symlink_to(mirror, target_is_directory=True)
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "IMP_DATA_ROOT": str(data), "IMP_DATA_PROGRESS": "0",
           "DAGSTER_DISABLE_TELEMETRY": "1", "IMP_DATA_EXECUTOR": "in_process", **env_extra}
    log = open(home / "dev.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "dagster", "dev", "-m", "pipelines.definitions",
                             "-h", "127.0.0.1", "-p", str(port)], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                if requests.get(f"{base}/server_info", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None and time.time() < deadline, (home / "dev.log").read_text()[-3000:]
            time.sleep(0.5)
        yield base, GraphQL(f"{base}/graphql", home / "dev.log")
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
        log.close()
