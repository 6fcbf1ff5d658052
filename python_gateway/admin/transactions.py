"""Transactions: ``/admin/transactions`` (filters as GET query parameters, keyset pagination by id descending) and
``/admin/transactions/{id}`` (items, booking lines, every state change, violations, TSE signature, receipt link).

Filter parameters = the filter keys of ``api.admin_transactions``: ``from``, ``to`` (datetime-local in the event's
time zone), ``state``, ``type``, ``merchant_id``, ``position_id``, ``assignment_id``, ``uid``, ``amount_min``,
``amount_max`` (typed in currency units); ``before`` is the keyset cursor (the last id of the previous page).
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from psycopg.types.json import Jsonb

from .. import receipts
from ..web.errors import attempt
from ..web.security import CONTENT_SECURITY_POLICY
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
        "rows": rows, "filters": sent, "states": STATES, "types": TYPES,
        "older": older, "newest": urlencode(sent) if "before" in request.query else None,
    }, status=status)


def _id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 18:
        raise web.HTTPNotFound()
    return int(raw)


async def detail_page(request: web.Request) -> web.Response:
    """GET /admin/transactions/{id}"""
    tx = await call_value(request, "admin_transaction", token(request), _id(request))
    return render(request, "admin/transaction.html", {"tx": tx or {}, "id": _id(request)})


#: The printable receipt (templates/receipt.html) carries its own print stylesheet inline.
RECEIPT_CSP = CONTENT_SECURITY_POLICY.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")


async def receipt_page(request: web.Request) -> web.Response:
    """GET /admin/transactions/{id}/receipt: the printable receipt (``api.admin_receipt``, the api.receipt JSON)."""
    receipt = await call_value(request, "admin_receipt", token(request), _id(request))
    if receipt is None:
        raise web.HTTPNotFound()
    text = await asyncio.get_running_loop().run_in_executor(None, receipts.render_html, receipt)
    return web.Response(text=text, content_type="text/html", charset="utf-8",
                        headers={"Content-Security-Policy": RECEIPT_CSP})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/transactions", list_page, name="transactions")
    app.router.add_get("/transactions/{id}", detail_page, name="transaction")
    app.router.add_get("/transactions/{id}/receipt", receipt_page, name="receipt")
