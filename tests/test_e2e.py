"""End to end: the reference terminal library, a real gateway, the real PostgreSQL ledger.

Every test registers its own terminals with one-time codes of a demo-like event made through api functions, drives
them as a till would (python_gateway.terminal: virtual tag files, the terminal's own SQLite database), and checks
both sides: the terminal's database and tag, and the ledger (as the superuser).  After every test
``api.check_invariants()`` returns no rows.

A forging terminal is a reference terminal whose tag writes are made by hand (it holds the event's tag key, so the
tag reads as valid): log entries in another terminal's name, numbered past the tag, beyond the offline limit, or
charges on tags the backend never issued.

The gateway runs on 127.0.0.1 (tests/gateway_server.py, shared with test_gateway.py).  Lost answers are made by
:class:`LossyProxy`, a small HTTP proxy on 127.0.0.1 that lets the gateway do the work and then drops the connection
instead of answering.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import secrets
import sqlite3
import time
from collections.abc import Awaitable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import psycopg
import pytest
from aiohttp import web
from psycopg.rows import dict_row
from yarl import URL

from python_gateway import signing
from python_gateway.terminal import (
    LogEntry,
    Problem,
    SimulatedCrash,
    State,
    SyncStatus,
    TagTampered,
    TapResult,
    Terminal,
    TerminalError,
    VirtualTag,
    new_tag,
)
from python_gateway.terminal.home import DATABASE_FILE, TerminalSettings
from tests import gateway_server as gs
from tests.gateway_server import admin, client, gateway  # noqa: F401  (pytest fixtures)

PREFIX = gs.PREFIX
T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- the event and the checks


@pytest.fixture(scope="module")
def event(admin: psycopg.Connection) -> dict[str, Any]:
    """A demo-like event (as sql/demo.sql), made through api functions as the superuser."""
    name = f"E2E Festival {secrets.token_hex(4)}"
    event_id = gs.scalar(admin, "SELECT api.create_event(%s, 'EUR', p_max_balance => 50000, p_min_topup => 500,"
                                " p_max_topup => 25000, p_topup_fee_card => 50, p_payout_fee => 100,"
                                " p_reserve_timeout_s => 120, p_offline_limit => 5000, p_offline_log_size => 16)",
                         (name,))
    bar = gs.scalar(admin, "SELECT api.create_merchant(%s, 'Bar')", (event_id,))
    gs.scalar(admin, "SELECT api.create_merchant(%s, 'Food')", (event_id,))
    gs.scalar(admin, "SELECT api.create_position(%s, 'Bar', 'sale', %s)", (event_id, bar))
    gs.scalar(admin, "SELECT api.create_position(%s, 'Top-up', 'topup')", (event_id,))
    products = {}
    for pname, price, vat in (("Beer 0.5 l", 450, 19), ("Cola 0.3 l", 300, 19), ("Water 0.5 l", 250, 19),
                              ("Pretzel", 350, 7), ("Bratwurst", 550, 7)):
        products[pname] = gs.scalar(admin, "SELECT api.create_product(%s, %s, %s, %s)", (event_id, pname, price, vat))
    products["Tip"] = gs.scalar(admin, "SELECT api.create_product(%s, 'Tip', NULL, 0, p_fixed_price => false)",
                                (event_id,))
    merchant_account = gs.scalar(admin, "SELECT account_id FROM ledger.merchant WHERE id = %s", (bar,))
    return {"id": event_id, "name": name, "products": products, "merchant_account": merchant_account}


@pytest.fixture(autouse=True)
def invariants_hold_after_each_test(admin: psycopg.Connection):
    yield
    rows = admin.execute("SELECT * FROM api.check_invariants()").fetchall()
    assert rows == [], rows


def rows(admin: psycopg.Connection, query: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    with admin.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchall()


def ledger_tx(admin: psycopg.Connection, assignment_id: int, number: int) -> dict[str, Any] | None:
    """The backend's transaction of a terminal, with its booking lines and items."""
    found = rows(admin, "SELECT id, state::text AS state, type::text AS type, amount, fee, held, tag_tx_number,"
                        " account_id, other_account_id FROM ledger.transaction"
                        " WHERE assignment_id = %s AND terminal_tx_number = %s", (assignment_id, number))
    if not found:
        return None
    tx = found[0]
    tx["lines"] = rows(admin, "SELECT debit_account_id AS debit, credit_account_id AS credit, amount"
                              " FROM ledger.booking WHERE transaction_id = %s ORDER BY line_no", (tx["id"],))
    tx["items"] = rows(admin, "SELECT product_id, name, quantity, unit_price, vat_rate FROM ledger.item"
                              " WHERE transaction_id = %s ORDER BY line_no", (tx["id"],))
    return tx


def customer(admin: psycopg.Connection, event_id: int, uid: str) -> dict[str, Any]:
    """The tag's customer account: status, balance, held, and how many transactions / booking lines touch it."""
    found = rows(admin, "SELECT tg.status::text AS status, a.id AS account_id, a.balance, a.held,"
                        " (SELECT count(*) FROM ledger.transaction t WHERE t.account_id = a.id) AS transactions,"
                        " (SELECT count(*) FROM ledger.booking b"
                        "   WHERE a.id IN (b.debit_account_id, b.credit_account_id)) AS lines"
                        " FROM ledger.tag tg JOIN ledger.account a ON a.id = tg.account_id"
                        " WHERE tg.event_id = %s AND tg.uid = %s", (event_id, uid))
    assert found, f"the ledger has no tag {uid}"
    return found[0]


def account_balance(admin: psycopg.Connection, account_id: int) -> int:
    return gs.scalar(admin, "SELECT balance FROM report.account_balance WHERE account_id = %s", (account_id,))


def drawer_account(admin: psycopg.Connection, assignment_id: int) -> int:
    return gs.scalar(admin, "SELECT cash_account_id FROM ledger.assignment WHERE id = %s", (assignment_id,))


def local_tx(home: Path, number: int) -> dict[str, Any]:
    """A transaction as the terminal's own SQLite database holds it (read with a separate connection)."""
    db = sqlite3.connect(home / DATABASE_FILE)
    db.row_factory = sqlite3.Row
    try:
        row = db.execute('SELECT * FROM "transaction" WHERE terminal_tx_number = ?', (number,)).fetchone()
        assert row is not None, f"no local transaction {number} in {home}"
        tx = dict(row)
        tx["items"] = [dict(r) for r in db.execute(
            "SELECT product_id, product_name, quantity, unit_price, vat_rate FROM transaction_item"
            " WHERE terminal_tx_number = ? ORDER BY item_number", (number,))]
        return tx
    finally:
        db.close()


def local_count(home: Path) -> int:
    db = sqlite3.connect(home / DATABASE_FILE)
    try:
        return db.execute('SELECT count(*) FROM "transaction"').fetchone()[0]
    finally:
        db.close()


