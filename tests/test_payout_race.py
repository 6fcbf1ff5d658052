"""Payout runs racing with real concurrent sessions (procedures/75_payouts.sql), as festpay_web.

Two finance sessions make runs at the same moment (a threading.Barrier, one connection per thread): every customer is
taken once, by one of the runs, and the money each run holds is exactly its customers' balances. A visitor's bank-data
change and a run are forced into both orders with explicit transactions: a change that holds the bank-data row first
makes the run wait and is what the run takes; a run that holds it first makes the change wait and then refuses it
(payout-locked), the bank data unchanged.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import date

import psycopg
import pytest

from tests.conftest import TEST_DBNAME

PIN = "2468"
IBAN = "DE89370400440532013000"
OTHER_IBAN = "AT611904300234573201"
BARRIER_TIMEOUT_S = 30


def _event(su: psycopg.Connection, customers: int) -> tuple[int, list[str]]:
    """A fresh event (the newest: the admin site's and the portal's) with the festival's account set, and
    ``customers`` tags of 10,00 + i cents each, with a PIN. Returns (event, uids)."""
    event = su.execute("SELECT api.create_event(%s, 'EUR', 100000, 100, 50000, p_payout_fee => 100)",
                       (f"payout race {uuid.uuid4()}",)).fetchone()[0]
    su.execute("UPDATE ledger.event SET payout_debtor_name = 'Festival GmbH', payout_debtor_iban = %s WHERE id = %s",
               (IBAN, event))
    su.execute("SELECT api.create_position(%s, 'Top-up', 'topup')", (event,))
    code = su.execute("SELECT api.create_registration_code(%s, 'Top-up')", (event,)).fetchone()[0]
    till = su.execute("SELECT assignment_id FROM api.register_terminal(%s, 'race till')", (code,)).fetchone()[0]
    uids = []
    for i in range(customers):
        uid = "E" + uuid.uuid4().hex[:7].upper()
        su.execute("SELECT api.topup(%s, %s, %s, %s, 'cash')", (till, i + 1, uid, 1000 + i))
        uids.append(uid)
    su.execute("UPDATE ledger.tag SET pin_hash = extensions.crypt(%s, extensions.gen_salt('bf', 4)) WHERE event_id = %s",
               (PIN, event))
    return event, uids


def _portal(web: psycopg.Connection, uid: str) -> str:
    token = web.execute("SELECT token FROM api.portal_sign_in(%s, %s)", (uid, PIN)).fetchone()[0]
    assert token
    return token


def _finance(su: psycopg.Connection, web: psycopg.Connection) -> str:
    """A new finance admin, signed in. Returns the session token."""
    name = f"race-{uuid.uuid4().hex[:12]}"
    su.execute("SELECT test.admin_user(%s, 'finance')", (name,))
    token = web.execute("SELECT token FROM api.admin_sign_in(%s, %s)", (name, "pw-" + name)).fetchone()[0]
    assert token
    return token


def _wait_for_lock(su: psycopg.Connection, pid: int) -> None:
    """Waits until the backend ``pid`` waits for a lock (at most 10 s)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        row = su.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
        if row and row[0] == "Lock":
            return
        time.sleep(0.02)
    pytest.fail(f"backend {pid} never waited for a lock")


@pytest.fixture()
def conns(pg_cluster):
    with psycopg.connect(pg_cluster.url(TEST_DBNAME), autocommit=True) as su, \
            psycopg.connect(pg_cluster.url(TEST_DBNAME, user="festpay_web"), autocommit=True) as web:
        yield su, web


def _lines(su: psycopg.Connection, run: int) -> list[tuple[str, int, int, int]]:
    return su.execute("SELECT g.uid, l.amount, l.fee, l.donation FROM ledger.payout_line l JOIN ledger.tag g "
                      "ON g.id = l.tag_id WHERE l.run_id = %s ORDER BY l.line_no", (run,)).fetchall()


