"""Sign in, sign out, change the own password: ``/admin/login``, ``/admin/logout``, ``/admin/password``.

Sign-in (form fields ``username``, ``password``) is ``api.admin_sign_in``: it answers ``ok`` with a new session
token, or ``refused`` (wrong user, wrong password, locked or disabled look the same).  The sign-in form is guarded
by a double-submit CSRF cookie, as there is no session yet.
"""

from __future__ import annotations

import re

from aiohttp import web

from ..web.sessions import LOGIN_CSRF_COOKIE, clear_cookie, login_csrf, set_cookie
from ..web.site import SITE_KEY
from .common import call_row, call_value, done_note, field_error, public, read_form, render, see_other, token

REFUSED = "Unknown user name or wrong password (or the account is locked for a while)."
_NEXT = re.compile(r"/admin/[A-Za-z0-9/_.?=&%+-]*")


def _safe_next(value: str | None) -> str | None:
    """Where to go after signing in: a path of the admin site only (never another host)."""
    if value and _NEXT.fullmatch(value) and not value.startswith("//") and "/.." not in value:
        return value
    return None


def _login_page(request: web.Request, *, error: str | None = None, username: str = "",
                status: int = 200) -> web.Response:
    csrf = login_csrf(request)
    response = render(request, "admin/login.html", {
        "csrf_token": csrf, "error": error, "username": username,
        "next": _safe_next(request.query.get("next")) or "", "note": done_note(request),
    }, status=status)
    set_cookie(response, request.config_dict[SITE_KEY], csrf, LOGIN_CSRF_COOKIE)
    return response


@public
async def login_page(request: web.Request) -> web.Response:
    """GET /admin/login"""
    return _login_page(request)


@public
async def login(request: web.Request) -> web.StreamResponse:
    """POST /admin/login: sign in; 303 to /admin/ (or the page asked for) with the new session cookie."""
    form = await read_form(request)
    username = (form.text("username") or "")[:200]
    client = f"{request.remote or '?'} {request.headers.get('User-Agent', '')}"[:200]
    row = await call_row(request, "admin_sign_in", username, form.secret("password"), client)
    if row is None or row["outcome"] != "ok":
        return _login_page(request, error=REFUSED, username=username, status=401)
    site = request.config_dict[SITE_KEY]
    redirect = web.HTTPSeeOther(_safe_next(form.text("next")) or site.path("/"))
    set_cookie(redirect, site, row["token"])
    clear_cookie(redirect, site, LOGIN_CSRF_COOKIE)
    raise redirect


async def logout_page(request: web.Request) -> web.Response:
    """GET /admin/logout: a button that signs out (signing out is a POST)."""
    return render(request, "admin/logout.html")


async def logout(request: web.Request) -> web.StreamResponse:
    """POST /admin/logout: the session is revoked; 303 to the sign-in page."""
    await call_value(request, "admin_sign_out", token(request))
    redirect = see_other(request, "/login", done="signed-out")
    clear_cookie(redirect, request.config_dict[SITE_KEY])
    raise redirect


async def password_page(request: web.Request) -> web.Response:
    """GET /admin/password"""
    return render(request, "admin/password.html")


async def change_password(request: web.Request) -> web.StreamResponse:
    """POST /admin/password (``password``, ``new_password``, ``new_password_repeat``): every session of the user is
    revoked, this one too; 303 to the sign-in page."""
    form = await read_form(request)
    if form.secret("new_password") != form.secret("new_password_repeat"):
        raise field_error("new_password_repeat", "The two new passwords differ.")
    await call_value(request, "admin_change_password", token(request), form.secret("password"),
                     form.secret("new_password"))
    redirect = see_other(request, "/login", done="password")
    clear_cookie(redirect, request.config_dict[SITE_KEY])
    raise redirect


def add_routes(app: web.Application) -> None:
    app.router.add_get("/login", login_page, name="login")
    app.router.add_post("/login", login)
    app.router.add_get("/logout", logout_page, name="logout")
    app.router.add_post("/logout", logout)
    app.router.add_get("/password", password_page, name="password")
    app.router.add_post("/password", change_password)
