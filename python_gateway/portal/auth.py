"""Sign in and out, and the language switch: ``/portal/login``, ``/portal/logout`` (POST), ``/portal/language/{code}``.

Sign-in (form fields ``uid``, ``pin``) is ``api.portal_sign_in``: ``ok`` with a new session token, or ``refused``
(unknown tag, no PIN, wrong PIN, locked tag all look the same; five wrong PINs lock a tag for 15 minutes in SQL).
Before the database is asked, the gateway limits failed sign-in attempts per client address (:class:`AttemptLimiter`,
in memory): after ``login_attempts`` within ``login_window_s`` seconds, attempts are answered 429.  A successful
sign-in does not count, so the many visitors behind one festival Wi-Fi address do not lock each other out (an attempt
counts while the database checks it, then is taken back when it succeeds).  The sign-in form is guarded by the
double-submit CSRF cookie of the shared plumbing, as there is no session yet.
"""

from __future__ import annotations

import math
import re
import time
from collections import deque

from aiohttp import web

from ..web.forms import read_form
from ..web.sessions import LOGIN_CSRF_COOKIE, clear_cookie, cookie_path, login_csrf, set_cookie
from ..web.site import SITE_KEY
from ..web.templating import LANG_COOKIE
from ..web.formatting import LOCALES
from .common import call_row, call_value, done_note, public, render, see_other, token
from .i18n import N_, gettext_of

REFUSED = N_("Unknown wristband or wrong PIN (or too many wrong PINs: try again in 15 minutes).")
_NEXT = re.compile(r"/portal/[A-Za-z0-9/_.?=&%+-]*")


class AttemptLimiter:
    """At most ``attempts`` attempts per key (a client address) within a sliding window of ``window_s`` seconds; an
    attempt that succeeded is taken back (:meth:`forgive`), so only failed ones (and those under way) count."""

    MAX_KEYS = 100_000

    def __init__(self, attempts: int, window_s: float, clock=time.monotonic):  # noqa: ANN001
        self.attempts = attempts
        self.window_s = window_s
        self.clock = clock
        self._seen: dict[str, deque[float]] = {}

    def hit(self, key: str) -> float | None:
        """Counts one attempt; None when it is allowed, else the seconds until the next one would be."""
        now = self.clock()
        if len(self._seen) >= self.MAX_KEYS:
            self._prune(now)
        times = self._seen.setdefault(key, deque())
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if len(times) >= self.attempts:
            return max(1.0, times[0] + self.window_s - now)
        times.append(now)
        return None

    def forgive(self, key: str) -> None:
        """Takes back one counted attempt of ``key`` (one that succeeded)."""
        times = self._seen.get(key)
        if times:
            times.pop()

    def _prune(self, now: float) -> None:
        for key in [k for k, t in self._seen.items() if not t or t[-1] <= now - self.window_s]:
            del self._seen[key]


LIMITER_KEY = web.AppKey("portal_login_limiter", AttemptLimiter)


def install(app: web.Application, attempts: int, window_s: float) -> None:
    app[LIMITER_KEY] = AttemptLimiter(attempts, window_s)


def safe_next(value: str | None) -> str | None:
    """Where to go after signing in or switching the language: a path of the portal only (never another host)."""
    if value and _NEXT.fullmatch(value) and not value.startswith("//") and "/.." not in value:
        return value
    return None


def _login_page(request: web.Request, *, error: str | None = None, uid: str = "", status: int = 200,
                retry_after: float | None = None) -> web.Response:
    csrf = login_csrf(request)
    response = render(request, "portal/login.html", {
        "csrf_token": csrf, "error": error, "uid": uid, "retry_minutes": math.ceil((retry_after or 0) / 60),
        "next": safe_next(request.query.get("next")) or "", "note": done_note(request),
    }, status=status)
    set_cookie(response, request.config_dict[SITE_KEY], csrf, LOGIN_CSRF_COOKIE)
    if retry_after is not None:
        response.headers["Retry-After"] = str(math.ceil(retry_after))
    return response


@public
async def login_page(request: web.Request) -> web.Response:
    """GET /portal/login"""
    return _login_page(request)


@public
async def login(request: web.Request) -> web.StreamResponse:
    """POST /portal/login (``uid``, ``pin``): sign in; 303 to /portal/ (or the page asked for) with the session
    cookie; 401 with the form again when refused; 429 when the client address tried too often."""
    form = await read_form(request)
    uid = (form.text("uid") or "")[:60]
    limiter, address = request.app[LIMITER_KEY], request.remote or "?"
    wait = limiter.hit(address)
    if wait is not None:
        return _login_page(request, uid=uid, status=429, retry_after=wait)
    client = f"{address} {request.headers.get('User-Agent', '')}"[:200]
    row = await call_row(request, "portal_sign_in", uid, form.secret("pin")[:100], client)
    if row is None or row["outcome"] != "ok":
        return _login_page(request, error=gettext_of(request)(REFUSED), uid=uid, status=401)
    limiter.forgive(address)
    site = request.config_dict[SITE_KEY]
    redirect = web.HTTPSeeOther(safe_next(form.text("next")) or site.path("/"))
    set_cookie(redirect, site, row["token"])
    clear_cookie(redirect, site, LOGIN_CSRF_COOKIE)
    raise redirect


async def logout(request: web.Request) -> web.StreamResponse:
    """POST /portal/logout: the session is revoked; 303 to the sign-in page."""
    await call_value(request, "portal_sign_out", token(request))
    redirect = see_other(request, "/login", done="signed-out")
    clear_cookie(redirect, request.config_dict[SITE_KEY])
    raise redirect


@public
async def language(request: web.Request) -> web.StreamResponse:
    """GET /portal/language/{de|en}?next=<a portal page>: remembers the language (a cookie) and goes back."""
    code = request.match_info["code"]
    if code not in LOCALES:
        raise web.HTTPNotFound()
    site = request.config_dict[SITE_KEY]
    redirect = web.HTTPSeeOther(safe_next(request.query.get("next")) or site.path("/"))
    redirect.set_cookie(LANG_COOKIE, code, path=cookie_path(site), max_age=365 * 24 * 3600, samesite="Lax",
                        secure=site.https or None)
    raise redirect


def add_routes(app: web.Application) -> None:
    app.router.add_get("/login", login_page, name="login")
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout, name="logout")
    app.router.add_get("/language/{code}", language, name="language")
