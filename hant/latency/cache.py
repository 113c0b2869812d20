"""Persistent latency cache shared by all runs on a machine, in SQLite.

A row is keyed by (device fingerprint id, target as canonical JSON, candidate uid, per-sample input
shape). Several processes may read and write at once (WAL journal, busy timeout, ``BEGIN IMMEDIATE``
transactions). The cache never stops a run: a corrupted or truncated file is moved aside with a
warning and a fresh one is started; any other database failure is logged and the operation skipped.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

from .stats import LatencyStat
from .target import LatencyTarget

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

T = TypeVar("T")

TABLE = "latency_v1"  # a new schema gets a new table, so old and new hant versions share one file
_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26

Key = tuple[str, tuple[int, ...]]


class _Corrupt(Exception):
    """The database file fails its integrity check."""


def default_cache_path() -> Path:
    """``$HANT_CACHE_DIR/latency.sqlite``, else ``~/.cache/hant/latency.sqlite``."""
    root = os.environ.get("HANT_CACHE_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "hant"
    return base / "latency.sqlite"


def _is_corruption(e: BaseException) -> bool:
    if isinstance(e, _Corrupt):
        return True
    if not isinstance(e, sqlite3.DatabaseError):
        return False
    code = getattr(e, "sqlite_errorcode", None)
    if code is not None and (code & 0xFF) in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return True
    msg = str(e).lower()
    return "malformed" in msg or "not a database" in msg or "corrupt" in msg


def _shape_key(shape: Sequence[int]) -> str:
    return json.dumps([int(s) for s in shape], separators=(",", ":"))


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock on ``path`` (a no-op where ``fcntl`` is missing)."""
    if fcntl is None:
        yield
        return
    with open(path, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


class LatencyCache:
    """Measured latencies that outlive a run; see the module docstring for the guarantees."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *, timeout_s: float = 30.0):
        self.path = Path(path).expanduser() if path is not None else default_cache_path()
        self.timeout_s = timeout_s
        self._ready = False

    def __repr__(self) -> str:
        return f"LatencyCache({str(self.path)!r})"

    # -- public API -------------------------------------------------------------------------------

    def get(self, fingerprint_id: str, target: LatencyTarget, uid: str, shape: Sequence[int]) -> LatencyStat | None:
        """The cached stat of one candidate, or None."""
        return self.get_many(fingerprint_id, target, [(uid, shape)]).get((uid, tuple(int(s) for s in shape)))

    def put(self, fingerprint_id: str, target: LatencyTarget, uid: str, shape: Sequence[int], stat: LatencyStat) -> None:
        """Store (or replace) the stat of one candidate."""
        self.put_many(fingerprint_id, target, [(uid, shape, stat)])

    def get_many(
        self, fingerprint_id: str, target: LatencyTarget, keys: Iterable[tuple[str, Sequence[int]]]
    ) -> dict[Key, LatencyStat]:
        """Cached stats of several candidates, keyed by (uid, shape); misses are absent."""
        wanted = [(uid, tuple(int(s) for s in shape)) for uid, shape in keys]
        tkey = target.canonical_json()
        sql = f"SELECT median_ms, q1_ms, q3_ms, reps FROM {TABLE} WHERE fingerprint=? AND target=? AND uid=? AND shape=?"

        def op(conn: sqlite3.Connection) -> dict[Key, LatencyStat]:
            found: dict[Key, LatencyStat] = {}
            conn.execute("BEGIN")
            try:
                for uid, shape in wanted:
                    row = conn.execute(sql, (fingerprint_id, tkey, uid, _shape_key(shape))).fetchone()
                    if row is not None:
                        found[(uid, shape)] = LatencyStat(float(row[0]), float(row[1]), float(row[2]), int(row[3]))
            finally:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("COMMIT")  # a read transaction: nothing to lose if this fails
            return found

        return self._run(op, {}, "read") if wanted else {}

    def put_many(
        self, fingerprint_id: str, target: LatencyTarget, rows: Iterable[tuple[str, Sequence[int], LatencyStat]]
    ) -> None:
        """Store several stats in one transaction."""
        tkey = target.canonical_json()
        now = time.time()
        values = [
            (fingerprint_id, tkey, uid, _shape_key(shape), s.median_ms, s.q1_ms, s.q3_ms, s.reps, now)
            for uid, shape, s in rows
        ]
        if not values:
            return
        sql = (
            f"INSERT OR REPLACE INTO {TABLE} "
            "(fingerprint, target, uid, shape, median_ms, q1_ms, q3_ms, reps, measured_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )

        def op(conn: sqlite3.Connection) -> None:
            with self._write(conn):
                conn.executemany(sql, values)

        self._run(op, None, "write")

    def __len__(self) -> int:
        """Number of stored latencies (all devices and targets)."""
        return self._run(lambda conn: int(conn.execute(f"SELECT COUNT(*) FROM {TABLE}").fetchone()[0]), 0, "count")

    # -- plumbing ---------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(str(self.path), timeout=self.timeout_s, isolation_level=None)
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    @contextlib.contextmanager
    def _write(self, conn: sqlite3.Connection) -> Iterator[None]:
        conn.execute("BEGIN IMMEDIATE")  # take the write lock now, so the busy timeout applies here
        try:
            yield
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _check(self, conn: sqlite3.Connection) -> None:
        """Raise when the file is not a healthy SQLite database."""
        row = conn.execute("PRAGMA quick_check").fetchone()
        if row is None or row[0] != "ok":
            raise _Corrupt(f"integrity check failed: {row[0] if row else 'no answer'}")

    def _ensure(self) -> None:
        """Create the file and schema once per instance, checking an existing file's integrity."""
        if self._ready:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._connect()
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()
            if not mode or str(mode[0]).lower() != "wal":
                log.debug("latency cache %s runs without WAL (journal mode %s)", self.path, mode)
            self._check(conn)
            with self._write(conn):
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {TABLE} ("
                    "fingerprint TEXT NOT NULL, target TEXT NOT NULL, uid TEXT NOT NULL, shape TEXT NOT NULL, "
                    "median_ms REAL NOT NULL, q1_ms REAL NOT NULL, q3_ms REAL NOT NULL, reps INTEGER NOT NULL, "
                    "measured_at REAL NOT NULL, PRIMARY KEY (fingerprint, target, uid, shape))"
                )
        finally:
            conn.close()
        self._ready = True

    def _run(self, op: Callable[[sqlite3.Connection], T], default: T, what: str) -> T:
        """Run ``op`` on a fresh connection; recover once from corruption; otherwise log and return ``default``."""
        for attempt in range(2):
            try:
                self._ensure()
                conn = self._connect()
                try:
                    return op(conn)
                finally:
                    conn.close()
            except (sqlite3.Error, _Corrupt, OSError) as e:
                if _is_corruption(e) and attempt == 0:
                    try:
                        self._recover(e)
                        continue
                    except OSError as moved:
                        e = moved
                log.warning("latency cache %s could not %s (%s); continuing without it", self.path, what, e)
                return default
        return default

    def _healthy(self) -> bool:
        if not self.path.exists():
            return True
        try:
            conn = sqlite3.connect(str(self.path), timeout=self.timeout_s)
            try:
                self._check(conn)
            finally:
                conn.close()
            return True
        except (sqlite3.Error, _Corrupt):
            return False

    def _recover(self, err: BaseException) -> None:
        """Move a corrupted cache file (and its WAL side files) aside; the next use starts a fresh one."""
        self._ready = False
        with _file_lock(self.path.with_name(self.path.name + ".lock")):
            if self._healthy():  # another process recovered it meanwhile
                return
            stem = f"{self.path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
            aside = self.path.with_name(stem)
            n = 0
            while aside.exists():
                n += 1
                aside = self.path.with_name(f"{stem}-{n}")
            for suffix in ("", "-wal", "-shm"):
                src = Path(str(self.path) + suffix)
                with contextlib.suppress(FileNotFoundError):
                    os.replace(src, Path(str(aside) + suffix))
        log.warning(
            "latency cache %s was unreadable (%s); moved it to %s and started a fresh cache", self.path, err, aside
        )