def tag_file(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


# ----------------------------------------------------------------------------- terminals and tags


_uids = itertools.count(1)


def new_uid() -> str:
    return f"04{secrets.token_hex(5).upper()}{next(_uids):04X}"


class World:
    """One test's terminals and tags: terminals registered with fresh codes of the event, homes under tmp_path."""

    def __init__(self, admin: psycopg.Connection, event: dict[str, Any], url: str, tmp_path: Path):
        self.admin, self.event, self.url, self.tmp = admin, event, url, tmp_path

    def code(self, position: str) -> str:
        return gs.scalar(self.admin, "SELECT api.create_registration_code(%s, %s)", (self.event["id"], position))

    async def terminal(self, name: str, position: str = "Bar", url: str | None = None) -> Terminal:
        """Registers a terminal (its home is tmp_path/NAME) and returns it opened."""
        return await Terminal.register(self.tmp / name, url or self.url, self.code(position), device=f"e2e {name}")

    def tag(self, terminal: Terminal) -> tuple[Path, str]:
        """A blank virtual tag (a wristband from the box): its file and UID."""
        uid = new_uid()
        path = self.tmp / "tags" / f"{uid}.json"
        path.parent.mkdir(exist_ok=True)
        new_tag(path, uid, terminal.settings.tag_key)
        return path, uid

    async def funded_tag(self, till: Terminal, amount: int) -> tuple[Path, str]:
        """A new tag topped up in cash at ``till``."""
        path, uid = self.tag(till)
        result = await till.topup(path, amount, "cash")
        assert result.state is State.COMMITTED and result.balance == amount, result
        return path, uid

    def customer(self, uid: str) -> dict[str, Any]:
        return customer(self.admin, self.event["id"], uid)

    def tx(self, terminal: Terminal, number: int) -> dict[str, Any] | None:
        return ledger_tx(self.admin, terminal.assignment_id, number)


@pytest.fixture
def world(admin: psycopg.Connection, event: dict[str, Any], gateway: gs.RunningGateway, tmp_path: Path) -> World:
    return World(admin, event, gateway.base_url, tmp_path)


def credentials(terminal: Terminal) -> gs.Terminal:
    s = terminal.settings
    return gs.Terminal(s.assignment_id, s.secret, s.event_id, s.tag_key)


# ----------------------------------------------------------------------------- a proxy that loses answers


HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "content-encoding"}


class LossyProxy:
    """HTTP proxy on 127.0.0.1 in front of the gateway.  ``lose(path, n)``: the next n answers to requests for
    ``path`` are lost: the request reaches the gateway and is done, then the connection is dropped unanswered."""

    def __init__(self, upstream: str):
        self.upstream = upstream
        self.to_lose: dict[str, int] = {}
        self.seen: list[tuple[str, str, int | None]] = []      # (method, path, status; None: answer lost)
        self.replayed: list[str] = []                           # paths answered with Idempotency-Replayed
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    def lose(self, path: str, times: int = 1) -> None:
        self.to_lose[path] = self.to_lose.get(path, 0) + times

    def calls(self, path: str) -> list[int | None]:
        return [status for _, p, status in self.seen if p == path]

    async def __aenter__(self) -> "LossyProxy":
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=1 << 20)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self._runner is not None and self._session is not None
        await self._runner.cleanup()
        await self._session.close()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        async with self._session.request(request.method, URL(self.upstream + request.raw_path, encoded=True),
                                         data=body or None, headers=headers) as up:
            raw = await up.read()
            status = up.status
            up_headers = {k: v for k, v in up.headers.items() if k.lower() not in HOP_HEADERS}
        if self.to_lose.get(request.path, 0) > 0:
            self.to_lose[request.path] -= 1
            self.seen.append((request.method, request.path, None))
            assert request.transport is not None
            request.transport.abort()          # the gateway did the work; its answer never arrives
            raise asyncio.CancelledError
        self.seen.append((request.method, request.path, status))
        if up_headers.get("Idempotency-Replayed") == "true":
            self.replayed.append(request.path)
        return web.Response(status=status, body=raw, headers=up_headers)


# ============================================================================= online purchase


def test_online_purchase(world: World, event):
    async def scenario() -> None:
        async with await world.terminal("till", "Top-up") as till, await world.terminal("bar") as bar:
            tag, uid = await world.funded_tag(till, 2000)
            assert tag_file(tag)["balance"] == 2000

            result = await bar.buy(tag, ["Beer:2", "Pretzel"])
            assert result.state is State.COMMITTED and result.online and result.problem is None, result
            assert result.amount == 2 * 450 + 350 and result.tag_balance == 2000 - 1250
            number = result.terminal_tx_number

            # the terminal: Committed, waiting for replication, items as sold; the tag carries the charge
            local = local_tx(bar.home, number)
            assert (local["status"], local["sync_status"]) == ("Committed", "pending")
            assert (local["transaction_type"], local["amount"], local["rfid_uid"]) == ("purchase", 1250, uid)
            assert [(i["product_name"], i["quantity"], i["unit_price"]) for i in local["items"]] == [
                ("Beer 0.5 l", 2, 450), ("Pretzel", 1, 350)]
            data = tag_file(tag)
            assert data["balance"] == 750
            assert [(e["assignment_id"], e["terminal_tx_number"], e["amount"]) for e in data["log"]] == [
                (bar.assignment_id, number, 1250)]
            # the ledger: reserved, held, nothing booked yet
            tx = world.tx(bar, number)
            assert tx is not None and tx["id"] == result.transaction_id
            assert (tx["state"], tx["held"], tx["lines"]) == ("ReservePending", 1250, [])
            acct = world.customer(uid)
            assert (acct["balance"], acct["held"]) == (2000, 1250)

            # replication books it
            rep = await bar.replicate(deadline_s=10)
            assert (rep.booked, rep.duplicate, rep.rejected, rep.remaining) == (1, 0, 0, 0), rep
            local = local_tx(bar.home, number)
            assert (local["status"], local["sync_status"], local["backend_state"]) == ("Committed", "synced",
                                                                                      "Committed")
            assert local["transaction_id"] == result.transaction_id
            tx = world.tx(bar, number)
            assert (tx["state"], tx["held"], tx["amount"]) == ("Committed", 0, 1250)
            assert sum(line["amount"] for line in tx["lines"]) == 1250
            assert all(line["credit"] == acct["account_id"] for line in tx["lines"])
            assert {line["debit"] for line in tx["lines"]} == {event["merchant_account"]}
            assert [(i["name"], i["quantity"], i["unit_price"], float(i["vat_rate"])) for i in tx["items"]] == [
                ("Beer 0.5 l", 2, 450, 19.0), ("Pretzel", 1, 350, 7.0)]
            acct = world.customer(uid)
            assert (acct["status"], acct["balance"], acct["held"]) == ("active", 750, 0)

            # the next tap: the backend acknowledges the charge, the tag's log empties, nothing changes
            tap = await bar.sync_tag(tag)
            assert (tap.acknowledged, tap.unacknowledged, tap.balance, tap.available) == (1, 0, 750, 750)
            assert tag_file(tag)["log"] == [] and tag_file(tag)["balance"] == 750
            assert world.customer(uid)["balance"] == 750
            assert world.tx(bar, number)["state"] == "Committed"

    run(scenario())


# ============================================================================= refusals


def test_short_balance_aborts_and_books_nothing(world: World):
    async def scenario() -> None:
        async with await world.terminal("till", "Top-up") as till, await world.terminal("bar") as bar:
            tag, uid = await world.funded_tag(till, 500)
            before = world.customer(uid)
            result = await bar.buy(tag, ["Beer:2"])
            assert result.state is State.ABORTED and result.problem == "insufficient-balance", result
            assert result.available == 500 and result.transaction_id is None
            local = local_tx(bar.home, result.terminal_tx_number)
            assert (local["status"], local["problem"]) == ("Aborted", "insufficient-balance")
            assert tag_file(tag)["balance"] == 500 and tag_file(tag)["log"] == []
            assert world.tx(bar, result.terminal_tx_number) is None        # no reservation was made
            after = world.customer(uid)
            assert (after["balance"], after["held"], after["lines"]) == (500, 0, before["lines"])

            # replicating the Aborted transaction records it, books nothing
            rep = await bar.replicate(deadline_s=10)
            assert rep.remaining == 0 and rep.rejected == 0, rep
            tx = world.tx(bar, result.terminal_tx_number)
            assert tx is not None and (tx["state"], tx["held"], tx["lines"]) == ("Aborted", 0, [])
            assert world.customer(uid)["balance"] == 500

            # what is there can still be spent
            assert (await bar.buy(tag, ["Beer"])).state is State.COMMITTED

    run(scenario())


