"""The HTTP gateway, against the real test PostgreSQL and a real server on 127.0.0.1.

The gateway runs in a background thread with its own event loop (aiohttp AppRunner/TCPSite on a free port,
logged in as festpay_terminal; tests/gateway_server.py, shared with the end-to-end tests); the tests talk HTTP
to it with http.client / requests, and check the database as the superuser.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from python_gateway import signing
from python_gateway.config import MIGRATIONS_DIR, PROJECT_ROOT
from python_gateway.gateway import GatewayOptions
from python_gateway.gateway.health import newest_migration
from python_gateway.gateway.idempotency import request_hash
from tests.child_process import stop_process
from tests.conftest import TEST_DBNAME
from tests.fiscal_server import RunningRelay
from tests.gateway_server import (  # noqa: F401  (admin, client, gateway: pytest fixtures)
    PREFIX,
    Client,
    RunningGateway,
    Terminal,
    admin,
    client,
    free_port,
    gateway,
    scalar,
)

_numbers = itertools.count(1)


def next_number() -> int:
    """A terminal transaction number not used before in this module."""
    return next(_numbers)


def new_uid() -> str:
    return secrets.token_hex(7).upper()


# ----------------------------------------------------------------------------- fixtures

def make_event(admin: psycopg.Connection, reserve_timeout_s: int = 120) -> dict[str, Any]:
    name = f"Gateway test {secrets.token_hex(4)}"
    event_id = scalar(admin, "SELECT api.create_event(%s, 'EUR', 50000, 500, 25000, p_topup_fee_card => 50,"
                             " p_reserve_timeout_s => %s)", (name, reserve_timeout_s))
    merchant = scalar(admin, "SELECT api.create_merchant(%s, 'Bar')", (event_id,))
    scalar(admin, "SELECT api.create_position(%s, 'Bar', 'sale', %s)", (event_id, merchant))
    scalar(admin, "SELECT api.create_position(%s, 'Top-up', 'topup')", (event_id,))
    beer = scalar(admin, "SELECT api.create_product(%s, 'Beer', 450, 19)", (event_id,))
    tip = scalar(admin, "SELECT api.create_product(%s, 'Tip', NULL, 0, p_fixed_price => false)", (event_id,))
    return {"id": event_id, "name": name, "beer": beer, "tip": tip}


def code(admin: psycopg.Connection, event_id: int, position: str) -> str:
    return scalar(admin, "SELECT api.create_registration_code(%s, %s)", (event_id, position))


@pytest.fixture(scope="module")
def event(admin: psycopg.Connection) -> dict[str, Any]:
    return make_event(admin)


def register(client: Client, registration_code: str, device: str = "test till") -> Terminal:
    reply = client.post(f"{PREFIX}/register", {"registration_code": registration_code, "device": device})
    assert reply.status == 201, reply.raw
    body = reply.json
    return Terminal(body["assignment_id"], body["secret"], body["event_id"], body["tag_key"])


@pytest.fixture(scope="module")
def bar(client: Client, admin, event) -> Terminal:
    return register(client, code(admin, event["id"], "Bar"), "bar till")


@pytest.fixture(scope="module")
def till(client: Client, admin, event) -> Terminal:
    """A top-up terminal."""
    return register(client, code(admin, event["id"], "Top-up"), "top-up till")


@pytest.fixture(scope="module", autouse=True)
def invariants_clean_afterwards(admin):
    yield
    rows = admin.execute("SELECT * FROM api.check_invariants()").fetchall()
    assert rows == [], rows


def funded_tag(client: Client, till: Terminal, amount: int = 2000) -> str:
    uid = new_uid()
    reply = client.post(f"{PREFIX}/topups", {"terminal_tx_number": next_number(), "uid": uid, "amount": amount,
                                             "payment": "cash"}, terminal=till)
    assert reply.status == 201, reply.raw
    return uid


def reserve_body(event: dict[str, Any], uid: str, quantity: int = 1, **overrides: Any) -> dict[str, Any]:
    body = {"terminal_tx_number": next_number(), "uid": uid, "tag_tx_number": 0, "amount": 450 * quantity,
            "items": [{"product_id": event["beer"], "quantity": quantity, "unit_price": 450}]}
    body.update(overrides)
    return body


def snapshot(admin: psycopg.Connection) -> tuple[int, ...]:
    """Counts of everything a terminal call can change."""
    return admin.execute(
        "SELECT (SELECT count(*) FROM ledger.transaction), (SELECT count(*) FROM ledger.booking),"
        " (SELECT count(*) FROM ledger.tag), (SELECT count(*) FROM ledger.assignment),"
        " (SELECT count(*) FROM ledger.idempotency_key), (SELECT count(*) FROM ledger.item),"
        " (SELECT coalesce(sum(balance), 0) FROM ledger.account WHERE kind = 'customer')"
    ).fetchone()


# ----------------------------------------------------------------------------- register


def test_register_once_and_idempotency_key(client: Client, admin, event):
    c = code(admin, event["id"], "Bar")
    reply = client.post(f"{PREFIX}/register", {"registration_code": c, "device": "till 7"})
    assert reply.status == 201 and reply.content_type == "application/json"
    body = reply.json
    assert set(body) == {"assignment_id", "event_id", "secret", "tag_key"}
    assert body["event_id"] == event["id"]
    assert len(base64.b64decode(body["secret"])) == 32 and len(base64.b64decode(body["tag_key"])) == 32
    # the code works once
    client.post(f"{PREFIX}/register", {"registration_code": c, "device": "till 8"}).problem(
        "registration-code-invalid", 403)

    # Idempotency-Key: a lost answer is fetched again, not a second assignment
    c2 = code(admin, event["id"], "Top-up")
    key = {"Idempotency-Key": f"reg-{secrets.token_hex(6)}"}
    before = scalar(admin, "SELECT count(*) FROM ledger.assignment")
    first = client.post(f"{PREFIX}/register", {"registration_code": c2, "device": "till 9"}, headers=key)
    assert first.status == 201
    again = client.post(f"{PREFIX}/register", {"registration_code": c2, "device": "till 9"}, headers=key)
    assert again.status == 201 and again.json == first.json
    assert again.headers.get("idempotency-replayed") == "true"
    assert scalar(admin, "SELECT count(*) FROM ledger.assignment") == before + 1
    # same key, another body
    other = client.post(f"{PREFIX}/register", {"registration_code": c2, "device": "other"}, headers=key)
    other.problem("idempotency-key-reused", 422)
    # a failed request releases its key: a retry with a good code under the same key works
    key2 = {"Idempotency-Key": f"reg-{secrets.token_hex(6)}"}
    client.post(f"{PREFIX}/register", {"registration_code": "NOPE", "device": "x"}, headers=key2).problem(
        "registration-code-invalid", 403)
    assert scalar(admin, "SELECT count(*) FROM ledger.idempotency_key WHERE key = %s",
                  (key2["Idempotency-Key"],)) == 0


def test_idempotency_key_still_running_is_409(client: Client, admin, event):
    body = json.dumps({"registration_code": code(admin, event["id"], "Bar"), "device": "slow"}).encode()
    key = f"run-{secrets.token_hex(6)}"
    # a first request with this key is under way (claimed, not finished)
    digest = request_hash("POST", f"{PREFIX}/register", body)
    assert scalar(admin, "SELECT outcome FROM api.idempotency_claim('register', %s, %s)", (key, digest)) == "new"
    before = snapshot(admin)
    reply = client.request("POST", f"{PREFIX}/register", raw=body, headers={"Idempotency-Key": key})
    reply.problem("idempotency-request-running", 409)
    assert snapshot(admin) == before
    scalar(admin, "SELECT api.idempotency_release('register', %s)::text", (key,))
    assert client.request("POST", f"{PREFIX}/register", raw=body, headers={"Idempotency-Key": key}).status == 201


def test_register_validation(client: Client):
    client.post(f"{PREFIX}/register", {"registration_code": "X"}).problem("validation", 400)
    client.post(f"{PREFIX}/register", {"registration_code": "X", "device": "   "}).problem("validation", 400)
    reply = client.post(f"{PREFIX}/register", {"registration_code": 5, "device": "d"})
    body = reply.problem("validation", 400)
    assert body["errors"][0]["pointer"] == "/registration_code"
    client.post(f"{PREFIX}/register", {"registration_code": "X", "device": "d"},
                headers={"Idempotency-Key": "has space"}).problem("validation", 400)


# ----------------------------------------------------------------------------- signed calls


def test_config(client: Client, bar: Terminal, till: Terminal, event):
    reply = client.get(f"{PREFIX}/config", terminal=bar)
    assert reply.status == 200, reply.raw
    cfg = reply.json
    assert cfg["event"]["id"] == event["id"] and cfg["event"]["currency"] == "EUR"
    assert cfg["event"]["reserve_timeout_s"] == 120
    assert cfg["position"] == {"name": "Bar", "kind": "sale", "merchant_id": cfg["position"]["merchant_id"]}
    assert {p["name"] for p in cfg["products"]} == {"Beer", "Tip"}
    assert cfg["server_time"].endswith("Z")
    assert client.get(f"{PREFIX}/config", terminal=till).json["position"]["kind"] == "topup"


def test_topup_sync_reserve_replicate_lookup(client: Client, admin, bar, till, event):
    uid = new_uid()
    # unknown tag, empty log: nothing stored
    reply = client.post(f"{PREFIX}/tags/{uid}/sync", {"tag_tx_number": 0, "balance": 0, "log": []}, terminal=bar)
    assert reply.status == 200 and reply.json["status"] == "new"
    assert scalar(admin, "SELECT count(*) FROM ledger.tag WHERE uid = %s", (uid,)) == 0

    n = next_number()
    reply = client.post(f"{PREFIX}/topups", {"terminal_tx_number": n, "uid": uid, "amount": 2000,
                                             "payment": "cash"}, terminal=till)
    assert reply.status == 201, reply.raw
    assert reply.json["state"] == "Committed" and reply.json["balance"] == 2000
    topup_id = reply.json["transaction_id"]
    # a repeat returns the first answer; never books twice
    again = client.post(f"{PREFIX}/topups", {"terminal_tx_number": n, "uid": uid, "amount": 2000,
                                             "payment": "cash"}, terminal=till)
    assert again.status == 201 and again.json["transaction_id"] == topup_id and again.json["balance"] == 2000

    reply = client.post(f"{PREFIX}/tags/{uid.lower()}/sync", {"tag_tx_number": 0, "balance": 2000, "log": []},
                        terminal=bar)
    assert reply.status == 200
    assert reply.json == {"uid": uid, "status": "active", "balance": 2000, "held": 0, "available": 2000,
                          "acknowledged": [], "refused": []}

    body = reserve_body(event, uid, 2)
    reply = client.post(f"{PREFIX}/reserve", body, terminal=bar)
    assert reply.status == 201, reply.raw
    r = reply.json
    assert r["state"] == "ReservePending" and r["available"] == 1100 and r["expires_at"].endswith("Z")
    again = client.post(f"{PREFIX}/reserve", body, terminal=bar)
    assert again.status == 201 and again.json["transaction_id"] == r["transaction_id"]
    # same number, other amount: the ledger's idempotency-conflict
    client.post(f"{PREFIX}/reserve", {**body, "amount": 450, "items": body["items"][:1] and [
        {"product_id": event["beer"], "quantity": 1}]}, terminal=bar).problem("idempotency-conflict", 422)

    reply = client.post(f"{PREFIX}/transactions", {"transactions": [
        {"terminal_tx_number": body["terminal_tx_number"], "state": "Committed", "uid": uid, "amount": 900,
         "tag_tx_number": 0, "time": "2025-07-01T12:00:00Z", "items": body["items"]},
        {"terminal_tx_number": body["terminal_tx_number"], "state": "Aborted", "uid": uid, "amount": 900},
    ]}, terminal=bar)
    assert reply.status == 200, reply.raw
    results = reply.json["results"]
    assert [x["outcome"] for x in results] == ["booked", "rejected"]
    assert results[0] == {"terminal_tx_number": body["terminal_tx_number"], "transaction_id": r["transaction_id"],
                          "state": "Committed", "outcome": "booked", "problem": None}
    assert results[1]["problem"] == "invalid-transition" and results[1]["state"] == "Committed"

    reply = client.get(f"{PREFIX}/transactions/{body['terminal_tx_number']}", terminal=bar)
    assert reply.status == 200 and reply.json == {"transaction_id": r["transaction_id"], "state": "Committed"}
    client.get(f"{PREFIX}/transactions/999999999", terminal=bar).problem("not-found", 404)
    client.get(f"{PREFIX}/transactions/0", terminal=bar).problem("validation", 400)
    client.get(f"{PREFIX}/transactions/abc", terminal=bar).problem("validation", 400)
    # the top-up is the top-up terminal's, not the bar's
    client.get(f"{PREFIX}/transactions/{n}", terminal=bar).problem("not-found", 404)
    assert client.get(f"{PREFIX}/transactions/{n}", terminal=till).json["transaction_id"] == topup_id

    reply = client.post(f"{PREFIX}/refunds", {"terminal_tx_number": next_number(), "uid": uid, "amount": 600},
                        terminal=till)
    assert reply.status == 201, reply.raw
    assert reply.json["balance"] == 2000 - 900 - 600 and reply.json["state"] == "Committed"


def log_entry(terminal: Terminal, terminal_tx_number: int, uid: str, tag_tx_number: int, amount: int, *,
              signer: Terminal | None = None, **overrides: Any) -> dict[str, Any]:
    """A tag log entry naming ``terminal``, with the MAC ``signer`` (default: that terminal itself) writes."""
    mac = signing.log_entry_mac((signer or terminal).secret, terminal.assignment_id, terminal_tx_number, uid,
                                tag_tx_number, amount)
    return {"assignment_id": terminal.assignment_id, "terminal_tx_number": terminal_tx_number,
            "tag_tx_number": tag_tx_number, "amount": amount, "time": "2025-07-01T12:00:00Z", "mac": mac,
            **overrides}


def test_offline_log_sync_with_idempotency_key(client: Client, admin, bar, till, event):
    uid = funded_tag(client, till, 1000)
    n = next_number()
    body = {"tag_tx_number": 1, "balance": 550, "log": [log_entry(bar, n, uid, 0, 450)]}
    key = {"Idempotency-Key": f"sync-{secrets.token_hex(6)}"}
    reply = client.post(f"{PREFIX}/tags/{uid}/sync", body, terminal=bar, headers=key)
    assert reply.status == 200, reply.raw
    assert reply.json["acknowledged"] == [{"assignment_id": bar.assignment_id, "terminal_tx_number": n}]
    assert reply.json["refused"] == []
    assert reply.json["held"] == 450 and reply.json["available"] == 550
    assert scalar(admin, "SELECT state::text FROM ledger.transaction WHERE assignment_id = %s"
                         " AND terminal_tx_number = %s", (bar.assignment_id, n)) == "Reserve"
    again = client.post(f"{PREFIX}/tags/{uid}/sync", body, terminal=bar, headers=key)
    assert again.status == 200 and again.json == reply.json and again.headers.get("idempotency-replayed") == "true"
    client.post(f"{PREFIX}/tags/{uid}/sync", {**body, "balance": 1}, terminal=bar, headers=key).problem(
        "idempotency-key-reused", 422)
    # keys are per caller: the top-up terminal's same key is its own
    other = client.post(f"{PREFIX}/tags/{uid}/sync", {**body, "balance": 1}, terminal=till, headers=key)
    assert other.status == 200 and "idempotency-replayed" not in other.headers
    # replication of the offline purchase commits it
    reply = client.post(f"{PREFIX}/transactions", {"transactions": [
        {"terminal_tx_number": n, "state": "Committed", "uid": uid, "amount": 450, "tag_tx_number": 0,
         "items": [{"product_id": event["beer"], "quantity": 1}]}]}, terminal=bar)
    assert reply.json["results"][0]["outcome"] == "booked" and reply.json["results"][0]["state"] == "Committed"


def test_sync_refuses_log_entries_it_cannot_trust(client: Client, admin, bar, till, event):
    """Each entry is judged alone: a wrong or missing MAC, a number not below the tag's, another event's
    assignment are refused with their problem and hold nothing; the honest entry beside them is held."""
    uid = funded_tag(client, till, 2000)
    other = register(client, code(admin, make_event(admin)["id"], "Bar"), "another event's till")
    honest, forged, bare, future, foreign = (next_number() for _ in range(5))
    log = [log_entry(bar, honest, uid, 0, 450),
           log_entry(bar, forged, uid, 1, 300, signer=till),                   # bar's name, till's secret
           {k: v for k, v in log_entry(bar, bare, uid, 2, 200).items() if k != "mac"},
           log_entry(bar, future, uid, 5, 100),                                # not below the tag's next number
           log_entry(other, foreign, uid, 3, 100)]                             # not of the tag's event
    before = snapshot(admin)
    reply = client.post(f"{PREFIX}/tags/{uid}/sync", {"tag_tx_number": 5, "balance": 950, "log": log},
                        terminal=bar)
    assert reply.status == 200, reply.raw
    assert reply.json["acknowledged"] == [{"assignment_id": bar.assignment_id, "terminal_tx_number": honest}]
    assert sorted((r["terminal_tx_number"], r["problem"]) for r in reply.json["refused"]) == sorted([
        (forged, "log-entry-forged"), (bare, "log-entry-forged"), (future, "log-entry-number-too-high"),
        (foreign, "log-entry-foreign")])
    assert {r["assignment_id"] for r in reply.json["refused"]} == {bar.assignment_id, other.assignment_id}
    assert (reply.json["held"], reply.json["available"]) == (450, 1550)
    assert scalar(admin, "SELECT count(*) FROM ledger.transaction WHERE assignment_id = %s"
                         " AND terminal_tx_number = ANY(%s)", (bar.assignment_id, [forged, bare, future])) == 0
    assert snapshot(admin)[:2] == (before[0] + 1, before[1])                  # one reserve, nothing booked
    # the refused numbers stay free for bar's own transactions
    reply = client.post(f"{PREFIX}/reserve", reserve_body(event, uid, terminal_tx_number=forged), terminal=bar)
    assert reply.status == 201 and reply.json["available"] == 1100, reply.raw
    reply = client.post(f"{PREFIX}/transactions", {"transactions": [
        {"terminal_tx_number": honest, "state": "Committed", "uid": uid, "amount": 450, "tag_tx_number": 0,
         "items": [{"product_id": event["beer"], "quantity": 1}]},
        {"terminal_tx_number": forged, "state": "Aborted", "uid": uid, "amount": 450}]}, terminal=bar)
    assert [r["state"] for r in reply.json["results"]] == ["Committed", "Aborted"], reply.raw
    # a MAC that is not base64 of 32 bytes is malformed input: the whole request is refused
    bad = log_entry(bar, next_number(), uid, 0, 450, mac="bm90IGEgbWFj")
    client.post(f"{PREFIX}/tags/{uid}/sync", {"tag_tx_number": 1, "balance": 0, "log": [bad]},
                terminal=bar).problem("validation", 400)


def test_reserve_problems(client: Client, admin, bar, till, event):
    uid = funded_tag(client, till, 500)
    before = snapshot(admin)
    body = client.post(f"{PREFIX}/reserve", reserve_body(event, uid, 2), terminal=bar).problem(
        "insufficient-balance", 402)
    assert body["available"] == 500 and "detail" in body
    client.post(f"{PREFIX}/reserve", reserve_body(event, uid, amount=400), terminal=bar).problem(
        "amount-mismatch", 422)
    client.post(f"{PREFIX}/reserve", reserve_body(event, uid, items=[{"product_id": 987654321, "quantity": 1}]),
                terminal=bar).problem("unknown-product", 422)
    client.post(f"{PREFIX}/reserve", reserve_body(event, uid, amount=400, items=[
        {"product_id": event["beer"], "quantity": 1, "unit_price": 400}]), terminal=bar).problem("price-mismatch", 422)
    client.post(f"{PREFIX}/reserve", reserve_body(event, new_uid()), terminal=bar).problem("not-found", 404)
    # a top-up terminal cannot sell
    client.post(f"{PREFIX}/reserve", reserve_body(event, uid), terminal=till).problem("wrong-position", 409)
    # a blocked tag
    scalar(admin, "SELECT api.block_tag(%s, %s)", (event["id"], uid))
    client.post(f"{PREFIX}/reserve", reserve_body(event, uid), terminal=bar).problem("tag-blocked", 403)
    scalar(admin, "SELECT api.unblock_tag(%s, %s)", (event["id"], uid))
    assert snapshot(admin) == before
    # a tip (not fixed price) at any price
    tip = {"terminal_tx_number": next_number(), "uid": uid, "tag_tx_number": 0, "amount": 123,
           "items": [{"product_id": event["tip"], "quantity": 1, "unit_price": 123}]}
    assert client.post(f"{PREFIX}/reserve", tip, terminal=bar).status == 201
    # top-up above the event's maximum
    client.post(f"{PREFIX}/topups", {"terminal_tx_number": next_number(), "uid": uid, "amount": 100000,
                                     "payment": "card"}, terminal=till).problem("topup-out-of-bounds", 422)


# ----------------------------------------------------------------------------- authentication


def test_auth_failures(client: Client, admin, bar, till, event):
    path = f"{PREFIX}/config"
    before = snapshot(admin)
    for reply in (
        client.get(path),                                                          # no headers
        client.get(path, headers={signing.HEADER_ASSIGNMENT: str(bar.assignment_id),
                                  signing.HEADER_TIMESTAMP: str(int(time.time()))}),  # no signature
        client.get(path, headers={**signing.signed_headers(bar.assignment_id, bar.secret, "GET", path),
                                  signing.HEADER_SIGNATURE: base64.b64encode(b"x" * 32).decode()}),  # wrong
        client.get(path, terminal=bar, timestamp=int(time.time()) - 301),            # stale
        client.get(path, terminal=bar, timestamp=int(time.time()) + 301),            # from the future
        client.get(path, headers=signing.signed_headers(bar.assignment_id, till.secret, "GET", path)),  # other's
        client.get(path, headers=signing.signed_headers(99999999, bar.secret, "GET", path)),  # unknown
        client.get(path, headers={**signing.signed_headers(bar.assignment_id, bar.secret, "GET", path),
                                  signing.HEADER_ASSIGNMENT: "abc"}),
        client.get(path, headers={**signing.signed_headers(bar.assignment_id, bar.secret, "GET", path),
                                  signing.HEADER_SIGNATURE: "not base64!"}),
        client.get(path + "?x=1", headers=signing.signed_headers(bar.assignment_id, bar.secret, "GET", path)),
    ):
        reply.problem("unauthorized", 401)
    assert client.get(path, terminal=bar, timestamp=int(time.time()) - 290).status == 200  # inside the window
    # the body is signed: a changed body is refused and books nothing
    body = json.dumps(reserve_body(event, new_uid())).encode()
    hdrs = signing.signed_headers(bar.assignment_id, bar.secret, "POST", f"{PREFIX}/reserve", body)
    tampered = body.replace(b'"amount": 450', b'"amount": 45')
    client.request("POST", f"{PREFIX}/reserve", raw=tampered, headers=hdrs).problem("unauthorized", 401)
    # and the method
    hdrs = signing.signed_headers(bar.assignment_id, bar.secret, "GET", f"{PREFIX}/transactions")
    client.request("POST", f"{PREFIX}/transactions", raw=b'{"transactions": []}', headers=hdrs).problem(
        "unauthorized", 401)
    assert snapshot(admin) == before
    # unsigned: register, the document, health
    assert client.get(f"{PREFIX}/openapi.json").status == 200


# ----------------------------------------------------------------------------- bad input


BAD_INPUTS = [
    ("malformed JSON", "reserve", b'{"terminal_tx_number": 1, ', "application/json", "validation", 400),
    ("not an object", "reserve", b"[1, 2]", "application/json", "validation", 400),
    ("NaN", "topups", b'{"terminal_tx_number": 1, "uid": "04A1B2C3", "amount": NaN, "payment": "cash"}',
     "application/json", "validation", 400),
    ("duplicate member", "topups",
     b'{"terminal_tx_number": 1, "uid": "04A1B2C3", "amount": 5, "amount": 500, "payment": "cash"}',
     "application/json", "validation", 400),
    ("not UTF-8", "topups", b'{"uid": "\xff"}', "application/json", "validation", 400),
    ("wrong content type", "topups", b'{"terminal_tx_number": 1}', "text/plain", "unsupported-media-type", 415),
    ("no content type", "topups", b'{"terminal_tx_number": 1}', None, "unsupported-media-type", 415),
    ("missing field", "topups", b'{"terminal_tx_number": 1, "uid": "04A1B2C3", "payment": "cash"}',
     "application/json", "validation", 400),
    ("bool amount", "topups", b'{"terminal_tx_number": 1, "uid": "04A1B2C3", "amount": true, "payment": "cash"}',
     "application/json", "validation", 400),
    ("string amount", "topups", b'{"terminal_tx_number": 1, "uid": "04A1B2C3", "amount": "500", "payment": "cash"}',
     "application/json", "validation", 400),
    ("fractional amount", "topups",
     b'{"terminal_tx_number": 1, "uid": "04A1B2C3", "amount": 500.5, "payment": "cash"}',
     "application/json", "validation", 400),
    ("zero amount", "refunds", b'{"terminal_tx_number": 1, "uid": "04A1B2C3", "amount": 0}',
     "application/json", "validation", 400),
    ("negative amount", "refunds", b'{"terminal_tx_number": 1, "uid": "04A1B2C3", "amount": -5}',
     "application/json", "validation", 400),
    ("huge number", "refunds", b'{"terminal_tx_number": 1, "uid": "04A1B2C3", "amount": 1e300}',
     "application/json", "validation", 400),
    ("bad payment", "topups", b'{"terminal_tx_number": 1, "uid": "04A1B2C3", "amount": 500, "payment": "iou"}',
     "application/json", "validation", 400),
    ("bad uid", "refunds", b'{"terminal_tx_number": 1, "uid": "zz", "amount": 5}',
     "application/json", "validation", 400),
    ("log entry mac not 32 bytes", "tags/04A1B2C3/sync",
     b'{"tag_tx_number": 1, "balance": 0, "log": [{"assignment_id": 1, "terminal_tx_number": 1,'
     b' "tag_tx_number": 0, "amount": 5, "mac": "AAAA"}]}', "application/json", "validation", 400),
    ("bool in a batch", "transactions",
     b'{"transactions": [{"terminal_tx_number": 1, "state": "Committed", "uid": "04A1B2C3", "amount": false}]}',
     "application/json", "validation", 400),
    ("too deep", "transactions", b'{"transactions": [{"x": ' + b"[" * 40 + b"]" * 40 + b"}]}",
     "application/json", "validation", 400),
    ("oversized body", "transactions", b'{"transactions": [], "pad": "' + b"x" * 70_000 + b'"}',
     "application/json", "payload-too-large", 413),
]


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_refused_and_changes_nothing(client: Client, admin, till, case):
    _, call, raw, content_type, slug, status = case
    before = snapshot(admin)
    reply = client.request("POST", f"{PREFIX}/{call}", raw=raw, terminal=till, content_type=content_type)
    reply.problem(slug, status)
    assert snapshot(admin) == before


def test_unknown_paths_and_methods(client: Client, bar):
    client.get("/nope").problem("not-found", 404)
    client.get(f"{PREFIX}/nope", terminal=bar).problem("not-found", 404)
    client.request("DELETE", f"{PREFIX}/config", terminal=bar).problem("method-not-allowed", 405)
    client.get(f"{PREFIX}/register").problem("method-not-allowed", 405)


# ----------------------------------------------------------------------------- health, problems, expiry


def test_health(client: Client, pg_cluster, tmp_path):
    reply = client.get("/health")
    assert reply.status == 200 and reply.json == {"status": "ok"}
    reply = client.get("/health/ready")
    assert reply.status == 200, reply.raw
    assert reply.json["schema_version"] == newest_migration(MIGRATIONS_DIR)
    # a gateway shipping a newer migration than the database has is not ready
    (tmp_path / "0001_x.sql").write_text("")
    (tmp_path / "9999_future.sql").write_text("")
    gw = RunningGateway(pg_cluster.url(TEST_DBNAME, user="festpay_terminal"),
                        GatewayOptions(pool_min_size=1, pool_max_size=2, migrations_dir=tmp_path))
    try:
        body = Client(gw.port).get("/health/ready").problem("not-ready", 503)
        assert body["expected_schema_version"] == "9999_future"
    finally:
        gw.stop()


def test_problem_types(client: Client):
    body = client.get("/problems/insufficient-balance").json
    assert body["status"] == 402 and body["type"] == "/problems/insufficient-balance" and body["sqlstate"] == "FP020"
    assert client.get("/problems/unauthorized").json["status"] == 401
    client.get("/problems/no-such-thing").problem("not-found", 404)
    slugs = {p["slug"] for p in client.get("/problems").json["problems"]}
    assert {"validation", "amount-mismatch", "unknown-product", "price-mismatch", "tag-blocked", "not-found",
            "invalid-transition", "unauthorized", "idempotency-key-reused", "idempotency-request-running",
            "payload-too-large", "internal"} <= slugs


class _NoTopic:
    """A relay handler of a topic nobody enqueues: the relay below only expires reservations."""

    topic = "test-nothing"

    async def handle(self, conn, request):
        raise AssertionError("nothing is enqueued for this topic")

    async def failed(self, conn, request, error):
        return None


def test_relay_expires_reservations_in_the_background(pg_cluster, client: Client, admin):
    ev = make_event(admin, reserve_timeout_s=1)
    shop = register(client, code(admin, ev["id"], "Bar"))
    cash = register(client, code(admin, ev["id"], "Top-up"))
    uid = funded_tag(client, cash, 1000)
    body = reserve_body(ev, uid)
    assert client.post(f"{PREFIX}/reserve", body, terminal=shop).status == 201
    relay = RunningRelay(pg_cluster.url(TEST_DBNAME, user="festpay_relay"), handlers=[_NoTopic()], expire_s=0.3,
                         name="test-relay-expiry")
    try:
        deadline = time.monotonic() + 10
        state = None
        while time.monotonic() < deadline:
            state = client.get(f"{PREFIX}/transactions/{body['terminal_tx_number']}", terminal=shop).json["state"]
            if state == "ReserveExpired":
                break
            time.sleep(0.2)
    finally:
        relay.stop()
    assert state == "ReserveExpired"


# ----------------------------------------------------------------------------- the document


def example_requests(event: dict[str, Any], uid: str, known_number: int) -> dict[tuple[str, str], tuple[str, Any]]:
    """A plausible request for every documented operation: (path, method) -> (concrete path, body)."""
    return {
        (f"{PREFIX}/register", "post"): (f"{PREFIX}/register", {"registration_code": "UNKNOWNCODE1", "device": "d"}),
        (f"{PREFIX}/config", "get"): (f"{PREFIX}/config", None),
        (f"{PREFIX}/tags/{{uid}}/sync", "post"): (f"{PREFIX}/tags/{uid}/sync",
                                                  {"tag_tx_number": 0, "balance": 0, "log": []}),
        (f"{PREFIX}/reserve", "post"): (f"{PREFIX}/reserve", reserve_body(event, uid)),
        (f"{PREFIX}/topups", "post"): (f"{PREFIX}/topups", {"terminal_tx_number": next_number(), "uid": uid,
                                                            "amount": 1000, "payment": "card"}),
        (f"{PREFIX}/refunds", "post"): (f"{PREFIX}/refunds", {"terminal_tx_number": next_number(), "uid": uid,
                                                              "amount": 100}),
        (f"{PREFIX}/transactions", "post"): (f"{PREFIX}/transactions", {"transactions": []}),
        (f"{PREFIX}/transactions/{{terminal_tx_number}}", "get"): (f"{PREFIX}/transactions/{known_number}", None),
        (f"{PREFIX}/transactions/{{terminal_tx_number}}/receipt", "get"): (
            f"{PREFIX}/transactions/{known_number}/receipt", None),
        (f"{PREFIX}/openapi.json", "get"): (f"{PREFIX}/openapi.json", None),
        ("/health", "get"): ("/health", None),
        ("/health/ready", "get"): ("/health/ready", None),
        ("/problems/{slug}", "get"): ("/problems/validation", None),
    }


def test_every_documented_path_answers(client: Client, bar, till, event):
    doc = client.get(f"{PREFIX}/openapi.json").json
    assert doc["openapi"].startswith("3.1")
    schemes = doc["components"]["securitySchemes"]
    assert {s["name"] for s in schemes.values()} == {signing.HEADER_ASSIGNMENT, signing.HEADER_TIMESTAMP,
                                                     signing.HEADER_SIGNATURE}
    uid = funded_tag(client, till)
    known = next_number()
    assert client.post(f"{PREFIX}/topups", {"terminal_tx_number": known, "uid": uid, "amount": 500,
                                            "payment": "cash"}, terminal=till).status == 201
    examples = example_requests(event, uid, known)
    documented = {(path, method) for path, item in doc["paths"].items() for method in item}
    assert documented == set(examples)
    for (path, method), (concrete, body) in examples.items():
        operation = doc["paths"][path][method]
        signed = operation.get("security", doc["security"]) != []
        terminal = till if path.endswith(("topups", "refunds")) or "transactions/" in path else bar
        reply = client.request(method.upper(), concrete, body, terminal=terminal if signed else None)
        assert reply.status not in (404, 405) and reply.status < 500, (method, concrete, reply.status, reply.raw)
        assert str(reply.status) in operation["responses"], (method, concrete, reply.status)


UNSTORABLE_CHARS = ("\x00", "\ud800", "\udbff", "\udc00", "\udfff")  # NUL, lone surrogates: no PostgreSQL text


def _pointer_token(key: Any) -> str:
    return str(key).replace("~", "~0").replace("/", "~1")


def with_hostile_text(document: Any, text: str, pick: Any) -> tuple[Any, str]:
    """A copy of the JSON ``document`` with ``text`` in one spot that ``pick`` (a choice among a list) chooses: a
    string value replaced, a member renamed, or a member or array item added; and the JSON pointer of that spot."""
    import copy

    document = copy.deepcopy(document)
    spots: list[tuple[str, str, Any, Any]] = []  # (what, pointer of the container, container, member name/index)
    stack: list[tuple[str, Any]] = [("", document)]
    while stack:
        pointer, value = stack.pop()
        if isinstance(value, dict):
            spots.append(("add", pointer, value, None))
            for key, item in value.items():
                spots.append(("rename", pointer, value, key))
                if isinstance(item, str):
                    spots.append(("replace", pointer, value, key))
                stack.append((f"{pointer}/{_pointer_token(key)}", item))
        elif isinstance(value, list):
            spots.append(("add", pointer, value, None))
            for index, item in enumerate(value):
                if isinstance(item, str):
                    spots.append(("replace", pointer, value, index))
                stack.append((f"{pointer}/{index}", item))
    if not spots:
        return text, ""
    what, pointer, container, key = pick(spots)
    if what == "replace":
        container[key] = text
        return document, f"{pointer}/{key if isinstance(key, int) else _pointer_token(key)}"
    if what == "rename":
        container[text] = container.pop(key)
        return document, f"{pointer}/{_pointer_token(text)}"
    if isinstance(container, list):
        container.append(text)
        return document, f"{pointer}/{len(container) - 1}"
    name = "x"
    while name in container:
        name += "x"
    container[name] = text
    return document, f"{pointer}/{name}"


def test_fuzz_finds_no_server_error(gateway: RunningGateway, client: Client, admin, bar, till, event):
    """Property-based fuzz (schemathesis, positive and negative data) of every operation: no 5xx, and 2xx
    answers match the documented schema.  Then hostile text: positive bodies with a NUL or a lone surrogate put
    in a value, a member name or a new member or item, at any depth, and path parameters with a NUL: each is
    a 400 ``validation`` problem naming the spot (413 when the body grew past 64 KiB)."""
    schemathesis = pytest.importorskip("schemathesis")
    import requests
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from python_gateway.gateway.auth import MAX_BODY
    from python_gateway.gateway.problems import unicode_safe
    from hypothesis.errors import Unsatisfiable
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    doc = client.get(f"{PREFIX}/openapi.json").json
    schema = schemathesis.openapi.from_dict(doc)
    registry = Registry().with_resource("urn:doc", Resource.from_contents(doc, default_specification=DRAFT202012))
    session = requests.Session()
    base = gateway.base_url
    failures: list[str] = []
    sent = 0

    def send(case: Any, terminal: Terminal, **override: Any) -> tuple[bytes, requests.Response]:
        """Sends ``case`` signed by ``terminal``; ``override`` replaces transport arguments (e.g. json: hostile
        text that schemathesis itself cannot take, as it re-validates a changed case's body as UTF-8)."""
        nonlocal sent
        kwargs = {**case.as_transport_kwargs(base_url=base), **override}
        prepared = session.prepare_request(requests.Request(
            method=kwargs["method"], url=kwargs["url"], headers=kwargs.get("headers"), params=kwargs.get("params"),
            data=kwargs.get("data"), json=kwargs.get("json")))
        body = prepared.body or b""
        if isinstance(body, str):
            body = body.encode()
        prepared.headers.update(signing.signed_headers(terminal.assignment_id, terminal.secret, prepared.method,
                                                       prepared.path_url, body))
        response = session.send(prepared, timeout=30)
        sent += 1
        if response.status_code >= 500:
            failures.append(f"{prepared.method} {prepared.path_url} {body[:300]!r} -> {response.status_code} "
                            f"{response.text[:300]}")
            return body, response
        op = doc["paths"][case.operation.path][case.method.lower()]
        documented = op["responses"].get(str(response.status_code))
        if documented is None:
            failures.append(f"{prepared.method} {prepared.path_url} -> undocumented {response.status_code}")
            return body, response
        if 200 <= response.status_code < 300 and "application/json" in documented.get("content", {}):
            resp_schema = documented["content"]["application/json"]["schema"]
            if "$ref" in resp_schema:
                resp_schema = {"$ref": "urn:doc" + resp_schema["$ref"]}
            errors = list(Draft202012Validator(resp_schema, registry=registry).iter_errors(response.json()))
            if errors:
                failures.append(f"{prepared.method} {prepared.path_url} -> body off the schema: {errors[0].message}")
        return body, response

    def refused_at(response: requests.Response, body: bytes, pointer: str, where: str) -> None:
        """The answer must be the edge's 400 validation naming ``pointer`` (413 for a body over 64 KiB)."""
        if len(body) > MAX_BODY and response.status_code == 413:
            return
        problem = response.json() if response.headers.get("Content-Type", "").startswith(
            "application/problem+json") else {}
        pointers = [e.get("pointer") for e in problem.get("errors", [])]
        if (response.status_code, problem.get("type")) != (400, "/problems/validation") or \
                unicode_safe(pointer) not in pointers:
            failures.append(f"hostile text at {where} {pointer!r} -> {response.status_code} {response.text[:300]}")

    hostile_text = st.builds(lambda before, bad, after: before + bad + after, st.text(max_size=4),
                             st.sampled_from(UNSTORABLE_CHARS) | st.characters(categories=["Cs"]),
                             st.text(max_size=4))

    modes = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        terminal = till if operation.path.endswith(("topups", "refunds")) else bar
        for mode in modes:
            @settings(max_examples=40, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                send(case, terminal)

            try:
                run()
            except Unsatisfiable:  # nothing to break in, e.g. negative data for GET /health
                assert mode == schemathesis.GenerationMode.NEGATIVE
        documented_op = doc["paths"][operation.path][operation.method.lower()]
        text_params = [p["name"] for p in documented_op.get("parameters", [])
                       if p["in"] == "path" and p["schema"].get("type") == "string"]
        if "requestBody" not in documented_op and not text_params:
            continue

        @settings(max_examples=25, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=schemathesis.GenerationMode.POSITIVE), data=st.data(),
               text=hostile_text)
        def run_hostile(case: Any, data: Any, text: str) -> None:
            if text_params and ("requestBody" not in documented_op or data.draw(st.booleans())):
                name = data.draw(st.sampled_from(text_params))
                case.path_parameters = {**case.path_parameters, name: case.path_parameters[name] + "\x00"}
                _, response = send(case, terminal)
                if (response.status_code, response.json().get("type")) not in (
                        (400, "/problems/validation"), (404, "/problems/not-found")):
                    failures.append(f"NUL in path parameter {name} -> {response.status_code} {response.text[:300]}")
                return
            document, pointer = with_hostile_text(case.body, text, lambda spots: data.draw(st.sampled_from(spots)))
            body, response = send(case, terminal, json=document, data=None)
            refused_at(response, body, pointer, f"{operation.method.upper()} {operation.path}")

        run_hostile()
    elapsed = time.monotonic() - started
    assert not failures, "\n".join(failures[:20])
    assert sent >= 300, sent
    assert elapsed < 60, elapsed


# ----------------------------------------------------------------------------- command line


def _cli_env(db_url: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": db_url, "FESTPAY_PG_PORT": "", **extra}


def test_cli_registration_code(client: Client, db_url: str, event):
    result = subprocess.run(
        [sys.executable, "-m", "python_gateway.cli", "registration-code", "--position", "Top-up",
         "--event", event["name"]],
        env=_cli_env(db_url), capture_output=True, text=True, timeout=60, cwd=PROJECT_ROOT,
    )
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert len(last) == 12 and last.isalnum()
    terminal = register(client, last)
    assert terminal.event_id == event["id"]
    result = subprocess.run(
        [sys.executable, "-m", "python_gateway.cli", "registration-code", "--position", "Nowhere",
         "--event", str(event["id"])],
        env=_cli_env(db_url), capture_output=True, text=True, timeout=60, cwd=PROJECT_ROOT,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr and "Nowhere" in result.stderr


def test_cli_serve(pg_cluster, db_url: str):
    port = free_port()
    env = _cli_env(db_url, FESTPAY_HTTP_PORT=str(port),
                   FESTPAY_GATEWAY_DATABASE_URL=pg_cluster.url(TEST_DBNAME, user="festpay_terminal"))
    proc = subprocess.Popen([sys.executable, "-m", "python_gateway.cli", "serve"], env=env, cwd=PROJECT_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        lines = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "listening" in line:
                break
        assert any(f"http://127.0.0.1:{port}" in line for line in lines), (lines, proc.stderr)
        reply = Client(port).get("/health/ready")
        assert reply.status == 200, reply.raw
        assert reply.json["schema_version"] == Path(sorted(MIGRATIONS_DIR.glob("*.sql"))[-1]).stem
    finally:
        stop_process(proc, signal.SIGINT, 20)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else None
