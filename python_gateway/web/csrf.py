"""Cross-site request forgery: every POST must come from the site's own origin AND carry the form's CSRF token.

- :func:`origin_middleware` (before any database call): the ``Origin`` header must be FESTPAY_PUBLIC_URL's origin,
  or, when that is unset, the request's own ``scheme://host``.  A missing or foreign Origin is a 403.
- :func:`token_middleware` (after the session is loaded): the hidden field ``csrf_token`` must equal the session's
  CSRF token (from the whoami function); on the public sign-in form it must equal the sign-in CSRF cookie
  (double submit).  An empty field is refused before the session is even looked up.
Refused requests call no api function that changes anything.
"""

from __future__ import annotations

import hmac

from aiohttp import web

from ..gateway.problems import Handler
from .sessions import LOGIN_CSRF_COOKIE, cookie_name, is_public
from .site import SITE_KEY, VIEWER

FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class CsrfRefused(web.HTTPForbidden):
    """403: the form came from another origin, or without the right token."""

    def __init__(self, why: str):
        super().__init__(reason="Forbidden", text=why)
        self.why = why


def expected_origin(request: web.Request) -> str:
    site = request.config_dict[SITE_KEY]
    return site.public_origin or f"{request.scheme}://{request.host}".lower()


@web.middleware
async def origin_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method in SAFE_METHODS:
        return await handler(request)
    origin = (request.headers.get("Origin") or "").strip().lower()
    if not origin or origin == "null" or origin != expected_origin(request):
        raise CsrfRefused("The form was not sent from this site (Origin).")
    form = await request.post()
    if not isinstance(form.get(FIELD), str) or not form.get(FIELD):
        raise CsrfRefused("The form carries no CSRF token; reload the page and send it again.")
    return await handler(request)


@web.middleware
async def token_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method in SAFE_METHODS:
        return await handler(request)
    sent = (await request.post()).get(FIELD)
    if is_public(request):
        site = request.config_dict[SITE_KEY]
        expected = request.cookies.get(cookie_name(site, LOGIN_CSRF_COOKIE)) or ""
    else:
        expected = request[VIEWER].csrf_token
    if not expected or not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfRefused("The form's CSRF token does not match this session; reload the page and send it again.")
    return await handler(request)
