"""The aiohttp application of the gateway, and running it on 127.0.0.1.

:func:`create_app` builds the root app around a psycopg async pool logged in with ``database_url`` (role
``festpay_terminal``); at start-up it opens the pool, loads the problem types (``api.problem_types()``) and builds the
OpenAPI document; at shutdown it closes the pool.  It always answers ``/health``, ``/health/ready`` and
``/problems``; ``GatewayOptions.apps`` chooses what else it serves:

- ``terminal``: the terminal API under ``/terminal/v1/`` with the HMAC middleware;
- ``admin``: the admin site, a sub-application mounted at ``/admin/`` with its own pool logged in as ``festpay_web``;
- ``portal``: the customer portal, a sub-application mounted at ``/portal/``, also logged in as ``festpay_web``.

:func:`gateway_service` runs it on a TCP port for as long as its ``async with`` block lasts.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from ..config import MIGRATIONS_DIR
from . import health, openapi, problems, terminal_api
from .auth import MAX_BODY, SECRETS_KEY, SecretCache, auth_middleware
from .database import POOL_KEY, make_pool

log = logging.getLogger("festpay.gateway")

DEFAULT_HOST = "127.0.0.1"


APPS = ("terminal", "admin", "portal")
"""The sub-applications a gateway process can serve (``festpay serve --apps``)."""

ADMIN_MAX_BODY = 16 * 1024 * 1024
"""The largest request body when the admin site is served (a wristband CSV); terminal calls stay at 64 KiB."""


@dataclass(frozen=True)
class GatewayOptions:
    pool_min_size: int = 2
    pool_max_size: int = 16
    pool_timeout_s: float = 10.0
    """How long a request waits for a database connection (then 503 not-ready)."""
    migrations_dir: Path = MIGRATIONS_DIR
    """Where the newest migration id for /health/ready comes from."""
    apps: tuple[str, ...] = ("terminal",)
    """What the process serves besides health and problem types: ``terminal`` and/or ``admin`` (see :data:`APPS`)."""
    web_database_url: str | None = None
    """The admin site's login (role ``festpay_web``); needed when ``admin`` is served."""
    public_url: str | None = None
    """FESTPAY_PUBLIC_URL: the origin browsers use (forms from elsewhere are refused; https: Secure cookies)."""
    dashboard_interval_s: float = 5.0
    """Seconds between two summary queries of the live dashboard."""
    portal_login_attempts: int = 20
    """Sign-in attempts at /portal/login one client address may make per ``portal_login_window_s`` (then 429)."""
    portal_login_window_s: float = 300.0
    provider: object | None = None
    """The payment provider of online top-ups (a :class:`~python_gateway.provider.interface.PaymentProvider`, e.g.
    an HttpProvider); with the portal served, ``/portal/topup`` uses it and ``POST /provider/webhook`` receives its
    webhooks.  None: online top-up is off.  The gateway closes it (``close()``) at shutdown."""


