"""Reports ``/admin/reports/{name}``: the columns and rows of ``api.admin_report(token, name, from, to)`` as a
printable table (``sales-per-hour`` also as a chart), or with ``?format=csv`` as a CSV download.

The report names and what each sums are the database's; an unknown name is its ``not-found``.  The CSV holds the
values as the database returns them (amounts in cents).
"""

from __future__ import annotations

import csv
import io
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from ..web.errors import attempt
from ..web.formatting import as_datetime, zone
from .common import call_row, query, render, token, viewer

REPORTS = {
    "sales-per-merchant": "Sales per merchant",
    "sales-per-product": "Sales per product",
    "sales-per-hour": "Sales per hour",
    "vat": "VAT per rate",
    "topups": "Top-ups per method",
    "trial-balance": "Trial balance",
    "settlement": "Settlement per merchant",
}
#: Which columns of each report hold cents (shown as money; the CSV keeps cents).  Other numbers are counts.
MONEY_COLUMNS = {
    "sales-per-merchant": frozenset({"gross", "chargebacks", "net"}),
    "sales-per-product": frozenset({"gross"}),
    "sales-per-hour": frozenset({"gross"}),
    "vat": frozenset({"gross", "net", "tax"}),
    "topups": frozenset({"amount", "fees", "credited"}),
    "trial-balance": frozenset({"received", "paid", "balance"}),
    "settlement": frozenset({"sales", "chargebacks", "payable"}),
}
PERCENT_COLUMNS = frozenset({"vat_rate"})
CHARTED = frozenset({"sales-per-hour"})
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A cell for a spreadsheet: text that would start a formula gets a leading apostrophe (numbers stay)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        try:
            float(value)
        except ValueError:
            return "'" + value
    return value


def csv_text(columns: list[str], rows: list[list[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([csv_cell(v) for v in row])
    return out.getvalue()


def chart_data(columns: list[str], rows: list[list[Any]], money: frozenset[str]) -> dict[str, Any] | None:
    """Columns for the chart: the first column as Unix seconds, every money column as a series (cents)."""
    if not rows or not columns:
        return None
    try:
        xs = [int(as_datetime(row[0]).timestamp()) for row in rows]
    except (TypeError, ValueError):
        return None
    series = [
        {"label": name, "values": [row[i] for row in rows]}
        for i, name in enumerate(columns) if i > 0 and name in money
    ]
    return {"x": xs, "series": series} if series else None


async def index_page(request: web.Request) -> web.Response:
    """GET /admin/reports: the list of reports."""
    return render(request, "admin/reports.html", {"reports": REPORTS})


async def report_page(request: web.Request) -> web.StreamResponse:
    """GET /admin/reports/{name}?from=&to=[&format=csv]"""
    name = request.match_info["name"]
    form = query(request)
    sent = {k: v for k, v in request.query.items() if k in ("from", "to") and v.strip()}
    tz = zone(viewer(request).time_zone)

    async def work() -> dict[str, Any] | None:
        return await call_row(request, "admin_report", token(request), name, form.local_time("from", tz),
                              form.local_time("to", tz))

    report, status = await attempt(request, "filter", sent, work)
    columns = list((report or {}).get("columns") or [])
    rows = list((report or {}).get("rows") or [])
    if request.query.get("format") == "csv" and status == 200:
        stamp = "-".join(v.replace(":", "").replace("T", "-") for v in sent.values()) or "all"
        return web.Response(
            text=csv_text(columns, rows), content_type="text/csv", charset="utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}-{stamp}.csv"'})
    return render(request, "admin/report.html", {
        "name": name, "title": REPORTS.get(name, name), "columns": columns, "rows": rows, "filters": sent,
        "csv_query": urlencode({**sent, "format": "csv"}),
        "money_columns": MONEY_COLUMNS.get(name, frozenset()), "percent_columns": PERCENT_COLUMNS,
        "chart": chart_data(columns, rows, MONEY_COLUMNS.get(name, frozenset())) if name in CHARTED else None,
    }, status=status)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/reports", index_page, name="reports")
    app.router.add_get("/reports/{name}", report_page, name="report")
