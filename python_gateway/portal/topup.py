"""Online top-up: ``/portal/topup``, when the gateway has a payment provider (else "coming").

The form states the limits beforehand (``api.portal_topup_limits``: the smallest and largest top-up, the online
top-up fee, and how much the balance allows now).  ``POST /portal/topup`` (amount): ``api.portal_topup_start`` (the
limits are checked there: a refused amount shows the form again, the refusal next to the field in the visitor's
language with the amounts as money, :data:`REFUSALS`), ``api.portal_topup_pending`` (Open -> ExternalPending, the
relay's poll enqueued) just before the provider is asked for a checkout, ``api.portal_topup_checkout`` records its
id, and the browser is sent (303) to the hosted checkout page.  When the provider cannot create the checkout nobody
can pay, so ``api.portal_topup_cancel`` aborts it.
The provider sends the browser back to ``/portal/topup/{reference}``, which shows "pending" until the webhook or the
relay's poll settles it (``api.portal_topup_status``; also while it is ExternalUnknown): never "failed" while the
provider may still take the money.  A payment the provider took that could not be booked (the wristband blocked
meanwhile, the highest balance reached, the top-up closed already) shows as being refunded, with the reason, and as
refunded once the provider paid it back.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from ..gateway.problems import Problem
from ..gateway.provider_webhook import PROVIDER_KEY
from ..provider.interface import ProviderError
from ..web.forms import Form, field_error
from ..web.security import CONTENT_SECURITY_POLICY
from ..web.site import SITE_KEY
from ..web.templating import formatter
from .coming import FEATURES
from .common import call_row, call_value, field_refusal, refusing, render, token
from .i18n import N_, gettext_of

log = logging.getLogger("festpay.portal.topup")

_REFERENCE = re.compile(r"ft_[0-9a-f]{32}")

#: The form parser's refusals of the amount, said to the visitor (``%(example)s``: 12.50 as the language writes it).
AMOUNT_MISSING = N_("Please enter the amount to top up.")
AMOUNT_FORMAT = N_("Please enter an amount like %(example)s.")
#: The database's refusals of a top-up (its problem slugs), said to the visitor next to the amount; amounts as money
#: (``%(min)s``, ``%(max)s``: the smallest and largest top-up, ``%(max_balance)s``: the highest balance,
#: ``%(most)s``: the largest top-up the balance allows now).
REFUSALS = {
    "validation": N_("Please enter an amount between %(min)s and %(max)s."),
    "topup-out-of-bounds": N_("Please enter an amount between %(min)s and %(max)s."),
    "max-balance-exceeded": N_("With this amount your balance would be above the highest balance allowed, "
                               "%(max_balance)s: you can top up at most %(most)s now."),
    "tag-blocked": N_("This wristband is blocked, so it cannot be topped up."),
    "payout-locked": N_("Your payout is in a payout run, so you cannot top up now."),
}
#: max-balance-exceeded when the balance allows no top-up at all.
AT_MAX_BALANCE = N_("Your balance is too close to the highest balance allowed, %(max_balance)s: you cannot top up "
                    "now.")


def _provider(request: web.Request):  # noqa: ANN202
    return request.config_dict.get(PROVIDER_KEY)


def _coming(request: web.Request) -> web.Response:
    title, text = FEATURES["topup"]
    return render(request, "portal/coming.html", {"title": title, "text": text})


async def _limits(request: web.Request) -> dict[str, Any]:
    return await call_row(request, "portal_topup_limits", token(request)) or {}


async def _form_page(request: web.Request, provider_down: bool = False, status: int = 200) -> web.Response:
    """The amount form with the limits. Its answer redirects the browser to the provider's checkout page, so the
    page's CSP lets a form lead there (form-action 'self' alone makes browsers refuse that redirect)."""
    response = render(request, "portal/topup.html", {"form_amount": "", "provider_down": provider_down,
                                                     "limits": await _limits(request)}, status=status)
    url = urlsplit(_provider(request).url)
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY.replace(
        "form-action 'self'", f"form-action 'self' {url.scheme}://{url.netloc}")
    return response


async def topup_page(request: web.Request) -> web.Response:
    """GET /portal/topup: the amount form."""
    if _provider(request) is None:
        return _coming(request)
    return await _form_page(request)


def _amount(request: web.Request, form: Form) -> int:
    """The typed amount in cents; a refusal in the visitor's words (what it may be is the database's rule)."""
    _ = gettext_of(request)
    if form.text("amount") is None:
        raise field_error("amount", _(AMOUNT_MISSING))
    try:
        amount = form.money("amount", required=True)
    except Problem:
        amount = None
    if amount is None:
        raise field_error("amount", _(AMOUNT_FORMAT) % {"example": formatter(request).amount(1250)})
    return amount


async def _refusal(request: web.Request, problem: Problem) -> Problem:
    """The database's refusal of a top-up in the visitor's language, next to the amount, with the limits as money."""
    text = REFUSALS.get(problem.slug)
    if text is None:
        return problem
    limits = await _limits(request)
    if problem.slug == "max-balance-exceeded" and (limits.get("most") or 0) < (limits.get("min_topup") or 0):
        text = AT_MAX_BALANCE
    money = formatter(request).money
    return field_refusal(problem, "amount", gettext_of(request)(text) % {
        "min": money(limits.get("min_topup")), "max": money(limits.get("max_topup")),
        "max_balance": money(limits.get("max_balance")), "most": money(limits.get("most")),
    })


async def topup(request: web.Request) -> web.StreamResponse:
    """POST /portal/topup: start the top-up and send the browser to the provider's hosted checkout."""
    provider = _provider(request)
    if provider is None:
        raise web.HTTPNotFound()
    amount = _amount(request, Form(await request.post()))
    started = await refusing(request, call_row(request, "portal_topup_start", token(request), amount),
                             lambda problem: _refusal(request, problem))
    reference = started["reference"]
    await call_row(request, "portal_topup_pending", token(request), reference)
    site = request.config_dict[SITE_KEY]
    origin = site.public_origin or f"{request.scheme}://{request.host}"
    return_url = origin + site.path(f"/topup/{reference}")
    try:
        checkout = await provider.create_checkout(reference, started["amount"], started["currency"], return_url)
    except ProviderError as err:
        log.warning("online top-up %s: the provider created no checkout: %s", reference, err)
        await call_row(request, "portal_topup_cancel", token(request), reference)
        return await _form_page(request, provider_down=True, status=503)
    await call_value(request, "portal_topup_checkout", token(request), reference, checkout.id)
    raise web.HTTPSeeOther(checkout.url)


async def topup_status(request: web.Request) -> web.Response:
    """GET /portal/topup/{reference}: pending (refreshing), paid, declined, refunding or refunded; another tag's
    top-up is a 404."""
    reference = request.match_info["reference"]
    if not _REFERENCE.fullmatch(reference):
        raise web.HTTPNotFound()
    row = await call_row(request, "portal_topup_status", token(request), reference)
    return render(request, "portal/topup_status.html", {"topup": row})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/topup", topup_page, name="topup")
    app.router.add_post("/topup", topup)
    app.router.add_get("/topup/{reference}", topup_status, name="topup_status")