def test_blocked_tag_is_refused(world: World, admin):
    async def scenario() -> None:
        async with await world.terminal("till", "Top-up") as till, await world.terminal("bar") as bar:
            tag, uid = await world.funded_tag(till, 2000)
            assert gs.scalar(admin, "SELECT api.block_tag(%s, %s)", (world.event["id"], uid)) == "blocked"
            before = world.customer(uid)

            result = await bar.buy(tag, ["Beer"])
            assert result.state is State.ABORTED and result.problem == "tag-blocked", result
            assert result.tap is not None and result.tap.status == "blocked"
            assert world.tx(bar, result.terminal_tx_number) is None
            assert tag_file(tag)["log"] == []
            # offline, the terminal's last online info knows the tag is blocked
            offline = await bar.buy(tag, ["Beer"], offline=True)
            assert offline.state is State.ABORTED and offline.problem == "tag-blocked", offline
            assert tag_file(tag)["log"] == []
            # no top-up either
            topup = await till.topup(tag, 1000)
            assert topup.state is State.ABORTED and topup.problem == "tag-blocked", topup

            await bar.replicate(deadline_s=10)
            after = world.customer(uid)
            assert (after["status"], after["balance"], after["held"], after["lines"]) == (
                "blocked", 2000, 0, before["lines"])
            assert gs.scalar(admin, "SELECT count(*) FROM ledger.transaction t JOIN ledger.booking b"
                                    " ON b.transaction_id = t.id WHERE t.assignment_id = %s",
                             (bar.assignment_id,)) == 0

    run(scenario())


def test_tampered_tag_is_detected_and_refused(world: World):
    async def scenario() -> None:
        async with await world.terminal("till", "Top-up") as till, await world.terminal("bar") as bar:
            tag, uid = await world.funded_tag(till, 1000)
            assert (await bar.buy(tag, ["Beer"], offline=True)).state is State.COMMITTED   # one charge in the log
            before = world.customer(uid)
            local_before = local_count(bar.home)
            genuine = tag.read_bytes()

            forged = json.loads(genuine)
            forged["balance"] = 50000                                   # more money
            tag.write_text(json.dumps(forged))
            for offline in (False, True):
                with pytest.raises(TagTampered):
                    await bar.buy(tag, ["Beer"], offline=offline)
            with pytest.raises(TagTampered):
                await till.topup(tag, 1000)

            forged = json.loads(genuine)
            forged["log"] = []                                          # hide the unacknowledged charge
            tag.write_text(json.dumps(forged))
            with pytest.raises(TagTampered):
                await bar.sync_tag(tag)
            forged["mac"] = None                                        # "blank" but carrying data
            tag.write_text(json.dumps(forged))
            with pytest.raises(TagTampered):
                await bar.buy(tag, ["Beer"])

            # nothing was charged, created or sent
            assert local_count(bar.home) == local_before
            after = world.customer(uid)
            assert (after["balance"], after["held"], after["transactions"]) == (
                before["balance"], before["held"], before["transactions"])
            # the genuine tag still works, and its hidden charge is booked once
            tag.write_bytes(genuine)
            tap = await bar.sync_tag(tag)
            assert tap.acknowledged == 1
            assert (await bar.replicate(deadline_s=10)).remaining == 0
            assert world.customer(uid)["balance"] == 1000 - 450

    run(scenario())


# ============================================================================= offline


def test_offline_purchases_synced_elsewhere_then_replicated(world: World, event):
    async def scenario() -> None:
        async with await world.terminal("till", "Top-up") as till, await world.terminal("bar-a") as a, \
                await world.terminal("bar-b") as b:
            tag, uid = await world.funded_tag(till, 2000)
            first = await a.buy(tag, ["Beer:2"], offline=True)
            second = await a.buy(tag, ["Cola"], offline=True)
            for r in (first, second):
                assert r.state is State.COMMITTED and not r.online and r.transaction_id is None, r
            assert tag_file(tag)["balance"] == 2000 - 900 - 300 and len(tag_file(tag)["log"]) == 2
            # each entry carries A's own MAC of it
            assert [e["mac"] for e in tag_file(tag)["log"]] == [
                signing.log_entry_mac(a.settings.secret, a.assignment_id, r.terminal_tx_number, uid, r.tag_tx_number,
                                      r.amount) for r in (first, second)]
            assert world.tx(a, first.terminal_tx_number) is None          # the backend knows nothing yet
            assert world.customer(uid)["held"] == 0
            assert local_tx(a.home, first.terminal_tx_number)["offline"] == 1

            # the tag is tapped at B: its log proves both charges -> Reserve, held
            tap = await b.sync_tag(tag)
            assert tap.acknowledged == 2 and tap.unacknowledged == 0 and tap.refused == ()
            assert (tap.balance, tap.held, tap.available) == (2000, 1200, 800)
            assert tag_file(tag)["log"] == [] and tag_file(tag)["balance"] == 800
            for r in (first, second):
                tx = world.tx(a, r.terminal_tx_number)
                assert tx is not None and (tx["state"], tx["held"], tx["lines"]) == ("Reserve", r.amount, [])
            # a reserve made from tag data cannot be spent twice: B sees only what is available
            short = await b.buy(tag, ["Bratwurst:2"])
            assert short.state is State.ABORTED and short.problem == "insufficient-balance" and short.available == 800

            # A's replication commits them: held released, booked once, items as sold
            rep = await a.replicate(deadline_s=10)
            assert (rep.booked, rep.remaining, rep.rejected) == (2, 0, 0), rep
            for r, item in ((first, ("Beer 0.5 l", 2, 450)), (second, ("Cola 0.3 l", 1, 300))):
                tx = world.tx(a, r.terminal_tx_number)
                assert (tx["state"], tx["held"]) == ("Committed", 0)
                assert sum(line["amount"] for line in tx["lines"]) == r.amount
                assert [(i["name"], i["quantity"], i["unit_price"]) for i in tx["items"]] == [item]
                local = local_tx(a.home, r.terminal_tx_number)
                assert (local["status"], local["sync_status"], local["backend_state"]) == (
                    "Committed", "synced", "Committed")
            acct = world.customer(uid)
            assert (acct["balance"], acct["held"]) == (800, 0)
            # tapping the tag again changes nothing
            tap = await b.sync_tag(tag)
            assert (tap.balance, tap.held, tap.acknowledged) == (800, 0, 0)
            assert world.customer(uid)["lines"] == acct["lines"]

    run(scenario())


# ============================================================================= forged and implausible charges


def write_entry(terminal: Terminal, tag: Path, entry: LogEntry, *, bump: bool = True) -> None:
    """What a forging terminal does: writes ``entry`` to the tag's log with the event's tag key, by hand.
    ``bump=False`` leaves the tag's next number where it is (the entry is numbered at it, not below)."""
    data = terminal.read_tag(tag)
    written = data.charged(entry) if bump else replace(data, balance=data.balance - entry.amount,
                                                        log=data.log + (entry,))
    VirtualTag(tag).write(written, terminal.settings.tag_key)


def forged_entry(terminal: Terminal, tag: Path, assignment_id: int, number: int, amount: int,
                 mac: str | None) -> LogEntry:
    """A log entry naming ``assignment_id`` at the tag's next number, carrying ``mac``."""
    return LogEntry(assignment_id, number, terminal.read_tag(tag).next_tag_tx_number, amount, "2025-07-10T12:00:00Z",
                    mac)


