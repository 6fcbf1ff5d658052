"""Online top-up settlement races with real concurrent sessions (procedures/74_online_topup.sql).

A webhook sent twice, or a webhook (festpay_web) and the relay's poll (festpay_relay) arriving together, call
``api.external_topup_settle`` for the same checkout reference at the same moment (a threading.Barrier, one
connection per thread): the top-up is booked exactly once; paid racing declined decides once (declined first: the
payment is refunded, never lost); paid racing on a blocked tag makes one refund due; paid racing an admin's abort of
an ExternalUnknown top-up is either booked or refunded, never both, never neither.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable

import psycopg
import pytest

from tests.conftest import TEST_DBNAME
from tests.races import race, register_terminal

PIN = "4321"


def _setup(su: psycopg.Connection, web: psycopg.Connection, amount: int) -> tuple[int, str, str]:
    """A fresh event (the newest: the portal's), a tag with 50,00 and a PIN, signed in; a top-up of ``amount``
    started, ExternalPending, with a checkout id. Returns (event, uid, reference)."""
    event = su.execute("SELECT api.create_event(%s, 'EUR', 100000, 100, 50000)", (f"race {uuid.uuid4()}",)).fetchone()[0]
    su.execute("SELECT api.create_position(%s, 'Top-up', 'topup')", (event,))
    till = register_terminal(su, event, "Top-up")
    uid = "F" + uuid.uuid4().hex[:7].upper()
    su.execute("SELECT api.topup(%s, 1, %s, 5000, 'cash')", (till, uid))
    su.execute("UPDATE ledger.tag SET pin_hash = extensions.crypt(%s, extensions.gen_salt('bf', 4)) "
               "WHERE event_id = %s AND uid = %s", (PIN, event, uid))
    token = web.execute("SELECT token FROM api.portal_sign_in(%s, %s)", (uid, PIN)).fetchone()[0]
    assert token
    reference = web.execute("SELECT reference FROM api.portal_topup_start(%s, %s)", (token, amount)).fetchone()[0]
    web.execute("SELECT * FROM api.portal_topup_pending(%s, %s)", (token, reference))
    web.execute("SELECT api.portal_topup_checkout(%s, %s, %s)", (token, reference, "co_" + uuid.uuid4().hex))
    return event, uid, reference


def _race(urls: list[str], reference: str, results: list[str]) -> list[tuple]:
    """Each connection settles ``reference`` with its result at the same moment; returns (state, outcome, problem)
    of each. A result ``abort:<admin token>:<transaction id>`` is an admin's Aborted decision through
    api.admin_queue_resolve instead (its row: (state, 'decided', None), or (None, the error's SQLSTATE, None))."""
    with contextlib.ExitStack() as stack:
        conns = [stack.enter_context(psycopg.connect(url, autocommit=True)) for url in urls]
        return race(conns, [_settle(reference, result) for result in results])


def _settle(reference: str, result: str) -> Callable[[psycopg.Connection], tuple]:
    """A task for :func:`race`: ``result`` for ``reference`` (see :func:`_race`)."""

    def run(conn: psycopg.Connection) -> tuple:
        if result.startswith("abort:"):
            _, token, tx_id = result.split(":")
            try:
                state = conn.execute("SELECT api.admin_queue_resolve(%s, %s, 'Aborted', 'race')",
                                     (token, int(tx_id))).fetchone()[0]
                return (state, "decided", None)
            except psycopg.Error as err:
                return (None, err.sqlstate, None)
        return conn.execute("SELECT state, outcome, problem FROM api.external_topup_settle(%s, %s)",
                            (reference, result)).fetchone()

    return run


@pytest.fixture()
def conns(pg_cluster):
    with psycopg.connect(pg_cluster.url(TEST_DBNAME), autocommit=True) as su, \
            psycopg.connect(pg_cluster.url(TEST_DBNAME, user="festpay_web"), autocommit=True) as web:
        yield su, web


def _booked(su: psycopg.Connection, event: int, uid: str) -> tuple[int, int]:
    balance = su.execute("SELECT a.balance FROM ledger.account a JOIN ledger.tag g ON g.account_id = a.id "
                         "WHERE g.event_id = %s AND g.uid = %s", (event, uid)).fetchone()[0]
    lines = su.execute("SELECT count(*) FROM ledger.booking b JOIN ledger.external_checkout c "
                       "ON c.transaction_id = b.transaction_id JOIN ledger.transaction t ON t.id = c.transaction_id "
                       "WHERE t.event_id = %s", (event,)).fetchone()[0]
    return balance, lines


@pytest.mark.parametrize("rounds", [5])
def test_webhook_twice_and_poll_race_book_once(pg_cluster, conns, rounds):
    su, web = conns
    urls = [pg_cluster.url(TEST_DBNAME, user="festpay_web")] * 2 + [pg_cluster.url(TEST_DBNAME, user="festpay_relay")] * 2
    for _ in range(rounds):
        event, uid, reference = _setup(su, web, 2000)
        fee = su.execute("SELECT ledger.topup_fee(%s, 'online')", (event,)).fetchone()[0]
        results = _race(urls, reference, ["paid"] * 4)
        assert sorted(r[1] for r in results) == ["booked", "duplicate", "duplicate", "duplicate"], results
        assert all(r[0] == "Committed" for r in results)
        balance, lines = _booked(su, event, uid)
        assert balance == 5000 + 2000 - fee
        assert lines == (2 if fee else 1)
        assert su.execute("SELECT count(*) FROM ledger.outbox o JOIN ledger.external_checkout c "
                          "ON c.transaction_id = o.transaction_id WHERE c.reference = %s AND o.topic = 'provider' "
                          "AND o.done_at IS NULL", (reference,)).fetchone()[0] == 0
    assert su.execute("SELECT * FROM api.check_invariants()").fetchall() == []


def _checkout(su: psycopg.Connection, reference: str) -> tuple[int, str | None, str | None]:
    """(transaction id, refund state, refund reason) of a checkout."""
    return su.execute("SELECT transaction_id, refund_state, refund_reason FROM ledger.external_checkout "
                      "WHERE reference = %s", (reference,)).fetchone()


def test_paid_racing_declined_decides_once(pg_cluster, conns):
    su, web = conns
    urls = [pg_cluster.url(TEST_DBNAME, user="festpay_web"), pg_cluster.url(TEST_DBNAME, user="festpay_relay")]
    for _ in range(5):
        event, uid, reference = _setup(su, web, 1000)
        results = _race(urls, reference, ["paid", "declined"])
        outcomes = sorted(r[1] for r in results)
        state = results[0][0]
        assert all(r[0] == state for r in results) and state in ("Committed", "Aborted")
        # paid first: booked, the declined after it rejected; declined first: Aborted, and the paid after it is a
        # payment the provider took that cannot be booked any more: refund due
        assert outcomes == (["booked", "rejected"] if state == "Committed" else ["booked", "refund-due"]), results
        fee = su.execute("SELECT ledger.topup_fee(%s, 'online')", (event,)).fetchone()[0]
        balance, _ = _booked(su, event, uid)
        assert balance == (5000 + 1000 - fee if state == "Committed" else 5000)
        assert _checkout(su, reference)[1:] == ((None, None) if state == "Committed" else ("due", "aborted"))
    assert su.execute("SELECT * FROM api.check_invariants()").fetchall() == []


def test_paid_racing_on_a_blocked_tag_makes_one_refund_due(pg_cluster, conns):
    su, web = conns
    urls = ([pg_cluster.url(TEST_DBNAME, user="festpay_web")] * 2
            + [pg_cluster.url(TEST_DBNAME, user="festpay_relay")] * 2)
    for _ in range(3):
        event, uid, reference = _setup(su, web, 2000)
        su.execute("SELECT api.set_tag_blocked(%s, %s, true)", (event, uid))
        results = _race(urls, reference, ["paid"] * 4)
        assert sorted(r[1] for r in results) == ["duplicate", "duplicate", "duplicate", "refund-due"], results
        assert all(r[0] == "Aborted" for r in results)
        assert _booked(su, event, uid) == (5000, 0)
        assert _checkout(su, reference)[1:] == ("due", "tag-blocked")
    assert su.execute("SELECT * FROM api.check_invariants()").fetchall() == []


def test_paid_racing_an_admins_abort_is_booked_or_refunded(pg_cluster, conns):
    su, web = conns
    name = f"race-{uuid.uuid4().hex[:12]}"
    su.execute("SELECT api.create_admin_user(%s, 'support', %s)", (name, "race password 1234"))
    urls = [pg_cluster.url(TEST_DBNAME, user="festpay_web"), pg_cluster.url(TEST_DBNAME, user="festpay_relay")]
    for _ in range(5):
        event, uid, reference = _setup(su, web, 1000)
        # the event is the admin site's (the newest); the top-up past its check window: ExternalUnknown
        token = web.execute("SELECT token FROM api.admin_sign_in(%s, %s)", (name, "race password 1234")).fetchone()[0]
        su.execute("UPDATE ledger.external_checkout SET created_at = now() - interval '1 hour' WHERE reference = %s",
                   (reference,))
        outbox = su.execute("SELECT o.id FROM ledger.outbox o JOIN ledger.external_checkout c ON c.transaction_id = "
                            "o.transaction_id WHERE o.topic = 'provider' AND c.reference = %s",
                            (reference,)).fetchone()[0]
        su.execute("SELECT api.provider_failed(%s, 'pending')", (outbox,))
        tx_id, _, _ = _checkout(su, reference)
        assert su.execute("SELECT state::text FROM ledger.transaction WHERE id = %s", (tx_id,)).fetchone()[0] == \
            "ExternalUnknown"
        decided, settled = _race(urls, reference, [f"abort:{token}:{tx_id}", "paid"])
        state = su.execute("SELECT state::text FROM ledger.transaction WHERE id = %s", (tx_id,)).fetchone()[0]
        balance, lines = _booked(su, event, uid)
        refund = _checkout(su, reference)[1]
        fee = su.execute("SELECT ledger.topup_fee(%s, 'online')", (event,)).fetchone()[0]
        if state == "Committed":  # the provider's paid came first; the admin's abort is refused (already decided)
            assert settled[1] == "booked" and decided[1] == "FP030", (decided, settled)
            assert balance == 5000 + 1000 - fee and refund is None
        else:  # the admin's abort came first: the paid after it is refunded, not booked
            assert decided == ("Aborted", "decided", None) and settled[1] == "refund-due", (decided, settled)
            assert balance == 5000 and lines == 0 and refund == "due"
    assert su.execute("SELECT * FROM api.check_invariants()").fetchall() == []
