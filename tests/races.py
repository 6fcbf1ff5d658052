"""Real concurrent PostgreSQL sessions for tests (shared by test_concurrency, test_payout_race and
test_online_topup_race).

- :func:`race`: tasks in one thread each, on connections of their own, released together by a ``threading.Barrier``;
  :class:`Sessions` opens the connections.
- :func:`overlap`: one statement in an open transaction, another in a second session that waits for its lock, then
  the first committed; :func:`wait_until_blocked` tells when a session waits for a lock.
- :func:`attempt`: one statement's rows or its error (SQLSTATE) as an :class:`Outcome`.
- :func:`register_terminal`: a terminal of a position, registered through the api (superuser).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import psycopg
from psycopg.rows import dict_row

BARRIER_TIMEOUT_S = 30


def register_terminal(su: psycopg.Connection, event_id: int, position: str) -> int:
    """A terminal of the event's ``position``, registered with a new registration code; returns its assignment id."""
    code = su.execute("SELECT api.create_registration_code(%s, %s)", (event_id, position)).fetchone()[0]
    return su.execute("SELECT assignment_id FROM api.register_terminal(%s, %s)",
                      (code, f"race test {position}")).fetchone()[0]


@dataclass
class Outcome:
    """What one api call did: its rows, or the error's SQLSTATE and message."""

    value: Any = None
    sqlstate: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.sqlstate is None and self.error is None


def attempt(conn: psycopg.Connection, sql: str, params: tuple = ()) -> Outcome:
    """Runs one statement (autocommit) and captures its rows or its error."""
    try:
        with conn.cursor(row_factory=dict_row) as cur:
            return Outcome(value=cur.execute(sql, params).fetchall())
    except psycopg.Error as err:
        return Outcome(sqlstate=err.sqlstate, error=f"{type(err).__name__}: {err}")


def race(conns: list[psycopg.Connection], tasks: list[Callable[[psycopg.Connection], Any]]) -> list[Any]:
    """Runs tasks[i](conns[i]) in one thread each, all released together by a barrier.

    Returns each task's return value; a task that raises fails the test (after all threads finished).
    """
    assert len(tasks) <= len(conns)
    barrier = threading.Barrier(len(tasks))
    results: list[Any] = [None] * len(tasks)
    crashes: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=BARRIER_TIMEOUT_S)
            results[i] = tasks[i](conns[i])
        except BaseException as exc:  # noqa: BLE001 - reported below
            barrier.abort()
            crashes.append(exc)

    threads = [threading.Thread(target=run, args=(i,), name=f"session-{i}") for i in range(len(tasks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive(), f"{t.name} is still running after 60 s"
    if crashes:
        raise crashes[0]
    return results


class Sessions:
    """n open autocommit connections to ``url`` (each used by one thread at a time)."""

    def __init__(self, url: str, n: int):
        self.conns: list[psycopg.Connection] = []
        try:
            for _ in range(n):
                self.conns.append(psycopg.connect(url, autocommit=True))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for c in self.conns:
            c.close()

    def __enter__(self) -> list[psycopg.Connection]:
        return self.conns

    def __exit__(self, *exc) -> None:
        self.close()


def wait_until_blocked(su: psycopg.Connection, pid: int, timeout_s: float = 10) -> None:
    """Waits until backend `pid` waits for a lock (the other session holds it)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if su.execute("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0]:
            return
        time.sleep(0.01)
    raise AssertionError(f"session {pid} never blocked")


def overlap(su: psycopg.Connection, url: str, first: tuple[str, tuple],
            second: tuple[str, tuple]) -> tuple[Outcome, Outcome]:
    """Runs `first` in an open transaction, starts `second` in another session, waits until it is blocked
    behind the first, then commits the first. Returns both outcomes."""
    with psycopg.connect(url) as c1, psycopg.connect(url, autocommit=True) as c2:
        one = attempt(c1, *first)
        assert one.ok, one.error
        holder: dict[str, Outcome] = {}
        thread = threading.Thread(target=lambda: holder.setdefault("two", attempt(c2, *second)))
        thread.start()
        try:
            wait_until_blocked(su, c2.info.backend_pid)
        finally:
            c1.commit()
            thread.join(timeout=30)
        return one, holder["two"]