def own_mac(terminal: Terminal, uid: str, number: int, tag_tx_number: int, amount: int,
            assignment_id: int | None = None) -> str:
    """The MAC ``terminal`` writes with its own secret (naming ``assignment_id``, default its own)."""
    return signing.log_entry_mac(terminal.settings.secret, assignment_id or terminal.assignment_id, number, uid,
                                 tag_tx_number, amount)


def violations_after(admin: psycopg.Connection, last_id: int) -> list[dict[str, Any]]:
    return rows(admin, "SELECT reason, payload FROM ledger.violation WHERE id > %s ORDER BY id", (last_id,))


def last_violation(admin: psycopg.Connection) -> int:
    return gs.scalar(admin, "SELECT coalesce(max(id), 0) FROM ledger.violation")


def refusals(tap: TapResult) -> list[tuple[int, int, str]]:
    """(assignment, terminal number, problem) of each entry the tap's sync refused, sorted."""
    return sorted((r.assignment_id, r.terminal_tx_number, r.problem) for r in tap.refused)


def test_entry_in_another_terminals_name_is_refused(world: World, admin):
    """A writes entries naming B (with A's secret, with no MAC, with a random MAC) beside one honest entry of its
    own, and syncs the tag at A: B's are refused as forged and hold nothing; B's own numbers stay B's."""
    async def scenario() -> None:
        async with await world.terminal("till", "Top-up") as till, await world.terminal("bar-a") as a, \
                await world.terminal("bar-b") as b:
            tag, uid = await world.funded_tag(till, 3000)
            honest = await a.buy(tag, ["Cola"], offline=True)
            assert honest.state is State.COMMITTED
            random_mac = base64.b64encode(secrets.token_bytes(32)).decode()
            for number, how in ((1, "a's secret"), (2, "no mac"), (3, "random")):
                at = a.read_tag(tag).next_tag_tx_number
                mac = {"a's secret": own_mac(a, uid, number, at, 450, assignment_id=b.assignment_id),
                       "no mac": None, "random": random_mac}[how]
                write_entry(a, tag, forged_entry(a, tag, b.assignment_id, number, 450, mac))
            assert tag_file(tag)["balance"] == 3000 - 300 - 3 * 450
            seen = last_violation(admin)

            tap = await a.sync_tag(tag)
            assert tap.acknowledged == 1 and tap.unacknowledged == 0
            assert refusals(tap) == [(b.assignment_id, n, "log-entry-forged") for n in (1, 2, 3)]
            assert (tap.balance, tap.held, tap.available) == (3000, 300, 2700)      # only the honest charge held
            assert tag_file(tag)["log"] == [] and tag_file(tag)["balance"] == 2700
            for n in (1, 2, 3):
                assert world.tx(b, n) is None
            logged = violations_after(admin, seen)
            assert len(logged) == 3 and all("log-entry-forged" in v["reason"] for v in logged), logged
            assert {v["payload"]["terminal_tx_number"] for v in logged} == {1, 2, 3}

            # B's own transactions with those numbers are B's alone
            for n in (1, 2, 3):
                bought = await b.buy(tag, ["Beer"])
                assert bought.state is State.COMMITTED and bought.online, bought
                assert bought.terminal_tx_number == n and world.tx(b, n)["state"] == "ReservePending"
            rep = await b.replicate(deadline_s=10)
            assert (rep.booked, rep.rejected, rep.remaining) == (3, 0, 0), rep
            assert (await a.replicate(deadline_s=10)).booked == 1
            acct = world.customer(uid)
            assert (acct["balance"], acct["held"]) == (3000 - 300 - 3 * 450, 0)

    run(scenario())


def test_entry_numbered_past_the_tag_is_refused(world: World, admin):
    async def scenario() -> None:
        async with await world.terminal("till", "Top-up") as till, await world.terminal("bar") as a:
            tag, uid = await world.funded_tag(till, 2000)
            data = a.read_tag(tag)
            at = data.next_tag_tx_number
            # A's own genuine MAC, but the entry is numbered at the tag's next number (and one far beyond)
            write_entry(a, tag, LogEntry(a.assignment_id, 1001, at, 450, "2025-07-10T12:00:00Z",
                                         own_mac(a, uid, 1001, at, 450)), bump=False)
            write_entry(a, tag, LogEntry(a.assignment_id, 1002, at + 7, 300, "2025-07-10T12:00:00Z",
                                         own_mac(a, uid, 1002, at + 7, 300)), bump=False)
            seen = last_violation(admin)
            tap = await a.sync_tag(tag)
            assert refusals(tap) == [(a.assignment_id, 1001, "log-entry-number-too-high"),
                                     (a.assignment_id, 1002, "log-entry-number-too-high")]
            assert tap.acknowledged == 0 and (tap.held, tap.available) == (0, 2000)
            assert tag_file(tag)["log"] == [] and tag_file(tag)["balance"] == 2000
            assert world.tx(a, 1001) is None and world.tx(a, 1002) is None
            assert len(violations_after(admin, seen)) == 2

    run(scenario())


def test_offline_entries_beyond_the_offline_limit_are_refused(world: World, admin, event):
    """The event's offline limit is 5000: entries the backend holds no reserve for may not add up to more."""
    async def scenario() -> None:
        async with await world.terminal("till", "Top-up") as till, await world.terminal("bar") as a:
            tag, uid = await world.funded_tag(till, 9000)
            numbered = {}
            for number, amount in ((1001, 3000), (1002, 1500), (1003, 1000)):          # 3000, 4500, 5500
                at = numbered[number] = a.read_tag(tag).next_tag_tx_number
                write_entry(a, tag, LogEntry(a.assignment_id, number, at, amount, "2025-07-10T12:00:00Z",
                                             own_mac(a, uid, number, at, amount)))
            tap = await a.sync_tag(tag)
            assert refusals(tap) == [(a.assignment_id, 1003, "offline-limit-exceeded")]
            assert tap.acknowledged == 2 and (tap.balance, tap.held, tap.available) == (9000, 4500, 4500)
            assert tag_file(tag)["log"] == [] and tag_file(tag)["balance"] == 4500
            assert world.tx(a, 1003) is None
            assert [world.tx(a, n)["state"] for n in (1001, 1002)] == ["Reserve", "Reserve"]
            # the two held charges are settled by their replication (open price: a tip)
            tip = event["products"]["Tip"]
            answers = await a.client.replicate([
                {"terminal_tx_number": n, "type": "purchase", "state": "Committed", "uid": uid, "amount": amount,
                 "tag_tx_number": numbered[n], "items": [{"product_id": tip, "quantity": 1, "unit_price": amount}]}
                for n, amount in ((1001, 3000), (1002, 1500))])
            assert [x["outcome"] for x in answers] == ["booked", "booked"], answers
            acct = world.customer(uid)
            assert (acct["balance"], acct["held"]) == (4500, 0)

    run(scenario())


