"""Concurrency: real parallel PostgreSQL sessions against the ledger's api functions.

Every race runs in threads that each hold their own psycopg connection, logged in as the role that makes the call
in production (``festpay_terminal`` for terminal calls, ``festpay_relay`` for reservation expiry; transfers are a
DBA's call for now and run as the superuser), and that start together at a ``threading.Barrier``.  Each test builds its own event through the api (as superuser), then checks exact
balances, held amounts, states and booking lines, and ends with ``api.check_invariants()`` returning no rows.
Only the named problems a test expects may occur; anything else (a deadlock 40P01, a serialization failure,
a unique violation, ...) fails the test.
"""

from __future__ import annotations

import itertools
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from python_gateway.signing import log_entry_mac
from tests.races import Outcome, Sessions, attempt, overlap, race, register_terminal

GATEWAY_ROLE = "festpay_terminal"
RELAY_ROLE = "festpay_relay"

INSUFFICIENT_BALANCE = "FP020"
DEADLOCK = "40P01"


# --------------------------------------------------------------------------------------------------------------
# Event setup through the api (superuser)
# --------------------------------------------------------------------------------------------------------------


@dataclass
class Event:
    """An event made through the api: sale terminals at Bar, a top-up terminal, four products."""

    id: int
    bar_terminals: list[int]
    topup_terminal: int
    products: dict[str, int]
    prices: dict[str, int]
    _topup_numbers: itertools.count = field(default_factory=lambda: itertools.count(1))

    def items(self, *spec: str) -> list[dict[str, int]]:
        """Items list from 'Name:quantity' strings, as api.reserve / api.replicate take it."""
        out = []
        for s in spec:
            name, quantity = s.split(":")
            out.append({"product_id": self.products[name], "quantity": int(quantity)})
        return out

    def amount(self, *spec: str) -> int:
        return sum(self.prices[s.split(":")[0]] * int(s.split(":")[1]) for s in spec)


PRODUCTS = {  # name: (price, vat, fixed_price, returnable)
    "Beer": (450, 19, True, False),
    "Pretzel": (350, 7, True, False),
    "Tip": (None, 0, False, False),
    "Cup": (200, 0, True, True),
}


def new_uid() -> str:
    """A fresh tag UID (16 hex digits, upper case as the ledger normalises it)."""
    return uuid.uuid4().hex[:16].upper()


def make_event(su: psycopg.Connection, *, bar_terminals: int = 4, reserve_timeout_s: int = 120) -> Event:
    """Creates an event (max balance 1,000,000, top-ups 100..500,000, no fees) with merchant/position Bar,
    a Top-up position, the products of PRODUCTS, `bar_terminals` Bar terminals and one top-up terminal."""
    event_id = su.execute(
        "SELECT api.create_event(%s, 'EUR', 1000000, 100, 500000, p_reserve_timeout_s => %s)",
        (f"Concurrency {uuid.uuid4().hex[:10]}", reserve_timeout_s),
    ).fetchone()[0]
    merchant = su.execute("SELECT api.create_merchant(%s, 'Bar')", (event_id,)).fetchone()[0]
    su.execute("SELECT api.create_position(%s, 'Bar', 'sale', %s)", (event_id, merchant))
    su.execute("SELECT api.create_position(%s, 'Top-up', 'topup')", (event_id,))
    products, prices = {}, {}
    for name, (price, vat, fixed, returnable) in PRODUCTS.items():
        products[name] = su.execute("SELECT api.create_product(%s, %s, %s, %s, %s, %s)",
                                    (event_id, name, price, vat, fixed, returnable)).fetchone()[0]
        prices[name] = price
    return Event(
        id=event_id,
        bar_terminals=[register_terminal(su, event_id, "Bar") for _ in range(bar_terminals)],
        topup_terminal=register_terminal(su, event_id, "Top-up"),
        products=products,
        prices=prices,
    )


def fund(su: psycopg.Connection, ev: Event, uid: str, amount: int) -> int:
    """Cash top-up at the event's top-up terminal (activates the tag). Returns the balance after."""
    row = su.execute("SELECT state, balance FROM api.topup(%s, %s, %s, %s, 'cash')",
                     (ev.topup_terminal, next(ev._topup_numbers), uid, amount)).fetchone()
    assert row[0] == "Committed"
    return row[1]


