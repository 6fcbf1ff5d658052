"""Reports ``/admin/reports/{name}``: the columns and rows of ``api.admin_report(token, name, from, to)`` as a
printable table (``sales-per-hour`` also as a chart), or with ``?format=csv`` as a CSV download.

The report names and what each sums are the database's; an unknown name is its ``not-found``.  Every column has a
human label (:data:`COLUMN_LABELS`: a count says what it counts, an amount says it is money); the CSV carries the
same labels in its header line and stays machine-friendly: amounts as plain decimals in the event's currency
(``7.60``), rates as plain numbers (``19``), times as ISO 8601 in the event's time zone, counts as whole numbers.
"""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from ..web.errors import attempt
from ..web.formatting import Formatter, as_datetime, zone
from ..web.templating import formatter
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
#: Which columns of each report hold cents (money on the page, decimals in the CSV).  Other numbers are counts.
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
#: The label of each report column (the page's table head and the CSV's header line).  Counts and money are told
#: apart: "Purchases" counts sales, "Gross" is their money.
COLUMN_LABELS = {
    "sales-per-merchant": {"merchant": "Merchant", "sales": "Purchases", "gross": "Gross",
                           "chargebacks": "Chargebacks", "net": "Net"},
    "sales-per-product": {"product": "Product", "vat_rate": "VAT rate", "quantity": "Quantity sold",
                          "gross": "Gross", "returned": "Quantity returned"},
    "sales-per-hour": {"hour": "Hour", "sales": "Purchases", "gross": "Gross"},
    "vat": {"vat_rate": "VAT rate", "vat_key": "VAT key (DSFinV-K)", "gross": "Gross", "net": "Net",
            "tax": "VAT"},
    "topups": {"method": "Payment method", "topups": "Top-ups", "amount": "Paid in", "fees": "Fees",
               "credited": "Credited to tags"},
    "trial-balance": {"kind": "Account kind", "account": "Account", "received": "Received", "paid": "Paid out",
                      "balance": "Balance"},
    "settlement": {"merchant": "Merchant", "sales": "Gross sales", "chargebacks": "Chargebacks",
                   "payable": "Payable"},
}
#: What each report sums, shown under its title.
DESCRIPTIONS = {
    "sales-per-merchant": "Committed purchases per merchant: how many (purchases) and their money (gross), "
                          "chargebacks booked back, and net = gross less chargebacks.",
    "sales-per-product": "Items sold per product, as sold (name, price and VAT rate at the time), and deposit "
                         "items returned.",
    "sales-per-hour": "Committed purchases per hour (in the event's time zone): how many and their money.",
    "vat": "Gross, net and VAT per VAT rate, summed from every receipt's own lines.",
    "topups": "Top-ups per payment method: how many, what customers paid in, the fees, and what reached the tags.",
    "trial-balance": "Every account's booking lines: received, paid out, balance; customers together; the total "
                     "balances to zero.",
    "settlement": "What each merchant is owed: gross sales booked to it less chargebacks booked from it.",
}


def column_label(report: str, column: str, currency: str) -> str:
    """The label of ``column``; money columns name the currency (``Gross (EUR)``)."""
    label = COLUMN_LABELS.get(report, {}).get(column) or column.replace("_", " ").capitalize()
    if column in MONEY_COLUMNS.get(report, frozenset()):
        label += f" ({currency})"
    return label


def csv_value(column: str, value: Any, money: frozenset[str], fmt: Formatter) -> Any:
    """A cell of the CSV: amounts as decimals (``7.60``), rates as plain numbers, times in the event's zone."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if column in money and isinstance(value, int):
        return fmt.amount(value)
    if column in PERCENT_COLUMNS and isinstance(value, (int, float, Decimal)):
        return fmt.plain(value)
    if isinstance(value, str) and _TIMESTAMP.match(value):
        return fmt.iso(value)
    return value
CHARTED = frozenset({"sales-per-hour"})
_TIMESTAMP = re.compile(r"(19|20)\d\d-\d\d-\d\dT\d\d:\d\d")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A cell for a spreadsheet: text that would start a formula gets a leading apostrophe (numbers stay)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        try:
            float(value)
        except ValueError:
            return "'" + value
    return value


def csv_text(labels: list[str], rows: list[list[Any]]) -> str:
    """The CSV file: the labels as its header line, then the rows (cells already made by :func:`csv_value`)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(labels)
    for row in rows:
        writer.writerow([csv_cell(v) for v in row])
    return out.getvalue()


def chart_data(columns: list[str], rows: list[list[Any]], money: frozenset[str],
               labels: list[str] | None = None) -> dict[str, Any] | None:
    """Columns for the chart: the first column as Unix seconds, every money column as a series (cents)."""
    if not rows or not columns:
        return None
    try:
        xs = [int(as_datetime(row[0]).timestamp()) for row in rows]
    except (TypeError, ValueError):
        return None
    series = [
        {"label": labels[i] if labels else name, "values": [row[i] for row in rows]}
        for i, name in enumerate(columns) if i > 0 and name in money
    ]
    return {"x": xs, "series": series} if series else None


async def index_page(request: web.Request) -> web.Response:
    """GET /admin/reports: the list of reports."""
    return render(request, "admin/reports.html", {"reports": REPORTS, "descriptions": DESCRIPTIONS})


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
    money = MONEY_COLUMNS.get(name, frozenset())
    currency = viewer(request).currency
    labels = [column_label(name, column, currency) for column in columns]
    if request.query.get("format") == "csv" and status == 200:
        fmt = formatter(request)
        cells = [[csv_value(columns[i] if i < len(columns) else "", v, money, fmt) for i, v in enumerate(row)]
                 for row in rows]
        stamp = "-".join(v.replace(":", "").replace("T", "-") for v in sent.values()) or "all"
        return web.Response(
            text=csv_text(labels, cells), content_type="text/csv", charset="utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}-{stamp}.csv"'})
    return render(request, "admin/report.html", {
        "name": name, "title": REPORTS.get(name, name), "description": DESCRIPTIONS.get(name),
        "columns": columns, "labels": labels, "rows": rows, "filters": sent,
        "csv_query": urlencode({**sent, "format": "csv"}),
        "money_columns": money, "percent_columns": PERCENT_COLUMNS,
        "chart": chart_data(columns, rows, money, labels) if name in CHARTED else None,
    }, status=status)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/reports", index_page, name="reports")
    app.router.add_get("/reports/{name}", report_page, name="report")
