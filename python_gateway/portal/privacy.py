"""What is kept and for how long: ``/portal/privacy``; ``?format=json`` downloads all data of the signed-in tag
(``api.portal_data``)."""

from __future__ import annotations

import json

from aiohttp import web

from .common import call_value, render, token, viewer


async def privacy_page(request: web.Request) -> web.StreamResponse:
    """GET /portal/privacy[?format=json]"""
    if request.query.get("format") == "json":
        data = await call_value(request, "portal_data", token(request))
        body = json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True)
        return web.Response(text=body, content_type="application/json", charset="utf-8", headers={
            "Content-Disposition": f'attachment; filename="festpay-{viewer(request).username}.json"'})
    return render(request, "portal/privacy.html")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/privacy", privacy_page, name="privacy")
