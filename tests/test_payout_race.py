"""Payout runs racing with real concurrent sessions (procedures/75_payouts.sql), as festpay_web.

Two finance sessions make runs at the same moment (a threading.Barrier, one connection per thread): every customer is
taken once, by one of the runs, and the money each run holds is exactly its customers' balances. A visitor's bank-data
change and a run are forced into both orders with explicit transactions: a change that holds the bank-data row first
makes the run wait and is what the run takes; a run that holds it first makes the change wait and then refuses it
(payout-locked), the bank data unchanged.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date

import psycopg
import pytest

from tests.conftest import TEST_DBNAME
from tests.races import Sessions, overlap, race, register_terminal

PIN = "2468"
IBAN = "DE89370400440532013000"
OTHER_IBAN = "AT611904300234573201"
SET_BANK_DATA = "SELECT api.portal_payout_set(%s, %s, %s, %s, %s, NULL)"
CREATE_RUN = "SELECT api.admin_payout_run_create(%s, %s, 1000000, %s)"


def _event(su: psycopg.Connection, customers: int) -> tuple[int, list[str]]:
    """A fresh event (the newest: the admin site's and the portal's) with the festival's account set, and
    ``customers`` tags of 10,00 + i cents each, with a PIN. Returns (event, uids)."""
    event = su.execute("SELECT api.create_event(%s, 'EUR', 100000, 100, 50000, p_payout_fee => 100)",
                       (f"payout race {uuid.uuid4()}",)).fetchone()[0]
    su.execute("UPDATE ledger.event SET payout_debtor_name = 'Festival GmbH', payout_debtor_iban = %s WHERE id = %s",
               (IBAN, event))
    su.execute("SELECT api.create_position(%s, 'Top-up', 'topup')", (event,))
    till = register_terminal(su, event, "Top-up")
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


def _one_customer(su: psycopg.Connection, web: psycopg.Connection) -> tuple[int, str, str, str]:
    """A fresh event with one customer whose bank data is saved (IBAN, no donation), and a finance admin signed in.
    Returns (event, uid, the customer's portal token, the finance token)."""
    event, (uid,) = _event(su, 1)
    token = _portal(web, uid)
    web.execute(SET_BANK_DATA, (token, IBAN, "Some One", "one@example.org", "none"))
    return event, uid, token, _finance(su, web)


def _create_run(finance: str, max_count: int) -> Callable[[psycopg.Connection], int]:
    """A task for :func:`race`: a payout run of at most ``max_count`` customers; returns its id."""
    return lambda conn: conn.execute(CREATE_RUN, (finance, max_count, date.today())).fetchone()[0]


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
    with Sessions(pg_cluster.url(TEST_DBNAME, user="festpay_web"), 2) as sessions:
        for _ in range(rounds):
            event, uids = _event(su, 20)
            for uid in uids:
                web.execute(SET_BANK_DATA, (_portal(web, uid), IBAN, "Some One", "one@example.org", "none"))
            runs = race(sessions, [_create_run(_finance(su, web), 12), _create_run(_finance(su, web), 12)])
            lines = [_lines(su, run_id) for run_id in runs]
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
    _, uid, token, finance = _one_customer(su, web)
    # The visitor's change holds the bank-data row (not committed yet): donate all instead; the run waits for it.
    _, run = overlap(su, pg_cluster.url(TEST_DBNAME, user="festpay_web"),
                     (SET_BANK_DATA, (token, None, None, "one@example.org", "all")),
                     (CREATE_RUN, (finance, 10, date.today())))
    assert run.ok, run.error
    assert _lines(su, run.value[0]["admin_payout_run_create"]) == [(uid, 0, 0, 1000)], \
        "the run took the committed change: everything donated"
    assert su.execute("SELECT * FROM api.check_invariants()").fetchall() == []


def test_run_first_locks_the_bank_data(pg_cluster, conns):
    su, web = conns
    event, uid, token, finance = _one_customer(su, web)
    # The run holds the customer's account and bank-data row (not committed yet); the visitor's change waits for it.
    run, change = overlap(su, pg_cluster.url(TEST_DBNAME, user="festpay_web"),
                          (CREATE_RUN, (finance, 10, date.today())),
                          (SET_BANK_DATA, (token, OTHER_IBAN, "Someone Else", "else@example.org", "none")))
    assert change.sqlstate == "FP080", change
    assert su.execute("SELECT b.iban, b.holder FROM ledger.payout_bank b JOIN ledger.tag g ON g.id = b.tag_id "
                      "WHERE g.event_id = %s AND g.uid = %s", (event, uid)).fetchone() == (IBAN, "Some One")
    assert _lines(su, run.value[0]["admin_payout_run_create"]) == [(uid, 900, 100, 0)]
    assert su.execute("SELECT * FROM api.check_invariants()").fetchall() == []
