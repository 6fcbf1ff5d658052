"""What every portal page module uses: the one api call, the session token, redirects, translated notes."""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web

from ..web.database import call, call_row, call_value
from ..web.sessions import public, token, viewer
from ..web.site import SITE_KEY
from ..web.templating import render
from .i18n import N_, gettext_of

__all__ = ["DONE", "call", "call_row", "call_value", "done_note", "public", "render", "see_other", "token",
           "viewer"]

#: The note a page shows after a redirect with ``?done=<key>`` (fixed texts: nothing is reflected).
DONE = {
    "blocked": N_("Your wristband is blocked. Nobody can pay with it any more; your balance stays yours."),
    "signed-out": N_("You are signed out."),
}


def see_other(request: web.Request, tail: str, **params: str) -> web.HTTPSeeOther:
    """303 to a page of the portal (POST -> redirect -> GET)."""
    location = request.config_dict[SITE_KEY].path(tail)
    if params:
        location += "?" + urlencode(params)
    return web.HTTPSeeOther(location)


def done_note(request: web.Request) -> str | None:
    text = DONE.get(request.query.get("done", ""))
    return gettext_of(request)(text) if text else None
