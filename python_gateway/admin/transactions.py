"""Transactions: ``/admin/transactions`` (filters as GET query parameters, keyset pagination by id descending) and
``/admin/transactions/{id}`` (items, booking lines, every state change, violations, TSE signature, receipt link).

Filter parameters = the filter keys of ``api.admin_transactions``: ``from``, ``to`` (datetime-local in the event's
time zone), ``state``, ``type``, ``merchant_id``, ``position_id``, ``assignment_id``, ``uid``, ``amount_min``,
``amount_max`` (typed in currency units); ``before`` is the keyset cursor (the last id of the previous page).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from psycopg.types.json import Jsonb

from ..web.errors import attempt
from ..web.receipt import receipt_response
from ..web.formatting import zone
from .common import Form, call, call_value, query, render, token, viewer

PAGE_SIZE = 50
STATES = ("Open", "ReservePending", "Reserve", "ReserveExpired", "TerminalConfirmUnknown", "ExternalPending",
          "ExternalUnknown", "Committed", "Aborted")
TYPES = ("topup", "purchase", "deposit_return", "chargeback", "refund", "payout", "transfer")
FILTER_KEYS = ("from", "to", "state", "type", "merchant_id", "position_id", "assignment_id", "uid", "amount_min",
               "amount_max")


def parse_filter(form: Form, time_zone: str) -> dict[str, Any]:
    """The filter JSON of api.admin_transactions from the query string (keys left out when empty)."""
    tz = zone(time_zone)
    moments = {key: form.local_time(key, tz) for key in ("from", "to")}
    values: dict[str, Any] = {
        "from": moments["from"].isoformat() if moments["from"] else None,
        "to": moments["to"].isoformat() if moments["to"] else None,
        "state": form.choice("state", STATES),
        "type": form.choice("type", TYPES),
        "merchant_id": form.whole("merchant_id"),
        "position_id": form.whole("position_id"),
        "assignment_id": form.whole("assignment_id"),
        "uid": form.text("uid"),
        "amount_min": form.money("amount_min"),
        "amount_max": form.money("amount_max"),
    }
    return {k: v for k, v in values.items() if v is not None}


async def list_page(request: web.Request) -> web.Response:
    """GET /admin/transactions"""
    form = query(request)
    sent = {k: v for k, v in request.query.items() if k in FILTER_KEYS and v.strip()}

    async def work() -> list[dict[str, Any]]:
        filters = parse_filter(form, viewer(request).time_zone)
        return await call(request, "admin_transactions", token(request), Jsonb(filters), form.whole("before"),
                          PAGE_SIZE)

    rows, status = await attempt(request, "filter", sent, work)
    rows = rows or []
    older = urlencode({**sent, "before": rows[-1]["id"]}) if len(rows) == PAGE_SIZE else None
    return render(request, "admin/transactions.html", {
        "rows": rows, "filters": sent, "states": STATES, "types": TYPES, "type_label": type_label,
        "older": older, "newest": urlencode(sent) if "before" in request.query else None,
    }, status=status)


def _id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 18:
        raise web.HTTPNotFound()
    return int(raw)


#: Names of the transaction types and account kinds as the pages show them.
TYPE_LABELS = {"topup": "top-up", "purchase": "purchase", "deposit_return": "deposit return",
               "chargeback": "chargeback", "refund": "refund", "payout": "payout", "transfer": "transfer",
               "donation": "donation"}
ACCOUNT_KINDS = {"customer": "tag", "merchant": "merchant", "topup": "top-up source", "cash": "cash drawer",
                 "fee": "fees", "payout": "payouts", "deposit": "deposits",
                 "donation": "donations"}
#: Keys of the transaction row shown among the facts (the rest goes into the technical block).
FACT_KEYS = frozenset({"type", "state", "amount", "fee", "held", "payment", "uid", "merchant", "position", "device",
                       "terminal_tx_number", "tag_tx_number", "created_at", "committed_at", "terminal_time",
                       "expires_at", "linked_id", "account", "other_account"})
#: Keys of the technical block, in this order (internal ids an operator rarely needs); unknown keys follow.
TECHNICAL_KEYS = ("id", "event_id", "account_id", "other_account_id", "tag_id", "assignment_id", "client_id",
                  "updated_at")


def type_label(value: Any) -> str:
    return TYPE_LABELS.get(str(value), str(value)) if value is not None else ""


def account_label(value: Any) -> str:
    """``kind:name`` of a booking account as a reader says it: ``Lemon Stand (merchant)``, ``tag 04A1…``."""
    if not value:
        return ""
    kind, _, name = str(value).partition(":")
    if kind == "customer":
        return f"tag {name}"
    return f"{name} ({ACCOUNT_KINDS.get(kind, kind)})" if name else ACCOUNT_KINDS.get(kind, kind)


def actor_label(value: Any) -> str:
    """Who changed a state: ``assignment:7`` -> ``terminal 7``, ``admin:anna`` -> ``admin anna``, else as stored."""
    if not value:
        return ""
    kind, _, name = str(value).partition(":")
    if kind == "assignment" and name:
        return f"terminal {name}"
    if kind == "admin" and name:
        return f"admin {name}"
    return str(value)


def technical(row: dict[str, Any]) -> list[tuple[str, Any]]:
    """The transaction row's internal values for the technical block: known ids first, then any other key the
    database added that the facts do not show."""
    keys = [k for k in TECHNICAL_KEYS if k in row]
    keys += sorted(k for k in row if k not in FACT_KEYS and k not in TECHNICAL_KEYS)
    return [(k, row[k]) for k in keys]


async def detail_page(request: web.Request) -> web.Response:
    """GET /admin/transactions/{id}"""
    tx = await call_value(request, "admin_transaction", token(request), _id(request)) or {}
    row = tx.get("transaction") or {}
    return render(request, "admin/transaction.html", {
        "tx": tx, "t": row, "id": _id(request), "technical": technical(row), "type_label": type_label,
        "account_label": account_label, "actor_label": actor_label,
    })


async def receipt_page(request: web.Request) -> web.Response:
    """GET /admin/transactions/{id}/receipt: the printable receipt (``api.admin_receipt``, the api.receipt JSON)."""
    return await receipt_response(await call_value(request, "admin_receipt", token(request), _id(request)))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/transactions", list_page, name="transactions")
    app.router.add_get("/transactions/{id}", detail_page, name="transaction")
    app.router.add_get("/transactions/{id}/receipt", receipt_page, name="receipt")
