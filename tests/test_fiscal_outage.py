"""Fiscal signing end to end: the relay, the software TSE as its own process, an outage.

Real PostgreSQL (its own database in the session's cluster, so the counts here are exact), the real gateway
(tests/gateway_server.py) booking purchases as terminals do (the lean HTTP client of python_gateway/loadgen.py),
``festpay tse serve`` as a separate process on a free loopback port, and relays in background threads.

After every test: the outbox is empty, every receipt is signed exactly once, the TSE's own export is continuous
(every transaction number one Start and one Finish, signature counters 1..n without a gap, each log verifies), and
``api.check_invariants()`` is empty.
"""

from __future__ import annotations

import asyncio
import functools
import io
import tarfile
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import psycopg
import pytest
from psycopg.rows import dict_row

from python_gateway import cli
from python_gateway.gateway import GatewayOptions
from python_gateway.loadgen import LoadGenerator, Phase
from python_gateway.relay import OutboxRequest, TseHandler
from python_gateway.tse import verify
from python_gateway.tse.audit import verify_ledger
from python_gateway.tse.interface import TseUnavailable
from python_gateway.tse.remote import RemoteTSE
from tests import gateway_server as gs
from tests.conftest import migrated_database
from tests.fiscal_server import RunningRelay, TseProcess

DBNAME = "festpay_fiscal"
TERMINALS = 4
TAGS_PER_TERMINAL = 8
PRICE = 450
FUNDING = 20000
UID_BASE = 0x5E000000
WAIT_S = 40.0


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def fiscal_db(pg_cluster) -> Iterator[str]:
    """A database of its own, migrated: the counts of this module are exact."""
    with migrated_database(pg_cluster, DBNAME):
        yield DBNAME


