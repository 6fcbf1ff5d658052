"""The DBA scripts in sql/: the demo event loads idempotently, and every report runs under psql on real data as
festpay_report, the reporting role."""

from __future__ import annotations

import subprocess

import psycopg
import pytest

from python_gateway.config import SQL_DIR
from python_gateway.migrate import load_sql_file
from tests.conftest import migrated_database

REPORTS = sorted((SQL_DIR / "reports").glob("*.sql"))


@pytest.fixture(scope="module")
def demo_db(pg_cluster):
    with migrated_database(pg_cluster, "dba_scripts") as url:
        yield url


def _rows(url: str, query: str, *args) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, args).fetchall()


def test_demo_event_loads_once(demo_db):
    load_sql_file(demo_db, SQL_DIR / "demo.sql")
    load_sql_file(demo_db, SQL_DIR / "demo.sql")
    assert _rows(demo_db, "SELECT count(*) FROM ledger.event WHERE name = 'Demo Festival'") == [(1,)]
    assert _rows(demo_db, """SELECT p.name, p.kind::text, m.name FROM ledger.position p
                             LEFT JOIN ledger.merchant m ON m.id = p.merchant_id ORDER BY p.name""") == [
        ("Bar", "sale", "Bar"), ("Top-up", "topup", None)]
    assert _rows(demo_db, "SELECT name FROM ledger.merchant ORDER BY name") == [("Bar",), ("Food",)]
    rates = {r for (r,) in _rows(demo_db, "SELECT DISTINCT vat_rate::text FROM ledger.product")}
    assert {"19.00", "7.00"} <= rates
    assert _rows(demo_db, "SELECT name, price FROM ledger.product WHERE returnable") == [("Cup deposit", 200)]
    # the README's wristband signs in to the portal with the PIN the banner names; payout runs have an account
    assert _rows(demo_db, "SELECT outcome FROM api.portal_sign_in('04a1b2c3d4e5f6', '1234')") == [("ok",)]
    assert _rows(demo_db, "SELECT payout_debtor_iban <> '' FROM ledger.event WHERE name = 'Demo Festival'") == [(True,)]


def test_reports_run_on_a_booked_event(pg_cluster, demo_db):
    assert {p.name for p in REPORTS} >= {"balances_by_kind.sql", "trial_balance.sql", "open_reservations.sql",
                                         "violations.sql", "tag_number_duplicates.sql", "overdrafts.sql"}
    load_sql_file(demo_db, SQL_DIR / "demo.sql")
    with psycopg.connect(demo_db, autocommit=True) as conn:
        e = conn.execute("SELECT id FROM ledger.event WHERE name = 'Demo Festival'").fetchone()[0]
        code = conn.execute("SELECT api.create_registration_code(%s, 'Top-up')", (e,)).fetchone()[0]
        top = conn.execute("SELECT assignment_id FROM api.register_terminal(%s, 'dba')", (code,)).fetchone()[0]
        conn.execute("SELECT api.topup(%s, 1, 'DBA00001', 2000, 'card')", (top,))
    as_report = pg_cluster.url("dba_scripts", user="festpay_report")
    for report in REPORTS:
        out = subprocess.run([pg_cluster.psql_path, "-X", "-v", "ON_ERROR_STOP=1", "-d", as_report, "-f", str(report)],
                             capture_output=True, text=True, stdin=subprocess.DEVNULL)
        assert out.returncode == 0, f"{report.name} as festpay_report: {out.stderr}"
    trial = subprocess.run([pg_cluster.psql_path, "-X", "-A", "-t", "-d", as_report, "-f", str(SQL_DIR / "reports" / "trial_balance.sql")],
                           capture_output=True, text=True, check=True).stdout
    assert "Demo Festival|2000|-2000|0|balanced" in trial
    kinds = subprocess.run([pg_cluster.psql_path, "-X", "-A", "-t", "-d", as_report, "-f", str(SQL_DIR / "reports" / "balances_by_kind.sql")],
                           capture_output=True, text=True, check=True).stdout
    assert "Demo Festival|customer|2|1950|0" in kinds  # the demo wristband (0) and DBA00001
