"""Setting the festival up: ``/admin/event``, ``/admin/merchants``, ``/admin/positions``, ``/admin/products``,
``/admin/terminals``, ``/admin/tags``.

Reading needs the privilege view, changing needs setup; the api functions check both, and write one audit row per
change.  Merchants, positions and products are archived, never deleted (they were sold).  Form field names are the
api parameter names without ``p_``; amounts are typed in currency units (``4.50``) and sent in cents.  The event's
payout settings (countries, deadline, retention of personal data, the festival's account the SEPA transfers come
from) are on ``/admin/event`` too.
"""

from __future__ import annotations

import asyncio
import re
from datetime import tzinfo
from typing import Any

import segno
from aiohttp import web
from markupsafe import Markup
from psycopg.types.json import Jsonb

from ..gateway.problems import Problem
from ..web.sessions import clear_cookie, cookie_name, cookie_path
from ..web.formatting import zone
from ..web.site import SITE_KEY
from ..web.templating import formatter
from .common import Form, call, call_value, done_note, page_of, read_form, render, see_other, token, viewer

#: The event settings form: field name (= event column = key of api.admin_event_update) -> kind of value.
EVENT_FIELDS: dict[str, str] = {
    "max_balance": "money",
    "min_topup": "money",
    "max_topup": "money",
    "topup_fee_cash": "money",
    "topup_fee_card": "money",
    "topup_fee_online": "money",
    "payout_fee": "money",
    "reserve_timeout_s": "whole",
    "provider_check_window_s": "whole",
    "offline_limit": "money",
    "offline_log_size": "whole",
    "seller_name": "text",
    "seller_street": "text",
    "seller_postcode": "text",
    "seller_city": "text",
    "tax_number": "text",
    "vat_id": "text",
}
#: The payout settings of the event form (same rule: field name = key of api.admin_event_update) -> kind:
#: ``countries`` typed as ``DE, AT`` and sent as a list, ``time`` a local date and time (empty: none), ``days``
#: whole days.
PAYOUT_FIELDS: dict[str, str] = {
    "payout_countries": "countries",
    "payout_deadline": "time",
    "payout_retention_days": "days",
    "payout_debtor_name": "text",
    "payout_debtor_iban": "text",
    "payout_debtor_bic": "text",
}
POSITION_KINDS = ("sale", "topup")
_LIST_SEPARATORS = re.compile(r"[\s,;]+")


def event_settings(form: Form, tz: tzinfo) -> dict[str, Any]:
    """The submitted event settings, each parsed by its kind (only the fields the form sent); times are read in the
    event's time zone ``tz``."""
    settings: dict[str, Any] = {}
    for name, kind in {**EVENT_FIELDS, **PAYOUT_FIELDS}.items():
        if name not in form.data:
            continue
        if kind == "money":
            settings[name] = form.money(name, required=True)
        elif kind in ("whole", "days"):
            settings[name] = form.whole(name, required=True)
        elif kind == "countries":
            settings[name] = [code.upper() for code in _LIST_SEPARATORS.split(form.text(name) or "") if code]
        elif kind == "time":
            moment = form.local_time(name, tz)
            settings[name] = moment.isoformat() if moment else None
        else:
            settings[name] = form.text(name) or ""
    return settings


# ----------------------------------------------------------------------------- event


async def event_page(request: web.Request) -> web.Response:
    """GET /admin/event"""
    event = await call_value(request, "admin_event", token(request)) or {}
    return render(request, "admin/event.html", {"event": event, "fields": EVENT_FIELDS,
                                                "payout_fields": PAYOUT_FIELDS, "note": done_note(request)})


async def event_update(request: web.Request) -> web.StreamResponse:
    """POST /admin/event"""
    settings = event_settings(await read_form(request), zone(viewer(request).time_zone))
    await call_value(request, "admin_event_update", token(request), Jsonb(settings))
    raise see_other(request, "/event", done="saved")


# ----------------------------------------------------------------------------- merchants, positions, products


async def merchants_page(request: web.Request) -> web.Response:
    """GET /admin/merchants"""
    merchants = await call(request, "admin_merchants", token(request))
    return render(request, "admin/merchants.html", {"merchants": merchants, "note": done_note(request)})


