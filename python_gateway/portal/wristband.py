"""Block my lost wristband at once: ``/portal/block`` (a confirm form; ``api.portal_block``, audited in SQL).

Blocking stops spending, not reading: the visitor stays signed in and keeps the balance; only support unblocks.
"""

from __future__ import annotations

from aiohttp import web

from .common import call_row, call_value, render, see_other, token, viewer


async def block_page(request: web.Request) -> web.Response:
    """GET /portal/block (a blocked tag that was paid out is said to be closed)."""
    blocked = viewer(request).status == "blocked"
    money = await call_row(request, "portal_balance", token(request)) if blocked else None
    return render(request, "portal/block.html", {"blocked": blocked, "paid_out": bool(money and money["paid_out"])})


async def block(request: web.Request) -> web.StreamResponse:
    """POST /portal/block: blocks the signed-in tag; 303 to the balance page."""
    await call_value(request, "portal_block", token(request))
    raise see_other(request, "/", done="blocked")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/block", block_page, name="block")
    app.router.add_post("/block", block)
