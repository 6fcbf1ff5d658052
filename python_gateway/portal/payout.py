"""Pay out my balance: ``/portal/payout`` (``api.portal_payout``, ``api.portal_payout_set``).

GET shows the balance, the payout fee, where the payout stands (none, requested, in a run, done, with the run's
execution date; a run that transfers nothing is a donation), why it waits (in words), the payout deadline (or that it
has passed, and what that means) and the form (``iban``, ``holder``, ``email``, ``donate`` none|part|all,
``donation``) filled with the saved data; once the tag is in a payout run the data is shown read-only.

POST reads the IBAN with schwifty first (a refusal says why next to the field: check digits, length for the
country, unknown country), then saves through ``api.portal_payout_set``, which is the authority (the event's
countries, the holder, the e-mail, the donation); its field refusals are shown next to their field, in the
visitor's language.  POST -> redirect -> GET with a "saved" note.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from aiohttp import web
from babel import Locale, dates

from ..gateway.problems import Problem
from ..sepa import IbanError, check_iban, compact_iban
from ..web.forms import Form, field_error, read_form
from ..web.templating import formatter, request_locale
from .common import FILL_IN, call_value, field_refusal, refusing, render, see_other, token
from .i18n import N_, gettext_of

DONATE_CHOICES = ("none", "part", "all")
MAX_HOLDER = 70
MAX_EMAIL = 254

#: Why a payout waits (the reasons of ``api.portal_payout``), said to the visitor; "in-run" and "done" are said by
#: the status.
REASONS = {
    "no-bank-data": N_("Your bank data is missing: enter your IBAN, the account holder and your e-mail below (or "
                       "donate everything)."),
    "blocked": N_("Support has put your payout on hold. Please ask support."),
    "unresolved": N_("A payment of yours is still being settled; your payout waits until it is."),
    "overdraft": N_("Your wristband is overdrawn. Please ask support."),
    "below-fee": N_("Your balance is not above the payout fee. You can donate it instead."),
    "empty": N_("There is no balance to pay out."),
}
#: below-fee when a part is donated: what is left after the donation is not above the fee.
BELOW_FEE_AFTER_DONATION = N_("What is left after your donation is not above the payout fee of %(fee)s: donate "
                              "everything or a smaller part.")

#: Where the payout stands, said to the visitor (``%(date)s``: the run's execution date).
STATUS = {
    "none": N_("You have not asked for a payout yet."),
    "requested": N_("Requested: your payout is in the next payout run."),
    "in-run": N_("In a payout run: the bank transfer is planned for %(date)s."),
    "done": N_("Done: the bank transfer was made in the payout run of %(date)s."),
}
#: Where the payout stands when its run transfers nothing (everything donated).
STATUS_DONATED = {
    "in-run": N_("In a payout run: your balance is donated when the run is done."),
    "done": N_("Done: your balance was donated. Thank you!"),
}

SAVED = N_("Saved. Your payout is in the next payout run when your balance allows it.")
LOCKED = N_("Your bank data is locked because your payout is in a payout run.")

#: schwifty's reasons for refusing an IBAN, said to the visitor.
IBAN_REASONS = {
    "characters": N_("An IBAN holds only letters and digits (spaces are fine)."),
    "country": N_("An IBAN starts with a country code; %(code)s is none."),
    "length": N_("An IBAN of %(country)s has %(expected)s characters; this one has %(actual)s."),
    "structure": N_("This is not the form of an IBAN of %(country)s. Please check it."),
    "checksum": N_("The check digits of this IBAN do not match: please check it for a typo."),
}
IBAN_COUNTRY = N_("Payouts go only to accounts in these countries: %(countries)s.")
IBAN_REFUSED = N_("This IBAN is not accepted. Please check it.")
#: The database's field refusals, said to the visitor.
FIELD_MESSAGES = {
    "holder": N_("Please enter the account holder's name (at most 70 characters)."),
    "email": N_("Please enter your e-mail address, e.g. name@example.org."),
    "donate": N_("Please choose how much to donate."),
    "donation": N_("Please enter the amount to donate, e.g. 5.00."),
}


def _country_name(request: web.Request, code: str) -> str:
    """The country of an ISO code in the page's language (the code itself when Babel knows none)."""
    return Locale.parse(request_locale(request)).territories.get(code, code)


def _countries(request: web.Request, codes: list[str]) -> str:
    return ", ".join(_country_name(request, c) for c in codes)


def iban_message(request: web.Request, err: IbanError) -> str:
    """schwifty's reason for refusing an IBAN, in the visitor's language."""
    _ = gettext_of(request)
    return _(IBAN_REASONS[err.reason]) % {
        "code": err.country or "?", "country": _country_name(request, err.country),
        "expected": err.expected, "actual": err.actual,
    }


