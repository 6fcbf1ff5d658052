"""Receipts (KassenSichV §6, SPEC §8): the JSON of ``api.receipt(transaction_id)`` as HTML or plain text.

Presentation only: every amount, every VAT figure and the payment type come from the database; this module
formats cents, times and the TSE fields, builds the DSFinV-K QR code text (:func:`python_gateway.tse.logmessage.
build_qr`) and draws it as inline SVG (segno).  Used by the gateway (``GET /terminal/v1/transactions/{n}/receipt``)
and by ``festpay receipt``.
"""

from __future__ import annotations

import argparse
import base64
import sys
import textwrap
from collections.abc import Callable
from datetime import datetime, timezone, tzinfo
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
import segno
from markupsafe import Markup

from .config import PROJECT_ROOT
from .tse.logmessage import build_qr, format_qr_time

TEMPLATES_DIR = PROJECT_ROOT / "templates"
TEMPLATE = "receipt.html"

#: What a receipt calls each transaction type.
TYPE_LABELS = {
    "purchase": "Verkauf",
    "topup": "Aufladung (Mehrzweckgutschein)",
    "refund": "Auszahlung Restguthaben",
    "payout": "Auszahlung Restguthaben",
    "chargeback": "Rückbuchung",
    "deposit_return": "Pfandrückgabe",
}
PAYMENT_LABELS = {"Bar": "Bar", "Unbar": "Unbar (Guthaben/Karte)"}

TSE_FAILED = "TSE ausgefallen — Signatur wird nachgereicht"
TSE_PENDING = "Signatur ausstehend"
TSE_LATE = "Nachträglich signiert: die TSE war bei Erstellung dieses Belegs ausgefallen"

SIGNATURE_WRAP = 32  # base64 characters per printed line


_env: jinja2.Environment | None = None


def environment() -> jinja2.Environment:
    """The Jinja2 environment of the top-level templates/ folder (autoescape on, undefined names fail)."""
    global _env
    if _env is None:
        _env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
    return _env


# ----------------------------------------------------------------------------- formatting


def money(cents: int, currency: str) -> str:
    """Integer cents as ``1.234,50 EUR`` (two decimals, German separators)."""
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(int(cents)), 100)
    return f"{sign}{whole:,}".replace(",", ".") + f",{frac:02d} {currency}"


def rate(value: Any) -> str:
    """A VAT rate in percent as printed: ``19 %``, ``10,7 %``, ``0 %``."""
    text = format(Decimal(str(value)).normalize(), "f")
    return text.replace(".", ",") + " %"


def clock(moment: datetime | None) -> str:
    """A local time of day with its UTC offset, as a receipt prints it: ``14:03:11 UTC+01:00``."""
    if moment is None:
        return ""
    offset = moment.strftime("%z") or "+0000"
    return f"{moment:%H:%M:%S} UTC{offset[:3]}:{offset[3:]}"


def seller_lines(seller: dict[str, Any]) -> list[str]:
    """The seller's address, tax number and VAT id under its name (``ledger.seller``), empty parts left out."""
    place = " ".join(x for x in (seller.get("postcode"), seller.get("city")) if x)
    lines = [x for x in (seller.get("street"), place) if x]
    if seller.get("tax_number"):
        lines.append(f"StNr. {seller['tax_number']}")
    if seller.get("vat_id"):
        lines.append(f"USt-IdNr. {seller['vat_id']}")
    return lines


def parse_time(value: str | None) -> datetime | None:
    """A timestamptz of the receipt JSON (ISO 8601 with offset) as an aware datetime."""
    if value is None:
        return None
    return datetime.fromisoformat(value)


def _zone(name: str | None) -> tzinfo:
    try:
        return ZoneInfo(name) if name else timezone.utc
    except (ZoneInfoNotFoundError, ValueError):
        return timezone.utc


def _b64(text: str) -> bytes:
    """Base64 as PostgreSQL's encode() writes it (wrapped every 76 characters)."""
    return base64.b64decode("".join(text.split()), validate=True)


def _wrap(text: str, width: int = SIGNATURE_WRAP) -> list[str]:
    return textwrap.wrap(text, width, break_long_words=True, break_on_hyphens=False)


# ----------------------------------------------------------------------------- QR code


def qr_text(tse: dict[str, Any]) -> str:
    """The DSFinV-K QR code text ``V0;…`` of a stored signature (the ``tse`` member of api.receipt)."""
    return build_qr(
        client_id=tse["client_id"],
        process_type=tse["process_type"],
        process_data=tse["process_data"],
        transaction_number=int(tse["transaction_number"]),
        signature_counter=int(tse["signature_counter"]),
        start_time=int(parse_time(tse["start_time"]).timestamp()),
        log_time=int(parse_time(tse["log_time"]).timestamp()),
        signature=_b64(tse["signature"]),
        public_key=_b64(tse["public_key"]),
    )


