"""The "coming soon" text of a portal feature the gateway cannot offer: online top-up without a payment provider
(shown by :mod:`.topup` on ``portal/coming.html``)."""

from __future__ import annotations

from .i18n import N_

FEATURES = {
    "topup": (N_("Top up online"),
              N_("Topping up from your phone is coming soon. Until then, top up at any top-up point on the site.")),
}
