"""The live dashboard ``/admin/``: sales and top-ups per minute (chart), revenue today, terminals seen in the last
5 minutes, signing lag, open queue counts, TSE outage banner.

The page shows ``api.admin_dashboard`` as it is on load; ``/admin/live`` then streams the same summary as
server-sent events.  ONE ``api.admin_dashboard`` call per interval serves every connected viewer
(:class:`~python_gateway.web.live.Broadcaster`); bookings send nothing for it.
"""

from __future__ import annotations

from typing import Any

import psycopg
from aiohttp import web

from ..gateway.problems import Problem
from ..web.database import WEB_POOL_KEY, call_pool
from ..web.formatting import as_datetime
from ..web.live import Broadcaster, stream
from .common import call_value, render, token, viewer
from .queue import KIND_LABELS

BROADCASTER_KEY = web.AppKey("dashboard_broadcaster", Broadcaster)
#: SQLSTATEs meaning "this viewer's session may not (any longer) see the summary".
SIGNED_OUT_SQLSTATES = frozenset({"FP070", "FP071"})
MAX_STREAM_S = 300.0


def chart_data(summary: dict[str, Any]) -> dict[str, list[Any]]:
    """The per-minute series as columns for the chart: Unix seconds, sales and top-ups in cents."""
    series = summary.get("series") or []
    minutes = [as_datetime(point.get("minute")) for point in series]
    return {
        "x": [int(m.timestamp()) if m else None for m in minutes],
        "sales": [point.get("sales") or 0 for point in series],
        "topups": [point.get("topups") or 0 for point in series],
    }


async def page(request: web.Request) -> web.Response:
    """GET /admin/"""
    summary = await call_value(request, "admin_dashboard", token(request)) or {}
    return render(request, "admin/dashboard.html", {"summary": summary, "chart": chart_data(summary),
                                                    "kind_labels": KIND_LABELS})


async def live(request: web.Request) -> web.StreamResponse:
    """GET /admin/live: ``summary`` events (the api.admin_dashboard JSON) until the viewer leaves."""
    if not viewer(request).may("view"):
        raise Problem("admin-forbidden", "viewing the dashboard needs the privilege view")
    return await stream(request, request.app[BROADCASTER_KEY], token(request), max_stream_s=MAX_STREAM_S)


def install(app: web.Application, interval_s: float) -> None:
    """The app's broadcaster (one summary query per interval while anyone watches), stopped at shutdown."""

    async def fetch(session_token: str) -> Any:
        rows = await call_pool(app[WEB_POOL_KEY], "admin_dashboard", session_token)
        return next(iter(rows[0].values())) if rows else None

    def signed_out(err: BaseException) -> bool:
        return isinstance(err, psycopg.Error) and err.sqlstate in SIGNED_OUT_SQLSTATES

    app[BROADCASTER_KEY] = Broadcaster(fetch, signed_out, interval_s)

    async def stop(app: web.Application) -> None:
        await app[BROADCASTER_KEY].close()

    app.on_shutdown.append(stop)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", page, name="dashboard")
    app.router.add_get("/live", live, name="live", allow_head=False)