def funded_tag(su: psycopg.Connection, ev: Event, amount: int) -> str:
    uid = new_uid()
    assert fund(su, ev, uid, amount) == amount
    return uid


# --------------------------------------------------------------------------------------------------------------
# Reading the ledger (superuser)
# --------------------------------------------------------------------------------------------------------------


def account(su: psycopg.Connection, ev: Event, uid: str) -> tuple[int, int]:
    """(balance, held) of a tag's customer account."""
    return su.execute(
        "SELECT a.balance, a.held FROM ledger.tag t JOIN ledger.account a ON a.id = t.account_id"
        " WHERE t.event_id = %s AND t.uid = %s", (ev.id, uid)).fetchone()


def tx_row(su: psycopg.Connection, tx_id: int) -> dict[str, Any]:
    with su.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM ledger.transaction WHERE id = %s", (tx_id,)).fetchone()


def terminal_txs(su: psycopg.Connection, assignment_id: int, number: int) -> list[dict[str, Any]]:
    with su.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM ledger.transaction WHERE assignment_id = %s AND terminal_tx_number = %s",
                           (assignment_id, number)).fetchall()


def lines(su: psycopg.Connection, tx_id: int) -> list[tuple[str, str, int]]:
    """The booking lines of a transaction as (debit 'kind:name', credit 'kind:name', amount), by line number."""
    return su.execute(
        "SELECT d.kind || ':' || d.name, c.kind || ':' || c.name, b.amount FROM ledger.booking b"
        " JOIN ledger.account d ON d.id = b.debit_account_id JOIN ledger.account c ON c.id = b.credit_account_id"
        " WHERE b.transaction_id = %s ORDER BY b.line_no", (tx_id,)).fetchall()


def purchase_lines(ev: Event, uid: str, *spec: str) -> list[tuple[str, str, int]]:
    """Expected lines of a Bar purchase: per item merchant <- customer (returnable items: deposit <- customer)."""
    out = []
    for s in spec:
        name, quantity = s.split(":")
        receiver = "deposit:deposit" if PRODUCTS[name][3] else "merchant:Bar"
        out.append((receiver, f"customer:{uid}", ev.prices[name] * int(quantity)))
    return out


def violations(su: psycopg.Connection, tx_id: int) -> list[tuple[str, str]]:
    return su.execute("SELECT from_state::text, to_state::text FROM ledger.violation WHERE transaction_id = %s"
                      " ORDER BY id", (tx_id,)).fetchall()


def assert_invariants(su: psycopg.Connection) -> None:
    broken = su.execute("SELECT * FROM api.check_invariants()").fetchall()
    assert broken == [], f"broken invariants: {broken}"


# --------------------------------------------------------------------------------------------------------------
# Running things at the same time (race, overlap, Sessions, attempt: tests/races.py)
# --------------------------------------------------------------------------------------------------------------


def assert_only(outcomes: list[Outcome], allowed: set[str]) -> None:
    """Every failure carries one of the allowed SQLSTATEs (never a deadlock or any other error)."""
    unexpected = [o.error for o in outcomes if not o.ok and o.sqlstate not in allowed]
    assert not unexpected, f"{len(unexpected)} unexpected errors, e.g. {unexpected[:3]}"