async def merchant_save(request: web.Request) -> web.StreamResponse:
    """POST /admin/merchants (``id`` empty: a new one; ``name``, ``archived``)"""
    form = await read_form(request)
    await call_value(request, "admin_merchant_save", token(request), form.whole("id"),
                     form.text("name", required=True), form.flag("archived"))
    raise see_other(request, "/merchants", done="saved")


async def positions_page(request: web.Request) -> web.Response:
    """GET /admin/positions (the merchants are the choice list of the form)"""
    positions = await call(request, "admin_positions", token(request))
    merchants = await call(request, "admin_merchants", token(request))
    return render(request, "admin/positions.html", {"positions": positions, "merchants": merchants,
                                                    "kinds": POSITION_KINDS, "note": done_note(request)})


async def position_save(request: web.Request) -> web.StreamResponse:
    """POST /admin/positions (``id``, ``name``, ``kind``, ``merchant_id``, ``archived``)"""
    form = await read_form(request)
    await call_value(request, "admin_position_save", token(request), form.whole("id"),
                     form.text("name", required=True), form.choice("kind", POSITION_KINDS, required=True),
                     form.whole("merchant_id"), form.flag("archived"))
    raise see_other(request, "/positions", done="saved")


async def products_page(request: web.Request) -> web.Response:
    """GET /admin/products"""
    products = await call(request, "admin_products", token(request))
    return render(request, "admin/products.html", {"products": products, "note": done_note(request)})


async def product_save(request: web.Request) -> web.StreamResponse:
    """POST /admin/products (``id``, ``name``, ``price``, ``vat_rate``, ``fixed_price``, ``returnable``,
    ``archived``)"""
    form = await read_form(request)
    await call_value(request, "admin_product_save", token(request), form.whole("id"),
                     form.text("name", required=True), form.money("price"),
                     form.decimal("vat_rate", required=True), form.flag("fixed_price"), form.flag("returnable"),
                     form.flag("archived"))
    raise see_other(request, "/products", done="saved")


# ----------------------------------------------------------------------------- terminals


def qr_svg(text: str) -> Markup:
    """The QR code of ``text`` as inline SVG (sized by CSS)."""
    qr = segno.make_qr(text, error="m")
    return Markup(qr.svg_inline(scale=1, border=4, omitsize=True, svgclass="qr", lineclass=None, title=text))


#: The one-time note of a registration code just made: a short-lived cookie (HttpOnly, SameSite=Strict) that the
#: page the POST redirects to reads and clears, so the code is shown once and a reload makes no new one.  A cookie,
#: not process memory: gateway processes side by side (SO_REUSEPORT) need not share anything.
CODE_COOKIE = "festpay_admin_code"
CODE_COOKIE_MAX_AGE_S = 600
_CODE_NOTE = re.compile(r"([A-Za-z0-9]{1,64})\.(\d{1,18})")


async def terminals_page(request: web.Request) -> web.Response:
    """GET /admin/terminals[?code=new] (the positions are the choice list of the registration-code form); after a
    code was made, that code and its QR code, once."""
    terminals = await call(request, "admin_terminals", token(request))
    positions = await call(request, "admin_positions", token(request))
    site = request.config_dict[SITE_KEY]
    shown = None
    note = _CODE_NOTE.fullmatch(request.cookies.get(cookie_name(site, CODE_COOKIE), ""))
    if note and request.query.get("code"):
        code, position_id = note.group(1), int(note.group(2))
        svg = await asyncio.get_running_loop().run_in_executor(None, qr_svg, code)
        position = next((p for p in positions if p["id"] == position_id), None)
        shown = {"code": code, "qr": svg, "position": position}
    response = render(request, "admin/terminals.html", {
        "terminals": terminals, "positions": positions, "note": done_note(request), "shown": shown,
        "shown_before": bool(request.query.get("code")) and shown is None,
    })
    if note:
        clear_cookie(response, site, CODE_COOKIE)
    return response


