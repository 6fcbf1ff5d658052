"""Payouts of leftover balances: ``/admin/payouts`` and ``/admin/payouts/{id}`` (privilege finance, checked by the
api functions, audited there).

- ``/admin/payouts``: who is eligible and for how much, why the others wait, what is left on tags; the runs;
  creating a run (``max_count``, ``max_sum``, ``execution_date``; POST ``/admin/payouts``); after the event's
  payout deadline donating every remaining balance (POST ``/admin/payouts/donate-remaining``, ``reason``, asks
  first); erasing the personal data of paid-out customers past the retention time (POST
  ``/admin/payouts/erase-personal-data``, privilege users, asks first).
- ``/admin/payouts/{id}``: the run and its lines; the SEPA credit transfer ``/admin/payouts/{id}/sepa.xml`` and
  ``/admin/payouts/{id}/payouts.csv`` (both from ``api.admin_payout_export``, which audits the export; the files
  are made by :mod:`python_gateway.sepa`); revoking the run (POST ``.../revoke``, ``reason``) and marking it done
  (POST ``.../done``, asks first) while it is open.
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta

from aiohttp import web

from .. import sepa
from ..gateway.problems import Problem
from ..web.forms import INTEGER_MAX, INTEGER_MIN
from ..web.formatting import zone
from ..web.templating import formatter
from .common import call_value, done_note, page_of, read_form, render, see_other, token, viewer
from .reports import csv_text

_ID_MAX = 2**63 - 1
#: The notes after a payout action (fixed texts; counts and sums come as whole numbers and are formatted here).
NOTES = {
    "created": "The payout run is created; the money of its lines is held until it is done or revoked.",
    "revoked": "The payout run is revoked; the held money is free again and its customers are eligible again.",
    "paid": "The payout run is done: transfers, fees and donations are booked and its tags are closed.",
    "donated": "The remaining balances are donated.",
    "erased": "Personal data erased.",
}
#: Why an eligible-looking customer waits (the reasons of ``api.admin_payouts``' ``waiting``).
WAITING = {
    "no-bank-data": "No bank data yet",
    "blocked": "Payout blocked by support",
    "unresolved": "An unresolved transaction (queue)",
    "overdraft": "Overdrawn",
    "below-fee": "Balance not above the payout fee",
    "empty": "No balance",
    "in-run": "In an open run",
    "done": "Paid out",
}


def run_id(request: web.Request) -> int:
    text = request.match_info["id"]
    if not text.isdigit() or len(text) > 19 or int(text) > _ID_MAX:
        raise web.HTTPNotFound()
    return int(text)


def _page(run: int) -> str:
    return f"/payouts/{run}"


def _note(request: web.Request) -> str | None:
    """The note after a POST: the site's fixed texts, with the count and sum of a donation or an erasure."""
    key = request.query.get("done", "")
    if key not in NOTES:
        return done_note(request)
    text = NOTES[key]
    fmt = formatter(request)
    count, total = request.query.get("count", ""), request.query.get("sum", "")
    if key == "donated" and count.isdigit() and total.isdigit():
        text = f"{fmt.count(count, 'remaining balance', 'remaining balances')} donated, {fmt.money(int(total))} in all."
    elif key == "erased" and count.isdigit():
        text = f"Personal data of {fmt.count(count, 'customer', 'customers')} erased (IBAN, holder, e-mail)."
    return text


def _tomorrow(request: web.Request) -> str:
    """The default execution date: tomorrow in the event's time zone."""
    return (datetime.now(zone(viewer(request).time_zone)).date() + timedelta(days=1)).isoformat()


async def payouts_page(request: web.Request) -> web.Response:
    """GET /admin/payouts"""
    summary = await call_value(request, "admin_payouts", token(request)) or {}
    return render(request, "admin/payouts.html", {
        "summary": summary, "waiting_labels": WAITING, "note": _note(request), "tomorrow": _tomorrow(request),
    })


