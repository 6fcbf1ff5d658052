"""The signed-in tag's money: ``/portal/`` (balance), ``/portal/history``, ``/portal/receipts/{id}``.

The receipt of another tag's transaction is ``not-found`` in SQL (``api.portal_receipt``), the very answer of a
missing one: a 404 page.
"""

from __future__ import annotations

import aiohttp_jinja2
from aiohttp import web

from ..web.receipt import receipt_response
from ..web.templating import page_context
from .common import call, call_row, call_value, done_note, render, token, viewer
from .i18n import N_

PAGE_SIZE = 50
_ID = 2**63 - 1

#: What a transaction type is called on the history page.
TYPE_LABELS = {
    "topup": N_("Top-up"),
    "purchase": N_("Purchase"),
    "deposit_return": N_("Deposit return"),
    "chargeback": N_("Refund by support"),
    "refund": N_("Cash refund"),
    "payout": N_("Payout"),
    "transfer": N_("Balance transfer"),
    "donation": N_("Donation"),
}


def _id(text: str | None) -> int | None:
    if text is None or not text.isdigit() or len(text) > 19 or int(text) > _ID:
        return None
    return int(text)


async def balance_page(request: web.Request) -> web.Response:
    """GET /portal/: available, held, pending online top-ups; whether the wristband is blocked or paid out."""
    row = await call_row(request, "portal_balance", token(request))
    return render(request, "portal/balance.html", {"money": row, "note": done_note(request),
                                                   "blocked": viewer(request).status == "blocked"})


async def history_page(request: web.Request) -> web.Response:
    """GET /portal/history[?before=<id>]: own transactions with items, newest first, 50 a page."""
    before = _id(request.query.get("before"))
    rows = await call(request, "portal_history", token(request), before, PAGE_SIZE + 1)
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    return render(request, "portal/history.html", {
        "rows": rows, "type_labels": TYPE_LABELS, "older": rows[-1]["transaction_id"] if more else None,
        "paged": before is not None,
    })


async def receipt_page(request: web.Request) -> web.Response:
    """GET /portal/receipts/{id}: the printable receipt of one of the tag's own transactions (else 404), with the way
    back to the history above it (templates/portal/receipt_back.html, in the visitor's language)."""
    transaction_id = _id(request.match_info["id"])
    if transaction_id is None:
        raise web.HTTPNotFound()
    response = await receipt_response(await call_value(request, "portal_receipt", token(request), transaction_id))
    back = aiohttp_jinja2.render_string("portal/receipt_back.html", request,
                                        {**page_context(request), "transaction_id": transaction_id})
    response.text = (response.text or "").replace("<body>", "<body>\n" + back, 1)
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", balance_page, name="balance")
    app.router.add_get("/history", history_page, name="history")
    app.router.add_get("/receipts/{id}", receipt_page, name="receipt")
