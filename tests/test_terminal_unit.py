"""Unit tests of the reference terminal (python_gateway/terminal): no PostgreSQL, no real gateway.

Tag MAC and tamper detection, the per-entry MAC each charge carries, the tag's offline limits and log-full refusal,
the terminal state machine and its cleanup, SQLite persistence across restarts, offline purchases and simulated
crashes, and the HTTP side against a small in-process fake gateway (signatures and entry MACs checked, refused log
entries dropped, replication retried through 503s, the command line's ledger transaction id).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from python_gateway import signing
from python_gateway.terminal import (
    Item,
    SimulatedCrash,
    State,
    Store,
    SyncStatus,
    TagCorrupt,
    TagRefused,
    TagTampered,
    Terminal,
    TerminalBusy,
    TerminalSettings,
    VirtualTag,
    new_tag,
)
from python_gateway.terminal import machine
from python_gateway.terminal.cli import main as terminal_cli
from python_gateway.terminal.tag import LogEntry, TagData, compute_mac, parse

TAG_KEY = base64.b64encode(b"k" * 32).decode()
SECRET = base64.b64encode(b"s" * 32).decode()
UID = "04A1B2C3D4E5F6"

CONFIG = {
    "event": {"id": 1, "name": "Test Fest", "currency": "EUR", "reserve_timeout_s": 120, "max_balance": 50000,
              "offline_limit": 1000, "offline_log_size": 3},
    "position": {"name": "Bar", "kind": "sale", "merchant_id": 1},
    "products": [
        {"id": 1, "name": "Beer 0.5 l", "price": 450, "vat_rate": 19, "fixed_price": True, "returnable": False},
        {"id": 2, "name": "Water 0.5 l", "price": 250, "vat_rate": 19, "fixed_price": True, "returnable": False},
        {"id": 3, "name": "Tip", "price": None, "vat_rate": 0, "fixed_price": False, "returnable": False},
    ],
    "server_time": "2025-07-10T12:00:00Z",
}


def run(coro):
    return asyncio.run(coro)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_home(tmp_path: Path, url: str | None = None, name: str = "t1", assignment_id: int = 7) -> Path:
    home = tmp_path / name
    home.mkdir()
    TerminalSettings(
        url=url or f"http://127.0.0.1:{free_port()}",  # nobody listens: "offline"
        assignment_id=assignment_id, event_id=1, secret=SECRET, tag_key=TAG_KEY, config=json.loads(json.dumps(CONFIG)),
    ).save(home)
    return home


def make_tag(tmp_path: Path, balance: int = 0, uid: str = UID) -> Path:
    path = tmp_path / "tags" / f"{uid}.json"
    new_tag(path, uid, TAG_KEY)
    if balance:
        VirtualTag(path).write(TagData(uid=uid, balance=balance, next_tag_tx_number=1), TAG_KEY)
    return path


def tamper(path: Path, **changes) -> None:
    obj = json.loads(path.read_text())
    obj.update(changes)
    path.write_text(json.dumps(obj))


def entry_mac(assignment_id: int, terminal_tx_number: int, tag_tx_number: int, amount: int, uid: str = UID,
              secret: str = SECRET) -> str:
    return signing.log_entry_mac(secret, assignment_id, terminal_tx_number, uid, tag_tx_number, amount)


# ------------------------------------------------------------------------------------------ tag MAC


def test_new_tag_is_signed_and_reads_back(tmp_path):
    path = tmp_path / "t.json"
    data = new_tag(path, "04:a1:b2:c3", TAG_KEY)
    assert data == TagData(uid="04A1B2C3")
    obj = json.loads(path.read_text())
    assert obj["balance"] == 0 and obj["next_tag_tx_number"] == 0 and obj["log"] == [] and obj["mac"]
    assert VirtualTag(path).read(TAG_KEY) == data
    with pytest.raises(FileExistsError):
        new_tag(path, "04A1B2C3", TAG_KEY)


@pytest.mark.parametrize("change", [
    {"balance": 99999},
    {"next_tag_tx_number": 0, "balance": 0},
    {"uid": "04A1B2C3D4E5F7"},
    {"log": []},
])
def test_tampered_tag_is_refused(tmp_path, change):
    path = tmp_path / "t.json"
    tag = VirtualTag(path)
    tag.write(TagData(UID, 1500, 3, (LogEntry(7, 2, 2, 450, "2025-07-10T12:00:00Z"),)), TAG_KEY)
    tag.read(TAG_KEY)
    tamper(path, **change)
    with pytest.raises(TagTampered):
        tag.read(TAG_KEY)


def test_entry_mac_is_kept_and_covered_by_the_tag_mac(tmp_path):
    path = tmp_path / "t.json"
    mac = entry_mac(7, 2, 2, 450)
    data = TagData(UID, 1500, 3, (LogEntry(7, 2, 2, 450, "2025-07-10T12:00:00Z", mac),))
    VirtualTag(path).write(data, TAG_KEY)
    assert json.loads(path.read_text())["log"][0]["mac"] == mac
    assert VirtualTag(path).read(TAG_KEY) == data
    obj = json.loads(path.read_text())
    obj["log"][0]["mac"] = entry_mac(7, 2, 2, 450, secret=base64.b64encode(b"o" * 32).decode())
    path.write_text(json.dumps(obj))                 # another terminal's MAC swapped in: the tag MAC breaks
    with pytest.raises(TagTampered):
        VirtualTag(path).read(TAG_KEY)
    obj["log"][0]["mac"] = 42
    path.write_text(json.dumps(obj))
    with pytest.raises(TagCorrupt):
        VirtualTag(path).read(TAG_KEY)


def test_tag_file_with_entries_without_mac_still_reads(tmp_path):
    """A file whose entries carry no ``mac``: they read as mac=None and are written back without the member."""
    path = tmp_path / "t.json"
    data = TagData(UID, 1500, 3, (LogEntry(7, 2, 2, 450, "2025-07-10T12:00:00Z"),))
    obj = {"format": 1, "uid": UID, "balance": 1500, "next_tag_tx_number": 3,
           "log": [{"assignment_id": 7, "terminal_tx_number": 2, "tag_tx_number": 2, "amount": 450,
                    "time": "2025-07-10T12:00:00Z"}]}
    obj["mac"] = compute_mac(data, TAG_KEY)
    path.write_text(json.dumps(obj))
    read = VirtualTag(path).read(TAG_KEY)
    assert read == data and read.log[0].mac is None
    assert "mac" not in read.log[0].to_json()
    VirtualTag(path).write(read, TAG_KEY)
    assert json.loads(path.read_text())["mac"] == obj["mac"]


def test_tag_mac_needs_the_event_key(tmp_path):
    path = tmp_path / "t.json"
    VirtualTag(path).write(TagData(UID, 1500, 1), TAG_KEY)
    with pytest.raises(TagTampered):
        VirtualTag(path).read(base64.b64encode(b"x" * 32).decode())
    data, mac = parse(path.read_bytes())
    assert mac == compute_mac(data, TAG_KEY)


def test_blank_tag_only_when_pristine(tmp_path):
    path = tmp_path / "blank.json"
    new_tag(path, UID, None)
    assert json.loads(path.read_text())["mac"] is None
    assert VirtualTag(path).read(TAG_KEY).pristine
    tamper(path, balance=5000)                   # a blank tag cannot carry money
    with pytest.raises(TagTampered):
        VirtualTag(path).read(TAG_KEY)


@pytest.mark.parametrize("content", ["not json", "[]", '{"uid": "zz"}',
                                     '{"uid": "04A1B2C3", "balance": "1", "next_tag_tx_number": 0, "log": []}'])
def test_corrupt_tag_file(tmp_path, content):
    path = tmp_path / "c.json"
    path.write_text(content)
    with pytest.raises(TagCorrupt):
        VirtualTag(path).read(TAG_KEY)


# ------------------------------------------------------------------------------------------ tag limits


def _entry(n: int, amount: int) -> LogEntry:
    return LogEntry(7, n, n, amount, "2025-07-10T12:00:00Z")


def test_offline_limit_counts_unacknowledged_charges():
    tag = TagData(UID, 5000, 2, (_entry(1, 400), _entry(2, 400)))
    tag.check_charge(200, offline=True, log_size=16, offline_limit=1000)        # 800 + 200 = limit: fine
    with pytest.raises(TagRefused) as err:
        tag.check_charge(201, offline=True, log_size=16, offline_limit=1000)
    assert err.value.slug == "offline-limit-reached"
    tag.check_charge(4000, offline=False, log_size=16, offline_limit=1000)      # online: the backend decides


def test_offline_balance_must_cover_the_charge():
    tag = TagData(UID, 300, 0)
    with pytest.raises(TagRefused) as err:
        tag.check_charge(450, offline=True, log_size=16, offline_limit=5000)
    assert err.value.slug == "insufficient-balance"


def test_full_log_refuses_every_charge():
    tag = TagData(UID, 5000, 3, tuple(_entry(n, 10) for n in range(3)))
    for offline in (True, False):
        with pytest.raises(TagRefused) as err:
            tag.check_charge(10, offline=offline, log_size=3, offline_limit=5000)
        assert err.value.slug == "tag-log-full"


def test_charge_and_acknowledge_bump_the_number():
    tag = TagData(UID, 1000, 4)
    charged = tag.charged(LogEntry(7, 1, 4, 450, "2025-07-10T12:00:00Z"))
    assert (charged.balance, charged.next_tag_tx_number, len(charged.log)) == (550, 5, 1)
    with pytest.raises(TagRefused):
        tag.charged(LogEntry(7, 1, 3, 450, "2025-07-10T12:00:00Z"))         # not the tag's next number
    acked = charged.acknowledged({(7, 1)}, balance=550)
    assert (acked.balance, acked.next_tag_tx_number, acked.log) == (550, 6, ())


# ------------------------------------------------------------------------------------------ state machine


def test_machine_transitions():
    S = State
    allowed = {(S.OPEN, S.CONFIRM_STARTED), (S.OPEN, S.ABORTED), (S.CONFIRM_STARTED, S.COMMITTED),
               (S.CONFIRM_STARTED, S.ABORTED), (S.CONFIRM_STARTED, S.CONFIRM_UNKNOWN)}
    for a in S:
        for b in S:
            if (a, b) in allowed:
                machine.check(a, b)
            else:
                with pytest.raises(machine.InvalidTransition):
                    machine.check(a, b)
    assert machine.sync_status_for(S.OPEN) is SyncStatus.LOCAL
    assert machine.sync_status_for(S.CONFIRM_STARTED) is SyncStatus.LOCAL
    for final in (S.COMMITTED, S.ABORTED, S.CONFIRM_UNKNOWN):
        assert machine.sync_status_for(final) is SyncStatus.PENDING


def _create(store: Store, amount: int = 450):
    return store.create(assignment_id=7, uid=UID, transaction_type="purchase", amount=amount, tag_tx_number=1,
                        items=[Item(1, "Beer 0.5 l", amount // 450 or 1, 450, 19)] if amount % 450 == 0 else [])


def test_store_enforces_the_machine_and_cleanup(tmp_path):
    store = Store(tmp_path / "db.sqlite3")
    a, b, c = _create(store), _create(store), _create(store)
    assert [t.terminal_tx_number for t in (a, b, c)] == [1, 2, 3]
    assert a.status is State.OPEN and a.sync_status is SyncStatus.LOCAL
    with pytest.raises(machine.InvalidTransition):
        store.set_state(7, 1, State.COMMITTED)                     # Open -> Committed skips the confirm step
    store.set_state(7, 1, State.CONFIRM_STARTED)
    store.set_state(7, 2, State.CONFIRM_STARTED)
    store.set_state(7, 2, State.COMMITTED)
    store.set_state(7, 3, State.ABORTED, problem="insufficient-balance")
    with pytest.raises(machine.InvalidTransition):
        store.set_state(7, 2, State.ABORTED)                       # final states stay final
    moved = store.cleanup()
    assert [t.terminal_tx_number for t in moved] == [1]
    states = {t.terminal_tx_number: (t.status, t.sync_status, t.problem) for t in store.transactions()}
    assert states == {1: (State.CONFIRM_UNKNOWN, SyncStatus.PENDING, None),
                      2: (State.COMMITTED, SyncStatus.PENDING, None),
                      3: (State.ABORTED, SyncStatus.PENDING, "insufficient-balance")}
    assert store.cleanup() == []
    with pytest.raises(machine.InvalidTransition):
        store.set_state(7, 1, State.COMMITTED)                     # an unknown outcome is the backend's to settle


def test_start_up_cleanup_aborts_what_a_crash_left_open(tmp_path):
    store = Store(tmp_path / "db.sqlite3")
    _create(store)                                                      # 1 stays Open
    store.set_state(7, _create(store).terminal_tx_number, State.CONFIRM_STARTED)
    assert [t.terminal_tx_number for t in store.cleanup()] == [2]        # before a purchase: Open is in use
    assert store.get(7, 1).status is State.OPEN
    moved = store.cleanup(abort_open=True)                              # at start-up: nothing can be under way
    assert [(t.terminal_tx_number, t.status, t.problem) for t in moved] == [(1, State.ABORTED, "interrupted")]
    assert store.get(7, 1).sync_status is SyncStatus.PENDING            # replicated: a reserve is released
    assert store.cleanup(abort_open=True) == []


def test_sqlite_persists_across_restarts(tmp_path):
    path = tmp_path / "db.sqlite3"
    store = Store(path)
    tx = store.create(assignment_id=7, uid=UID, transaction_type="purchase", amount=1150, tag_tx_number=4,
                      items=[Item(1, "Beer 0.5 l", 2, 450, 19), Item(2, "Water 0.5 l", 1, 250, 19)])
    store.set_state(7, tx.terminal_tx_number, State.CONFIRM_STARTED)
    store.put_snapshot(UID, status="active", balance=5000, held=0, available=5000, tag_tx_number=5)
    store.close()

    store = Store(path)
    again = store.get(7, 1)
    assert again.status is State.CONFIRM_STARTED and again.amount == 1150 and again.tag_tx_number == 4
    assert [(i.item_number, i.product_name, i.quantity, i.unit_price, str(i.vat_rate)) for i in again.items] == [
        (1, "Beer 0.5 l", 2, 450, "19"), (2, "Water 0.5 l", 1, 250, "19")]
    assert store.snapshot(UID).available == 5000
    assert store.next_number(7) == 2 and store.next_number(8) == 1      # numbers per assignment, from 1
    entry = again.replication_entry()
    assert entry["items"] == [{"product_id": 1, "quantity": 2, "unit_price": 450},
                              {"product_id": 2, "quantity": 1, "unit_price": 250}]
    store.close()


# ------------------------------------------------------------------------------------------ offline flows


def test_offline_purchase_commits_and_charges_the_tag(tmp_path):
    home, tag = make_home(tmp_path), make_tag(tmp_path, balance=2000)

    async def go():
        async with Terminal.open(home) as t:
            r = await t.buy(tag, ["Beer:1", "water"], offline=True)
            assert r.state is State.COMMITTED and r.amount == 700 and not r.online
            assert r.tag_balance == 1300 and r.tag_tx_number == 1 and r.terminal_tx_number == 1
            data = t.read_tag(tag)
            assert (data.balance, data.next_tag_tx_number) == (1300, 2)
            assert [(e.assignment_id, e.terminal_tx_number, e.tag_tx_number, e.amount) for e in data.log] == [
                (7, 1, 1, 700)]
            assert data.log[0].mac == entry_mac(7, 1, 1, 700)        # written with the terminal's own secret
            stored = t.store.get(7, 1)
            assert stored.status is State.COMMITTED and stored.sync_status is SyncStatus.PENDING and stored.offline
            assert [i.product_name for i in stored.items] == ["Beer 0.5 l", "Water 0.5 l"]

    run(go())


def test_offline_limit_and_full_log_abort(tmp_path):
    home, tag = make_home(tmp_path), make_tag(tmp_path, balance=5000)   # offline limit 1000, log size 3

    async def go():
        async with Terminal.open(home) as t:
            assert (await t.buy(tag, ["Beer:2"], offline=True)).state is State.COMMITTED        # 900
            r = await t.buy(tag, ["Water"], offline=True)                                       # 900 + 250 > 1000
            assert r.state is State.ABORTED and r.problem == "offline-limit-reached"
            for _ in range(2):
                assert (await t.buy(tag, ["Tip:1@1"], offline=True)).state is State.COMMITTED
            r = await t.buy(tag, ["Tip:1@1"], offline=True)                                     # 3 entries: full
            assert r.state is State.ABORTED and r.problem == "tag-log-full"
            assert t.read_tag(tag).balance == 5000 - 902
            assert [x.status for x in t.transactions()] == [State.ABORTED, State.COMMITTED, State.COMMITTED,
                                                            State.ABORTED, State.COMMITTED]

    run(go())


def test_offline_insufficient_tag_balance_aborts(tmp_path):
    home, tag = make_home(tmp_path), make_tag(tmp_path, balance=300)

    async def go():
        async with Terminal.open(home) as t:
            r = await t.buy(tag, ["Beer"], offline=True)
            assert r.state is State.ABORTED and r.problem == "insufficient-balance" and r.available == 300
            assert t.read_tag(tag).balance == 300

    run(go())


def test_tampered_tag_charges_nothing(tmp_path):
    home, tag = make_home(tmp_path), make_tag(tmp_path, balance=2000)
    tamper(tag, balance=9000)

    async def go():
        async with Terminal.open(home) as t:
            with pytest.raises(TagTampered):
                await t.buy(tag, ["Beer"], offline=True)
            assert t.transactions() == []

    run(go())
    assert json.loads(tag.read_text())["balance"] == 9000          # untouched


@pytest.mark.parametrize("where", ["after-write", "before-write"])
def test_simulated_crash_then_cleanup_at_start_up(tmp_path, where):
    home, tag = make_home(tmp_path), make_tag(tmp_path, balance=2000)

    async def crash():
        t = Terminal.open(home)
        with pytest.raises(SimulatedCrash):
            await t.buy(tag, ["Beer"], offline=True, crash=where)
        await t.close()                                              # a crash runs no exit cleanup
        store = Store(home / "terminal.sqlite3")
        assert store.get(7, 1).status is State.CONFIRM_STARTED
        store.close()

    run(crash())
    data = VirtualTag(tag).read(TAG_KEY)
    assert data.balance == (1550 if where == "after-write" else 2000)
    assert len(data.log) == (1 if where == "after-write" else 0)

    async def restart():
        async with Terminal.open(home) as t:
            assert [x.terminal_tx_number for x in t.cleaned_up] == [1]
            tx = t.store.get(7, 1)
            assert tx.status is State.CONFIRM_UNKNOWN and tx.sync_status is SyncStatus.PENDING
            r = await t.buy(tag, ["Water"], offline=True)              # the terminal goes on with number 2
            assert r.terminal_tx_number == 2 and r.state is State.COMMITTED

    run(restart())


def test_exit_cleanup_and_single_process_lock(tmp_path):
    home = make_home(tmp_path)

    async def go():
        t = Terminal.open(home)
        with pytest.raises(TerminalBusy):
            Terminal.open(home)
        t.store.create(assignment_id=7, uid=UID, transaction_type="purchase", amount=450, tag_tx_number=0)
        t.store.set_state(7, 1, State.CONFIRM_STARTED)
        await t.close()                                              # exit cleanup
        store = Store(home / "terminal.sqlite3")
        assert store.get(7, 1).status is State.CONFIRM_UNKNOWN
        store.close()
        Terminal.open(home, cleanup=False).store.close()             # the lock was released

    run(go())


def test_unreachable_backend_falls_back_to_offline(tmp_path):
    home, tag = make_home(tmp_path), make_tag(tmp_path, balance=2000)

    async def go():
        async with Terminal.open(home, timeout_s=2) as t:
            r = await t.buy(tag, ["Beer"])
            assert r.state is State.COMMITTED and not r.online and r.tap.offline_reason
            rep = await t.replicate(deadline_s=0.3)                   # nothing listens: stays pending
            assert rep.remaining == 1 and rep.errors

    run(go())


def test_cli_offline_buy_and_status(tmp_path, capsys):
    home, tag = make_home(tmp_path), make_tag(tmp_path, balance=2000)
    assert terminal_cli(["terminal", "buy", "--home", str(home), "--tag", str(tag), "--item", "Water:2",
                         "--offline"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("state=Committed transaction_id=- terminal_tx_number=1 ")
    assert "amount=500" in out[-1] and "tag_balance=1500" in out[-1]
    assert out[-2].startswith("Not in the ledger yet: `festpay terminal replicate --home ")
    assert terminal_cli(["terminal", "buy", "--home", str(home), "--tag", str(tag), "--item", "Beer",
                         "--offline", "--crash-after-write"]) == 70
    assert capsys.readouterr().out.strip().splitlines()[-1] == (
        "state=TerminalConfirmStarted terminal_tx_number=2 crashed=after-write")
    assert terminal_cli(["terminal", "status", "--home", str(home)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == "assignment_id=7 transactions=2 pending=1 Committed=1 TerminalConfirmStarted=1"
    tamper(tag, balance=1)
    assert terminal_cli(["terminal", "buy", "--home", str(home), "--tag", str(tag), "--item", "Beer",
                         "--offline"]) == 1
    captured = capsys.readouterr()
    assert captured.out.strip().splitlines()[-1] == "state=Refused problem=tag-tampered"
    assert "cleanup: transaction 2" in captured.out


def test_cli_new_tag(tmp_path, capsys):
    home = make_home(tmp_path)
    assert terminal_cli(["terminal", "new-tag", "--home", str(home), "--uid", "04a1b2c3", "--dir",
                         str(tmp_path / "tags")]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == f"tag={tmp_path / 'tags' / '04A1B2C3.json'} uid=04A1B2C3"
    assert VirtualTag(tmp_path / "tags" / "04A1B2C3.json").read(TAG_KEY).pristine
    assert terminal_cli(["terminal", "new-tag", "--home", str(home), "--uid", "zz"]) == 1


# ------------------------------------------------------------------------------------------ fake gateway


class FakeGateway:
    """Just enough of the terminal API to drive the client: checks every signature, records the calls."""

    def __init__(self):
        self.calls: list[tuple[str, dict]] = []
        self.fail_replication = 0           # answer 503 this many times first
        self.available = 5000
        self.held = 0
        self.seen: set[int] = set()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/terminal/v1/config", self.config)
        app.router.add_post("/terminal/v1/tags/{uid}/sync", self.sync)
        app.router.add_post("/terminal/v1/reserve", self.reserve)
        app.router.add_post("/terminal/v1/topups", self.topup)
        app.router.add_post("/terminal/v1/transactions", self.transactions)
        return app

    async def _auth(self, request: web.Request) -> dict:
        body = await request.read()
        h = request.headers
        assert h[signing.HEADER_ASSIGNMENT] == "7"
        assert signing.verify(SECRET, request.method, request.raw_path, h[signing.HEADER_TIMESTAMP], body,
                              h[signing.HEADER_SIGNATURE]), "bad signature"
        payload = json.loads(body) if body else {}
        self.calls.append((f"{request.method} {request.path}", payload))
        if request.path.endswith("/sync"):
            assert request.headers.get("Idempotency-Key")
        return payload

    async def config(self, request):
        await self._auth(request)
        return web.json_response(CONFIG)

    async def sync(self, request):
        body = await self._auth(request)
        uid = request.match_info["uid"]
        # only assignment 7's secret is known here: any other entry, or one without its MAC, is forged
        genuine = [e for e in body["log"] if e["assignment_id"] == 7 and e.get("mac") == entry_mac(
            e["assignment_id"], e["terminal_tx_number"], e["tag_tx_number"], e["amount"], uid=uid)]
        acked = [{"assignment_id": e["assignment_id"], "terminal_tx_number": e["terminal_tx_number"]}
                 for e in genuine]
        refused = [{"assignment_id": e["assignment_id"], "terminal_tx_number": e["terminal_tx_number"],
                    "problem": "log-entry-forged"} for e in body["log"] if e not in genuine]
        self.available -= sum(e["amount"] for e in genuine if e["terminal_tx_number"] not in self.seen)
        return web.json_response({"uid": uid, "status": "active", "balance": self.available, "held": self.held,
                                  "available": self.available - self.held, "acknowledged": acked,
                                  "refused": refused})

    async def reserve(self, request):
        body = await self._auth(request)
        if body["amount"] > self.available - self.held:
            return web.json_response({"type": "/problems/insufficient-balance", "title": "short", "status": 402,
                                      "detail": "too little", "available": self.available - self.held},
                                     status=402, content_type="application/problem+json")
        self.held += body["amount"]
        self.seen.add(body["terminal_tx_number"])
        return web.json_response({"transaction_id": 100 + body["terminal_tx_number"], "state": "ReservePending",
                                  "available": self.available - self.held, "expires_at": "2025-07-10T12:02:00Z"},
                                 status=201)

    async def topup(self, request):
        body = await self._auth(request)
        self.available += body["amount"]
        return web.json_response({"transaction_id": 100 + body["terminal_tx_number"], "state": "Committed",
                                  "balance": self.available}, status=201)

    async def transactions(self, request):
        body = await self._auth(request)
        if self.fail_replication:
            self.fail_replication -= 1
            return web.json_response({"type": "/problems/internal", "status": 503}, status=503)
        return web.json_response({"results": [
            {"terminal_tx_number": e["terminal_tx_number"], "transaction_id": 100 + e["terminal_tx_number"],
             "state": e["state"], "outcome": "booked", "problem": None} for e in body["transactions"]]})


def test_online_flows_against_a_fake_gateway(tmp_path):
    fake = FakeGateway()
    fake.fail_replication = 2

    async def go():
        server = TestServer(fake.app(), host="127.0.0.1")
        await server.start_server()
        try:
            home = make_home(tmp_path, url=str(server.make_url("")).rstrip("/"))
            tag = make_tag(tmp_path)                                   # balance 0, number 0, signed
            async with Terminal.open(home) as t:
                await t.fetch_config()
                top = await t.topup(tag, 2000, "card")
                assert top.state is State.COMMITTED and top.balance == 7000 and top.tag_balance == 7000
                r = await t.buy(tag, ["Beer:2"])
                assert r.state is State.COMMITTED and r.online and r.transaction_id == 102
                data = t.read_tag(tag)
                assert data.balance == 6100 and len(data.log) == 1 and data.log[0].terminal_tx_number == 2
                short = await t.buy(tag, ["Tip:1@99999"])
                assert short.state is State.ABORTED and short.problem == "insufficient-balance"
                assert short.available == 6100 and short.tap.acknowledged == 1   # its first tap synced the log
                assert t.read_tag(tag).log == ()
                rep = await t.replicate(deadline_s=10)
                assert (rep.booked, rep.remaining) == (3, 0) and rep.errors       # two 503s, then booked
                assert all(x.sync_status is SyncStatus.SYNCED for x in t.transactions())
                tap = await t.sync_tag(tag)
                assert tap.online and tap.acknowledged == 0 and tap.tag_balance == 6100
            paths = [c[0] for c in fake.calls]
            assert paths.count("POST /terminal/v1/transactions") == 3
            assert "POST /terminal/v1/reserve" in paths and "POST /terminal/v1/topups" in paths
            entries = [c[1] for c in fake.calls if c[0] == "POST /terminal/v1/transactions"][-1]["transactions"]
            assert [(e["terminal_tx_number"], e["type"], e["state"]) for e in entries] == [
                (1, "topup", "Committed"), (2, "purchase", "Committed"), (3, "purchase", "Aborted")]
            assert entries[1]["items"] == [{"product_id": 1, "quantity": 2, "unit_price": 450}]
        finally:
            await server.close()

    run(go())


def test_refused_log_entries_are_dropped_from_the_tag(tmp_path):
    fake = FakeGateway()
    tag = make_tag(tmp_path, balance=2000)

    async def go():
        server = TestServer(fake.app(), host="127.0.0.1")
        await server.start_server()
        try:
            home = make_home(tmp_path, url=str(server.make_url("")).rstrip("/"))
            async with Terminal.open(home) as t:
                assert (await t.buy(tag, ["Beer"], offline=True)).state is State.COMMITTED
                # a terminal holding the tag key writes a charge in assignment 8's name: forged
                data = t.read_tag(tag)
                forged = LogEntry(8, 1, data.next_tag_tx_number, 300, "2025-07-10T12:00:00Z",
                                  entry_mac(8, 1, data.next_tag_tx_number, 300))
                nomac = LogEntry(7, 99, data.next_tag_tx_number + 1, 200, "2025-07-10T12:00:00Z")
                VirtualTag(tag).write(data.charged(forged).charged(nomac), TAG_KEY)
                sent_before = len(fake.calls)
                tap = await t.sync_tag(tag)
                body = fake.calls[sent_before][1]
                assert [e.get("mac") for e in body["log"]] == [entry_mac(7, 1, 1, 450), forged.mac, None]
                assert tap.acknowledged == 1 and tap.unacknowledged == 0
                assert [(r.assignment_id, r.terminal_tx_number, r.problem, r.tag_tx_number, r.amount)
                        for r in tap.refused] == [(8, 1, "log-entry-forged", 2, 300),
                                                  (7, 99, "log-entry-forged", 3, 200)]
                after = t.read_tag(tag)
                # both settled: dropped from the tag, whose balance is the backend's available
                assert after.log == () and after.balance == 5000 - 450 == tap.available
                assert "refused=2" in tap.summary()
        finally:
            await server.close()

    run(go())


# ------------------------------------------------------------------------------------------ command line, online


@contextlib.contextmanager
def fake_gateway_in_a_thread(fake: FakeGateway) -> Iterator[str]:
    """The fake gateway served by its own event loop in a thread (the command line runs its own loop); its URL."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runner = web.AppRunner(fake.app(), access_log=None)

    async def start() -> str:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    try:
        yield asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_cli_prints_the_ledger_transaction_id_for_the_receipt(tmp_path, capsys):
    fake = FakeGateway()
    with fake_gateway_in_a_thread(fake) as url:
        home, tag = make_home(tmp_path, url=url), make_tag(tmp_path)
        assert terminal_cli(["terminal", "topup", "--home", str(home), "--tag", str(tag), "--amount", "2000"]) == 0
        out = capsys.readouterr().out.strip().splitlines()
        assert out[-1].startswith("state=Committed transaction_id=101 type=topup terminal_tx_number=1 "), out
        assert out[-2] == "Transaction 101 — its receipt: festpay receipt 101"
        assert terminal_cli(["terminal", "buy", "--home", str(home), "--tag", str(tag), "--item", "Beer:2"]) == 0
        out = capsys.readouterr().out.strip().splitlines()
        assert out[-1].startswith("state=Committed transaction_id=102 terminal_tx_number=2 "), out
        assert out[-2] == "Transaction 102 — its receipt: festpay receipt 102"
        assert any(line.startswith("Total 9.00 EUR: Committed  (terminal's own number 2,") for line in out), out

        # a refused log entry is reported by the sync command
        data = VirtualTag(tag).read(TAG_KEY)
        VirtualTag(tag).write(data.charged(LogEntry(8, 4, data.next_tag_tx_number, 100, "2025-07-10T12:00:00Z")),
                              TAG_KEY)
        assert terminal_cli(["terminal", "sync", "--home", str(home), "--tag", str(tag)]) == 0
        out = capsys.readouterr().out.strip().splitlines()
        assert "acknowledged=1 refused=1 unacknowledged=0" in out[-1], out
        assert any("refused by the backend and dropped from the tag: assignment 8 #4" in line
                   and "log-entry-forged" in line for line in out), out