def create_app(database_url: str, options: GatewayOptions | None = None) -> web.Application:
    """The gateway app; ``database_url`` logs in as ``festpay_terminal`` (any role with EXECUTE on api works)."""
    options = options or GatewayOptions()
    unknown = set(options.apps) - set(APPS)
    if unknown or not options.apps:
        raise GatewayError(f"unknown or no apps {sorted(unknown)}; choose from {', '.join(APPS)}")
    serve_terminal = "terminal" in options.apps
    serve_admin = "admin" in options.apps
    serve_portal = "portal" in options.apps
    if (serve_admin or serve_portal) and not options.web_database_url:
        raise GatewayError("the admin site and the portal need their own database login (web_database_url, role festpay_web)")
    middlewares = [problems.problem_middleware] + ([auth_middleware] if serve_terminal else [])
    app = web.Application(middlewares=middlewares, client_max_size=ADMIN_MAX_BODY if serve_admin else MAX_BODY)
    app[problems.REGISTRY_KEY] = problems.ProblemRegistry()
    app[SECRETS_KEY] = SecretCache()
    app[health.EXPECTED_VERSION_KEY] = health.newest_migration(Path(options.migrations_dir)) or ""
    app[POOL_KEY] = make_pool(database_url, min_size=options.pool_min_size, max_size=options.pool_max_size,
                              timeout=options.pool_timeout_s)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        pool = app[POOL_KEY]
        await pool.open(wait=True, timeout=30)
        try:
            async with pool.connection() as conn:
                await app[problems.REGISTRY_KEY].load(conn)
            app[openapi.DOCUMENT_KEY] = openapi.build_document(app[problems.REGISTRY_KEY].all())
            yield
        finally:
            await pool.close()
            closer = getattr(options.provider, "close", None)
            if closer is not None:
                await closer()

    app.cleanup_ctx.append(lifecycle)
    if options.provider is not None:
        from .provider_webhook import PROVIDER_KEY

        app[PROVIDER_KEY] = options.provider

    if serve_terminal:
        terminal_api.add_routes(app)
        app.router.add_get("/terminal/v1/openapi.json", openapi.openapi_document, allow_head=False)
    app.router.add_get("/health", health.health, allow_head=False)
    app.router.add_get("/health/ready", health.ready, allow_head=False)
    app.router.add_get("/problems", problems.problem_index, allow_head=False)
    app.router.add_get("/problems/{slug}", problems.problem_type, allow_head=False)
    if serve_admin:
        from ..admin import ADMIN_PREFIX, create_admin_app

        app.add_subapp(ADMIN_PREFIX, create_admin_app(
            options.web_database_url or "", public_url=options.public_url,
            dashboard_interval_s=options.dashboard_interval_s, pool_timeout_s=options.pool_timeout_s))
    if serve_portal:
        from ..portal import PORTAL_PREFIX, create_portal_app

        app.add_subapp(PORTAL_PREFIX, create_portal_app(
            options.web_database_url or "", public_url=options.public_url, pool_timeout_s=options.pool_timeout_s,
            login_attempts=options.portal_login_attempts, login_window_s=options.portal_login_window_s))
    if options.provider is not None and (serve_admin or serve_portal):
        from .provider_webhook import PROVIDER_PREFIX, create_provider_app

        app.add_subapp(PROVIDER_PREFIX, create_provider_app(options.web_database_url or "",
                                                            pool_timeout_s=options.pool_timeout_s))
    return app


class GatewayError(RuntimeError):
    """The gateway could not start (port taken, database unreachable); the message says why."""


@contextlib.asynccontextmanager
async def gateway_service(
    database_url: str,
    port: int,
    host: str = DEFAULT_HOST,
    options: GatewayOptions | None = None,
    reuse_port: bool = False,
) -> AsyncIterator[str]:
    """Serve the gateway on ``host:port`` while the block runs; yields its base URL (port 0: a free one).

    ``reuse_port`` (SO_REUSEPORT) lets several gateway processes share one port: they are stateless.
    """
    app = create_app(database_url, options)
    access_log = logging.getLogger("aiohttp.access") if log.isEnabledFor(logging.DEBUG) else None
    runner = web.AppRunner(app, access_log=access_log, handle_signals=False)
    try:
        await runner.setup()
    except Exception as err:
        await runner.cleanup()
        raise GatewayError(f"the gateway could not start: {str(err).strip() or type(err).__name__}") from err
    try:
        site = web.TCPSite(runner, host, port, reuse_address=True, reuse_port=reuse_port or None)
        try:
            await site.start()
        except OSError as err:
            raise GatewayError(f"the gateway cannot listen on {host}:{port}: {err.strerror or err}") from None
        bound_port = runner.addresses[0][1] if runner.addresses else port  # the real one when port was 0
        url = f"http://{host}:{bound_port}"
        log.debug("gateway listening on %s", url)
        yield url
    finally:
        await runner.cleanup()
