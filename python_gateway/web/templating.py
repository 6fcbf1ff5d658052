"""Pages from Jinja2 templates (aiohttp-jinja2, autoescape on, undefined names fail), and the static files.

Templates live in the project's ``templates/`` folder: ``base.html`` is the one layout every site extends.  Every
page gets: ``site`` (the SiteConfig), ``viewer`` (or None), ``fmt`` (money and time formatting for this viewer and
browser), ``csrf_token``, ``static(path)`` and ``href(path)``, and the state of a form that was refused
(``form_failed``, ``form_errors``, ``form_values``; see :mod:`.errors`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web
from markupsafe import escape

from ..config import PROJECT_ROOT
from .formatting import LOCALES, Formatter, negotiate_locale
from .sessions import login_csrf
from .site import SITE_KEY, VIEWER

TEMPLATES_DIR = PROJECT_ROOT / "templates"
STATIC_DIR = Path(__file__).resolve().parent / "static"


@dataclass
class FormState:
    """A submitted form the database (or the parser) refused: shown again with its values and messages."""

    form: str | None
    """The ``form`` field of the refused form (which of a page's forms it was)."""
    errors: dict[str, str] = field(default_factory=dict)
    """Field name -> message; ``""`` holds a message that belongs to no single field."""
    values: dict[str, str] = field(default_factory=dict)
    title: str | None = None


FORM_STATE = web.RequestKey("web_form_state", FormState)


def setup(app: web.Application) -> None:
    """The Jinja2 environment of a site sub-application, and its ``/static/`` files."""
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.policies["json.dumps_kwargs"] = {"sort_keys": False, "ensure_ascii": False}
    app.router.add_static("/static/", STATIC_DIR, name="static", append_version=False)


@lru_cache(maxsize=256)
def _version(path: str) -> str:
    try:
        return hashlib.sha256((STATIC_DIR / path).read_bytes()).hexdigest()[:12]
    except OSError:
        return "0"


#: The cookie of a page's language switch (``de``/``en``); without it the browser's Accept-Language decides.
LANG_COOKIE = "festpay_lang"


def request_locale(request: web.Request) -> str:
    """``de`` or ``en``: the language switch's cookie, else the browser's Accept-Language."""
    chosen = request.cookies.get(LANG_COOKIE)
    if chosen in LOCALES:
        return chosen
    return negotiate_locale(request.headers.get("Accept-Language"))


def formatter(request: web.Request) -> Formatter:
    viewer = request.get(VIEWER)
    locale = request_locale(request)
    if viewer is None:
        return Formatter(locale)
    return Formatter(locale, viewer.currency, viewer.time_zone)


def page_context(request: web.Request) -> dict[str, Any]:
    site = request.config_dict[SITE_KEY]
    viewer = request.get(VIEWER)
    state = request.get(FORM_STATE)

    def static(path: str) -> str:
        return f"{site.prefix}/static/{path}?v={_version(path)}"

    extra = site.page_context(request) if site.page_context else {}
    return {
        **extra,
        "site": site,
        "viewer": viewer,
        "fmt": formatter(request),
        "csrf_token": viewer.csrf_token if viewer else login_csrf(request),
        "static": static,
        "href": site.path,
        "request_path": request.path,
        "form_failed": state.form if state else None,
        "form_errors": state.errors if state else {},
        "form_values": state.values if state else {},
        "form_title": state.title if state else None,
    }


def render(request: web.Request, template: str, context: dict[str, Any] | None = None,
           status: int = 200) -> web.Response:
    """The page ``template`` with the site's context and ``context``, as text/html.

    When a refused form is no longer on the page (a queue item someone else decided meanwhile), the page is drawn
    again with the form's messages above it, so that no message is lost."""
    response = aiohttp_jinja2.render_template(template, request, {**page_context(request), **(context or {})},
                                              status=status)
    state = request.get(FORM_STATE)
    if state is not None and state.form and state.errors:
        text = response.text or ""
        name = escape(state.form)
        if f'name="form" value="{name}"' not in text and f'id="{name}-' not in text:
            request[FORM_STATE] = replace(state, form=None)
            response = aiohttp_jinja2.render_template(template, request,
                                                      {**page_context(request), **(context or {})}, status=status)
    return response
