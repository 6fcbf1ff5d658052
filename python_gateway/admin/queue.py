"""The resolution queue ``/admin/queue``: TerminalConfirmUnknown, ExternalUnknown, overdrafts, refused tag-log
entries, implausible offline charges and recent violations; each decided with an outcome and a reason (the api
function checks the privilege support, books the outcome and writes the audit row).
"""

from __future__ import annotations

from aiohttp import web

from .common import call, call_value, done_note, page_of, read_form, render, see_other, token

OUTCOMES = ("Committed", "Aborted", "reviewed")
#: The outcomes offered per kind of item: an unknown outcome is decided, the rest is reviewed.
OUTCOMES_OF = {"terminal-confirm-unknown": ("Committed", "Aborted"), "external-unknown": ("Committed", "Aborted")}


async def queue_page(request: web.Request) -> web.Response:
    """GET /admin/queue"""
    items = await call(request, "admin_queue", token(request))
    return render(request, "admin/queue.html", {"items": items, "outcomes_of": OUTCOMES_OF,
                                                "note": done_note(request)})


@page_of(queue_page)
async def resolve(request: web.Request) -> web.StreamResponse:
    """POST /admin/queue/resolve (``transaction_id``, ``outcome``, ``reason``; ``violation_id`` for one violation)"""
    form = await read_form(request)
    await call_value(request, "admin_queue_resolve", token(request), form.whole("transaction_id"),
                     form.choice("outcome", OUTCOMES, required=True), form.text("reason", required=True),
                     form.whole("violation_id"))
    raise see_other(request, "/queue", done="resolved")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/queue", queue_page, name="queue")
    app.router.add_post("/queue/resolve", resolve)
