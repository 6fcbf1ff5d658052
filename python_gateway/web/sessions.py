"""Sessions: the raw session token lives only in an HttpOnly, SameSite=Strict cookie; the database keeps its hash.

Over https (FESTPAY_PUBLIC_URL) the cookie is ``__Host-<name>``, ``Secure``, ``Path=/``; over plain http it is
``<name>`` with ``Path=<prefix>/``.  Every request to a page that is not :func:`public` asks the site's whoami
function once for the viewer (it raises the unauthenticated problem for a missing, expired or revoked session, and
the error middleware answers with the sign-in page).
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web

from ..gateway.problems import Handler, Problem
from .database import call_row
from .site import SITE_KEY, VIEWER, SiteConfig, Viewer

LOGIN_CSRF_COOKIE = "festpay_login_csrf"

_H = TypeVar("_H", bound=Callable[..., Awaitable[web.StreamResponse]])


def public(handler: _H) -> _H:
    """Marks a handler that needs no session (the sign-in page)."""
    handler.__festpay_public__ = True  # type: ignore[attr-defined]
    return handler


def is_public(request: web.Request) -> bool:
    """Static files, the sign-in page and URLs that match no page (404/405) need no session."""
    if request.match_info.http_exception is not None:
        return True
    route = request.match_info.route
    if isinstance(route.resource, web.StaticResource):
        return True
    return bool(getattr(request.match_info.handler, "__festpay_public__", False))


def cookie_name(site: SiteConfig, name: str | None = None) -> str:
    base = name or site.cookie_name
    return f"__Host-{base}" if site.https else base


def cookie_path(site: SiteConfig) -> str:
    return "/" if site.https else site.path("/")


def set_cookie(response: web.StreamResponse, site: SiteConfig, value: str, name: str | None = None) -> None:
    """A session-lifetime cookie (gone when the browser closes; the database ends the session earlier)."""
    response.set_cookie(cookie_name(site, name), value, path=cookie_path(site), httponly=True, samesite="Strict",
                        secure=site.https or None)


def clear_cookie(response: web.StreamResponse, site: SiteConfig, name: str | None = None) -> None:
    response.del_cookie(cookie_name(site, name), path=cookie_path(site), secure=site.https or None,
                        httponly=True, samesite="Strict")


def session_token(request: web.Request) -> str | None:
    token = request.cookies.get(cookie_name(request.config_dict[SITE_KEY]))
    return token if token and token.isascii() and len(token) <= 200 else None


def viewer(request: web.Request) -> Viewer:
    """The signed-in viewer of a page that is not public."""
    return request[VIEWER]


def token(request: web.Request) -> str:
    """The raw session token, the first argument of every admin api function."""
    return request[VIEWER].token


def login_csrf(request: web.Request) -> str:
    """The sign-in form's CSRF value (double-submit: a cookie and the same value in the form)."""
    current = request.cookies.get(cookie_name(request.config_dict[SITE_KEY], LOGIN_CSRF_COOKIE))
    return current if current and current.isascii() and len(current) <= 100 else secrets.token_urlsafe(24)


@web.middleware
async def session_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Loads the viewer (one whoami call) for every page that is not public."""
    if is_public(request):
        return await handler(request)
    site = request.config_dict[SITE_KEY]
    raw = session_token(request)
    if raw is None:
        raise Problem(site.unauthenticated, "not signed in")
    row = await call_row(request, site.whoami, raw)
    if row is None:
        raise Problem(site.unauthenticated, "not signed in")
    request[VIEWER] = (site.viewer_from_row or Viewer.from_row)(raw, row)
    return await handler(request)
