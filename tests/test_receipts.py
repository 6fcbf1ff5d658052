"""Receipts (SPEC §8): KassenSichV content and the DSFinV-K QR code, from the gateway and the CLI.

Real PostgreSQL (conftest), a real gateway (tests/gateway_server.py); signatures come from a real SoftwareTSE in a
temporary folder, stored the way the relay stores them (api.tse_request, api.tse_started, api.tse_store).
"""

from __future__ import annotations

import base64
import html
import itertools
import os
import re
import secrets
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from python_gateway import receipts
from python_gateway.config import PROJECT_ROOT
from python_gateway.tse.interface import SignedLog
from python_gateway.tse.software import SoftwareTSE
from python_gateway.tse.verify import verify_qr
from tests.gateway_server import (  # noqa: F401  (admin, client, gateway: pytest fixtures)
    PREFIX,
    Client,
    Terminal,
    admin,
    client,
    gateway,
    scalar,
)

SELLER = "Receipt Test Festival GmbH"
STREET, POSTCODE, CITY = "Festivalwiese 7", "12345", "Musterstadt"
ADDRESS = f"{POSTCODE} {CITY}"

_numbers = itertools.count(1)


def next_number() -> int:
    return next(_numbers)


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def event(admin: psycopg.Connection) -> dict[str, Any]:
    name = f"Receipt test {secrets.token_hex(4)}"
    event_id = scalar(admin, "SELECT api.create_event(%s, 'EUR', 50000, 500, 25000)", (name,))
    scalar(admin, "SELECT api.set_seller(%s, %s, %s, %s, %s, %s, %s)::text",
           (event_id, SELLER, STREET, POSTCODE, CITY, "12/345/67890", "DE123456789"))
    merchant = scalar(admin, "SELECT api.create_merchant(%s, 'Bar')", (event_id,))
    scalar(admin, "SELECT api.create_position(%s, 'Bar', 'sale', %s)", (event_id, merchant))
    scalar(admin, "SELECT api.create_position(%s, 'Top-up', 'topup')", (event_id,))
    return {
        "id": event_id,
        "name": name,
        "beer": scalar(admin, "SELECT api.create_product(%s, 'Beer', 450, 19)", (event_id,)),
        "pretzel": scalar(admin, "SELECT api.create_product(%s, 'Pretzel', 300, 7)", (event_id,)),
        "cup": scalar(admin, "SELECT api.create_product(%s, 'Cup deposit', 200, 0, p_returnable => true)",
                      (event_id,)),
    }


def _register(client: Client, admin: psycopg.Connection, event_id: int, position: str, device: str) -> Terminal:
    code = scalar(admin, "SELECT api.create_registration_code(%s, %s)", (event_id, position))
    reply = client.post(f"{PREFIX}/register", {"registration_code": code, "device": device})
    assert reply.status == 201, reply.raw
    body = reply.json
    return Terminal(body["assignment_id"], body["secret"], body["event_id"], body["tag_key"])


@pytest.fixture(scope="module")
def bar(client: Client, admin, event) -> Terminal:
    return _register(client, admin, event["id"], "Bar", "bar till 1")


@pytest.fixture(scope="module")
def till(client: Client, admin, event) -> Terminal:
    return _register(client, admin, event["id"], "Top-up", "top-up till 1")


@pytest.fixture(scope="module")
def tse(tmp_path_factory: pytest.TempPathFactory):
    with SoftwareTSE(tmp_path_factory.mktemp("tse")) as device:
        yield device


@pytest.fixture(scope="module", autouse=True)
def invariants_clean_afterwards(admin):
    yield
    rows = admin.execute("SELECT * FROM api.check_invariants()").fetchall()
    assert rows == [], rows


# ----------------------------------------------------------------------------- helpers