def test_implausible_offline_sales_are_rejected(world: World, admin, client: gs.Client):
    """Replicated Committed sales the backend never reserved: on a tag it never issued, or over the offline
    limit: rejected implausible-offline-charge, nothing booked, no receipt."""
    async def scenario() -> None:
        async with await world.terminal("till", "Top-up") as till, await world.terminal("bar") as a:
            # a tag the backend never issued, "funded" by writing a balance with the tag key
            stray, stray_uid = world.tag(a)
            VirtualTag(stray).write(replace(a.read_tag(stray), balance=5000, next_tag_tx_number=1),
                                    a.settings.tag_key)
            unknown = await a.buy(stray, ["Beer"], offline=True)
            assert unknown.state is State.COMMITTED
            # a funded tag, charged offline beyond the event's limit by a terminal that ignores it
            tag, uid = await world.funded_tag(till, 9000)
            a.settings.config["event"]["offline_limit"] = 100_000
            over = await a.buy(tag, ["Bratwurst:10"], offline=True)                  # 5500 > 5000
            assert over.state is State.COMMITTED and over.amount == 5500
            before = world.customer(uid)
            seen = last_violation(admin)

            rep = await a.replicate(deadline_s=10)
            assert (rep.rejected, rep.booked, rep.remaining) == (2, 0, 0), rep
            assert {r["terminal_tx_number"]: r["problem"] for r in rep.results} == {
                unknown.terminal_tx_number: "implausible-offline-charge",
                over.terminal_tx_number: "implausible-offline-charge"}
            assert len(violations_after(admin, seen)) == 2
            for r in (unknown, over):
                tx = world.tx(a, r.terminal_tx_number)
                assert tx is None or (tx["state"] != "Committed" and tx["lines"] == []), tx
                local = local_tx(a.home, r.terminal_tx_number)
                assert (local["sync_status"], local["sync_problem"]) == ("synced", "implausible-offline-charge")
                client.get(f"{PREFIX}/transactions/{r.terminal_tx_number}/receipt",
                           terminal=credentials(a)).problem("not-found", 404)
            assert rows(admin, "SELECT 1 FROM ledger.tag WHERE event_id = %s AND uid = %s",
                        (world.event["id"], stray_uid)) == []
            after = world.customer(uid)
            assert (after["balance"], after["held"], after["lines"]) == (before["balance"], before["held"],
                                                                          before["lines"])
            # the over-limit charge on the tag is refused at its next tap too, and the tag drops it
            tap = await a.sync_tag(tag)
            assert refusals(tap) == [(a.assignment_id, over.terminal_tx_number, "offline-limit-exceeded")]
            assert (tap.held, tag_file(tag)["balance"]) == (0, 9000)

    run(scenario())


def test_changed_repeat_is_an_idempotency_conflict(world: World, client: gs.Client):
    """The same terminal number with other content is 422 idempotency-conflict and changes nothing."""
    async def scenario() -> None:
        async with await world.terminal("till", "Top-up") as till:
            tag, uid = await world.funded_tag(till, 2000)
            other_tag, other_uid = await world.funded_tag(till, 2000)
        desk = credentials(await _registered(world, "desk", "Top-up"))
        shop = credentials(await _registered(world, "shop", "Bar"))
        cola = world.event["products"]["Cola 0.3 l"]
        before = (world.customer(uid), world.customer(other_uid))

        topup = {"terminal_tx_number": 1, "uid": uid, "amount": 1000, "payment": "cash"}
        first = client.post(f"{PREFIX}/topups", topup, terminal=desk)
        assert first.status == 201, first.raw
        for change in ({"amount": 1500}, {"payment": "card"}, {"uid": other_uid}):
            client.post(f"{PREFIX}/topups", {**topup, **change}, terminal=desk).problem("idempotency-conflict", 422)
        again = client.post(f"{PREFIX}/topups", topup, terminal=desk)
        assert again.status == 201 and again.json == first.json

        refund = {"terminal_tx_number": 2, "uid": uid, "amount": 500}
        assert client.post(f"{PREFIX}/refunds", refund, terminal=desk).status == 201
        for change in ({"amount": 400}, {"uid": other_uid}):
            client.post(f"{PREFIX}/refunds", {**refund, **change}, terminal=desk).problem("idempotency-conflict",
                                                                                         422)

        reserve = {"terminal_tx_number": 1, "uid": uid, "tag_tx_number": 9, "amount": 300,
                   "items": [{"product_id": cola, "quantity": 1, "unit_price": 300}]}
        first = client.post(f"{PREFIX}/reserve", reserve, terminal=shop)
        assert first.status == 201, first.raw
        tip = world.event["products"]["Tip"]
        for change in ({"uid": other_uid}, {"tag_tx_number": 10},
                       {"items": [{"product_id": tip, "quantity": 1, "unit_price": 300}]},
                       {"amount": 600, "items": [{"product_id": cola, "quantity": 2, "unit_price": 300}]}):
            client.post(f"{PREFIX}/reserve", {**reserve, **change}, terminal=shop).problem("idempotency-conflict",
                                                                                          422)
        # a replicated entry that differs from its reserve is rejected the same way, never booked
        answer = client.post(f"{PREFIX}/transactions", {"transactions": [
            {"terminal_tx_number": 1, "type": "purchase", "state": "Committed", "uid": uid, "tag_tx_number": 9,
             "amount": 300, "items": [{"product_id": tip, "quantity": 1, "unit_price": 300}]}]}, terminal=shop)
        assert answer.status == 200 and answer.json["results"][0]["outcome"] == "rejected", answer.raw
        assert answer.json["results"][0]["problem"] == "idempotency-conflict"
        settle = client.post(f"{PREFIX}/transactions", {"transactions": [
            {"terminal_tx_number": 1, "type": "purchase", "state": "Aborted", "uid": uid, "tag_tx_number": 9,
             "amount": 300, "items": reserve["items"]}]}, terminal=shop)
        assert settle.json["results"][0]["state"] == "Aborted", settle.raw

        after = (world.customer(uid), world.customer(other_uid))
        assert (after[0]["balance"], after[0]["held"]) == (before[0]["balance"] + 1000 - 500, 0)
        assert (after[1]["balance"], after[1]["held"], after[1]["lines"]) == (
            before[1]["balance"], 0, before[1]["lines"])

    run(scenario())


# ============================================================================= crashes


def test_crash_after_the_tag_write_is_committed_by_the_next_sync(world: World):
    async def scenario() -> None:
        async with await world.terminal("till", "Top-up") as till, await world.terminal("bar-b") as b:
            tag, uid = await world.funded_tag(till, 2000)
            a, number = await crash_and_restart(await world.terminal("bar-a"), tag, ["Beer:2"], "after-write")
            async with a:
                assert [e["terminal_tx_number"] for e in tag_file(tag)["log"]] == [number]  # the tag WAS charged
                tx = world.tx(a, number)
                assert (tx["state"], tx["held"], tx["lines"]) == ("TerminalConfirmUnknown", 900, [])

                # the next tap of the tag, at any terminal, proves the charge
                tap = await b.sync_tag(tag)
                assert tap.acknowledged == 1 and (tap.balance, tap.held) == (1100, 0)
                tx = world.tx(a, number)
                assert (tx["state"], tx["held"]) == ("Committed", 0)
                assert sum(line["amount"] for line in tx["lines"]) == 900
                assert (await a.client.transaction(number))["state"] == "Committed"
                assert (await a.replicate(deadline_s=5)).sent == 0
                assert local_tx(a.home, number)["status"] == "TerminalConfirmUnknown"   # the terminal's record
            acct = world.customer(uid)
            assert (acct["balance"], acct["held"]) == (1100, 0)

    run(scenario())


async def crash_and_restart(terminal: Terminal, tag: Path, items: list[str], where: str) -> tuple[Terminal, int]:
    """A purchase that "crashes" (the process dies) before or after the tag write; then the terminal starts again
    (start-up cleanup: TerminalConfirmStarted -> TerminalConfirmUnknown) and replicates.  Returns the reopened
    terminal and the transaction number."""
    home = terminal.home
    with pytest.raises(SimulatedCrash) as crash:
        await terminal.buy(tag, items, crash=where)  # type: ignore[arg-type]
    number = crash.value.terminal_tx_number
    await terminal.close()                       # no cleanup at exit: the process died
    assert local_tx(home, number)["status"] == "TerminalConfirmStarted"
    reopened = Terminal.open(home)
    assert [t.terminal_tx_number for t in reopened.cleaned_up] == [number]
    local = local_tx(home, number)
    assert (local["status"], local["sync_status"]) == ("TerminalConfirmUnknown", "pending")
    rep = await reopened.replicate(deadline_s=10)
    assert (rep.booked, rep.remaining) == (1, 0) and rep.results[0]["state"] == "TerminalConfirmUnknown", rep
    return reopened, number


