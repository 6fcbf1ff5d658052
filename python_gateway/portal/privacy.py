"""What is kept and for how long: ``/portal/privacy``; ``?format=json`` downloads all data of the signed-in tag
(``api.portal_data``).

The page reads the same document: whether bank data for a payout is stored (then the wristband is linked to the
account holder's name), and how long it is kept after the payout (the event's retention).
"""

from __future__ import annotations

import json

from aiohttp import web

from .common import call_value, render, token, viewer


async def privacy_page(request: web.Request) -> web.StreamResponse:
    """GET /portal/privacy[?format=json]"""
    data = await call_value(request, "portal_data", token(request)) or {}
    if request.query.get("format") == "json":
        body = json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True)
        return web.Response(text=body, content_type="application/json", charset="utf-8", headers={
            "Content-Disposition": f'attachment; filename="festpay-{viewer(request).username}.json"'})
    payout = data.get("payout") or {}
    return render(request, "portal/privacy.html", {"bank": payout.get("bank") or {},
                                                   "retention_days": payout.get("retention_days") or 0})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/privacy", privacy_page, name="privacy")