def purchase(client: Client, event: dict[str, Any], bar: Terminal, till: Terminal) -> tuple[int, int]:
    """2 beers (19 %), 1 pretzel (7 %), 2 returnable cups (0 %) = 16.00, paid from a fresh tag.

    Returns (terminal_tx_number, transaction_id).
    """
    uid = secrets.token_hex(7).upper()
    reply = client.post(f"{PREFIX}/topups", {"terminal_tx_number": next_number(), "uid": uid, "amount": 2000,
                                             "payment": "cash"}, terminal=till)
    assert reply.status == 201, reply.raw
    assert client.post(f"{PREFIX}/tags/{uid}/sync", {"tag_tx_number": 0, "balance": 2000, "log": []},
                       terminal=bar).status == 200
    items = [{"product_id": event["beer"], "quantity": 2, "unit_price": 450},
             {"product_id": event["pretzel"], "quantity": 1, "unit_price": 300},
             {"product_id": event["cup"], "quantity": 2, "unit_price": 200}]
    number = next_number()
    reply = client.post(f"{PREFIX}/reserve", {"terminal_tx_number": number, "uid": uid, "tag_tx_number": 0,
                                              "amount": 1600, "items": items}, terminal=bar)
    assert reply.status == 201, reply.raw
    now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    reply = client.post(f"{PREFIX}/transactions", {"transactions": [
        {"terminal_tx_number": number, "state": "Committed", "uid": uid, "amount": 1600, "tag_tx_number": 0,
         "time": now, "items": items}]}, terminal=bar)
    assert reply.status == 200 and reply.json["results"][0]["outcome"] == "booked", reply.raw
    return number, reply.json["results"][0]["transaction_id"]


def outbox_id(admin: psycopg.Connection, transaction_id: int) -> int:
    return scalar(admin, "SELECT id FROM ledger.outbox WHERE topic = 'tse' AND transaction_id = %s",
                  (transaction_id,))


def sign_like_the_relay(admin: psycopg.Connection, tse: SoftwareTSE, request_id: int) -> SignedLog:
    """What the relay does for one signing request: ask, start, record the start, finish, store."""
    req = admin.execute("SELECT client_id, process_type, process_data FROM api.tse_request(%s)",
                        (request_id,)).fetchone()
    client_id, process_type, process_data = req
    tse.register_client(client_id)
    number = tse.start_transaction(client_id, process_type, process_data)
    admin.execute("SELECT api.tse_started(%s, %s)",
                  (request_id, Jsonb({"transaction_number": number, "start_time": int(time.time())})))
    signed = tse.finish_transaction(client_id, number, process_type, process_data)
    admin.execute("SELECT api.tse_store(%s, %s)", (request_id, Jsonb(signed.to_json())))
    return signed