@pytest.mark.parametrize("rounds", [3])
def test_two_runs_at_once_take_each_customer_once(pg_cluster, conns, rounds):
    su, web = conns
    url = pg_cluster.url(TEST_DBNAME, user="festpay_web")
    for _ in range(rounds):
        event, uids = _event(su, 20)
        for uid in uids:
            web.execute("SELECT api.portal_payout_set(%s, %s, 'Some One', 'one@example.org', 'none', NULL)",
                        (_portal(web, uid), IBAN))
        tokens = [_finance(su, web), _finance(su, web)]
        barrier = threading.Barrier(2, timeout=BARRIER_TIMEOUT_S)
        out: list[object] = [None, None]

        def run(i: int) -> None:
            try:
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute("SELECT 1")
                    barrier.wait()
                    out[i] = conn.execute("SELECT api.admin_payout_run_create(%s, 12, 1000000, %s)",
                                          (tokens[i], date.today())).fetchone()[0]
            except BaseException as err:  # noqa: BLE001 - reported below
                out[i] = err

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for r in out:
            if isinstance(r, BaseException):
                raise r
        lines = [_lines(su, run_id) for run_id in out]  # type: ignore[arg-type]
        taken = [row[0] for run_lines in lines for row in run_lines]
        assert sorted(len(x) for x in lines) == [8, 12], lines
        assert sorted(taken) == sorted(uids), "every customer in exactly one run"
        for uid, amount, fee, donation in (row for run_lines in lines for row in run_lines):
            held, balance = su.execute("SELECT a.held, a.balance FROM ledger.account a JOIN ledger.tag g "
                                       "ON g.account_id = a.id WHERE g.event_id = %s AND g.uid = %s",
                                       (event, uid)).fetchone()
            assert (amount + fee + donation, held) == (balance, balance)
    assert su.execute("SELECT * FROM api.check_invariants()").fetchall() == []


def test_bank_data_change_first_is_what_the_run_takes(pg_cluster, conns):
    su, web = conns
    event, (uid,) = _event(su, 1)
    token = _portal(web, uid)
    web.execute("SELECT api.portal_payout_set(%s, %s, 'Some One', 'one@example.org', 'none', NULL)", (token, IBAN))
    finance = _finance(su, web)
    out: list[object] = [None]
    with psycopg.connect(pg_cluster.url(TEST_DBNAME, user="festpay_web")) as visitor, \
            psycopg.connect(pg_cluster.url(TEST_DBNAME, user="festpay_web"), autocommit=True) as admin:
        # The visitor's change holds the bank-data row (not committed yet): donate all instead.
        visitor.execute("SELECT api.portal_payout_set(%s, NULL, NULL, 'one@example.org', 'all', NULL)", (token,))

        def make_run() -> None:
            try:
                out[0] = admin.execute("SELECT api.admin_payout_run_create(%s, 10, 1000000, %s)",
                                       (finance, date.today())).fetchone()[0]
            except BaseException as err:  # noqa: BLE001 - reported below
                out[0] = err

        pid = admin.info.backend_pid
        thread = threading.Thread(target=make_run)
        thread.start()
        _wait_for_lock(su, pid)
        visitor.commit()
        thread.join(30)
    if isinstance(out[0], BaseException):
        raise out[0]
    assert _lines(su, out[0]) == [(uid, 0, 0, 1000)], "the run took the committed change: everything donated"
    assert su.execute("SELECT * FROM api.check_invariants()").fetchall() == []


def test_run_first_locks_the_bank_data(pg_cluster, conns):
    su, web = conns
    event, (uid,) = _event(su, 1)
    token = _portal(web, uid)
    web.execute("SELECT api.portal_payout_set(%s, %s, 'Some One', 'one@example.org', 'none', NULL)", (token, IBAN))
    finance = _finance(su, web)
    out: list[object] = [None]
    with psycopg.connect(pg_cluster.url(TEST_DBNAME, user="festpay_web")) as admin, \
            psycopg.connect(pg_cluster.url(TEST_DBNAME, user="festpay_web"), autocommit=True) as visitor:
        # The run holds the customer's account and bank-data row (not committed yet).
        run = admin.execute("SELECT api.admin_payout_run_create(%s, 10, 1000000, %s)",
                            (finance, date.today())).fetchone()[0]

        def change() -> None:
            try:
                visitor.execute("SELECT api.portal_payout_set(%s, %s, 'Someone Else', 'else@example.org', 'none', NULL)",
                                (token, OTHER_IBAN))
                out[0] = "saved"
            except BaseException as err:  # noqa: BLE001 - checked below
                out[0] = err

        pid = visitor.info.backend_pid
        thread = threading.Thread(target=change)
        thread.start()
        _wait_for_lock(su, pid)
        admin.commit()
        thread.join(30)
    assert isinstance(out[0], psycopg.Error) and out[0].sqlstate == "FP080", out[0]
    assert su.execute("SELECT b.iban, b.holder FROM ledger.payout_bank b JOIN ledger.tag g ON g.id = b.tag_id "
                      "WHERE g.event_id = %s AND g.uid = %s", (event, uid)).fetchone() == (IBAN, "Some One")
    assert _lines(su, run) == [(uid, 900, 100, 0)]
    assert su.execute("SELECT * FROM api.check_invariants()").fetchall() == []
