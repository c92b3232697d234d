"""Dagster's SQLite instance storage with the event log's database connections kept open.

Stock `storage: sqlite` creates a new SQLAlchemy engine and opens a new SQLite connection for every event
it stores and every lookup it makes (NullPool), so SQLite reads the database schema again each time:
several milliseconds per event. A run of a demo mix's job stores about 150 events and looks its inputs'
versions up about 35 times, and those reconnections were most of Dagster's time over the CLI's
(`python bench/dagster_vs_cli.py`, README "Performance"). This storage is the stock one, with the same
files, tables and layout under the instance's home (switching between the two keeps all history), except
that each database file it touches gets one engine whose connections are pooled, for the few most recent
files, per process. SQLite's own locking still serializes writers across processes (webserver, daemon,
run workers): a pooled connection holds no lock between uses, as SQLAlchemy rolls it back on return.

dagster.yaml (this repository's) selects it:

    storage:
      custom:
        module: pipelines.instance_storage
        class: PooledSqliteStorage
        config:
          base_dir: {env: DAGSTER_HOME}
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

from dagster._core.storage.event_log.sqlite.sqlite_event_log import INDEX_SHARD_NAME, SqliteEventLogStorage
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage, _event_logs_directory
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import QueuePool

SQLITE_BUSY_TIMEOUT_S = 15  # as the stock storage: wait this long for another process's write to finish
OPEN_SHARDS = 8  # database files with an open engine per process: the index and the latest runs'


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """The stock run-sharded SQLite event log; `_connect` reuses a pooled engine per shard."""

    def __init__(self, base_dir: str, inst_data=None):
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._engines_lock = threading.Lock()  # the registry only; stock `_db_lock` still guards each use
        self._engines_pid = os.getpid()
        super().__init__(base_dir, inst_data)

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> PooledSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str) -> Engine:
        """The shard's engine, made on first use; the least recently used beyond OPEN_SHARDS are closed."""
        with self._engines_lock:
            if self._engines_pid != os.getpid():  # a forked child: its parent's connections are not its own
                for engine in self._engines.values():
                    engine.dispose(close=False)
                self._engines.clear()
                self._engines_pid = os.getpid()
            engine = self._engines.pop(shard, None)
            if engine is None:
                engine = create_engine(self.conn_string_for_shard(shard), poolclass=QueuePool, pool_size=1,
                                       max_overflow=4, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
            self._engines[shard] = engine
            while len(self._engines) > OPEN_SHARDS:
                self._engines.popitem(last=False)[1].dispose()
            return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def has_table(self, table_name: str) -> bool:
        # stock builds an engine per call, and asks once per stored check event
        engine = self._engine(INDEX_SHARD_NAME)
        with engine.connect() as conn:
            return bool(engine.dialect.has_table(conn, table_name))

    def _close_engines(self) -> None:
        with self._engines_lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()

    def wipe(self) -> None:
        self._close_engines()  # wiping deletes the run files: close them first
        super().wipe()

    def dispose(self) -> None:
        self._close_engines()
        super().dispose()


class PooledSqliteStorage(DagsterSqliteStorage):
    """`storage: sqlite` with `PooledSqliteEventLogStorage` as its event log (runs and schedules stock)."""

    def __init__(self, base_dir: str, inst_data=None):
        # the stock constructor makes a stock event log too (it opens nothing that stays open); replacing it
        # keeps the runs and schedules storages and their layout exactly Dagster's
        super().__init__(base_dir, inst_data)
        self._event_log_storage = PooledSqliteEventLogStorage(_event_logs_directory(base_dir))

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> PooledSqliteStorage:
        return cls.from_local(inst_data=inst_data, **config_value)
