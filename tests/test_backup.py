"""Backups with pgBackRest: a cluster of its own is backed up, booked on, and restored to a point in time; exactly
the bookings before that point are back, the ledger's invariants hold, and the restored cluster books again."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from python_gateway import backup, cli
from python_gateway.embedded import EmbeddedPostgres
from python_gateway.migrate import migrate

pytestmark = pytest.mark.skipif(shutil.which("pgbackrest") is None, reason="pgbackrest is not installed")

DBNAME = "festpay_backup"


@pytest.fixture
def cluster(tmp_path: Path):
    """A running cluster of its own with a migrated database DBNAME, and a backup folder the server user reaches."""
    pg = EmbeddedPostgres(tmp_path / "pg", server_settings={"shared_buffers": "32MB", "max_connections": 20})
    backup_dir = Path(tempfile.mkdtemp(prefix="festpay-backup-test-"))
    pg.acquire_lock()
    try:
        pg.start()
        pg.create_database(DBNAME)
        migrate(pg.url(DBNAME))
        yield pg, backup_dir
    finally:
        try:
            pg.destroy()
        finally:
            pg.release_lock()
            shutil.rmtree(backup_dir, ignore_errors=True)


def _topup(conn: psycopg.Connection, terminal: int, number: int, uid: str, amount: int) -> None:
    state = conn.execute("SELECT state FROM api.topup(%s, %s, %s, %s, 'cash')",
                         (terminal, number, uid, amount)).fetchone()[0]
    assert state == "Committed"


def _booked(conn: psycopg.Connection) -> list[tuple[str, int]]:
    """(tag uid, balance) of every customer account with money, as the ledger has them."""
    return conn.execute("""SELECT t.uid, a.balance FROM ledger.tag t JOIN ledger.account a ON a.id = t.account_id
                           WHERE a.balance <> 0 ORDER BY t.uid""").fetchall()


def test_restore_to_a_point_in_time_keeps_exactly_the_bookings_before_it(cluster, monkeypatch, capsys):
    pg, backup_dir = cluster
    url = pg.url(DBNAME)
    with psycopg.connect(url, autocommit=True) as conn:
        event = conn.execute("SELECT api.create_event('Backup Fest', 'EUR', 100000, 100, 50000)").fetchone()[0]
        conn.execute("SELECT api.create_position(%s, 'Top-up', 'topup')", (event,))
        code = conn.execute("SELECT api.create_registration_code(%s, 'Top-up')", (event,)).fetchone()[0]
        terminal = conn.execute("SELECT assignment_id FROM api.register_terminal(%s, 'backup')", (code,)).fetchone()[0]
        _topup(conn, terminal, 1, "BAC0000A", 1000)

    backup.init(pg, backup_dir)
    backup.run(pg, backup_dir, "full")
    assert "full backup" in backup.info(pg, backup_dir)
    time.sleep(1.1)  # pgBackRest keeps a backup's stop time in whole seconds; the target must lie after it

    with psycopg.connect(url, autocommit=True) as conn:
        _topup(conn, terminal, 2, "BAC0000B", 2000)
        point = conn.execute("SELECT clock_timestamp()").fetchone()[0]
        time.sleep(1.1)
        _topup(conn, terminal, 3, "BAC0000C", 3000)
        assert [uid for uid, _ in _booked(conn)] == ["BAC0000A", "BAC0000B", "BAC0000C"]

    backup.restore(pg, backup_dir, point)

    with psycopg.connect(url, autocommit=True) as conn:
        assert _booked(conn) == [("BAC0000A", 1000), ("BAC0000B", 2000)]
        assert conn.execute("SELECT * FROM api.check_invariants()").fetchall() == []
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is False
        _topup(conn, terminal, 4, "BAC0000D", 400)
        assert [uid for uid, _ in _booked(conn)] == ["BAC0000A", "BAC0000B", "BAC0000D"]
        assert conn.execute("SELECT * FROM api.check_invariants()").fetchall() == []

    # The command line, for this cluster, while the lock is held as `festpay run` holds it: a backup runs online,
    # a restore is refused.
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("FESTPAY_PG_PORT", raising=False)
    monkeypatch.setenv("FESTPAY_DATA_DIR", str(pg.root))
    monkeypatch.setenv("FESTPAY_BACKUP_DIR", str(backup_dir))
    capsys.readouterr()
    assert cli.main(["backup", "run", "--type", "incr"]) == 0
    assert "incr backup" in capsys.readouterr().out
    assert cli.main(["backup", "restore", "--to", point.isoformat()]) == 1
    assert "stop that run" in capsys.readouterr().err
    assert pg.is_running()


def test_backup_commands_refuse_an_external_database_and_a_time_without_zone(monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", "postgresql://festpay@db.example.org/festpay")
    assert cli.main(["backup", "init"]) == 1
    assert "configure pgBackRest on that server" in capsys.readouterr().err
    monkeypatch.delenv("DATABASE_URL")
    assert cli.main(["backup", "restore", "--to", "2026-12-06 04:30:00"]) == 1
    assert "needs a time zone" in capsys.readouterr().err
