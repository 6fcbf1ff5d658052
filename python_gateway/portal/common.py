"""What every portal page module uses: the one api call, the session token, redirects, translated notes, and a
database refusal said in the visitor's words."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import urlencode

import psycopg
from aiohttp import web

from ..gateway.problems import REGISTRY_KEY, Problem
from ..web.database import call, call_row, call_value
from ..web.sessions import public, token, viewer
from ..web.site import SITE_KEY
from ..web.templating import render
from .i18n import N_, gettext_of

__all__ = ["DONE", "FILL_IN", "call", "call_row", "call_value", "done_note", "field_refusal", "public", "refusing",
           "render", "see_other", "token", "viewer"]

T = TypeVar("T")

#: The note a page shows after a redirect with ``?done=<key>`` (fixed texts: nothing is reflected).
DONE = {
    "blocked": N_("Your wristband is blocked. Nobody can pay with it any more; your balance stays yours."),
    "signed-out": N_("You are signed out."),
}

#: A form field left empty.
FILL_IN = N_("Please fill in this field.")


def see_other(request: web.Request, tail: str, **params: str) -> web.HTTPSeeOther:
    """303 to a page of the portal (POST -> redirect -> GET)."""
    location = request.config_dict[SITE_KEY].path(tail)
    if params:
        location += "?" + urlencode(params)
    return web.HTTPSeeOther(location)


def done_note(request: web.Request) -> str | None:
    text = DONE.get(request.query.get("done", ""))
    return gettext_of(request)(text) if text else None


def field_refusal(problem: Problem, field: str, message: str) -> Problem:
    """``problem`` with the visitor's ``message`` next to form ``field`` (``""``: above the form); its slug, and so
    its status, stay."""
    extensions = problem.extensions if isinstance(problem.extensions, dict) else {}
    return Problem(problem.slug, message, {**extensions, "field": field})


async def refusing(request: web.Request, work: Awaitable[T],
                   say: Callable[[Problem], Awaitable[Problem]]) -> T:
    """The result of the api call ``work``; when the database refuses it with a named problem, ``say(problem)`` is
    raised instead: the refusal in the visitor's language, next to its field (the error pages show a refused form
    again with it).  Any other error is raised as it was."""
    try:
        return await work
    except psycopg.Error as err:
        problem = request.config_dict[REGISTRY_KEY].from_db_error(err)
        if problem is None:
            raise
    raise await say(problem) from None
