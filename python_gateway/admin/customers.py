"""Customers (tags): ``/admin/customers?q=UID`` finds tags by UID prefix; ``/admin/customers/{uid}`` shows balance,
held, available, status, the payout data (bank data, donation choice, where the payout stands) and the statement
with items, and takes block / unblock, moving the balance to a new tag (a lost wristband), a chargeback of a sale
(never more than what is left of it; the ledger checks) and holding / releasing the tag's payout.

Reading needs the privilege view, the changes need support (checked by the api functions, audited there).
"""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from .common import act, call, call_value, done_note, page_of, query, read_form, render, see_other, token
from .payouts import WAITING

MAX_QUERY = 64
#: Refusals of moving a balance that concern the new tag: shown next to its field.
NEW_TAG_REFUSALS = {"tag-blocked": "new_uid", "tag-not-active": "new_uid", "max-balance-exceeded": "new_uid"}
#: The notes after holding or releasing a payout (fixed texts).
PAYOUT_NOTES = {
    "payout-blocked": "The payout is on hold: the tag is in no payout run until it is released.",
    "payout-unblocked": "The payout is released: the tag is eligible for the next run again.",
}


def _page(uid: str) -> str:
    return "/customers/" + quote(uid, safe="")


async def search_page(request: web.Request) -> web.Response:
    """GET /admin/customers?q=UID-prefix"""
    q = (query(request).text("q") or "")[:MAX_QUERY]
    customers = await call(request, "admin_customers", token(request), q)
    return render(request, "admin/customers.html", {"q": q, "customers": customers})


async def customer_page(request: web.Request) -> web.Response:
    """GET /admin/customers/{uid}"""
    customer = await call_value(request, "admin_customer", token(request), request.match_info["uid"])
    note = PAYOUT_NOTES.get(request.query.get("done", "")) or done_note(request)
    return render(request, "admin/customer.html", {"customer": customer or {}, "uid": request.match_info["uid"],
                                                   "note": note, "payout_reasons": WAITING})


@page_of(customer_page)
async def block(request: web.Request) -> web.StreamResponse:
    """POST /admin/customers/{uid}/block (``blocked`` true or false, ``reason``)"""
    form = await read_form(request)
    blocked = form.flag("blocked")
    await call_value(request, "admin_customer_block", token(request), request.match_info["uid"], blocked,
                     form.text("reason", required=True))
    raise see_other(request, _page(request.match_info["uid"]), done="blocked" if blocked else "unblocked")


@page_of(customer_page)
async def move(request: web.Request) -> web.StreamResponse:
    """POST /admin/customers/{uid}/move (``new_uid``, ``reason``): 303 to the new tag's page."""
    form = await read_form(request)
    new_uid = form.text("new_uid", required=True) or ""
    await act(request, NEW_TAG_REFUSALS, "admin_customer_move", token(request), request.match_info["uid"], new_uid,
              form.text("reason", required=True))
    raise see_other(request, _page(new_uid), done="moved")


@page_of(customer_page)
async def chargeback(request: web.Request) -> web.StreamResponse:
    """POST /admin/customers/{uid}/chargeback (``transaction_id``, ``amount``, ``reason``)"""
    form = await read_form(request)
    await call_value(request, "admin_chargeback", token(request), form.whole("transaction_id", required=True),
                     form.money("amount", required=True), form.text("reason", required=True))
    raise see_other(request, _page(request.match_info["uid"]), done="chargeback")


@page_of(customer_page)
async def payout_block(request: web.Request) -> web.StreamResponse:
    """POST /admin/customers/{uid}/payout-block (``blocked`` true or false, ``reason``)"""
    form = await read_form(request)
    blocked = form.flag("blocked")
    await call_value(request, "admin_payout_block", token(request), request.match_info["uid"], blocked,
                     form.text("reason", required=True))
    raise see_other(request, _page(request.match_info["uid"]),
                    done="payout-blocked" if blocked else "payout-unblocked")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/customers", search_page, name="customers")
    app.router.add_get("/customers/{uid}", customer_page, name="customer")
    app.router.add_post("/customers/{uid}/block", block)
    app.router.add_post("/customers/{uid}/move", move)
    app.router.add_post("/customers/{uid}/chargeback", chargeback)
    app.router.add_post("/customers/{uid}/payout-block", payout_block)