@page_of(payouts_page)
async def run_create(request: web.Request) -> web.StreamResponse:
    """POST /admin/payouts (``max_count``, ``max_sum``, ``execution_date``): 303 to the new run's page."""
    form = await read_form(request)
    max_count = form.whole("max_count", required=True, minimum=INTEGER_MIN, maximum=INTEGER_MAX)
    max_sum = form.money("max_sum", required=True)
    execution_date = _date(form.text("execution_date", required=True) or "")
    created = await call_value(request, "admin_payout_run_create", token(request), max_count, max_sum,
                               execution_date)
    raise see_other(request, _page(int(created)), done="created")


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise Problem("validation", "Please enter a date like 2025-07-21.", {"field": "execution_date"}) from None


@page_of(payouts_page)
async def donate_remaining(request: web.Request) -> web.StreamResponse:
    """POST /admin/payouts/donate-remaining (``reason``; ``confirm=yes``): without the confirmation a page that
    asks for it; with it every remaining balance is donated."""
    form = await read_form(request)
    reason = form.text("reason", required=True)
    if form.text("confirm") != "yes":
        if not viewer(request).may("finance"):  # refused before asking; the api function checks it again
            raise Problem("admin-forbidden", "donating remaining balances needs the privilege finance")
        summary = await call_value(request, "admin_payouts", token(request)) or {}
        remaining = summary.get("remaining") or {}
        fmt = formatter(request)
        return render(request, "admin/confirm.html", {
            "title": "Donate all remaining balances",
            "question": f"Donate the remaining balances of {fmt.count(remaining.get('count'), 'tag', 'tags')}, "
                        f"{fmt.money(remaining.get('sum') or 0)} in all?",
            "consequence": "Every balance above 0 that no payout is coming for (in no open run, not eligible, nothing "
                           "unresolved; money that reached a tag after its run was done included) is booked as a "
                           "donation; those customers get no transfer. This cannot be undone.",
            "facts": [("Payout deadline", fmt.time(summary.get("deadline")) or "–"), ("Reason", reason)],
            "action": request.path, "fields": {"form": "donate", "reason": reason},
            "confirm_label": "Yes, donate them", "danger": True, "cancel": "/payouts",
        })
    result = await call_value(request, "admin_donate_remaining", token(request), reason) or {}
    raise see_other(request, "/payouts", done="donated", count=result.get("count"), sum=result.get("sum"))


@page_of(payouts_page)
async def erase_personal_data(request: web.Request) -> web.StreamResponse:
    """POST /admin/payouts/erase-personal-data (``confirm=yes``): without the confirmation a page that asks for
    it; with it IBAN, holder and e-mail of customers paid out longer ago than the retention time are erased."""
    form = await read_form(request)
    if form.text("confirm") != "yes":
        if not viewer(request).may("users"):  # refused before asking; the api function checks it again
            raise Problem("admin-forbidden", "erasing personal data needs the privilege users")
        return render(request, "admin/confirm.html", {
            "title": "Erase personal data of payouts",
            "question": "Erase IBAN, account holder and e-mail of every customer whose payout run is done and "
                        "older than the event's retention time?",
            "consequence": "The amounts, runs and bookings stay; the personal data is gone for good. This cannot "
                           "be undone.",
            "facts": [], "action": request.path, "fields": {"form": "erase"},
            "confirm_label": "Yes, erase it", "danger": True, "cancel": "/payouts",
        })
    count = await call_value(request, "erase_personal_data", token(request))
    raise see_other(request, "/payouts", done="erased", count=int(count or 0))


# ----------------------------------------------------------------------------- one run


async def run_page(request: web.Request) -> web.Response:
    """GET /admin/payouts/{id}"""
    document = await call_value(request, "admin_payout_run", token(request), run_id(request)) or {}
    return render(request, "admin/payout_run.html", {
        "document": document, "run": document.get("run") or {}, "lines": document.get("lines") or [],
        "debtor": document.get("debtor") or {}, "note": _note(request), "id": run_id(request),
    })