async def payout_page(request: web.Request) -> web.Response:
    """GET /portal/payout[?done=saved]"""
    payout = await call_value(request, "portal_payout", token(request)) or {}
    _ = gettext_of(request)
    run = payout.get("run") or {}
    status = payout.get("status") or "none"
    bank = payout.get("bank") or {}
    estimate = payout.get("estimate") or {}
    texts = STATUS_DONATED if run and run.get("amount") == 0 and status in STATUS_DONATED else STATUS
    return render(request, "portal/payout.html", {
        "payout": payout, "bank": bank, "run": run, "status": status,
        "status_text": _(texts.get(status, STATUS["none"])) % {"date": _date(request, run.get("execution_date"))},
        "reasons": [_reason(request, r, payout, estimate) for r in payout.get("reasons") or () if r in REASONS],
        "locked_text": _(LOCKED) if payout.get("locked") and status != "done" else None,
        "country_names": _countries(request, list(payout.get("countries") or ())),
        "note": _(SAVED) if request.query.get("done") == "saved" else None,
        "deadline_passed": bool(payout.get("deadline_passed")),
    })


def _reason(request: web.Request, reason: str, payout: dict[str, Any], estimate: dict[str, Any]) -> str:
    """Why the payout waits, in the visitor's language; below-fee says so when the donation leaves too little."""
    _ = gettext_of(request)
    if reason == "below-fee" and (estimate.get("donation") or 0) > 0:
        return _(BELOW_FEE_AFTER_DONATION) % {"fee": formatter(request).money(payout.get("fee"))}
    return _(REASONS[reason])


def _date(request: web.Request, value: Any) -> str:
    """A date (``YYYY-MM-DD``) as the page's language writes it: ``21. Juli 2025`` / ``July 21, 2025``."""
    if not value:
        return ""
    return dates.format_date(date.fromisoformat(str(value)[:10]), "long", locale=request_locale(request))


def _parse(request: web.Request, form: Form) -> tuple[str | None, str | None, str | None, str, int | None]:
    """The form's values, each checked as far as the page can say more than the database: the IBAN with
    schwifty, the amount as money."""
    _ = gettext_of(request)
    donate = form.text("donate")
    if donate not in DONATE_CHOICES:
        raise field_error("donate", _(FIELD_MESSAGES["donate"]))
    iban_text = form.text("iban")
    if iban_text is None and donate != "all":
        raise field_error("iban", _(FILL_IN))
    iban = None
    if iban_text is not None:
        try:
            iban = check_iban(iban_text).compact
        except IbanError as err:
            raise field_error("iban", iban_message(request, err)) from None
    holder = form.text("holder")
    if holder is None and donate != "all":
        raise field_error("holder", _(FILL_IN))
    if holder is not None and len(holder) > MAX_HOLDER:
        raise field_error("holder", _(FIELD_MESSAGES["holder"]))
    email = form.text("email")
    if email is None:
        raise field_error("email", _(FILL_IN))
    if len(email) > MAX_EMAIL:
        raise field_error("email", _(FIELD_MESSAGES["email"]))
    donation = None
    if donate == "part":
        try:
            donation = form.money("donation", required=True)
        except Problem:
            donation = None
        if donation is None or donation <= 0:
            raise field_error("donation", _(FIELD_MESSAGES["donation"]))
    return iban, holder, email, donate, donation


async def _refusal(request: web.Request, problem: Problem, iban: str | None) -> Problem:
    """The database's refusal of the form in the visitor's language, next to its field."""
    _ = gettext_of(request)
    extensions = problem.extensions if isinstance(problem.extensions, dict) else {}
    field = str(extensions.get("field") or "")
    if problem.slug == "payout-locked":
        return field_refusal(problem, "", _(LOCKED))
    if problem.slug != "validation":
        return problem
    if field == "iban":
        payout = await call_value(request, "portal_payout", token(request)) or {}
        countries = list(payout.get("countries") or ())
        if iban and countries and compact_iban(iban)[:2] not in countries:
            message = _(IBAN_COUNTRY) % {"countries": _countries(request, countries)}
        else:
            message = _(IBAN_REFUSED)
        return field_refusal(problem, "iban", message)
    if field in FIELD_MESSAGES:
        return field_refusal(problem, field, _(FIELD_MESSAGES[field]))
    return problem


async def payout_save(request: web.Request) -> web.StreamResponse:
    """POST /portal/payout (``iban``, ``holder``, ``email``, ``donate``, ``donation``): 303 to the page."""
    iban, holder, email, donate, donation = _parse(request, await read_form(request))
    await refusing(request, call_value(request, "portal_payout_set", token(request), iban, holder, email, donate,
                                       donation),
                   lambda problem: _refusal(request, problem, iban))
    raise see_other(request, "/payout", done="saved")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/payout", payout_page, name="payout")
    app.router.add_post("/payout", payout_save)