# --------------------------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def su(db_url: str):
    """Superuser connection (autocommit) for setup and for reading the ledger."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="module")
def gateway_url(db_url: str) -> str:
    url = make_conninfo(db_url, user=GATEWAY_ROLE)
    with psycopg.connect(url, autocommit=True) as conn:  # the gateway really is a restricted login
        assert conn.execute("SELECT current_user").fetchone()[0] == GATEWAY_ROLE
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT count(*) FROM ledger.account")
    return url


@pytest.fixture(scope="module")
def relay_url(db_url: str) -> str:
    return make_conninfo(db_url, user=RELAY_ROLE)


RESERVE_SQL = "SELECT * FROM api.reserve(%s, %s, %s, %s, %s, %s)"
REPLICATE_SQL = "SELECT * FROM api.replicate(%s, %s)"


def replicate_entry(ev: Event, number: int, uid: str, tag_number: int, state: str, *spec: str) -> dict[str, Any]:
    return {"terminal_tx_number": number, "type": "purchase", "state": state, "uid": uid,
            "tag_tx_number": tag_number, "time": datetime.now(timezone.utc).isoformat(),
            "amount": ev.amount(*spec), "items": ev.items(*spec)}


def log_entry(su: psycopg.Connection, assignment_id: int, number: int, uid: str, tag_number: int, amount: int,
              **extra: Any) -> dict[str, Any]:
    """One tag log entry as the terminal `assignment_id` writes it, with the MAC of its own secret (SPEC 7)."""
    secret = su.execute("SELECT encode(secret, 'base64') FROM ledger.assignment WHERE id = %s",
                        (assignment_id,)).fetchone()[0]
    return {"assignment_id": assignment_id, "terminal_tx_number": number, "tag_tx_number": tag_number,
            "amount": amount, **extra, "mac": log_entry_mac(secret, assignment_id, number, uid, tag_number, amount)}


# --------------------------------------------------------------------------------------------------------------
# 1. Parallel reserves never overdraw
# --------------------------------------------------------------------------------------------------------------


def test_parallel_reserves_never_overdraw(su, gateway_url):
    ev = make_event(su, bar_terminals=5)
    beer = ("Beer:1",)
    amount = ev.amount(*beer)                       # 450
    balance = 20 * amount + 100                     # covers exactly 20 of the 50 reserves
    uid = funded_tag(su, ev, balance)
    # 50 distinct (terminal, number) pairs: 10 numbers on each of 5 Bar terminals.
    requests = [(term, n) for term in ev.bar_terminals for n in range(1, 11)]
    assert len(requests) == 50

    def reserve(term: int, number: int) -> Callable[[psycopg.Connection], Outcome]:
        return lambda conn: attempt(conn, RESERVE_SQL, (term, number, uid, number, amount, Jsonb(ev.items(*beer))))

    with Sessions(gateway_url, len(requests)) as conns:
        outcomes = race(conns, [reserve(t, n) for t, n in requests])

    assert_only(outcomes, {INSUFFICIENT_BALANCE})
    succeeded = [o.value[0] for o in outcomes if o.ok]
    failed = [o for o in outcomes if not o.ok]
    # Serialised on the account row: exactly as many succeed as the balance covers, the rest are FP020.
    assert len(succeeded) * amount <= balance
    assert len(succeeded) == balance // amount == 20
    assert len(failed) == 30 and all(o.sqlstate == INSUFFICIENT_BALANCE for o in failed)
    assert all(r["state"] == "ReservePending" and r["available"] >= 0 for r in succeeded)
    assert len({r["transaction_id"] for r in succeeded}) == 20
    # Each success saw what the earlier ones left: the answers' available amounts are exactly these.
    assert sorted(r["available"] for r in succeeded) == sorted(balance - k * amount for k in range(1, 21))

    final_balance, held = account(su, ev, uid)
    assert final_balance == balance                 # reserving books nothing
    assert held == len(succeeded) * amount == sum(tx_row(su, r["transaction_id"])["held"] for r in succeeded)
    assert final_balance - held >= 0
    n_purchases = su.execute(
        "SELECT count(*) FROM ledger.transaction t JOIN ledger.tag g ON g.account_id = t.account_id"
        " WHERE g.event_id = %s AND g.uid = %s AND t.type = 'purchase'", (ev.id, uid)).fetchone()[0]
    assert n_purchases == 20                        # failed reserves leave no transaction behind
    assert_invariants(su)

    # Tidy up (nothing left pending in the shared test database): the terminals report the sales aborted.
    by_id = {r["transaction_id"]: r for r in succeeded}
    for term in ev.bar_terminals:
        numbers = [n for (n,) in su.execute(
            "SELECT terminal_tx_number FROM ledger.transaction WHERE assignment_id = %s ORDER BY 1", (term,))]
        if numbers:
            entries = [replicate_entry(ev, n, uid, n, "Aborted", *beer) for n in numbers]
            rows = su.execute(REPLICATE_SQL, (term, Jsonb(entries))).fetchall()
            assert all(r[3] == "booked" and r[2] == "Aborted" and r[1] in by_id for r in rows), rows
    assert account(su, ev, uid) == (balance, 0)
    assert_invariants(su)


# --------------------------------------------------------------------------------------------------------------
# 2. Opposite transfers: exact balances, no deadlock
# --------------------------------------------------------------------------------------------------------------


def test_opposite_transfers_exact_and_deadlock_free(su, db_url):
    ev = make_event(su, bar_terminals=0)
    start = 3000
    x = 700
    a, b = funded_tag(su, ev, start), funded_tag(su, ev, start)
    per_direction, sessions_per_direction = 500, 4

    def transfers(src: str, dst: str, count: int) -> Callable[[psycopg.Connection], list[Outcome]]:
        return lambda conn: [attempt(conn, "SELECT * FROM api.transfer(%s, %s, %s, %s)", (ev.id, src, dst, x))
                             for _ in range(count)]

    share = per_direction // sessions_per_direction
    tasks = ([transfers(a, b, share) for _ in range(sessions_per_direction)]
             + [transfers(b, a, share) for _ in range(sessions_per_direction)])
    with Sessions(db_url, len(tasks)) as conns:
        results = race(conns, tasks)

    a_to_b = [o for r in results[:sessions_per_direction] for o in r]
    b_to_a = [o for r in results[sessions_per_direction:] for o in r]
    assert len(a_to_b) == len(b_to_a) == per_direction
    everything = a_to_b + b_to_a
    assert not [o for o in everything if o.sqlstate == DEADLOCK], "opposite transfers deadlocked"
    assert_only(everything, {INSUFFICIENT_BALANCE})
    ok_ab = sum(o.ok for o in a_to_b)
    ok_ba = sum(o.ok for o in b_to_a)
    # Each answer reports non-negative balances that add up to the money in play.
    for o in everything:
        if o.ok:
            row = o.value[0]
            assert row["from_balance"] >= 0 and row["to_balance"] >= 0
            assert row["from_balance"] + row["to_balance"] == 2 * start

    assert account(su, ev, a) == (start - ok_ab * x + ok_ba * x, 0)
    assert account(su, ev, b) == (start + ok_ab * x - ok_ba * x, 0)
    n_transfers = su.execute("SELECT count(*) FROM ledger.transaction WHERE event_id = %s AND type = 'transfer'"
                             " AND state = 'Committed'", (ev.id,)).fetchone()[0]
    assert n_transfers == ok_ab + ok_ba
    assert ok_ab > 0 and ok_ba > 0
    print(f"\nopposite transfers: A->B {ok_ab} booked, B->A {ok_ba} booked, {len(everything) - ok_ab - ok_ba} FP020")
    assert_invariants(su)


# --------------------------------------------------------------------------------------------------------------
# 3. One offline purchase replicated by ten sessions at once
# --------------------------------------------------------------------------------------------------------------


def test_same_replication_from_ten_sessions_books_once(su, gateway_url):
    ev = make_event(su, bar_terminals=1)
    terminal = ev.bar_terminals[0]
    spec = ("Beer:2", "Cup:1")
    amount = ev.amount(*spec)                       # 900 + 200 deposit
    uid = funded_tag(su, ev, 10000)
    expected_balance = 10000
    with Sessions(gateway_url, 10) as conns:
        for number in range(1, 6):                  # a few rounds, each a fresh offline purchase
            entry = Jsonb([replicate_entry(ev, number, uid, number, "Committed", *spec)])
            outcomes = race(conns, [lambda c, e=entry: attempt(c, REPLICATE_SQL, (terminal, e))] * 10)
            assert_only(outcomes, set())
            rows = [o.value[0] for o in outcomes]
            assert Counter(r["outcome"] for r in rows) == {"booked": 1, "duplicate": 9}, rows
            assert all(r["state"] == "Committed" and r["problem"] is None for r in rows)
            txs = terminal_txs(su, terminal, number)
            assert len(txs) == 1
            assert {r["transaction_id"] for r in rows} == {txs[0]["id"]}
            assert txs[0]["state"] == "Committed" and txs[0]["held"] == 0
            assert lines(su, txs[0]["id"]) == purchase_lines(ev, uid, *spec)
            expected_balance -= amount
            assert account(su, ev, uid) == (expected_balance, 0)
    assert expected_balance == 10000 - 5 * amount
    assert_invariants(su)


def test_batches_over_the_same_tags_in_opposite_orders_do_not_deadlock(su, gateway_url):
    """Two tills replicate offline sales of the same tags, one batch in the order A, B, C, ..., the other in the
    reverse order: each batch locks its tags in one order (by UID), so neither waits for the other in a cycle."""
    ev = make_event(su, bar_terminals=2)
    uids = [funded_tag(su, ev, 50000) for _ in range(6)]
    rounds, sessions_per_till = 8, 3
    till_a, till_b = ev.bar_terminals

    def batches(till: int, order: list[str], first: int) -> Callable[[psycopg.Connection], list[Outcome]]:
        def run(conn: psycopg.Connection) -> list[Outcome]:
            out = []
            for r in range(rounds):
                base = first + r * len(order)
                entries = [replicate_entry(ev, base + k, uid, base + k, "Committed", "Beer:1")
                           for k, uid in enumerate(order)]
                out.append(attempt(conn, REPLICATE_SQL, (till, Jsonb(entries))))
            return out
        return run

    tasks = []
    for s_no in range(sessions_per_till):
        block = 1 + s_no * rounds * len(uids)
        tasks.append(batches(till_a, uids, block))
        tasks.append(batches(till_b, uids[::-1], block))
    with Sessions(gateway_url, len(tasks)) as conns:
        results = race(conns, tasks)
    outcomes = [o for r in results for o in r]
    assert not [o for o in outcomes if o.sqlstate == DEADLOCK], "replication batches deadlocked"
    assert_only(outcomes, set())
    for o in outcomes:                               # answered in the batch's order, every entry booked
        numbers = [row["terminal_tx_number"] for row in o.value]
        assert len(numbers) == len(uids) and numbers == sorted(numbers), numbers
        assert {row["outcome"] for row in o.value} == {"booked"}
    booked = su.execute("SELECT count(*) FROM ledger.transaction WHERE event_id = %s AND state = 'Committed' "
                        "AND type = 'purchase'", (ev.id,)).fetchone()[0]
    assert booked == 2 * sessions_per_till * rounds * len(uids)
    assert_invariants(su)


# --------------------------------------------------------------------------------------------------------------
# 4. Reserve vs expiry vs commit (vs abort)
# --------------------------------------------------------------------------------------------------------------


def test_reserve_expiry_commit_races(su, gateway_url, relay_url):
    ev = make_event(su, bar_terminals=1, reserve_timeout_s=60)
    terminal = ev.bar_terminals[0]
    spec = ("Beer:1", "Pretzel:1")
    amount = ev.amount(*spec)                       # 800
    rounds = 30
    uid = funded_tag(su, ev, 100000)
    expected_balance = 100000
    expiry_won = Counter()
    finals = Counter()

    # conns[0] is the relay's (expiry), the others are the terminal's.
    with Sessions(relay_url, 1) as relay, Sessions(gateway_url, 3) as terminals:
        conns = [*relay, *terminals]
        for number in range(1, rounds + 1):
            reserve_args = (terminal, number, uid, number, amount, Jsonb(ev.items(*spec)))
            reserved = attempt(conns[1], RESERVE_SQL, reserve_args)
            assert reserved.ok, reserved.error
            tx_id = reserved.value[0]["transaction_id"]
            assert reserved.value[0]["state"] == "ReservePending"
            assert account(su, ev, uid) == (expected_balance, amount)
            # The reserve timeout passes.
            su.execute("UPDATE ledger.transaction SET expires_at = now() - interval '1 second' WHERE id = %s", (tx_id,))

            commit = Jsonb([replicate_entry(ev, number, uid, number, "Committed", *spec)])
            abort = Jsonb([replicate_entry(ev, number, uid, number, "Aborted", *spec)])
            with_abort = number % 3 == 2            # a third of the rounds: the terminal also sends Aborted
            with_repeat = number % 3 == 0           # a third: the terminal also repeats the reserve
            tasks = [lambda c: attempt(c, "SELECT api.expire_reservations(%s) AS n", (ev.id,)),
                     lambda c, e=commit: attempt(c, REPLICATE_SQL, (terminal, e))]
            if with_abort:
                tasks.append(lambda c, e=abort: attempt(c, REPLICATE_SQL, (terminal, e)))
            if with_repeat:
                tasks.append(lambda c: attempt(c, RESERVE_SQL, reserve_args))
            outcomes = race(conns, tasks)
            assert_only(outcomes, set())

            expired = outcomes[0].value[0]["n"]
            assert expired in (0, 1)
            commit_row = outcomes[1].value[0]
            assert commit_row["transaction_id"] == tx_id
            tx = tx_row(su, tx_id)
            assert tx["held"] == 0
            if with_abort:
                abort_row = outcomes[2].value[0]
                assert abort_row["transaction_id"] == tx_id
                # Whichever replication came first decided; the other was refused and logged.
                booked = [r for r in (commit_row, abort_row) if r["outcome"] == "booked"]
                refused = [r for r in (commit_row, abort_row) if r["outcome"] == "rejected"]
                assert len(booked) == 1 and len(refused) == 1, (commit_row, abort_row)
                assert refused[0]["problem"] == "invalid-transition"
                assert tx["state"] == booked[0]["state"]
                assert [v[1] for v in violations(su, tx_id)] == [
                    "Aborted" if tx["state"] == "Committed" else "Committed"]
            else:
                assert (commit_row["outcome"], commit_row["state"], commit_row["problem"]) == (
                    "booked", "Committed", None)
                assert tx["state"] == "Committed"
                assert violations(su, tx_id) == []
            if with_repeat:
                again = outcomes[-1].value[0]
                assert again["transaction_id"] == tx_id
                assert again["state"] in ("ReservePending", "ReserveExpired", "Committed")
            assert tx["state"] in ("Committed", "Aborted")
            if tx["state"] == "Committed":
                # Booked exactly once, whether from ReservePending or (expiry first) from ReserveExpired.
                assert lines(su, tx_id) == purchase_lines(ev, uid, *spec)
                expected_balance -= amount
            else:
                assert lines(su, tx_id) == []
            assert account(su, ev, uid) == (expected_balance, 0)
            expiry_won[bool(expired)] += 1
            finals[tx["state"]] += 1

    assert sum(finals.values()) == rounds
    n_expired_left = su.execute("SELECT count(*) FROM ledger.transaction WHERE event_id = %s"
                                " AND state IN ('ReservePending', 'ReserveExpired')", (ev.id,)).fetchone()[0]
    assert n_expired_left == 0
    print(f"\nreserve/expiry/commit: expiry first in {expiry_won[True]} of {rounds} rounds; finals {dict(finals)}")
    assert_invariants(su)


# --------------------------------------------------------------------------------------------------------------
# 5. Tag sync racing the replication of the same offline charge
# --------------------------------------------------------------------------------------------------------------


def test_tag_sync_races_replication_of_same_charge(su, gateway_url):
    ev = make_event(su, bar_terminals=2)
    seller, syncer = ev.bar_terminals           # the charge was made at `seller`; the tag is tapped at `syncer`
    spec = ("Beer:1", "Pretzel:1", "Cup:1")
    amount = ev.amount(*spec)                   # 1000
    rounds = 30
    uid = funded_tag(su, ev, 100000)
    balance = 100000
    order = Counter()

    with Sessions(gateway_url, 2) as conns:
        for number in range(1, rounds + 1):
            # Every third round the terminal only knows the outcome is unknown (tag write not confirmed).
            state = "TerminalConfirmUnknown" if number % 3 == 0 else "Committed"
            entry = replicate_entry(ev, number, uid, number - 1, state, *spec)
            log = [log_entry(su, seller, number, uid, number - 1, amount, time=entry["time"])]
            sync_sql = "SELECT * FROM api.tag_sync(%s, %s, %s, %s, %s)"
            sync_args = (syncer, uid, number, balance - amount, Jsonb(log))
            tasks = [lambda c: attempt(c, sync_sql, sync_args),
                     lambda c, e=Jsonb([entry]): attempt(c, REPLICATE_SQL, (seller, e))]
            if number % 2:
                tasks.reverse()                     # start order varies too
            outcomes = race(conns, tasks)
            assert_only(outcomes, set())
            sync, rep = (outcomes if number % 2 == 0 else outcomes[::-1])
            sync_row, rep_row = sync.value[0], rep.value[0]

            txs = terminal_txs(su, seller, number)
            assert len(txs) == 1, f"round {number}: {len(txs)} transactions for one charge"
            tx = txs[0]
            assert rep_row["transaction_id"] == tx["id"]
            assert (rep_row["outcome"], rep_row["problem"]) == ("booked", None), rep_row
            assert sync_row["acknowledged"] == [{"assignment_id": seller, "terminal_tx_number": number}]
            # Either order is fine, but each side's answer must match it.
            if sync_row["held"] == amount:          # tag sync first: unseen -> Reserve, then replication commits
                assert sync_row["balance"] == balance
                order["sync first"] += 1
            else:                                   # replication first: it is booked, the sync finds it known
                assert (sync_row["balance"], sync_row["held"]) == (balance - amount, 0), sync_row
                order["replication first"] += 1
            assert tx["state"] == "Committed" and tx["held"] == 0, tx
            assert lines(su, tx["id"]) == purchase_lines(ev, uid, *spec)
            assert violations(su, tx["id"]) == []
            balance -= amount
            assert account(su, ev, uid) == (balance, 0)

    print(f"\ntag sync vs replication: {dict(order)}")
    assert_invariants(su)


# --------------------------------------------------------------------------------------------------------------
# 6. One terminal number claimed for two different tags at the same moment
# --------------------------------------------------------------------------------------------------------------
# A terminal number belongs to one transaction.  When two requests name the same (assignment, number) for two
# different tags, the second must get the answer it gets when the two arrive one after the other: an
# idempotency conflict (FP031; in a replication batch a 'rejected' row, the other entries still judged), or for
# a tag log entry a refused entry with a logged violation.  The two requests lock different customer accounts, so
# here they really overlap: the first stays uncommitted until the second is blocked on it.


SYNC_SQL = "SELECT * FROM api.tag_sync(%s, %s, %s, %s, %s)"


@pytest.mark.parametrize("case", ["replicate+replicate", "reserve+reserve", "replicate+tag_sync",
                                  "tag_sync+replicate"])
def test_terminal_number_claimed_for_two_tags_at_once(su, gateway_url, case):
    ev = make_event(su, bar_terminals=2)
    seller, syncer = ev.bar_terminals
    spec = ("Beer:1",)
    amount = ev.amount(*spec)
    a, b = funded_tag(su, ev, 10000), funded_tag(su, ev, 10000)
    number = 7
    other_entry = replicate_entry(ev, 8, b, 1, "Committed", *spec)   # an unrelated, valid entry of the batch
    log_b = Jsonb([log_entry(su, seller, number, b, 0, amount)])
    rep_a = (REPLICATE_SQL, (seller, Jsonb([replicate_entry(ev, number, a, 0, "Committed", *spec)])))

    if case == "replicate+replicate":
        _, two = overlap(su, gateway_url, rep_a,
                         (REPLICATE_SQL, (seller, Jsonb([replicate_entry(ev, number, b, 0, "Committed", *spec),
                                                         other_entry]))))
        assert two.ok, f"the whole batch failed: {two.error}"
        conflict, other = two.value
        assert (conflict["outcome"], conflict["problem"]) == ("rejected", "idempotency-conflict"), conflict
        assert (other["outcome"], other["state"]) == ("booked", "Committed"), other
        expected_b = 10000 - amount                                    # only the unrelated entry
    elif case == "reserve+reserve":
        items = Jsonb(ev.items(*spec))
        _, two = overlap(su, gateway_url, (RESERVE_SQL, (seller, number, a, 0, amount, items)),
                         (RESERVE_SQL, (seller, number, b, 0, amount, items)))
        assert two.sqlstate == "FP031", two.error or two.value
        expected_b = 10000
    elif case == "replicate+tag_sync":
        _, two = overlap(su, gateway_url, rep_a, (SYNC_SQL, (syncer, b, 1, 10000 - amount, log_b)))
        assert two.ok, two.error
        assert two.value[0]["held"] == 0 and two.value[0]["balance"] == 10000
        tx = terminal_txs(su, seller, number)[0]
        assert two.value[0]["refused"] == [{"assignment_id": seller, "terminal_tx_number": number,
                                            "problem": "idempotency-conflict"}]
        reasons = su.execute("SELECT reason FROM ledger.violation WHERE transaction_id = %s", (tx["id"],)).fetchall()
        # As when the sync comes after the replication: the mismatching log entry is refused and recorded.
        assert [r.split(":")[0] for (r,) in reasons] == ["idempotency-conflict"]
        expected_b = 10000
    else:  # tag_sync+replicate
        one, two = overlap(su, gateway_url, (SYNC_SQL, (syncer, b, 1, 10000 - amount, log_b)), rep_a)
        assert one.value[0]["held"] == amount                         # tag B's log made it a Reserve of B
        assert two.ok, two.error
        assert (two.value[0]["outcome"], two.value[0]["problem"]) == ("rejected", "idempotency-conflict"), two.value
        expected_b = 10000

    txs = terminal_txs(su, seller, number)
    assert len(txs) == 1
    assert account(su, ev, b)[0] == expected_b
    assert_invariants(su)
