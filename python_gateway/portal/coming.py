"""Payout: ``/portal/payout`` says the feature is coming and does nothing else; its text for online
top-up is shown by :mod:`.topup` when the gateway has no payment provider."""

from __future__ import annotations

from aiohttp import web

from .common import render
from .i18n import N_

FEATURES = {
    "topup": (N_("Top up online"),
              N_("Topping up from your phone is coming soon. Until then, top up at any top-up point on the site.")),
    "payout": (N_("Pay out my balance"),
               N_("Asking for your leftover balance by bank transfer is coming soon. Until then, ask at a top-up "
                  "point for a cash refund.")),
}


def _page(feature: str):  # noqa: ANN202 (a handler)
    async def page(request: web.Request) -> web.Response:
        title, text = FEATURES[feature]
        return render(request, "portal/coming.html", {"title": title, "text": text})
    page.__name__ = f"{feature}_page"
    return page


def add_routes(app: web.Application) -> None:
    app.router.add_get("/payout", _page("payout"), name="payout")