def test_crash_before_the_tag_write_is_aborted_by_the_next_sync(world: World):
    async def scenario() -> None:
        async with await world.terminal("till", "Top-up") as till, await world.terminal("bar-b") as b:
            tag, uid = await world.funded_tag(till, 2000)
            a, number = await crash_and_restart(await world.terminal("bar-a"), tag, ["Beer:2"], "before-write")
            async with a:
                assert tag_file(tag)["log"] == []                                    # the tag was NOT charged
                tx = world.tx(a, number)
                assert (tx["state"], tx["held"]) == ("TerminalConfirmUnknown", 900)  # held while unknown
                assert world.customer(uid)["held"] == 900

                # a later purchase (offline at B) moves the tag number on; the outcome is still unknown
                later = await b.buy(tag, ["Cola"], offline=True)
                assert later.state is State.COMMITTED and later.tag_tx_number == tx["tag_tx_number"]
                assert tag_file(tag)["next_tag_tx_number"] > tx["tag_tx_number"]
                assert world.tx(a, number)["state"] == "TerminalConfirmUnknown"
                # the next sync: the tag's complete log has no charge of A numbered below its next number -> Aborted
                tap = await b.sync_tag(tag)
                assert tap.acknowledged == 1 and (tap.balance, tap.held) == (2000, 300)
                tx = world.tx(a, number)
                assert (tx["state"], tx["held"], tx["lines"]) == ("Aborted", 0, [])
                assert (await a.client.transaction(number))["state"] == "Aborted"
                assert (await b.replicate(deadline_s=10)).remaining == 0
                assert world.tx(b, later.terminal_tx_number)["state"] == "Committed"
                acct = world.customer(uid)
                assert (acct["balance"], acct["held"]) == (2000 - 300, 0)

            # a crash before the write, and the very next tap is at the same tag number: settled at once
            a, number = await crash_and_restart(Terminal.open(a.home), tag, ["Pretzel"], "before-write")
            async with a:
                assert world.tx(a, number)["state"] == "TerminalConfirmUnknown"
                at_once = await b.buy(tag, ["Water"])
                assert at_once.state is State.COMMITTED, at_once
                assert at_once.tap is not None and (at_once.tap.held, at_once.tap.available) == (0, 1700)
                assert world.tx(a, number)["state"] == "Aborted"
                assert (await b.replicate(deadline_s=10)).remaining == 0
            acct = world.customer(uid)
            assert (acct["balance"], acct["held"]) == (2000 - 300 - 250, 0)

    run(scenario())


# ============================================================================= lost answers, repeats


def test_lost_answers_and_retries_book_once(world: World, client: gs.Client):
    async def scenario() -> None:
        async with LossyProxy(world.url) as proxy:
            till = await world.terminal("till", "Top-up", url=proxy.url)
            bar = await world.terminal("bar", url=proxy.url)
            async with till, bar:
                tag, uid = await world.funded_tag(till, 1000)

                # top-up: the answer is lost, the terminal retries with the same number
                proxy.lose(f"{PREFIX}/topups")
                topup = await till.topup(tag, 2000, "cash")
                assert topup.state is State.COMMITTED and topup.balance == 3000, topup
                assert proxy.calls(f"{PREFIX}/topups")[-2:] == [None, 201]
                assert world.tx(till, topup.terminal_tx_number)["amount"] == 2000
                assert world.customer(uid)["balance"] == 3000 and tag_file(tag)["balance"] == 3000

                # reserve: the same
                proxy.lose(f"{PREFIX}/reserve")
                buy = await bar.buy(tag, ["Beer:2"])
                assert buy.state is State.COMMITTED and buy.transaction_id is not None, buy
                assert proxy.calls(f"{PREFIX}/reserve") == [None, 201]
                tx = world.tx(bar, buy.terminal_tx_number)
                assert (tx["id"], tx["state"], tx["held"]) == (buy.transaction_id, "ReservePending", 900)
                assert world.customer(uid)["held"] == 900

                # replication: the batch is booked, the answer lost, the retry is a duplicate
                proxy.lose(f"{PREFIX}/transactions")
                rep = await bar.replicate(deadline_s=10)
                assert (rep.booked, rep.duplicate, rep.remaining) == (0, 1, 0), rep
                assert proxy.calls(f"{PREFIX}/transactions") == [None, 200]
                tx = world.tx(bar, buy.terminal_tx_number)
                assert tx["state"] == "Committed" and [line["amount"] for line in tx["lines"]] == [900]
                acct = world.customer(uid)
                assert (acct["balance"], acct["held"]) == (2100, 0)

                # tag sync: the log's charge is booked, the answer lost; the retry (same Idempotency-Key) replays it
                offline = await bar.buy(tag, ["Water"], offline=True)
                assert offline.state is State.COMMITTED
                sync_path = f"{PREFIX}/tags/{uid}/sync"
                proxy.lose(sync_path)
                tap = await bar.sync_tag(tag)
                assert proxy.calls(sync_path)[-2:] == [None, 200] and sync_path in proxy.replayed
                assert tap.acknowledged == 2 and tag_file(tag)["log"] == [] and tap.held == 250   # Beer:2 and Water
                assert world.tx(bar, offline.terminal_tx_number)["state"] == "Reserve"

                # every attempt of a reserve lost: the terminal completes offline; the reservation it does not
                # know about is committed by its replication, once
                proxy.lose(f"{PREFIX}/reserve", 2)
                blind = await bar.buy(tag, ["Pretzel"])
                assert blind.state is State.COMMITTED and not blind.online, blind
                assert world.tx(bar, blind.terminal_tx_number)["state"] == "ReservePending"

                # every attempt of a top-up lost: the outcome is unknown to the terminal; replication settles it
                proxy.lose(f"{PREFIX}/topups", 4)
                unknown = await till.topup(tag, 1000, "cash")
                assert unknown.state is State.CONFIRM_UNKNOWN and unknown.problem == "unreachable", unknown
                assert proxy.calls(f"{PREFIX}/topups")[-4:] == [None] * 4
                assert world.tx(till, unknown.terminal_tx_number)["state"] == "Committed"    # booked, once
                rep = await till.replicate(deadline_s=10)
                assert rep.remaining == 0 and rep.rejected == 0, rep
                assert {r["terminal_tx_number"]: (r["outcome"], r["state"]) for r in rep.results}[
                    unknown.terminal_tx_number] == ("duplicate", "Committed")
                rep = await bar.replicate(deadline_s=10)
                assert (rep.booked, rep.remaining) == (2, 0), rep
                for r in (offline, blind):
                    assert world.tx(bar, r.terminal_tx_number)["state"] == "Committed"
                acct = world.customer(uid)
                assert (acct["balance"], acct["held"]) == (2100 - 250 - 350 + 1000, 0)
                # (the top-up's tap acknowledged the blind charge); the next tap writes the settled balance
                tap = await bar.sync_tag(tag)
                assert (tap.balance, tag_file(tag)["balance"], tag_file(tag)["log"]) == (2500, 2500, [])

        # plain HTTP: the same request twice with the same terminal number answers the first booking again
        desk = credentials(await _registered(world, "desk", "Top-up"))
        shop = credentials(await _registered(world, "shop", "Bar"))
        before = world.customer(uid)
        body = {"terminal_tx_number": 7, "uid": uid, "amount": 1000, "payment": "card"}
        first = client.post(f"{PREFIX}/topups", body, terminal=desk)
        again = client.post(f"{PREFIX}/topups", body, terminal=desk)
        assert first.status == again.status == 201 and first.json == again.json, (first.raw, again.raw)
        assert first.json["balance"] == before["balance"] + 1000 - 50          # card fee
        reserve = {"terminal_tx_number": 3, "uid": uid, "tag_tx_number": 40, "amount": 300,
                   "items": [{"product_id": world.event["products"]["Cola 0.3 l"], "quantity": 1, "unit_price": 300}]}
        first = client.post(f"{PREFIX}/reserve", reserve, terminal=shop)
        again = client.post(f"{PREFIX}/reserve", reserve, terminal=shop)
        assert first.status == again.status == 201, (first.raw, again.raw)
        assert first.json["transaction_id"] == again.json["transaction_id"]
        # the same number with another amount is not a repeat: refused, nothing changes
        client.post(f"{PREFIX}/reserve", {**reserve, "amount": 600, "items": [
            {"product_id": world.event["products"]["Cola 0.3 l"], "quantity": 2, "unit_price": 300}]},
            terminal=shop).problem("idempotency-conflict", 422)
        after = world.customer(uid)
        assert after["balance"] == before["balance"] + 950 and after["held"] == 300
        assert after["transactions"] == before["transactions"] + 2
        # settle the raw reservation so the tag's money is not left held
        settle = client.post(f"{PREFIX}/transactions", {"transactions": [
            {"terminal_tx_number": 3, "type": "purchase", "state": "Aborted", "uid": uid, "amount": 300}]},
            terminal=shop)
        assert settle.status == 200 and settle.json["results"][0]["state"] == "Aborted", settle.raw

    run(scenario())


