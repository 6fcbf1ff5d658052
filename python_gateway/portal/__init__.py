"""The customer portal: an aiohttp sub-application mounted at ``/portal/`` (one module per page group), on the web
plumbing the admin site uses (:mod:`python_gateway.web`: sessions, CSRF, headers, templates, error pages).

A visitor signs in with the UID and PIN of a wristband (``api.portal_sign_in``; the admin site's tag import sets the
PINs) and sees that tag's data only: every ``api.portal_*`` function takes the session token first and answers for
the session's tag.  Pages in German and English (:mod:`.i18n`).

URL map (a contract): ``/portal/login``, ``/portal/logout`` (POST) (:mod:`.auth`); ``/portal/`` balance,
``/portal/history``, ``/portal/receipts/{id}`` (:mod:`.account`); ``/portal/block`` (:mod:`.wristband`);
``/portal/privacy`` and ``/portal/privacy?format=json`` (:mod:`.privacy`); ``/portal/topup`` and ``/portal/topup/{reference}``
(:mod:`.topup`; "coming" without a payment provider, :mod:`.coming`), ``/portal/payout`` (:mod:`.payout`);
``/portal/language/{de|en}`` (:mod:`.i18n` switch, :mod:`.auth`).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..web import SiteConfig, Viewer, create_site_app
from . import account, auth, i18n, payout, privacy, topup, wristband

PORTAL_PREFIX = "/portal"


def portal_viewer(token: str, row: dict[str, Any]) -> Viewer:
    """The viewer of an ``api.portal_whoami`` row: the tag (its UID as the name) and its status."""
    return Viewer(token=token, user_id=0, username=row["uid"], role="customer", privileges=frozenset(),
                  csrf_token=row["csrf_token"], currency=row.get("currency") or "EUR",
                  time_zone=row.get("time_zone") or "UTC", status=row.get("status"))


def create_portal_app(web_database_url: str, *, public_url: str | None = None, pool_timeout_s: float = 10.0,
                      login_attempts: int = 20, login_window_s: float = 300.0) -> web.Application:
    """The customer portal; ``web_database_url`` logs in as festpay_web.  Mount it at :data:`PORTAL_PREFIX`.

    ``login_attempts`` failed sign-in attempts per client address within ``login_window_s`` seconds, then 429
    (successful ones do not count)."""
    site = SiteConfig(
        prefix=PORTAL_PREFIX,
        cookie_name="festpay_portal",
        whoami="portal_whoami",
        unauthenticated="portal-unauthenticated",
        public_url=public_url,
        error_template="portal/error.html",
        nav_template="portal/_nav.html",
        title="Festpay",
        viewer_from_row=portal_viewer,
        page_context=i18n.page_context,
    )
    app = create_site_app(site, web_database_url, pool_max_size=8, pool_timeout_s=pool_timeout_s)
    auth.install(app, login_attempts, login_window_s)
    for module in (auth, account, wristband, privacy, topup, payout):
        module.add_routes(app)
    i18n.catalogues()  # the .po files compile at start: a broken catalogue stops the start, not a page
    return app


__all__ = ["PORTAL_PREFIX", "create_portal_app"]
