"""Security headers on every answer of a web site (pages, error pages, streams, static files).

Set when the response is prepared (the ``on_response_prepare`` signal), so they also reach streamed answers
(server-sent events) and files that a middleware never sees finished.
"""

from __future__ import annotations

from aiohttp import web

CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "font-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))

HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if isinstance(request.match_info.route.resource, web.StaticResource):
        response.headers.setdefault("Cache-Control", "no-cache")  # revalidated: the URLs carry no version
    else:
        response.headers["Cache-Control"] = "no-store"  # pages show personal data and money


def install(app: web.Application) -> None:
    app.on_response_prepare.append(add_security_headers)