@pytest.fixture(scope="module")
def admin(pg_cluster, fiscal_db: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(pg_cluster.url(fiscal_db), autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture(scope="module")
def relay_url(pg_cluster, fiscal_db: str) -> str:
    return pg_cluster.url(fiscal_db, user="festpay_relay")


@pytest.fixture(scope="module")
def gateway_url(pg_cluster, fiscal_db: str) -> str:
    return pg_cluster.url(fiscal_db, user="festpay_terminal")


@pytest.fixture(scope="module")
def gateway(pg_cluster, fiscal_db: str, gateway_url: str) -> Iterator[gs.RunningGateway]:
    with gs.RunningGateway(gateway_url, GatewayOptions(pool_min_size=1, pool_max_size=8)) as gw:
        yield gw


@pytest.fixture(scope="module")
def tse(tmp_path_factory) -> Iterator[TseProcess]:
    proc = TseProcess(str(tmp_path_factory.mktemp("tse") / "tse"), gs.free_port())
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def event(admin: psycopg.Connection) -> dict[str, Any]:
    """An event with a bar (beer 19 %, pretzel 7 %), a top-up desk, and funded tags for the terminals."""
    one = lambda q, p=(): next(iter(admin.execute(q, p).fetchone().values()))  # noqa: E731
    event_id = one("SELECT api.create_event('Fiscal Festival', 'EUR', 100000, 500, %s)", (FUNDING,))
    beer = one("SELECT api.create_product(%s, 'Beer', %s, 19)", (event_id, PRICE))
    pretzel = one("SELECT api.create_product(%s, 'Pretzel', 350, 7)", (event_id,))
    one("SELECT api.create_position(%s, 'Bar', 'sale', api.create_merchant(%s, 'Bar'))", (event_id, event_id))
    one("SELECT api.create_position(%s, 'Top-up', 'topup')", (event_id,))
    codes = [one("SELECT api.create_registration_code(%s, 'Bar')", (event_id,)) for _ in range(TERMINALS)]
    desk = one("SELECT assignment_id FROM api.register_terminal(api.create_registration_code(%s, 'Top-up'), 'desk')",
               (event_id,))
    uids = [[str(UID_BASE + 1 + t * TAGS_PER_TERMINAL + k) for k in range(TAGS_PER_TERMINAL)] for t in range(TERMINALS)]
    number = 0
    for uid in (u for group in uids for u in group):
        number += 1
        assert one("SELECT state FROM api.topup(%s, %s, %s, %s, 'cash')", (desk, number, uid, FUNDING)) == "Committed"
    return {"id": event_id, "beer": beer, "pretzel": pretzel, "desk": desk, "desk_number": number,
            "setup": {"price": PRICE, "product_id": beer, "funding": FUNDING,
                      "terminals": [{"code": c, "uids": u} for c, u in zip(codes, uids)]}}


class Tills:
    """The bar terminals, booking purchases through the gateway as terminals do (sync, reserve, replicate)."""

    def __init__(self, base_url: str, setup: dict[str, Any]):
        self.base_url, self.setup = base_url, setup
        self.terminals: list | None = None

    async def _book(self, count: int) -> Phase:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            gen = LoadGenerator(self.base_url, self.setup, session)
            if self.terminals is None:
                await gen.register_all()
                self.terminals = gen.terminals
            gen.terminals = self.terminals
            phase = Phase("book")
            per = [count // len(self.terminals) + (i < count % len(self.terminals)) for i in range(len(self.terminals))]

            async def till(term: Any, n: int) -> None:
                for _ in range(n):
                    await gen.purchase(phase, term)

            await asyncio.gather(*(till(t, n) for t, n in zip(self.terminals, per)))
            return phase

    def book(self, count: int) -> None:
        phase = asyncio.run(self._book(count))
        assert phase.errors == 0 and phase.purchases == count, phase.error_samples


@pytest.fixture(scope="module")
def tills(gateway: gs.RunningGateway, event: dict[str, Any]) -> Tills:
    return Tills(gateway.base_url, event["setup"])


# ----------------------------------------------------------------------------- checks


def pending(admin: psycopg.Connection) -> int:
    return admin.execute("SELECT count(*) AS n FROM ledger.outbox WHERE topic = 'tse' AND done_at IS NULL"
                         ).fetchone()["n"]


def wait_until_signed(admin: psycopg.Connection, timeout: float = WAIT_S) -> float:
    """Wait (bounded) until the outbox is empty; returns the seconds it took."""
    t0 = time.monotonic()
    while pending(admin):
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{pending(admin)} signing requests still pending after {timeout} s: " + repr(
                admin.execute("SELECT id, attempts, last_error, retry_at FROM ledger.outbox WHERE done_at IS NULL "
                              "ORDER BY id LIMIT 5").fetchall()))
        time.sleep(0.05)
    return time.monotonic() - t0


_VERIFIED: dict[bytes, verify.VerifiedLog] = {}


def check_signed_exactly_once(admin: psycopg.Connection, tse: TseProcess) -> dict[str, int]:
    """Every committed receipt signed once; the TSE's export continuous and matching the stored signatures."""
    receipts = admin.execute("SELECT count(*) AS n FROM ledger.transaction WHERE state = 'Committed' "
                             "AND type <> 'transfer'").fetchone()["n"]
    signatures = admin.execute("SELECT transaction_id, tse_serial, tse_tx_number, signature_counter "
                               "FROM ledger.tse_signature").fetchall()
    assert len(signatures) == receipts
    assert admin.execute("SELECT count(*) AS n FROM ledger.outbox WHERE topic = 'tse'").fetchone()["n"] == receipts
    assert pending(admin) == 0
    # The TSE's own log store: one Start and one Finish per transaction number, counters 1..n without a gap.
    remote = RemoteTSE(tse.url)
    public_key = remote.public_key
    assert {s["tse_serial"] for s in signatures} == {remote.serial_number.hex()}
    logs = []
    with tarfile.open(fileobj=io.BytesIO(remote.export())) as tar:
        for member in tar.getmembers():
            raw = tar.extractfile(member).read()
            if raw not in _VERIFIED:  # each exported log verified once per module (ECDSA is not free)
                _VERIFIED[raw] = verify.verify_log_file(raw, public_key)
            logs.append(_VERIFIED[raw])
    assert sorted(log.signature_counter for log in logs) == list(range(1, 2 * receipts + 1)), "counter gap"
    numbers = sorted(log.transaction_number for log in logs if log.operation_type == "FinishTransaction")
    assert numbers == list(range(1, receipts + 1))
    assert sorted(log.transaction_number for log in logs if log.operation_type == "StartTransaction") == numbers
    finishes = {(log.transaction_number, log.signature_counter) for log in logs
                if log.operation_type == "FinishTransaction"}
    assert finishes == {(s["tse_tx_number"], s["signature_counter"]) for s in signatures}
    health = remote.health()
    assert health["signature_counter"] == 2 * receipts and health["open_transactions"] == 0
    # In order per till: TSE transaction numbers of one client rise with the outbox id.
    rows = admin.execute("SELECT o.ordering_key, s.tse_tx_number FROM ledger.outbox o "
                         "JOIN ledger.tse_signature s ON s.transaction_id = o.transaction_id ORDER BY o.id").fetchall()
    last: dict[str, int] = {}
    for row in rows:
        assert row["tse_tx_number"] > last.get(row["ordering_key"], 0), ("out of order", row)
        last[row["ordering_key"]] = row["tse_tx_number"]
    assert admin.execute("SELECT * FROM api.check_invariants()").fetchall() == []
    return {"receipts": receipts}


@pytest.fixture(autouse=True)
def all_signed_after_each_test(admin: psycopg.Connection, tse: TseProcess):
    yield
    check_signed_exactly_once(admin, tse)


# ----------------------------------------------------------------------------- tests


def test_catch_up(admin, tse, tills, relay_url):
    """Bookings made while no relay runs (the top-ups of the setup, 20 purchases) are all signed once it starts."""
    tills.book(20)
    assert pending(admin) >= 20 + TERMINALS * TAGS_PER_TERMINAL
    relay = RunningRelay(relay_url, tse.url)
    try:
        wait_until_signed(admin)
    finally:
        relay.stop()
    assert relay.relay.failures == 0
    assert admin.execute("SELECT count(*) AS n FROM ledger.tse_signature WHERE late").fetchone()["n"] == 0


def test_two_relays_never_sign_twice(admin, tse, tills, relay_url):
    """Two relays side by side, woken by the same notifications, while tills book: each receipt signed once."""
    before = admin.execute("SELECT count(*) AS n FROM ledger.tse_signature").fetchone()["n"]
    relays = [RunningRelay(relay_url, tse.url, name=f"test-relay-{i}") for i in range(2)]
    try:
        tills.book(60)
        wait_until_signed(admin)
    finally:
        for relay in relays:
            relay.stop()
    assert sum(r.relay.handled for r in relays) == 60
    assert admin.execute("SELECT count(*) AS n FROM ledger.tse_signature").fetchone()["n"] == before + 60


def test_one_relay_with_workers_signs_tills_concurrently(admin, tse, tills, relay_url):
    """One relay with 4 workers (each its own claim and work connections): receipts of 4 tills booked while no
    relay runs, then more while it signs; each signed exactly once and in order per till (the autouse check: TSE
    transaction numbers of a client rise with the outbox id), and several tills were in hand at the same time."""
    before = admin.execute("SELECT count(*) AS n FROM ledger.tse_signature").fetchone()["n"]
    tills.book(80)  # a backlog on every till, so the workers have several tills to take at once
    keys = admin.execute("SELECT count(DISTINCT ordering_key) AS n FROM ledger.outbox WHERE done_at IS NULL"
                         ).fetchone()["n"]
    assert keys >= TERMINALS
    relay = RunningRelay(relay_url, tse.url, name="test-relay-workers", workers=4)
    try:
        tills.book(40)
        wait_until_signed(admin)
        sessions = admin.execute("SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = %s",
                                 ("test-relay-workers",)).fetchone()["n"]
    finally:
        relay.stop()
    assert sessions == 2 * 4 + 1  # a claim and a work connection per worker, and the listener's
    assert relay.relay.failures == 0
    assert relay.relay.handled == 120
    assert relay.relay.peak_busy_keys > 1, "the workers never held two tills at once"
    assert admin.execute("SELECT count(*) AS n FROM ledger.tse_signature").fetchone()["n"] == before + 120


class Crash(Exception):
    """A relay dying mid-request (its connection closes without another word)."""


class CrashingTse:
    """A RemoteTSE whose finish dies before or after the TSE signed."""

    def __init__(self, url: str, when: str):
        self.remote, self.when = RemoteTSE(url), when

    def __getattr__(self, name: str) -> Any:
        return getattr(self.remote, name)

    def finish_transaction(self, *args: Any) -> Any:
        if self.when == "before finish":
            raise Crash(self.when)
        self.remote.finish_transaction(*args)
        raise Crash(self.when)


@pytest.mark.parametrize("when", ["before finish", "after finish"])
def test_crash_mid_request_finishes_the_same_tse_transaction(admin, tse, tills, relay_url, when):
    """A relay dies after starting the TSE transaction (and recording it), before or after the TSE finished it: the
    next relay finishes that same TSE transaction (the TSE repeats a finished one), nothing is signed twice."""
    tills.book(1)
    health_before = RemoteTSE(tse.url).health()

    async def die_mid_request() -> None:
        connect = functools.partial(psycopg.AsyncConnection.connect, relay_url, autocommit=True, row_factory=dict_row)
        async with await connect() as claim, await connect() as conn:
            await conn.execute("SELECT api.outbox_prepare('tse')")
            await claim.execute("BEGIN")
            cur = await claim.execute("SELECT * FROM api.outbox_claim('tse', 10)")
            (row,) = await cur.fetchall()
            request = OutboxRequest(row["outbox_id"], row["ordering_key"], row["transaction_id"], row["attempts"],
                                    row["started"])
            with pytest.raises(Crash):
                await TseHandler(CrashingTse(tse.url, when)).handle(conn, request)
        # the connections are gone mid-claim: the claim transaction, and the till's row lock, went with them

    asyncio.run(die_mid_request())
    started = admin.execute("SELECT started FROM ledger.outbox WHERE done_at IS NULL").fetchone()["started"]
    assert started["transaction_number"] == health_before["transaction_number"] + 1
    relay = RunningRelay(relay_url, tse.url)
    try:
        wait_until_signed(admin)
    finally:
        relay.stop()
    assert relay.relay.failures == 0
    signature = admin.execute("SELECT tse_tx_number FROM ledger.tse_signature ORDER BY transaction_id DESC LIMIT 1"
                              ).fetchone()
    assert signature["tse_tx_number"] == started["transaction_number"]
    health = RemoteTSE(tse.url).health()
    assert health["transaction_number"] == health_before["transaction_number"] + 1
    assert health["signature_counter"] == health_before["signature_counter"] + 2


def test_a_claimed_till_is_skipped_by_other_sessions(admin, tse, tills, relay_url):
    """Two sessions claim at once: the till one of them holds (its lock row FOR UPDATE) is skipped by the other
    (SKIP LOCKED), which takes the next due till; when the first transaction ends, the till is free again."""
    tills.book(8)
    claim = "SELECT outbox_id, ordering_key FROM api.outbox_claim('tse')"
    with psycopg.connect(relay_url, autocommit=True, row_factory=dict_row) as a, \
            psycopg.connect(relay_url, autocommit=True, row_factory=dict_row) as b:
        a.execute("SELECT api.outbox_prepare('tse')")
        due_tills = admin.execute("SELECT count(DISTINCT ordering_key) AS n FROM ledger.outbox "
                                  "WHERE topic = 'tse' AND done_at IS NULL").fetchone()["n"]
        assert due_tills >= 2
        with a.transaction():
            first = a.execute(claim).fetchall()
            with b.transaction():
                second = b.execute(claim).fetchall()
            assert first and second
            assert first[0]["ordering_key"] != second[0]["ordering_key"]
            assert not {r["outbox_id"] for r in first} & {r["outbox_id"] for r in second}
        with b.transaction():
            again = b.execute(claim).fetchall()
        assert again == first  # given back: the oldest due till again, the same requests
    relay = RunningRelay(relay_url, tse.url)
    try:
        wait_until_signed(admin)
    finally:
        relay.stop()


def test_outage(admin, tse, tills, relay_url, pg_cluster, capsys):
    """The TSE stops; 200 purchases are booked; it starts again: everything is signed exactly once, late, verified."""
    relay = RunningRelay(relay_url, tse.url)
    try:
        wait_until_signed(admin)
        first_new = admin.execute("SELECT coalesce(max(id), 0) AS id FROM ledger.outbox").fetchone()["id"]
        tse.stop()
        with pytest.raises(TseUnavailable):
            RemoteTSE(tse.url, timeout=2).health()
        t0 = time.monotonic()
        tills.book(200)
        booked_s = time.monotonic() - t0
        # Requests wait and are retried; one outage is open.
        deadline = time.monotonic() + 10
        while not admin.execute("SELECT count(*) AS n FROM ledger.tse_outage WHERE ended_at IS NULL").fetchone()["n"]:
            assert time.monotonic() < deadline, "no outage recorded"
            time.sleep(0.05)
        assert pending(admin) == 200
        failed = admin.execute("SELECT count(*) AS n, min(last_error) AS cause FROM ledger.outbox "
                               "WHERE attempts > 0 AND done_at IS NULL").fetchone()
        assert failed["n"] >= 1 and "TSE unavailable" in failed["cause"]
        tse.start()
        recovered_s = wait_until_signed(admin)
    finally:
        relay.stop()
    with capsys.disabled():
        print(f"\noutage: 200 purchases booked in {booked_s:.1f} s, all signed {recovered_s:.1f} s after the TSE returned")
    outages = admin.execute("SELECT started_at, ended_at, cause FROM ledger.tse_outage").fetchall()
    assert len(outages) == 1 and outages[0]["ended_at"] is not None and "unavailable" in outages[0]["cause"]
    signed = admin.execute(
        "SELECT o.id, o.attempts, o.created_at, s.late FROM ledger.outbox o "
        "JOIN ledger.tse_signature s ON s.transaction_id = o.transaction_id WHERE o.id > %s", (first_new,)).fetchall()
    assert len(signed) == 200
    # Every request that failed is marked late when finally signed, none committed after the outage ended is.
    # (api.tse_store marks late only what failed itself: the first request of each till; see the closing note.)
    assert all(r["late"] for r in signed if r["attempts"] > 0)
    assert any(r["late"] for r in signed)
    assert not any(r["late"] for r in signed if r["created_at"] > outages[0]["ended_at"])
    # The independent verification is clean.
    assert cli.main(["tse", "verify", "--database-url", pg_cluster.url(DBNAME)]) == 0
    out = capsys.readouterr().out
    assert "0 failed" in out and "FAIL" not in out


class RefusedOnce(TseHandler):
    """The real TSE handler, but the database refuses its first request once (a named problem, as when the ledger
    cannot make a receipt's process data)."""

    def __init__(self, tse_url: str) -> None:
        super().__init__(RemoteTSE(tse_url, timeout=5))
        self.refused: list[int] = []
        self.failed_with: list[str | None] = []

    async def handle(self, conn, request: OutboxRequest) -> None:
        if not self.refused:
            self.refused.append(request.outbox_id)
            await conn.execute("SELECT api.tse_started(%s, '{}')", (-request.outbox_id,))  # not-found (FP010)
        await super().handle(conn, request)

    async def failed(self, conn, request: OutboxRequest, error: BaseException):
        self.failed_with.append(getattr(error, "sqlstate", None))
        return await super().failed(conn, request, error)


def test_a_request_the_database_refuses_is_recorded_and_retried(admin, tse, tills, relay_url):
    """A named problem from the database is the request's failure (recorded, backoff, outage with its cause), not a
    lost connection: the relay keeps its connections and signs the receipt on the retry."""
    tills.book(3)
    handler = RefusedOnce(tse.url)
    relay = RunningRelay(relay_url, handlers=[handler], workers=1)
    try:
        wait_until_signed(admin)
    finally:
        relay.stop()
    assert handler.failed_with == ["FP010"] and relay.relay.failures == 1
    row = admin.execute("SELECT attempts, last_error FROM ledger.outbox WHERE id = %s", (handler.refused[0],)).fetchone()
    assert row["attempts"] == 1 and "unknown or done" in row["last_error"], row
    outage = admin.execute("SELECT cause, ended_at FROM ledger.tse_outage ORDER BY id DESC LIMIT 1").fetchone()
    assert "relay error" in outage["cause"] and outage["ended_at"] is not None


def test_mixed_receipts_verify(admin, tse, relay_url, event):
    """A multi-VAT sale, a cash refund: their process data as the ledger computes it and as Python recomputes it."""
    one = lambda q, p=(): next(iter(admin.execute(q, p).fetchone().values()))  # noqa: E731
    bar = one("SELECT assignment_id FROM api.register_terminal(api.create_registration_code(%s, 'Bar'), 'x')",
              (event["id"],))
    uid = str(UID_BASE + 0xFFFF)
    number = event["desk_number"] + 1
    assert one("SELECT state FROM api.topup(%s, %s, %s, 5000, 'cash')", (event["desk"], number, uid)) == "Committed"
    items = psycopg.types.json.Jsonb([{"product_id": event["beer"], "quantity": 2},
                                      {"product_id": event["pretzel"], "quantity": 1}])
    sale = one("SELECT transaction_id FROM api.reserve(%s, 1, %s, 0, 1250, %s)", (bar, uid, items))
    assert one("SELECT outcome FROM api.replicate(%s, %s)", (bar, psycopg.types.json.Jsonb([
        {"terminal_tx_number": 1, "state": "Committed", "uid": uid, "amount": 1250}]))) == "booked"
    refund = one("SELECT transaction_id FROM api.refund(%s, %s, %s, 500)", (event["desk"], number + 1, uid))
    relay = RunningRelay(relay_url, tse.url)
    try:
        wait_until_signed(admin)
    finally:
        relay.stop()
    stored = {r["transaction_id"]: r["process_data"] for r in admin.execute(
        "SELECT transaction_id, process_data FROM ledger.tse_signature WHERE transaction_id = ANY(%s)",
        ([sale, refund],)).fetchall()}
    assert stored[sale] == "Beleg^9.00_3.50_0.00_0.00_0.00^12.50:Unbar"
    assert stored[refund] == "Beleg^0.00_0.00_0.00_0.00_-5.00^-5.00:Bar"
    assert stored[sale] == "Beleg^9.00_3.50_0.00_0.00_0.00^12.50:Unbar"
    assert stored[refund] == "Beleg^0.00_0.00_0.00_0.00_-5.00^-5.00:Bar"
    report = verify_ledger(admin, event["id"])
    assert report.ok and report.checked == one("SELECT count(*) FROM ledger.tse_signature")


@pytest.mark.parametrize("table, column, change, reason", [
    ("ledger.tse_signature", "process_data", "overlay(process_data placing '8' from 8 for 1)", "differs from the ledger"),
    ("ledger.item", "unit_price", "unit_price + 1", "signature does not verify"),
    ("ledger.tse_signature", "signature", "set_byte(signature, 5, mod(get_byte(signature, 5) + 1, 256))",
     "signature does not verify"),
])
def test_verify_sees_one_changed_byte(pg_cluster, table, column, change, reason):
    """Change one stored byte (bypassing append-only, rolled back afterwards): verification fails for that receipt."""
    with psycopg.connect(pg_cluster.url(DBNAME)) as conn:
        assert verify_ledger(conn).ok
        victim = conn.execute("SELECT max(s.transaction_id) FROM ledger.tse_signature s JOIN ledger.item i "
                              "ON i.transaction_id = s.transaction_id").fetchone()[0]
        try:
            conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
            where = "transaction_id = %s" + (" AND line_no = 1" if table == "ledger.item" else "")
            assert conn.execute(f"UPDATE {table} SET {column} = {change} WHERE {where}", (victim,)).rowcount == 1
            report = verify_ledger(conn)
        finally:
            conn.rollback()  # the change and the disabled trigger are undone
    assert not report.ok
    assert [f.transaction_id for f in report.failures] == [victim], report.failures
    assert reason in report.failures[0].reason, report.failures[0].reason


def test_ready_reports_signing_lag(admin, gateway, tills, tse, relay_url):
    """/health/ready reports the signing lag and stays 200 while receipts wait."""
    tills.book(3)
    body = gs.Client(gateway.port).get("/health/ready").json
    assert body["status"] == "ready"
    assert body["signing"]["pending"] == 3 and body["signing"]["oldest_ms"] >= 0
    relay = RunningRelay(relay_url, tse.url)
    try:
        wait_until_signed(admin)
    finally:
        relay.stop()
    body = gs.Client(gateway.port).get("/health/ready").json
    assert body["signing"] == {"pending": 0, "oldest_ms": None}