@page_of(run_page)
async def run_revoke(request: web.Request) -> web.StreamResponse:
    """POST /admin/payouts/{id}/revoke (``reason``)"""
    form = await read_form(request)
    number = run_id(request)
    await call_value(request, "admin_payout_run_revoke", token(request), number, form.text("reason", required=True))
    raise see_other(request, _page(number), done="revoked")


@page_of(run_page)
async def run_done(request: web.Request) -> web.StreamResponse:
    """POST /admin/payouts/{id}/done (``confirm=yes``): without the confirmation a page that asks for it; with it
    the run is booked as paid and its tags are closed."""
    form = await read_form(request)
    number = run_id(request)
    if form.text("confirm") != "yes":
        if not viewer(request).may("finance"):  # refused before asking; the api function checks it again
            raise Problem("admin-forbidden", "marking a payout run done needs the privilege finance")
        document = await call_value(request, "admin_payout_run", token(request), number) or {}
        run = document.get("run") or {}
        if run.get("state") != "open":
            raise Problem("payout-run-closed", f"payout run {number} is {run.get('state')}", {"field": ""})
        fmt = formatter(request)
        return render(request, "admin/confirm.html", {
            "title": f"Mark payout run {number} done",
            "question": f"Has the bank executed the transfers of payout run {number}?",
            "consequence": "Marking it done books the transfers, fees and donations of its lines and closes their "
                           "tags for spending. Do this only after the bank executed the SEPA file. This cannot be "
                           "undone.",
            "facts": [("Execution date", run.get("execution_date") or "–"),
                      ("Lines", fmt.number(run.get("count") or 0)),
                      ("Transfers", fmt.money(run.get("transfers") or 0)),
                      ("Fees", fmt.money(run.get("fees") or 0)),
                      ("Donations", fmt.money(run.get("donations") or 0))],
            "action": request.path, "fields": {"form": "done"},
            "confirm_label": "Yes, it is paid: mark it done", "danger": True, "cancel": _page(number),
        })
    await call_value(request, "admin_payout_run_done", token(request), number)
    raise see_other(request, _page(number), done="paid")


async def _export(request: web.Request) -> sepa.PayoutRun:
    """The run's document from ``api.admin_payout_export`` (audited as an export)."""
    document = await call_value(request, "admin_payout_export", token(request), run_id(request)) or {}
    return sepa.run_from_document(document, viewer(request).event_name or "")


def _attachment(run: sepa.PayoutRun, extension: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{sepa.file_stem(run)}.{extension}"'}


async def sepa_download(request: web.Request) -> web.StreamResponse:
    """GET /admin/payouts/{id}/sepa.xml: the SEPA credit transfer (pain.001.001.03), validated; a run that cannot
    be written as a valid file is a 409 page that says why."""
    run = await _export(request)
    try:
        body = await asyncio.get_running_loop().run_in_executor(None, sepa.sepa_xml, run)
    except sepa.SepaError as err:
        raise web.HTTPConflict(text=f"No SEPA file for payout run {run.id}: {err}.") from None
    return web.Response(body=body, content_type="application/xml", charset="utf-8",
                        headers=_attachment(run, "xml"))


async def csv_download(request: web.Request) -> web.StreamResponse:
    """GET /admin/payouts/{id}/payouts.csv: every line of the run (donations too)."""
    run = await _export(request)
    header, rows = sepa.csv_table(run)
    return web.Response(text=csv_text(header, rows), content_type="text/csv", charset="utf-8",
                        headers=_attachment(run, "csv"))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/payouts", payouts_page, name="payouts")
    app.router.add_post("/payouts", run_create)
    app.router.add_post("/payouts/donate-remaining", donate_remaining)
    app.router.add_post("/payouts/erase-personal-data", erase_personal_data)
    app.router.add_get(r"/payouts/{id:\d+}", run_page, name="payout_run")
    app.router.add_get(r"/payouts/{id:\d+}/sepa.xml", sepa_download)
    app.router.add_get(r"/payouts/{id:\d+}/payouts.csv", csv_download)
    app.router.add_post(r"/payouts/{id:\d+}/revoke", run_revoke)
    app.router.add_post(r"/payouts/{id:\d+}/done", run_done)
