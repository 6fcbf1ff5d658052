"""``POST /provider/webhook``: the payment provider's status webhooks for online top-ups.

Not signed like a terminal request: the provider signs the raw body with the shared webhook secret, and
``PaymentProvider.verify_webhook`` checks it.  A missing or wrong signature (or a body that is no status event) is a
401 ``webhook-refused`` problem and changes nothing.  A determinate status (paid; declined or expired, both settled
as declined: ``Status.result``) goes to ``api.external_topup_settle`` (logged in as festpay_web), keyed by the
checkout reference, so a webhook sent twice or racing the relay's poll books once: 200 with the state and outcome
(``refund-due`` when a paid top-up can no longer be booked, e.g. its tag was blocked meanwhile: it waits in the admin
queue to be refunded through the provider).  A status that is not determinate is 202 and changes nothing (the relay
keeps polling).  An unknown reference is 404 (the provider retries, then gives up).

The sub-application is mounted at ``/provider`` with its own small pool; the provider object lives in the root
application under :data:`PROVIDER_KEY` (the portal uses it too).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from ..provider.interface import InvalidWebhook, PaymentProvider
from ..web.database import make_pool
from .problems import Problem

log = logging.getLogger("festpay.gateway.provider")

PROVIDER_PREFIX = "/provider"
PROVIDER_KEY = web.AppKey("payment_provider", object)
_POOL_KEY = web.AppKey("provider_webhook_pool", object)


async def webhook(request: web.Request) -> web.Response:
    provider: PaymentProvider = request.config_dict[PROVIDER_KEY]
    body = await request.read()
    try:
        event = provider.verify_webhook(body, request.headers)
    except InvalidWebhook as err:
        log.warning("refused a provider webhook: %s", err)
        raise Problem("webhook-refused", str(err)) from None
    if not event.status.determinate:
        return web.json_response({"reference": event.reference, "status": event.status.value}, status=202)
    async with request.app[_POOL_KEY].connection() as conn:
        cur = await conn.execute(
            "SELECT transaction_id, state, outcome, problem FROM api.external_topup_settle(%s, %s, %s)",
            (event.reference, event.status.result, event.checkout_id))
        row = await cur.fetchone()
    return web.json_response({"reference": event.reference, "status": event.status.value, **row})


def create_provider_app(web_database_url: str, *, pool_timeout_s: float = 10.0) -> web.Application:
    """The webhook receiver; ``web_database_url`` logs in as festpay_web.  Mount it at :data:`PROVIDER_PREFIX`."""
    app = web.Application()
    app[_POOL_KEY] = make_pool(web_database_url, min_size=1, max_size=4, timeout=pool_timeout_s)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        pool = app[_POOL_KEY]
        await pool.open(wait=True, timeout=30)
        try:
            yield
        finally:
            await pool.close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_post("/webhook", webhook)
    return app