async def _registered(world: World, name: str, position: str) -> Terminal:
    terminal = await world.terminal(name, position)
    await terminal.close()
    return terminal


def test_replication_batch_repeated_and_reordered(world: World):
    async def scenario() -> None:
        async with await world.terminal("till", "Top-up") as till, await world.terminal("bar") as bar:
            tag, uid = await world.funded_tag(till, 3000)
            bought = [await bar.buy(tag, [item], offline=True) for item in ("Beer", "Cola:2", "Water", "Pretzel")]
            assert all(r.state is State.COMMITTED for r in bought)
            aborted = await bar.buy(tag, ["Bratwurst:9"], offline=True)            # more than the tag holds
            assert aborted.state is State.ABORTED and aborted.problem == "insufficient-balance", aborted
            entries = [tx.replication_entry() for tx in bar.store.pending(bar.assignment_id)]
            assert len(entries) == 5
            total = sum(r.amount for r in bought)

            # first delivery, in reverse order
            answers = await bar.client.replicate(list(reversed(entries)))
            assert [a["outcome"] for a in answers] == ["booked"] * 5
            assert [a["terminal_tx_number"] for a in answers] == [e["terminal_tx_number"] for e in reversed(entries)]
            lines = world.customer(uid)["lines"]
            assert world.customer(uid)["balance"] == 3000 - total

            # the same batch again, shuffled and with an entry twice: all duplicates, nothing booked twice
            repeated = entries[2:] + entries[:2] + entries[1:2]
            answers = await bar.client.replicate(repeated)
            assert [a["outcome"] for a in answers] == ["duplicate"] * 6, answers
            assert {a["terminal_tx_number"]: a["state"] for a in answers} == {
                **{r.terminal_tx_number: "Committed" for r in bought}, aborted.terminal_tx_number: "Aborted"}

            # the terminal's own replication (it never saw the answers above) is acknowledged as duplicates
            rep = await bar.replicate(deadline_s=10)
            assert (rep.duplicate, rep.booked, rep.remaining) == (5, 0, 0), rep
            assert all(local_tx(bar.home, r.terminal_tx_number)["sync_status"] == SyncStatus.SYNCED.value
                       for r in bought)
            acct = world.customer(uid)
            assert (acct["balance"], acct["held"], acct["lines"]) == (3000 - total, 0, lines)
            for r in bought:
                tx = world.tx(bar, r.terminal_tx_number)
                assert tx["state"] == "Committed" and sum(line["amount"] for line in tx["lines"]) == r.amount
            assert world.tx(bar, aborted.terminal_tx_number)["lines"] == []

            # and the tag's log, uploaded later, books nothing more
            tap = await bar.sync_tag(tag)
            assert tap.acknowledged == 4 and (tap.balance, tap.held) == (3000 - total, 0)
            assert world.customer(uid)["lines"] == lines

    run(scenario())


# ============================================================================= expiry and late commit


def expire(admin: psycopg.Connection, transaction_id: int) -> None:
    """Makes a reservation overdue (as the superuser) and runs the expiry a DBA or the gateway runs."""
    admin.execute("UPDATE ledger.transaction SET expires_at = now() - interval '1 second' WHERE id = %s",
                  (transaction_id,))
    admin.execute("SELECT api.expire_reservations()")
    assert gs.scalar(admin, "SELECT state::text FROM ledger.transaction WHERE id = %s",
                     (transaction_id,)) == "ReserveExpired"


def test_reserve_expiry_and_late_commit(world: World, admin, client: gs.Client):
    async def scenario() -> None:
        async with await world.terminal("till", "Top-up") as till, await world.terminal("bar") as bar:
            tag, uid = await world.funded_tag(till, 2000)
            desk = credentials(await _registered(world, "desk", "Top-up"))

            # a late commit that the balance still covers: booked, no overdraft
            first = await bar.buy(tag, ["Beer:2"])
            assert first.state is State.COMMITTED
            expire(admin, first.transaction_id)
            assert (world.customer(uid)["held"], world.customer(uid)["balance"]) == (0, 2000)
            rep = await bar.replicate(deadline_s=10)
            assert (rep.booked, rep.remaining) == (1, 0) and rep.results[0]["state"] == "Committed", rep
            tx = world.tx(bar, first.terminal_tx_number)
            assert tx["state"] == "Committed" and sum(line["amount"] for line in tx["lines"]) == 900
            assert world.customer(uid)["balance"] == 1100
            assert rows(admin, "SELECT * FROM report.overdraft WHERE transaction_id = %s", (tx["id"],)) == []

            # a late commit after the money went elsewhere: booked anyway (the tag was charged), overdraft flagged
            second = await bar.buy(tag, ["Beer:2"])
            assert second.state is State.COMMITTED
            expire(admin, second.transaction_id)
            # meanwhile 1000 is paid out in cash at a desk that never read the tag
            refund = client.post(f"{PREFIX}/refunds", {"terminal_tx_number": 1, "uid": uid, "amount": 1000},
                                 terminal=desk)
            assert refund.status == 201 and refund.json["balance"] == 100, refund.raw
            rep = await bar.replicate(deadline_s=10)
            assert (rep.booked, rep.rejected, rep.remaining) == (1, 0, 0), rep
            tx = world.tx(bar, second.terminal_tx_number)
            assert (tx["state"], tx["held"]) == ("Committed", 0)
            assert sum(line["amount"] for line in tx["lines"]) == 900
            acct = world.customer(uid)
            assert (acct["balance"], acct["held"]) == (100 - 900, 0)
            flagged = rows(admin, "SELECT uid, balance_after, event_id FROM report.overdraft"
                                  " WHERE transaction_id = %s", (tx["id"],))
            assert flagged == [{"uid": uid, "balance_after": -800, "event_id": world.event["id"]}]
            # the tag learns the negative balance at its next tap and refuses to pay
            tap = await bar.sync_tag(tag)
            assert tap.available == -800 and tag_file(tag)["balance"] == -800
            refused = await bar.buy(tag, ["Water"])
            assert refused.state is State.ABORTED and refused.problem == "insufficient-balance"

    run(scenario())