def base64_text(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def receipt_html(client: Client, bar: Terminal, number: int) -> str:
    reply = client.get(f"{PREFIX}/transactions/{number}/receipt", terminal=bar)
    assert reply.status == 200, reply.raw[:500]
    assert reply.content_type == "text/html"
    return reply.raw.decode("utf-8")


def vat_row(rate: str, net: str, tax: str, gross: str) -> str:
    return (f'<tr class="vat-rate"><td>{rate}</td><td class="num">{net}</td><td class="num">{tax}</td>'
            f'<td class="num">{gross}</td></tr>')


def qr_of(page: str) -> str:
    match = re.search(r'data-qr="([^"]*)"', page)
    assert match, "no QR code text on the receipt"
    return html.unescape(match.group(1))


def cli(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": db_url, "FESTPAY_PG_PORT": ""}
    return subprocess.run([sys.executable, "-m", "python_gateway.cli", "receipt", *args], env=env,
                          capture_output=True, text=True, timeout=60, cwd=PROJECT_ROOT)


# ----------------------------------------------------------------------------- tests


def test_receipt_pending_failed_signed(client: Client, admin, db_url, event, bar, till, tse, tmp_path: Path):
    number, tx_id = purchase(client, event, bar, till)
    open_outage = scalar(admin, "SELECT count(*) FROM ledger.tse_outage WHERE ended_at IS NULL")
    assert open_outage == 0, "an earlier test left a TSE outage open"

    # --- not signed yet (nothing in ledger.tse_signature)
    assert scalar(admin, "SELECT count(*) FROM ledger.tse_signature WHERE transaction_id = %s", (tx_id,)) == 0
    page = receipt_html(client, bar, number)
    assert SELLER in page and ADDRESS in page and event["name"] in page
    assert f"Beleg-Nr. {tx_id}" in page and f"festpay-{bar.assignment_id}" in page
    for name, line in (("Beer", "2 x 4,50 EUR"), ("Pretzel", "1 x 3,00 EUR"), ("Cup deposit", "2 x 2,00 EUR")):
        assert f'<td colspan="2" class="item-name">{name}</td>' in page
        assert line in page
    for gross in ("9,00 EUR", "3,00 EUR", "4,00 EUR"):
        assert f'<td class="num">{gross}</td>' in page
    # per VAT rate: net, tax, gross (tax = round(gross * rate / (100 + rate)))
    assert vat_row("19 %", "7,56 EUR", "1,44 EUR", "9,00 EUR") in page
    assert vat_row("7 %", "2,80 EUR", "0,20 EUR", "3,00 EUR") in page
    assert vat_row("0 %", "4,00 EUR", "0,00 EUR", "4,00 EUR") in page
    assert '<tr class="total"><td>SUMME</td><td class="num">16,00 EUR</td></tr>' in page
    assert "Unbar" in page
    assert receipts.TSE_PENDING in page and receipts.TSE_FAILED not in page and "<svg" not in page

    # --- the TSE could not sign it: the receipt says so
    request_id = outbox_id(admin, tx_id)
    assert scalar(admin, "SELECT api.tse_failed(%s, 'test: TSE unreachable')", (request_id,)) is not None
    page = receipt_html(client, bar, number)
    assert receipts.TSE_FAILED in page and receipts.TSE_PENDING not in page and "<svg" not in page

    # --- signed late by a real software TSE, stored as the relay stores it
    signed = sign_like_the_relay(admin, tse, request_id)
    assert signed.process_data == "Beleg^9.00_3.00_0.00_0.00_4.00^16.00:Unbar"
    page = receipt_html(client, bar, number)
    assert receipts.TSE_FAILED not in page and receipts.TSE_PENDING not in page
    assert receipts.TSE_LATE in page  # signed after the outage
    qr = qr_of(page)
    assert qr == signed.qr_code()
    verified = verify_qr(qr)
    assert verified.client_id == f"festpay-{bar.assignment_id}"
    assert verified.process_data == signed.process_data.encode()
    assert verified.signature_counter == signed.signature_counter
    assert verified.transaction_number == signed.transaction_number
    assert receipts.qr_svg(qr) in page  # the drawn QR code encodes exactly this text
    assert page.count("<svg") == 1
    serial = signed.serial_number.hex()
    assert "<br>".join((serial[:32], serial[32:])) in page
    sig = base64_text(signed.signature)
    assert "<br>".join(sig[i:i + 32] for i in range(0, len(sig), 32)) in page
    assert f'<dd class="tse-signature-counter">{signed.signature_counter}</dd>' in page
    assert f'<dd class="tse-transaction-number">{signed.transaction_number}</dd>' in page
    assert datetime.fromtimestamp(signed.log_time, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z") in page
    assert SELLER in page and vat_row("19 %", "7,56 EUR", "1,44 EUR", "9,00 EUR") in page

    # --- the CLI: plain text, and the same HTML to a file
    result = cli(db_url, str(tx_id))
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert SELLER in text and ADDRESS in text and "16,00 EUR" in text and "Beer" in text
    assert "7,56 EUR / 1,44 EUR / 9,00 EUR" in text
    assert qr in text.splitlines() and receipts.TSE_LATE.split(":")[0] in text
    out = tmp_path / "receipt.html"
    result = cli(db_url, str(tx_id), "--html", str(out))
    assert result.returncode == 0, result.stderr
    written = out.read_text(encoding="utf-8")
    assert qr_of(written) == qr and receipts.qr_svg(qr) in written and SELLER in written
    result = cli(db_url, "999999999")
    assert result.returncode == 1 and "Traceback" not in result.stderr and "999999999" in result.stderr


def test_receipt_signed_in_time_is_not_late(client: Client, admin, event, bar, till, tse):
    number, tx_id = purchase(client, event, bar, till)
    signed = sign_like_the_relay(admin, tse, outbox_id(admin, tx_id))
    page = receipt_html(client, bar, number)
    assert receipts.TSE_LATE not in page and receipts.TSE_FAILED not in page and receipts.TSE_PENDING not in page
    verify_qr(qr_of(page))
    assert qr_of(page) == signed.qr_code()


def test_receipt_endpoint_is_signed_and_per_till(client: Client, admin, event, bar, till):
    number, _ = purchase(client, event, bar, till)
    path = f"{PREFIX}/transactions/{number}/receipt"
    client.get(path).problem("unauthorized", 401)
    other = Terminal(bar.assignment_id, till.secret, bar.event_id, bar.tag_key)  # wrong key
    client.get(path, terminal=other).problem("unauthorized", 401)
    client.get(f"{PREFIX}/transactions/999999999/receipt", terminal=bar).problem("not-found", 404)
    client.get(f"{PREFIX}/transactions/0/receipt", terminal=bar).problem("validation", 400)
    # a till prints its own receipts only
    client.get(path, terminal=till).problem("not-found", 404)
    # a reservation is no receipt (yet)
    uid = secrets.token_hex(7).upper()
    assert client.post(f"{PREFIX}/topups", {"terminal_tx_number": next_number(), "uid": uid, "amount": 1000,
                                            "payment": "card"}, terminal=till).status == 201
    pending = next_number()
    reply = client.post(f"{PREFIX}/reserve", {"terminal_tx_number": pending, "uid": uid, "tag_tx_number": 0,
                                              "amount": 450, "items": [{"product_id": event["beer"], "quantity": 1}]},
                        terminal=bar)
    assert reply.status == 201, reply.raw
    client.get(f"{PREFIX}/transactions/{pending}/receipt", terminal=bar).problem("not-found", 404)
    client.post(f"{PREFIX}/transactions", {"transactions": [
        {"terminal_tx_number": pending, "state": "Aborted", "uid": uid, "amount": 450}]}, terminal=bar)


def test_topup_receipt_without_items(client: Client, event, till):
    number = next_number()
    uid = secrets.token_hex(7).upper()
    assert client.post(f"{PREFIX}/topups", {"terminal_tx_number": number, "uid": uid, "amount": 20000,
                                            "payment": "cash"}, terminal=till).status == 201
    page = receipt_html(client, till, number)
    assert '<tr class="total"><td>SUMME</td><td class="num">200,00 EUR</td></tr>' in page
    assert vat_row("0 %", "200,00 EUR", "0,00 EUR", "200,00 EUR") in page
    assert "Aufladung" in page and '<td class="num">Bar</td>' in page


def test_formatting_helpers():
    assert receipts.money(0, "EUR") == "0,00 EUR"
    assert receipts.money(5, "EUR") == "0,05 EUR"
    assert receipts.money(-1050, "EUR") == "-10,50 EUR"
    assert receipts.money(123456789, "CHF") == "1.234.567,89 CHF"
    assert receipts.rate(19.0) == "19 %" and receipts.rate(10.7) == "10,7 %" and receipts.rate(0) == "0 %"
    assert receipts.rate("5.50") == "5,5 %"


def test_cash_refund_receipt_is_negative_like_its_signature(client: Client, admin, event, till, tse):
    """A cash refund pays money out: its receipt, its signed process data and the export all say -1,00."""
    uid = secrets.token_hex(7).upper()
    assert client.post(f"{PREFIX}/topups", {"terminal_tx_number": next_number(), "uid": uid, "amount": 1000,
                                            "payment": "cash"}, terminal=till).status == 201
    number = next_number()
    reply = client.post(f"{PREFIX}/refunds", {"terminal_tx_number": number, "uid": uid, "amount": 100}, terminal=till)
    assert reply.status == 201, reply.raw
    tx = reply.json["transaction_id"]
    sign_like_the_relay(admin, tse, outbox_id(admin, tx))
    page = receipt_html(client, till, number)
    assert '<tr class="total"><td>SUMME</td><td class="num">-1,00 EUR</td></tr>' in page
    text = receipts.render_text(receipts.fetch(admin, tx))
    assert re.search(r"^SUMME +-1,00 EUR$", text, re.M), text
    assert "Beleg^0.00_0.00_0.00_0.00_-1.00^-1.00:Bar" in text
    # The seller as the export names it, and times with their UTC offset.
    assert "StNr. 12/345/67890" in text and "USt-IdNr. DE123456789" in text and f"{POSTCODE} {CITY}" in text
    assert re.search(r"^Beginn +\d\d:\d\d:\d\d UTC[+-]\d\d:\d\d", text, re.M), text
