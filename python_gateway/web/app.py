"""A web site as an aiohttp sub-application: its pool, problem types, templates, static files and middlewares.

Middlewares, outermost first: error pages (:mod:`.errors`), the Origin check of every POST (:mod:`.csrf`, before any
database call), the session (:mod:`.sessions`, one whoami call), the CSRF token check; security headers are set as
each response is prepared (:mod:`.security`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from ..gateway.problems import REGISTRY_KEY, ProblemRegistry
from . import csrf, errors, security, sessions, templating
from .database import WEB_POOL_KEY, make_pool
from .site import SITE_KEY, SiteConfig


def create_site_app(site: SiteConfig, database_url: str, *, pool_min_size: int = 1, pool_max_size: int = 8,
                    pool_timeout_s: float = 10.0) -> web.Application:
    """The sub-application of ``site``; mount it with ``root.add_subapp(site.prefix, app)``.

    ``database_url`` logs in as ``festpay_web``.  The caller adds the site's routes.
    """
    app = web.Application(middlewares=[
        errors.error_middleware,
        csrf.origin_middleware,
        sessions.session_middleware,
        csrf.token_middleware,
    ])
    app[SITE_KEY] = site
    app[REGISTRY_KEY] = ProblemRegistry()
    app[WEB_POOL_KEY] = make_pool(database_url, min_size=pool_min_size, max_size=pool_max_size,
                                  timeout=pool_timeout_s)
    templating.setup(app)
    security.install(app)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        pool = app[WEB_POOL_KEY]
        await pool.open(wait=True, timeout=30)
        try:
            async with pool.connection() as conn:
                await app[REGISTRY_KEY].load(conn)
            yield
        finally:
            await pool.close()

    app.cleanup_ctx.append(lifecycle)
    return app
