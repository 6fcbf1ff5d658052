"""What one web site (the admin site, the customer portal) is: its URL prefix, cookie, whoami function, and the
request keys the plumbing fills in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web


@dataclass(frozen=True)
class Viewer:
    """The signed-in person of a request, as the site's whoami function answered for the session token."""

    token: str
    user_id: int
    username: str
    role: str
    privileges: frozenset[str]
    csrf_token: str
    event_id: int | None = None
    event_name: str | None = None
    currency: str = "EUR"
    time_zone: str = "UTC"
    status: str | None = None
    """The portal's signed-in tag's status (new, active, blocked); None on the admin site."""

    @classmethod
    def from_row(cls, token: str, row: dict[str, Any]) -> Viewer:
        return cls(
            token=token,
            user_id=int(row["user_id"]),
            username=row["username"],
            role=row["role"],
            privileges=frozenset(row.get("privileges") or ()),
            csrf_token=row["csrf_token"],
            event_id=row.get("event_id"),
            event_name=row.get("event_name"),
            currency=row.get("currency") or "EUR",
            time_zone=row.get("time_zone") or "UTC",
        )

    def may(self, privilege: str) -> bool:
        """Whether the database listed ``privilege`` for this viewer's role (for showing links and forms only;
        every api function checks it again)."""
        return privilege in self.privileges


@dataclass(frozen=True)
class SiteConfig:
    """One web site mounted as an aiohttp sub-application."""

    prefix: str
    """Where it is mounted, without a trailing slash: ``/admin``."""
    cookie_name: str
    """The session cookie's name; ``__Host-`` is put in front of it when the site is served over https."""
    whoami: str
    """The api function that turns a session token into a viewer (raises the site's unauthenticated problem)."""
    unauthenticated: str
    """The problem slug of a missing, expired or revoked session: the answer is the sign-in page."""
    forbidden: str | None = None
    """The problem slug of a missing privilege: an error page, also for a form (nothing to correct on it)."""
    public_url: str | None = None
    """FESTPAY_PUBLIC_URL: the only origin forms may come from (None: the request's own host)."""
    error_template: str = "admin/error.html"
    nav_template: str | None = None
    title: str = "Festpay"
    extra: dict[str, Any] = field(default_factory=dict)
    viewer_from_row: Callable[[str, dict[str, Any]], Viewer] | None = None
    """Turns the whoami row into the viewer (None: :meth:`Viewer.from_row`, the admin site's columns)."""
    page_context: Callable[[web.Request], dict[str, Any]] | None = None
    """More names for every page of the site (the portal's translations)."""

    @property
    def https(self) -> bool:
        return bool(self.public_url) and self.public_url.lower().startswith("https://")

    @property
    def public_origin(self) -> str | None:
        """``scheme://host[:port]`` of FESTPAY_PUBLIC_URL, lower case."""
        if not self.public_url:
            return None
        parts = urlsplit(self.public_url)
        return f"{parts.scheme}://{parts.netloc}".lower()

    def path(self, tail: str = "/") -> str:
        """A path of this site: ``path("/merchants")`` -> ``/admin/merchants``."""
        return self.prefix + tail


SITE_KEY = web.AppKey("web_site", SiteConfig)
#: request[VIEWER]: the signed-in viewer (absent on public pages).
VIEWER = web.RequestKey("web_viewer", Viewer)