@page_of(terminals_page)
async def registration_code(request: web.Request) -> web.StreamResponse:
    """POST /admin/terminals/code (``position_id``): a one-time registration code; 303 to /admin/terminals, which
    shows it with its QR code once (a reload makes no new code and does not show it again)."""
    form = await read_form(request)
    position_id = form.whole("position_id", required=True)
    code = await call_value(request, "admin_registration_code", token(request), position_id)
    site = request.config_dict[SITE_KEY]
    redirect = see_other(request, "/terminals", code="new")
    redirect.set_cookie(cookie_name(site, CODE_COOKIE), f"{code}.{position_id}", path=cookie_path(site),
                        max_age=CODE_COOKIE_MAX_AGE_S, httponly=True, samesite="Strict", secure=site.https or None)
    raise redirect


@page_of(terminals_page)
async def terminal_revoke(request: web.Request) -> web.StreamResponse:
    """POST /admin/terminals/revoke (``assignment_id``; ``confirm=yes``): without the confirmation a page that asks
    for it (no JavaScript needed); with it the assignment is revoked."""
    form = await read_form(request)
    assignment_id = form.whole("assignment_id", required=True)
    if form.text("confirm") != "yes":
        if not viewer(request).may("setup"):  # refused before asking; the api function checks it again
            raise Problem("admin-forbidden", "revoking a terminal needs the privilege setup")
        terminals = await call(request, "admin_terminals", token(request))
        terminal = next((t for t in terminals if t["assignment_id"] == assignment_id), None)
        if terminal is None:
            raise Problem("not-found", f"there is no terminal {assignment_id}")
        return render(request, "admin/confirm.html", {
            "title": "Revoke a terminal",
            "question": f"Revoke terminal {assignment_id} ({terminal['device']})?",
            "consequence": "Its next request is refused (401); it must register again with a new code to work. "
                           "This cannot be undone.",
            "facts": [("Device", terminal["device"]), ("Position", terminal["position"]),
                      ("Last seen", fmt_time(request, terminal["last_seen"])),
                      ("Open transactions", str(terminal["open_transactions"]))],
            "action": request.path, "fields": {"form": f"revoke-{assignment_id}", "assignment_id": assignment_id},
            "confirm_label": "Yes, revoke it", "danger": True, "cancel": "/terminals",
        })
    await call_value(request, "admin_terminal_revoke", token(request), assignment_id)
    raise see_other(request, "/terminals", done="revoked")


# ----------------------------------------------------------------------------- tags


async def tags_page(request: web.Request) -> web.Response:
    """GET /admin/tags (counts by status; ``?imported=N`` after an import)"""
    counts = await call(request, "admin_tags", token(request))
    imported = request.query.get("imported", "")
    return render(request, "admin/tags.html", {"counts": counts, "note": done_note(request),
                                               "imported": int(imported) if imported.isdigit() else None})


async def tags_import(request: web.Request) -> web.StreamResponse:
    """POST /admin/tags (``csv``: lines ``UID,PIN``, pasted or as the file ``csv_file``)"""
    form = await read_form(request)
    text = form.raw("csv_file") if getattr(form.data.get("csv_file"), "filename", None) else form.raw("csv")
    count = await call_value(request, "admin_tags_import", token(request), text or "")
    raise see_other(request, "/tags", done="imported", imported=count)


def fmt_time(request: web.Request, value: Any) -> str:
    return formatter(request).time(value) or "–"


def add_routes(app: web.Application) -> None:
    app.router.add_get("/event", event_page, name="event")
    app.router.add_post("/event", event_update)
    app.router.add_get("/merchants", merchants_page, name="merchants")
    app.router.add_post("/merchants", merchant_save)
    app.router.add_get("/positions", positions_page, name="positions")
    app.router.add_post("/positions", position_save)
    app.router.add_get("/products", products_page, name="products")
    app.router.add_post("/products", product_save)
    app.router.add_get("/terminals", terminals_page, name="terminals")
    app.router.add_post("/terminals/code", registration_code)
    app.router.add_post("/terminals/revoke", terminal_revoke)
    app.router.add_get("/tags", tags_page, name="tags")
    app.router.add_post("/tags", tags_import)
