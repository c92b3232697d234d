"""Shared fixtures: the network guard for every test and every Python subprocess a test starts, and the
demo data (fixture mirror + both demo mixes) built once per test session.

Run the whole suite: pytest (README's test command installs first: bash scripts/test.sh).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMO_RECIPE = ROOT / "manifests" / "demo.yaml"
NETGUARD_DIR = Path(__file__).resolve().parent / "netguard"

os.environ.setdefault("IMP_DATA_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "0")

sys.path.insert(0, str(NETGUARD_DIR))  # the same top-level `netguard` module subprocesses import
import netguard  # noqa: E402

# ---------------------------------------------------------------------------------------------------------
# network guard (tests/netguard/netguard.py says what is allowed)


class GuardWatch:
    """The session's guard plus a cursor over its refusals, in-process and logged by subprocesses."""

    def __init__(self, guard: netguard.NetworkGuard, log: Path) -> None:
        self.guard, self.log, self.seen, self.offset = guard, log, 0, 0

    def new_refusals(self) -> list[str]:
        """Refusals since the last call (each is blamed once)."""
        with open(self.log, "rb") as f:
            f.seek(self.offset)
            logged = f.read()
        self.offset += len(logged)
        fresh, self.seen = self.guard.violations[self.seen:], len(self.guard.violations)
        return fresh + logged.decode().splitlines()


@pytest.fixture(scope="session", autouse=True)
def network_watch(tmp_path_factory):
    """The guard, active in this process for the session; PYTHONPATH's sitecustomize installs it in subprocesses."""
    log = tmp_path_factory.getbasetemp() / "netguard.log"
    log.touch()
    saved = {key: os.environ.get(key) for key in ("PYTHONPATH", netguard.LOG_ENV)}
    os.environ["PYTHONPATH"] = os.pathsep.join([str(NETGUARD_DIR), *filter(None, [saved["PYTHONPATH"]])])
    os.environ[netguard.LOG_ENV] = str(log)
    with netguard.NetworkGuard() as guard:
        watch = GuardWatch(guard, log)
        yield watch
        late = watch.new_refusals()  # e.g. from a server that a module fixture stopped after its last test
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    assert not late, f"the network beyond loopback was reached after the last test: {late}"


@pytest.fixture(autouse=True)
def no_external_network(network_watch):
    """Fails the test if it, its fixtures, or a subprocess running meanwhile reached past loopback.

    A refusal is blamed on the first test whose teardown sees it, so one made while a module-scoped fixture
    started (`dagster dev`, a moto server) fails the first test that used that fixture.
    """
    yield network_watch.guard
    reached = network_watch.new_refusals()
    assert not reached, f"test reached for the network beyond loopback: {reached}"


def guarded_env(env: dict[str, str]) -> dict[str, str]:
    """`env` for a subprocess started with a hand-made environment, plus what carries the guard into it."""
    return {**env, **{key: os.environ[key] for key in ("PYTHONPATH", netguard.LOG_ENV) if key in os.environ}}


# ---------------------------------------------------------------------------------------------------------
# demo data


def edited_demo_recipe(folder: Path, edit) -> Path:
    """`folder/recipe.yaml`: a copy of the demo recipe changed in place by `edit(raw)`."""
    import yaml

    raw = yaml.safe_load(DEMO_RECIPE.read_text())
    edit(raw)
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def build_demo(data_root: Path, workers: int = 1) -> dict:
    from imp_data.build import build
    from imp_data.core.context import BuildContext
    from imp_data.core.recipe import load_recipe
    from imp_data.fixtures import write_mirror

    write_mirror(data_root / "mirror", scale=1, seed=0)
    ctx = BuildContext(recipe=load_recipe(DEMO_RECIPE), data_root=data_root, workers=workers, progress=False)
    return build(ctx)


@pytest.fixture(scope="session")
def demo_build(tmp_path_factory) -> tuple[Path, dict]:
    """(data root, build result) of the demo recipe, built once for the session; treat as read-only."""
    root = tmp_path_factory.mktemp("demo")
    return root, build_demo(root)
