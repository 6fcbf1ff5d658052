"""The admin site: an aiohttp sub-application mounted at ``/admin/`` (one module per page group).

Every page asks the database: a handler parses its form, calls one ``api.admin_*`` function with the session token
first (the function checks the privilege and writes the audit row), and redirects (POST -> redirect -> GET) or
renders.  The plumbing (sessions, CSRF, headers, templates, formatting, error pages) is :mod:`python_gateway.web`.

URL map (a contract): ``/admin/login``, ``/admin/logout``, ``/admin/password`` (:mod:`.auth`); ``/admin/`` and its
stream ``/admin/live`` (:mod:`.dashboard`); ``/admin/event``, ``/admin/merchants``, ``/admin/positions``,
``/admin/products``, ``/admin/terminals``, ``/admin/tags`` (:mod:`.setup`); ``/admin/customers``,
``/admin/customers/{uid}`` (:mod:`.customers`); ``/admin/transactions``, ``/admin/transactions/{id}``
(:mod:`.transactions`); ``/admin/queue`` (:mod:`.queue`); ``/admin/reports/{name}`` (:mod:`.reports`);
``/admin/fiscal`` (:mod:`.fiscal`); ``/admin/payouts``, ``/admin/payouts/{id}`` with its ``sepa.xml`` and
``payouts.csv`` (:mod:`.payouts`); ``/admin/users``, ``/admin/audit`` (:mod:`.users`).  Forms post to their page's
URL or a sub-path of it.
"""

from __future__ import annotations

from aiohttp import web

from ..web import SiteConfig, create_site_app
from . import auth, customers, dashboard, fiscal, payouts, queue, reports, setup, transactions, users

ADMIN_PREFIX = "/admin"


def create_admin_app(web_database_url: str, *, public_url: str | None = None, dashboard_interval_s: float = 5.0,
                     pool_timeout_s: float = 10.0) -> web.Application:
    """The admin site; ``web_database_url`` logs in as festpay_web.  Mount it at :data:`ADMIN_PREFIX`."""
    site = SiteConfig(
        prefix=ADMIN_PREFIX,
        cookie_name="festpay_admin",
        whoami="admin_whoami",
        unauthenticated="admin-unauthenticated",
        forbidden="admin-forbidden",
        public_url=public_url,
        error_template="admin/error.html",
        nav_template="admin/_nav.html",
        title="Festpay admin",
    )
    app = create_site_app(site, web_database_url, pool_timeout_s=pool_timeout_s)
    for module in (auth, dashboard, setup, customers, transactions, queue, reports, fiscal, payouts, users):
        module.add_routes(app)
    dashboard.install(app, dashboard_interval_s)
    fiscal.install(app, web_database_url)
    return app


__all__ = ["ADMIN_PREFIX", "create_admin_app"]