def qr_svg(text: str) -> str:
    """The QR code of ``text`` as inline SVG (no XML declaration, sized by CSS through its viewBox)."""
    qr = segno.make_qr(text, error="m")
    return qr.svg_inline(scale=1, border=4, omitsize=True, svgclass="qr", lineclass=None, title=text)


# ----------------------------------------------------------------------------- context


def context(receipt: dict[str, Any]) -> dict[str, Any]:
    """The template context of a receipt: the api.receipt JSON with amounts, rates and times formatted."""
    event = receipt["event"]
    currency = event["currency"]
    zone = _zone(event.get("time_zone"))
    started = parse_time(receipt["started_at"]) or parse_time(receipt["ended_at"])
    ended = parse_time(receipt["ended_at"]) or started
    local_start = started.astimezone(zone) if started else None
    local_end = ended.astimezone(zone) if ended else None
    seller = receipt["seller"]
    till = receipt["till"]
    items = [
        {
            "name": item["name"],
            "quantity": item["quantity"],
            "unit_price": money(item["unit_price"], currency),
            "rate": rate(item["vat_rate"]),
            "gross": money(item["gross"], currency),
        }
        for item in receipt.get("items") or []
    ]
    vat = [
        {
            "rate": rate(v["rate"]),
            "net": money(v["net"], currency),
            "tax": money(v["tax"], currency),
            "gross": money(v["gross"], currency),
        }
        for v in receipt.get("vat") or []
    ]
    tse_ctx = None
    tse = receipt.get("tse")
    if tse:
        text = qr_text(tse)
        signature = "".join(tse["signature"].split())
        public_key = "".join(tse["public_key"].split())
        start_s = int(parse_time(tse["start_time"]).timestamp())
        log_s = int(parse_time(tse["log_time"]).timestamp())
        tse_ctx = {
            "serial_number": tse["serial_number"],
            "serial_lines": _wrap(tse["serial_number"]),
            "client_id": tse["client_id"],
            "process_type": tse["process_type"],
            "process_data": tse["process_data"],
            "transaction_number": tse["transaction_number"],
            "signature_counter": tse["signature_counter"],
            "start_time": format_qr_time(start_s),
            "log_time": format_qr_time(log_s),
            "algorithm": tse["algorithm"],
            "log_time_format": "unixTime",
            "signature": signature,
            "signature_lines": _wrap(signature),
            "public_key": public_key,
            "public_key_lines": _wrap(public_key),
            "late": bool(tse.get("late")),
            "qr_text": text,
            "qr_svg": Markup(qr_svg(text)),
        }
    if tse_ctx is not None:
        status = TSE_LATE if tse_ctx["late"] else None
    elif receipt.get("tse_failed"):
        status = TSE_FAILED
    else:
        status = TSE_PENDING
    return {
        "transaction_id": receipt["transaction_id"],
        "type": receipt["type"],
        "type_label": TYPE_LABELS.get(receipt["type"], receipt["type"]),
        "seller_name": seller.get("name") or "",
        "seller_address_lines": seller_lines(seller),
        "merchant": seller.get("merchant"),
        "event_name": event["name"],
        "currency": currency,
        "time_zone": getattr(zone, "key", "UTC"),
        "date": local_start.strftime("%d.%m.%Y") if local_start else "",
        "start_time": clock(local_start),
        "end_date": local_end.strftime("%d.%m.%Y") if local_end else "",
        "end_time": clock(local_end),
        "till": {
            "client_id": till["client_id"],
            "assignment_id": till.get("assignment_id"),
            "device": till.get("device"),
            "position": till.get("position"),
        },
        "items": items,
        "vat": vat,
        "total": money(receipt["total"], currency),
        "fee": money(receipt["fee"], currency) if receipt.get("fee") else None,
        "payment": receipt["payment"],
        "payment_label": PAYMENT_LABELS.get(receipt["payment"], receipt["payment"]),
        "tse": tse_ctx,
        "tse_failed": bool(receipt.get("tse_failed")) and tse_ctx is None,
        "status": status,
    }


def render_html(receipt: dict[str, Any]) -> str:
    """The printable HTML receipt (templates/receipt.html) of an api.receipt JSON document."""
    return environment().get_template(TEMPLATE).render(**context(receipt))