# ============================================================================= top-up and cash refund


def test_online_topup_and_cash_refund(world: World, admin):
    async def scenario() -> None:
        async with await world.terminal("till", "Top-up") as till, await world.terminal("bar") as bar:
            drawer = drawer_account(admin, till.assignment_id)
            tag, uid = world.tag(till)

            cash = await till.topup(tag, 3000, "cash")
            assert (cash.state, cash.balance, cash.tag_balance) == (State.COMMITTED, 3000, 3000), cash
            assert tag_file(tag)["balance"] == 3000
            card = await till.topup(tag, 2000, "card")
            assert (card.state, card.balance) == (State.COMMITTED, 3000 + 2000 - 50), card     # card fee 50
            assert account_balance(admin, drawer) == -3000          # the drawer paid 3000 into the loop
            tx = world.tx(till, cash.terminal_tx_number)
            assert tx["state"] == "Committed" and tx["lines"] == [
                {"debit": world.customer(uid)["account_id"], "credit": drawer, "amount": 3000}]

            refund = await till.refund(tag, 1200)
            assert (refund.state, refund.balance, refund.tag_balance) == (State.COMMITTED, 4950 - 1200, 3750), refund
            assert tag_file(tag)["balance"] == 3750
            assert account_balance(admin, drawer) == -3000 + 1200  # 1200 in cash left the drawer
            tx = world.tx(till, refund.terminal_tx_number)
            assert tx["type"] == "refund" and tx["lines"] == [
                {"debit": drawer, "credit": world.customer(uid)["account_id"], "amount": 1200}]
            # more than the balance is refused and changes nothing
            too_much = await till.refund(tag, 5000)
            assert too_much.state is State.ABORTED and too_much.problem == "insufficient-balance", too_much
            assert world.tx(till, too_much.terminal_tx_number) is None
            # a top-up above the event's maximum top-up too
            too_high = await till.topup(tag, 30000, "cash")
            assert too_high.state is State.ABORTED and too_high.problem == "topup-out-of-bounds", too_high
            acct = world.customer(uid)
            assert (acct["balance"], acct["held"]) == (3750, 0)
            assert account_balance(admin, drawer) == -1800
            # the terminal's records, replicated as duplicates of what was booked online
            assert [(local_tx(till.home, n)["status"]) for n in (cash.terminal_tx_number,
                                                                   refund.terminal_tx_number)] == ["Committed"] * 2
            rep = await till.replicate(deadline_s=10)
            assert rep.remaining == 0 and rep.booked == 0 and rep.rejected == 0, rep
            assert world.customer(uid)["balance"] == 3750
            # the money is spendable at the bar
            assert (await bar.buy(tag, ["Beer"])).available == 3750 - 450

    run(scenario())


# ============================================================================= authentication, idempotency keys


def test_bad_signatures_are_refused(world: World, client: gs.Client, admin):
    async def scenario() -> None:
        async with await world.terminal("till", "Top-up") as till, await world.terminal("bar") as bar:
            tag, uid = await world.funded_tag(till, 1000)
            before = world.customer(uid)
            me, other = credentials(bar), credentials(till)
            body = {"tag_tx_number": 0, "balance": 0, "log": []}
            path = f"{PREFIX}/tags/{uid}/sync"
            raw = json.dumps(body).encode()
            good = signing.signed_headers(me.assignment_id, me.secret, "POST", path, raw)
            assert client.post(path, raw=raw, headers=good).status == 200

            wrong = {**good, signing.HEADER_SIGNATURE: signing.sign(me.secret, "POST", path,
                                                                    int(good[signing.HEADER_TIMESTAMP]), b"{}")}
            for reply in (
                client.post(path, raw=raw, headers=wrong),                                  # wrong signature
                client.post(path, raw=raw, terminal=me, timestamp=int(time.time()) - 301),  # stale timestamp
                client.post(path, raw=raw, headers=signing.signed_headers(                  # another's secret
                    me.assignment_id, other.secret, "POST", path, raw)),
            ):
                reply.problem("unauthorized", 401)

            # a terminal whose secret is another terminal's: every call refused, nothing done, nothing lost
            stolen = world.tmp / "impostor"
            stolen.mkdir()
            settings = TerminalSettings.load(bar.home)
            settings.secret = till.settings.secret
            settings.save(stolen)
            async with Terminal.open(stolen) as impostor:
                with pytest.raises(TerminalError) as refused:
                    await impostor.sync_tag(tag)
                assert refused.value.slug == "unauthorized"
                with pytest.raises(Problem) as problem:
                    await impostor.client.reserve(1, uid, 0, 450, [
                        {"product_id": world.event["products"]["Beer 0.5 l"], "quantity": 1, "unit_price": 450}])
                assert (problem.value.status, problem.value.slug) == (401, "unauthorized")
                offline = await impostor.buy(tag, ["Beer"], offline=True)          # offline: the tag pays
                assert offline.state is State.COMMITTED
                rep = await impostor.replicate(deadline_s=2)
                assert rep.remaining == 1 and rep.booked == 0 and rep.errors, rep   # kept until it can be sent
            after = world.customer(uid)
            assert (after["balance"], after["held"], after["transactions"]) == (
                before["balance"], before["held"], before["transactions"])
            assert gs.scalar(admin, "SELECT count(*) FROM ledger.transaction WHERE assignment_id = %s",
                             (bar.assignment_id,)) == 0
            # the genuine bar's tap refuses the impostor's entry: it names bar, but its MAC is not bar's
            tap = await bar.sync_tag(tag)
            assert tap.acknowledged == 0 and tap.held == 0
            assert [(r.assignment_id, r.terminal_tx_number, r.problem) for r in tap.refused] == [
                (bar.assignment_id, offline.terminal_tx_number, "log-entry-forged")]
            assert tag_file(tag)["log"] == [] and tag_file(tag)["balance"] == before["balance"]

            # ... and settle it: with the genuine secret, the kept record replicates
            settings.secret = bar.settings.secret
            settings.save(stolen)
            async with Terminal.open(stolen) as impostor:
                assert (await impostor.replicate(deadline_s=10)).remaining == 0
            assert (world.customer(uid)["balance"], world.customer(uid)["held"]) == (550, 0)

    run(scenario())


def test_idempotency_key_reused_with_another_body(world: World, client: gs.Client):
    async def scenario() -> None:
        async with await world.terminal("till", "Top-up") as till, await world.terminal("bar") as bar:
            tag, uid = await world.funded_tag(till, 1000)
            key = f"e2e-{secrets.token_hex(8)}"
            first = await bar.client.tag_sync(uid, 5, 1000, [], idempotency_key=key)
            again = await bar.client.tag_sync(uid, 5, 1000, [], idempotency_key=key)
            assert first == again and first["balance"] == 1000
            with pytest.raises(Problem) as reused:
                await bar.client.tag_sync(uid, 5, 999, [], idempotency_key=key)
            assert (reused.value.status, reused.value.slug) == (422, "idempotency-key-reused")
            # registration too (plain HTTP: register is not signed)
            code = world.code("Bar")
            hdrs = {"Idempotency-Key": key}
            reply = client.post(f"{PREFIX}/register", {"registration_code": code, "device": "e2e one"}, headers=hdrs)
            assert reply.status == 201, reply.raw
            client.post(f"{PREFIX}/register", {"registration_code": code, "device": "e2e two"},
                        headers=hdrs).problem("idempotency-key-reused", 422)
            assert world.customer(uid)["balance"] == 1000

    run(scenario())
