"""The resolution queue ``/admin/queue``: TerminalConfirmUnknown, ExternalUnknown, online payments the provider took
that could not be booked (provider-refund), overdrafts, refused tag-log entries, implausible offline charges and
recent violations; each decided with an outcome the admin chooses (none is preselected) and a reason (the api
function checks the privilege support, books the outcome and writes the audit row).  An unknown online top-up
(ExternalUnknown) can only be aborted: only the provider's "paid" books it, and a payment the provider reports after
the abort comes back as a refund; its item shows what the relay last heard from the provider.  A provider-refund
item is decided with "Refund" and a reason (``POST /admin/queue/refund``, ``api.admin_queue_refund``): the relay
then refunds it through the provider, and the item stays on the page (refund requested) until the provider has
refunded it.

An item someone decided meanwhile is gone from the page; deciding it again says so above the page ("already
decided: now Committed"), with the state the database reports.
"""

from __future__ import annotations

import psycopg
from aiohttp import web

from ..gateway.problems import REGISTRY_KEY, Problem
from .common import call, call_value, done_note, page_of, read_form, render, see_other, token

OUTCOMES = ("Committed", "Aborted", "reviewed")
#: The outcomes offered per kind of item: a terminal's unknown outcome is decided by the evidence an admin sees, an
#: online top-up the provider has not reported paid can only be aborted, the rest is reviewed.
OUTCOMES_OF = {"terminal-confirm-unknown": ("Committed", "Aborted"), "external-unknown": ("Aborted",)}
#: The heading of each kind of item.
KIND_LABELS = {
    "terminal-confirm-unknown": "Unknown terminal confirmations (TerminalConfirmUnknown)",
    "external-unknown": "Unknown external payments (ExternalUnknown)",
    "provider-refund": "Paid online but not bookable: refund through the provider",
    "overdraft": "Overdrafts",
    "refused-log-entry": "Refused tag-log entries",
    "implausible-offline-charge": "Implausible offline charges",
    "violation": "Violations",
}
#: Labels of the detail keys of a queue item (the rest is shown with its key).
DETAIL_LABELS = {
    "type": "Type", "state": "State", "held": "Held", "fee": "Fee", "payment": "Paid by",
    "assignment_id": "Terminal", "terminal_tx_number": "Terminal number", "tag_tx_number": "Tag counter",
    "balance_after": "Balance after", "actor": "By", "reason": "Reason", "from_state": "From", "to_state": "To",
    "payload": "Sent data", "refund": "Refund", "reference": "Reference", "checkout_id": "Provider checkout",
    "requested_by": "Requested by", "requested_at": "Requested at", "error": "Error",
    "checks": "Provider checks", "last_answer": "Provider's last answer", "next_check": "Next check",
}
#: Why a provider-refund item could not be booked (detail key reason).
REFUND_REASONS = {
    "tag-blocked": "the tag was blocked meanwhile",
    "max-balance-exceeded": "the balance would exceed the event's maximum",
    "aborted": "the top-up was closed already (Aborted)",
}
#: The refund states a provider-refund item offers "Refund" in (the others are under way).
REFUNDABLE = ("due", "failed")


async def queue_page(request: web.Request) -> web.Response:
    """GET /admin/queue"""
    items = await call(request, "admin_queue", token(request))
    return render(request, "admin/queue.html", {"items": items, "outcomes_of": OUTCOMES_OF,
                                                "kind_labels": KIND_LABELS, "detail_labels": DETAIL_LABELS,
                                                "refund_reasons": REFUND_REASONS, "refundable": REFUNDABLE,
                                                "note": done_note(request)})


def _already_decided(problem: Problem, transaction_id: int | None, outcome: str | None) -> Problem:
    """The refusal of a decision that someone made already, said plainly (the database's state in it)."""
    what = f"Transaction #{transaction_id}" if transaction_id is not None else "This item"
    extensions = problem.extensions if isinstance(problem.extensions, dict) else {}
    if problem.slug == "invalid-transition":
        state = extensions.get("state")
        now = f": now {state}" if state else ""
        return Problem(problem.slug, f"{what} is already decided{now}. Nothing was changed.",
                       {**extensions, "field": ""})
    if problem.slug == "not-found" and outcome == "reviewed" and "review" in (problem.detail or ""):
        return Problem(problem.slug, f"{what} is already reviewed: nothing of it waits for a review any more.",
                       {**extensions, "field": ""})
    return problem


@page_of(queue_page)
async def resolve(request: web.Request) -> web.StreamResponse:
    """POST /admin/queue/resolve (``transaction_id``, ``outcome``, ``reason``; ``violation_id`` for one violation)"""
    form = await read_form(request)
    transaction_id = form.whole("transaction_id")
    outcome = form.choice("outcome", OUTCOMES, required=True)
    try:
        await call_value(request, "admin_queue_resolve", token(request), transaction_id, outcome,
                         form.text("reason", required=True), form.whole("violation_id"))
    except psycopg.Error as err:
        problem = request.config_dict[REGISTRY_KEY].from_db_error(err)
        if problem is None:
            raise
        raise _already_decided(problem, transaction_id, outcome) from None
    raise see_other(request, "/queue", done="resolved")


@page_of(queue_page)
async def refund(request: web.Request) -> web.StreamResponse:
    """POST /admin/queue/refund (``transaction_id``, ``reason``): refund a payment that could not be booked."""
    form = await read_form(request)
    await call_value(request, "admin_queue_refund", token(request), form.whole("transaction_id", required=True),
                     form.text("reason", required=True))
    raise see_other(request, "/queue", done="resolved")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/queue", queue_page, name="queue")
    app.router.add_post("/queue/resolve", resolve)
    app.router.add_post("/queue/refund", refund)