def render_text(receipt: dict[str, Any], width: int = 48) -> str:
    """The same receipt as plain text, ``width`` characters wide (a till printer's line)."""
    c = context(receipt)
    lines: list[str] = []

    def center(text: str) -> None:
        lines.append(text.center(width).rstrip())

    def pair(left: str, right: str) -> None:
        gap = max(1, width - len(left) - len(right))
        lines.append(f"{left}{' ' * gap}{right}")

    rule = "-" * width
    center(c["seller_name"])
    for line in c["seller_address_lines"]:
        center(line)
    if c["merchant"]:
        center(c["merchant"])
    center(c["event_name"])
    lines.append(rule)
    pair(c["type_label"], f"Beleg-Nr. {c['transaction_id']}")
    pair("Datum", c["date"])
    pair("Beginn", f"{c['start_time']} ({c['time_zone']})")
    pair("Ende", f"{c['end_date']} {c['end_time']}" if c["end_date"] != c["date"] else c["end_time"])
    pair("Kasse (Client-ID)", c["till"]["client_id"])
    if c["till"]["position"] or c["till"]["device"]:
        pair("", " / ".join(str(x) for x in (c["till"]["position"], c["till"]["device"]) if x))
    lines.append(rule)
    for item in c["items"]:
        lines.append(item["name"])
        pair(f"  {item['quantity']} x {item['unit_price']}  {item['rate']}", item["gross"])
    lines.append(rule)
    pair("SUMME", c["total"])
    pair("Zahlart", c["payment_label"])
    if c["fee"]:
        pair("darin Gebühr", c["fee"])
    lines.append(rule)
    pair("MwSt-Satz", "Netto / Steuer / Brutto")
    for v in c["vat"]:
        pair(v["rate"], f"{v['net']} / {v['tax']} / {v['gross']}")
    lines.append(rule)
    tse = c["tse"]
    if tse is None:
        center(c["status"])
    else:
        if c["status"]:
            lines.extend(textwrap.wrap(c["status"], width))
        pair("TSE-Transaktion", str(tse["transaction_number"]))
        pair("Signaturzähler", str(tse["signature_counter"]))
        pair("TSE-Start", tse["start_time"])
        pair("TSE-Ende", tse["log_time"])
        pair("Prozesstyp", tse["process_type"])
        lines.append("Prozessdaten:")
        lines.extend("  " + line for line in textwrap.wrap(tse["process_data"], width - 2))
        lines.append("TSE-Seriennummer:")
        lines.extend("  " + line for line in tse["serial_lines"])
        lines.append(f"Signatur ({tse['algorithm']}):")
        lines.extend("  " + line for line in tse["signature_lines"])
        lines.append("QR-Code (DSFinV-K):")
        lines.append(tse["qr_text"])
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- festpay receipt


def fetch(conn: Any, transaction_id: int) -> dict[str, Any]:
    """``api.receipt(transaction_id)`` over a psycopg connection."""
    return conn.execute("SELECT api.receipt(%s::bigint)", (transaction_id,)).fetchone()[0]


def add_parser(subparsers: Any, admin_url: Callable[[Any], str]) -> argparse.ArgumentParser:
    """Adds ``receipt TRANSACTION_ID [--html FILE]`` to the ``festpay`` subparsers.

    ``admin_url(settings)`` is the owner's database URL (cli.py's, as for registration-code): the CLI reads any
    till's receipt.
    """
    p = subparsers.add_parser("receipt", help="print a transaction's receipt (plain text) or write it as HTML")
    p.add_argument("transaction_id", type=int, metavar="TRANSACTION_ID")
    p.add_argument("--html", metavar="FILE", help="write the printable HTML receipt to FILE ('-': stdout)")
    p.set_defaults(func=lambda args, settings: cmd_receipt(args, admin_url(settings)))
    return p


def cmd_receipt(args: argparse.Namespace, database_url: str) -> int:
    """``festpay receipt``: 0 printed or written, 1 no such receipt (the reason on stderr)."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        try:
            receipt = fetch(conn, args.transaction_id)
        except psycopg.Error as err:
            if isinstance(err, psycopg.OperationalError):
                raise
            print(f"festpay: {(err.diag.message_primary or str(err)).strip()}", file=sys.stderr)
            return 1
    if args.html:
        html = render_html(receipt)
        if args.html == "-":
            sys.stdout.write(html)
        else:
            Path(args.html).write_text(html, encoding="utf-8")
            print(f"Wrote the receipt of transaction {args.transaction_id} to {args.html}")
    else:
        sys.stdout.write(render_text(receipt))
    return 0
