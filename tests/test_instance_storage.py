"""The instance storage dagster.yaml selects (pipelines/instance_storage.py): it is what the repository's
dagster.yaml gives; its history is the stock `storage: sqlite`'s (each reads what the other wrote, the same
records and data versions); runs writing from several processes at once lose no event; it keeps at most
OPEN_SHARDS database files open per process and lets go of them before a wipe deletes them.

Run: pytest tests/test_instance_storage.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import dagster as dg
import pytest

from pipelines.instance_storage import OPEN_SHARDS, PooledSqliteEventLogStorage
from tests.conftest import ROOT, guarded_env
from tests.dagster_dev import STOCK_SQLITE, instance_from

TOY = '''
import dagster as dg

@dg.multi_asset(specs=[dg.AssetSpec(f"toy_{i}", deps=[f"toy_{i - 1}"] if i else [], code_version="1")
                       for i in range(N_ASSETS)],
                check_specs=[dg.AssetCheckSpec("positive", asset="toy_0", blocking=True)])
def toy():
    for i in range(N_ASSETS):
        yield dg.MaterializeResult(asset_key=f"toy_{i}", data_version=dg.DataVersion(str(i)), metadata={"i": i})
        if i == 0:
            yield dg.AssetCheckResult(asset_key="toy_0", check_name="positive", passed=True)
'''


def toy_assets(n: int) -> dg.AssetsDefinition:
    scope: dict = {}
    exec(TOY.replace("N_ASSETS", str(n)), scope)  # noqa: S102 (the same source the subprocesses run)
    return scope["toy"]


def history(inst: dg.DagsterInstance, n: int) -> list[tuple]:
    out = []
    for i in range(n):
        records = inst.fetch_materializations(dg.AssetKey(f"toy_{i}"), limit=10).records
        out += [(i, r.run_id, r.asset_materialization.metadata["i"].value,
                 r.asset_materialization.tags["dagster/data_version"]) for r in records]
    return sorted(out)


def test_repo_config_is_pooled_and_shares_history_with_stock_sqlite(tmp_path):
    home = tmp_path / "home"
    with instance_from((ROOT / "dagster.yaml").read_text(), home) as pooled:
        assert isinstance(pooled.event_log_storage, PooledSqliteEventLogStorage)
        assert dg.materialize([toy_assets(3)], instance=pooled).success
        first = history(pooled, 3)
    assert len(first) == 3 and [row[3] for row in first] == ["0", "1", "2"]
    with instance_from(STOCK_SQLITE, home) as stock:  # the same files, read and written by Dagster's own storage
        assert type(stock.event_log_storage).__name__ == "SqliteEventLogStorage"
        assert history(stock, 3) == first
        assert dg.materialize([toy_assets(3)], instance=stock).success
        both = history(stock, 3)
        (check,) = stock.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(dg.AssetKey("toy_0"), "positive"), limit=10)[:1]
    with instance_from((ROOT / "dagster.yaml").read_text(), home) as pooled:
        assert len(both) == 6 and history(pooled, 3) == both
        executions = pooled.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(dg.AssetKey("toy_0"), "positive"), limit=10)
        assert len(executions) == 2 and executions[0].run_id == check.run_id


def test_runs_in_several_processes_at_once_store_every_event(tmp_path):
    """Four processes, each a run of 30 assets, write into one instance at the same time: SQLite's
    locking serializes them, nothing is lost and no run fails on a locked database."""
    home, n = tmp_path / "home", 30
    with instance_from((ROOT / "dagster.yaml").read_text(), home):
        pass
    script = tmp_path / "run.py"
    script.write_text(TOY.replace("N_ASSETS", str(n)) + textwrap.dedent('''
        import sys
        with dg.DagsterInstance.get() as inst:
            sys.exit(0 if dg.materialize([toy], instance=inst).success else 1)
    '''))
    env = guarded_env({**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": str(ROOT)})
    procs = [subprocess.Popen([sys.executable, str(script)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(4)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outputs[0][-3000:]
    with instance_from((ROOT / "dagster.yaml").read_text(), home) as inst:
        rows = history(inst, n)
        runs = {row[1] for row in rows}
        assert len(runs) == 4 and len(rows) == 4 * n
        for run_id in runs:
            kinds = [e.dagster_event.event_type_value for e in inst.all_logs(run_id) if e.dagster_event]
            assert kinds.count("ASSET_MATERIALIZATION") == n and kinds.count("ASSET_CHECK_EVALUATION") == 1
            assert kinds[-1] == "PIPELINE_SUCCESS"


@pytest.mark.filterwarnings("ignore")
def test_open_files_are_bounded_and_let_go_before_a_wipe(tmp_path):
    storage = PooledSqliteEventLogStorage(str(tmp_path / "runs"))
    for k in range(OPEN_SHARDS + 5):
        with storage.run_connection(f"run{k}") as conn:
            conn.exec_driver_sql("select 1")
    assert len(storage._engines) == OPEN_SHARDS  # the least recently used were closed
    assert list(storage._engines)[-1] == f"run{OPEN_SHARDS + 4}"
    storage.wipe()
    assert list(storage._engines) == ["index"]  # the run files were closed; emptying the index reopened it
    assert sorted(p.name for p in (tmp_path / "runs").glob("run*.db*")) == []
    storage.dispose()
    assert storage._engines == {}
