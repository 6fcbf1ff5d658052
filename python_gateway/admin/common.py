"""What every admin page module uses: the one api call, the session token, redirects after a POST, short notes."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import psycopg
from aiohttp import web

from ..gateway.problems import REGISTRY_KEY
from ..web.database import call, call_row, call_value
from ..web.errors import page_of
from ..web.forms import Form, field_error, query, read_form
from ..web.sessions import public, token, viewer
from ..web.site import SITE_KEY
from ..web.templating import render

__all__ = ["DONE", "Form", "act", "call", "call_row", "call_value", "done_note", "field_error", "page_of", "public",
           "query", "read_form", "render", "see_other", "token", "viewer"]

#: The note a page shows after a POST redirected to it with ``?done=<key>`` (fixed texts: nothing is reflected).
DONE = {
    "saved": "Saved.",
    "imported": "Imported.",
    "revoked": "The terminal's assignment is revoked; its next request is refused.",
    "blocked": "The tag is blocked.",
    "unblocked": "The tag is unblocked.",
    "moved": "The balance was moved to the new tag; the old tag is blocked.",
    "chargeback": "The chargeback is booked.",
    "resolved": "Decided.",
    "closed": "The till is closed (Kassenabschluss).",
    "password": "Your password is changed; please sign in with the new one.",
    "signed-out": "You are signed out.",
}


async def act(request: web.Request, field_of: dict[str, str], function: str, *args: Any) -> Any:
    """``call_value`` for a form's action: a refusal the database names without a field (``tag-blocked`` of the tag
    typed into ``new_uid``) is put next to the field ``field_of[slug]``; other refusals pass unchanged."""
    try:
        return await call_value(request, function, *args)
    except psycopg.Error as err:
        problem = request.config_dict[REGISTRY_KEY].from_db_error(err)
        if problem is None:
            raise
        extensions = problem.extensions if isinstance(problem.extensions, dict) else {}
        if problem.slug in field_of and not extensions.get("field"):
            problem.extensions = {**extensions, "field": field_of[problem.slug]}
        raise problem from None


def see_other(request: web.Request, tail: str, **params: Any) -> web.HTTPSeeOther:
    """303 to a page of the site (POST -> redirect -> GET); ``params`` become the query (None values left out)."""
    location = request.config_dict[SITE_KEY].path(tail)
    values = {k: v for k, v in params.items() if v is not None}
    if values:
        location += "?" + urlencode(values)
    return web.HTTPSeeOther(location)


def done_note(request: web.Request) -> str | None:
    return DONE.get(request.query.get("done", ""))
