"""Web plumbing shared by the admin site and the customer portal, written once.

- :mod:`.app`: a site as an aiohttp sub-application (pool as ``festpay_web``, middlewares, templates, static).
- :mod:`.database`: :func:`~.database.call`, the one way to the database: ``SELECT * FROM api.fn(%s, ...)``.
- :mod:`.sessions`: the session cookie and the viewer; :mod:`.csrf`: Origin and CSRF token checks of every POST.
- :mod:`.security`: security headers; :mod:`.errors`: error pages and forms shown again with their messages.
- :mod:`.templating`: aiohttp-jinja2 pages; :mod:`.formatting`: money and times (Babel); :mod:`.forms`: form fields.
- :mod:`.live`: one summary query per interval broadcast to every connected viewer (server-sent events).
"""

from .app import create_site_app
from .site import SiteConfig, Viewer

__all__ = ["SiteConfig", "Viewer", "create_site_app"]
