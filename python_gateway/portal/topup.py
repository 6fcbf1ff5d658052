"""Online top-up: ``/portal/topup``, when the gateway has a payment provider (else "coming").

``POST /portal/topup`` (amount): ``api.portal_topup_start`` (limits checked: a refused amount shows the form again),
``api.portal_topup_pending`` (Open -> ExternalPending, the relay's poll enqueued) just before the provider is asked for
a checkout, ``api.portal_topup_checkout`` records its id, and the browser is sent (303) to the hosted checkout page.
When the provider cannot create the checkout nobody can pay, so ``api.portal_topup_cancel`` aborts it.
The provider sends the browser back to ``/portal/topup/{reference}``, which shows "pending" until the webhook or the
relay's poll settles it (``api.portal_topup_status``; also while it is ExternalUnknown): never "failed" while the
provider may still take the money.  A payment the provider took that could not be booked (the wristband blocked
meanwhile, the highest balance reached, the top-up closed already) shows as being refunded, with the reason, and as
refunded once the provider paid it back.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

from aiohttp import web

from ..gateway.problems import Problem
from ..gateway.provider_webhook import PROVIDER_KEY
from ..provider.interface import ProviderError
from ..web.forms import Form
from ..web.security import CONTENT_SECURITY_POLICY
from ..web.site import SITE_KEY
from .coming import FEATURES
from .common import call_row, call_value, render, token

log = logging.getLogger("festpay.portal.topup")

_REFERENCE = re.compile(r"ft_[0-9a-f]{32}")


def _provider(request: web.Request):  # noqa: ANN202
    return request.config_dict.get(PROVIDER_KEY)


def _coming(request: web.Request) -> web.Response:
    title, text = FEATURES["topup"]
    return render(request, "portal/coming.html", {"title": title, "text": text})


def _form_page(request: web.Request, provider_down: bool = False, status: int = 200) -> web.Response:
    """The amount form. Its answer redirects the browser to the provider's checkout page, so the page's CSP lets a
    form lead there (form-action 'self' alone makes browsers refuse that redirect)."""
    response = render(request, "portal/topup.html", {"form_amount": "", "provider_down": provider_down}, status=status)
    url = urlsplit(_provider(request).url)
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY.replace(
        "form-action 'self'", f"form-action 'self' {url.scheme}://{url.netloc}")
    return response


async def topup_page(request: web.Request) -> web.Response:
    """GET /portal/topup: the amount form."""
    if _provider(request) is None:
        return _coming(request)
    return _form_page(request)


async def topup(request: web.Request) -> web.StreamResponse:
    """POST /portal/topup: start the top-up and send the browser to the provider's hosted checkout."""
    provider = _provider(request)
    if provider is None:
        raise web.HTTPNotFound()
    form = Form(await request.post())
    amount = form.money("amount", required=True)
    if amount is None or amount <= 0:
        raise Problem("validation", "Please enter an amount above 0.", {"field": "amount"})
    started = await call_row(request, "portal_topup_start", token(request), amount)
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
        return _form_page(request, provider_down=True, status=503)
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
