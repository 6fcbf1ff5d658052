"""The simulated payment provider: ``festpay provider-sim``, an aiohttp service on 127.0.0.1.

A TEST DOUBLE OF THE OUTSIDE WORLD: everything (checkouts, refunds) is kept in memory and lost when the process
stops; no money moves.  It stands in for a real provider (SumUp, Stripe, ...) in development, in ``make run`` and in
tests; :class:`~.http_client.HttpProvider` is its client.  Wire format (JSON)::

    POST /v1/checkouts  {reference, amount (cents), currency, return_url, webhook_url?, behaviour?,
                         behaviour_delay_s?, expires_in_s?}
                        -> 201 {id, url, status}  (the same reference again: 200 and the same checkout;
                                                  with another amount or currency: 409)
    GET  /v1/checkouts/{id}            -> 200 {id, reference, amount, currency, status, refunded}; 404 unknown
    POST /v1/checkouts/{id}/refunds {amount}  (header Idempotency-Key optional)
                        -> 201 {id, status: "succeeded", amount}; 409 when not paid or too much; a repeat with the
                           same Idempotency-Key: 200 and the same refund (with another amount: 409)
    PUT  /v1/sim/default-behaviour {behaviour?, behaviour_delay_s?, expires_in_s?} -> 204
                        (the defaults of checkouts created without them; a field left out keeps its default)
    GET  /health                       -> 200 {status: "ok"}
    GET  /checkout/{id}                the hosted checkout page (HTML): the amount, a "Pay" and a "Cancel" button
    POST /checkout/{id}  action=pay|cancel  (its forms) -> 303 to return_url?checkout_id={id}; 409 (an HTML page
                        saying so) when the checkout has expired

Statuses: ``pending`` until the visitor pays or cancels on the hosted page, then ``paid`` (``declined`` when
cancelled) as the checkout's behaviour says.  A checkout nobody pays or cancels within ``expires_in_s`` seconds of
its creation (default :data:`DEFAULT_EXPIRES_IN_S`, 900; the visitor closed the page or went back) becomes
``expired``: determinate, nothing was charged, it can no longer be paid.  Errors: 400/404/409
``{"error", "message"}``.

Webhooks: when a checkout's status becomes determinate (``expired`` too), a POST to its ``webhook_url`` with the
JSON body ``{type: "checkout.status", checkout_id, reference, status, amount, currency}`` and the header
``X-Festpay-Provider-Signature`` (HMAC-SHA256 over the raw body, scheme in python_gateway/signing.py), retried with
backoff until the receiver answers 2xx (:data:`WEBHOOK_RETRY_DELAYS_S`).

Behaviours (field ``behaviour``, default ``pays``; applied when the visitor submits the hosted page; an expiry's
webhook is sent as the behaviour sends its webhooks: none for ``no-webhook``, two for ``webhook-twice``):

- ``pays``: paid, one webhook;
- ``declines``: declined (even when the visitor pays), one webhook;
- ``never-answers``: stays pending forever, no webhook (indeterminate): it models a provider that does not answer,
  not an abandoned checkout, so it does not expire either;
- ``late``: pending, then paid ``behaviour_delay_s`` seconds later (default 5), with its webhook then;
- ``webhook-twice``: paid, the same webhook (identical body and signature) delivered twice;
- ``no-webhook``: paid (or expired), no webhook: only polling finds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

from ..signing import PROVIDER_SIGNATURE_HEADER, provider_webhook_signature

log = logging.getLogger("festpay.provider_sim")

DEFAULT_HOST = "127.0.0.1"
MAX_BODY = 64 * 1024
BEHAVIOURS = ("pays", "declines", "never-answers", "late", "webhook-twice", "no-webhook")
DEFAULT_LATE_DELAY_S = 5.0
#: Seconds a checkout waits for the visitor to pay or cancel before it expires (unless created with expires_in_s).
#: Shorter than an event's default provider_check_window (30 minutes), so an abandoned checkout is declined before
#: it would become ExternalUnknown.
DEFAULT_EXPIRES_IN_S = 900.0
MAX_EXPIRES_IN_S = 86400.0
#: Copies of a determinate status's webhook by behaviour (else 1).
WEBHOOK_COPIES = {"webhook-twice": 2, "no-webhook": 0}
#: Pauses between the attempts of one webhook delivery (so at most len + 1 attempts).
WEBHOOK_RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 5.0)
WEBHOOK_TIMEOUT_S = 5.0

STATE_KEY = web.AppKey("provider_sim_state", object)


@dataclass
class SimCheckout:
    id: str
    reference: str
    amount: int
    currency: str
    return_url: str
    webhook_url: str | None
    behaviour: str
    delay_s: float
    expires_at: float  # time.monotonic() when it expires unless the visitor paid or cancelled by then
    status: str = "pending"
    submitted: bool = False
    due: float | None = None  # late: when the pending status turns determinate
    outcome: str | None = None  # late: what it turns into
    refunds: list[dict[str, Any]] = field(default_factory=list)
    refund_keys: dict[str, dict[str, Any]] = field(default_factory=dict)  # Idempotency-Key -> its refund

    @property
    def refunded(self) -> int:
        return sum(r["amount"] for r in self.refunds)

    @property
    def expires(self) -> bool:
        """False for ``never-answers``: a provider that does not answer, not an abandoned checkout."""
        return self.behaviour != "never-answers"

    def current_status(self) -> str:
        now = time.monotonic()
        if self.due is not None and now >= self.due and self.outcome:
            self.status, self.due = self.outcome, None
        elif self.status == "pending" and not self.submitted and self.expires and now >= self.expires_at:
            self.status = "expired"
        return self.status

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "reference": self.reference, "amount": self.amount, "currency": self.currency,
                "status": self.current_status(), "refunded": self.refunded}


class SimState:
    """The in-memory world of the simulated provider."""

    def __init__(self, secret: str, retry_delays_s: tuple[float, ...]) -> None:
        self.secret = secret
        self.retry_delays_s = retry_delays_s
        self.checkouts: dict[str, SimCheckout] = {}
        self.by_reference: dict[str, SimCheckout] = {}
        self.default_behaviour = "pays"
        self.default_delay_s = DEFAULT_LATE_DELAY_S
        self.default_expires_in_s = DEFAULT_EXPIRES_IN_S
        self.tasks: set[asyncio.Task] = set()
        self.session: aiohttp.ClientSession | None = None

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def deliver(self, checkout: SimCheckout, copies: int) -> None:
        """The checkout's status webhook, ``copies`` times (identical bytes), each retried until a 2xx answer."""
        if not checkout.webhook_url or copies <= 0:
            return
        body = json.dumps({"type": "checkout.status", "checkout_id": checkout.id, "reference": checkout.reference,
                           "status": checkout.status, "amount": checkout.amount, "currency": checkout.currency},
                          separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json",
                   PROVIDER_SIGNATURE_HEADER: provider_webhook_signature(self.secret, body)}
        for _ in range(copies):
            for attempt, pause in enumerate((*self.retry_delays_s, None)):
                try:
                    async with self.session.post(checkout.webhook_url, data=body, headers=headers) as resp:
                        if 200 <= resp.status < 300:
                            break
                        problem = f"HTTP {resp.status}"
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as err:
                    problem = f"{type(err).__name__}: {err}"
                if pause is None:
                    log.warning("webhook of checkout %s to %s given up after %d attempts: %s", checkout.id,
                                checkout.webhook_url, attempt + 1, problem)
                    break
                await asyncio.sleep(pause)

    async def expire(self, checkout: SimCheckout) -> None:
        """At the checkout's expiry: still not paid or cancelled, it is expired and its webhook is sent."""
        while (left := checkout.expires_at - time.monotonic()) > 0:
            await asyncio.sleep(left)
        if checkout.current_status() == "expired":
            await self.deliver(checkout, WEBHOOK_COPIES.get(checkout.behaviour, 1))

    async def settle_late(self, checkout: SimCheckout) -> None:
        await asyncio.sleep(checkout.delay_s)
        checkout.current_status()
        if checkout.status != "pending":
            await self.deliver(checkout, 1)


def _error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response({"error": kind, "message": message}, status=status)


class _Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except _Refused as err:
        return _error(err.status, "request", str(err))


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError:
        raise _Refused(400, "the body is not JSON") from None
    if not isinstance(data, dict):
        raise _Refused(400, "the body is not a JSON object")
    return data


def _url(value: Any, name: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"https?://\S+", value):
        raise _Refused(400, f"{name} must be an http(s) URL")
    return value


def _behaviour(data: dict[str, Any], state: SimState) -> tuple[str, float]:
    behaviour = data.get("behaviour", state.default_behaviour)
    if behaviour not in BEHAVIOURS:
        raise _Refused(400, f"behaviour must be one of {', '.join(BEHAVIOURS)}")
    delay = data.get("behaviour_delay_s", state.default_delay_s)
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not 0 <= delay <= 86400:
        raise _Refused(400, "behaviour_delay_s must be a number of seconds (0-86400)")
    return behaviour, float(delay)


def _expires_in(data: dict[str, Any], state: SimState) -> float:
    value = data.get("expires_in_s", state.default_expires_in_s)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_EXPIRES_IN_S:
        raise _Refused(400, f"expires_in_s must be a number of seconds (more than 0, at most {MAX_EXPIRES_IN_S:.0f})")
    return float(value)


def _checkout(request: web.Request) -> SimCheckout:
    checkout = request.app[STATE_KEY].checkouts.get(request.match_info["id"])
    if checkout is None:
        raise _Refused(404, "no such checkout")
    return checkout


async def create_checkout(request: web.Request) -> web.Response:
    state: SimState = request.app[STATE_KEY]
    data = await _json(request)
    reference, amount, currency = data.get("reference"), data.get("amount"), data.get("currency")
    if not isinstance(reference, str) or not 1 <= len(reference) <= 200:
        raise _Refused(400, "reference must be a string of 1-200 characters")
    if isinstance(amount, bool) or not isinstance(amount, int) or not 1 <= amount <= 100_000_000:
        raise _Refused(400, "amount must be a positive number of cents")
    if not isinstance(currency, str) or not re.fullmatch(r"[A-Z]{3}", currency):
        raise _Refused(400, "currency must be an ISO 4217 code such as EUR")
    return_url = _url(data.get("return_url"), "return_url")
    webhook_url = _url(data["webhook_url"], "webhook_url") if data.get("webhook_url") is not None else None
    behaviour, delay = _behaviour(data, state)
    expires_in = _expires_in(data, state)
    existing = state.by_reference.get(reference)
    if existing is not None:
        if (existing.amount, existing.currency) != (amount, currency):
            raise _Refused(409, "this reference has a checkout with another amount or currency")
        checkout, status = existing, 200
    else:
        checkout = SimCheckout(id="co_" + secrets.token_hex(12), reference=reference, amount=amount,
                               currency=currency, return_url=return_url, webhook_url=webhook_url,
                               behaviour=behaviour, delay_s=delay, expires_at=time.monotonic() + expires_in)
        state.checkouts[checkout.id] = state.by_reference[reference] = checkout
        if checkout.expires:
            state.spawn(state.expire(checkout))
        status = 201
    url = f"{request.scheme}://{request.host}/checkout/{checkout.id}"
    return web.json_response({"id": checkout.id, "url": url, "status": checkout.current_status()}, status=status)


async def get_checkout(request: web.Request) -> web.Response:
    return web.json_response(_checkout(request).to_json())


async def refund(request: web.Request) -> web.Response:
    checkout = _checkout(request)
    data = await _json(request)
    amount = data.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 1:
        raise _Refused(400, "amount must be a positive number of cents")
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= 200:
        raise _Refused(400, "Idempotency-Key must be 1-200 characters")
    if key in checkout.refund_keys:
        entry = checkout.refund_keys[key]
        if entry["amount"] != amount:
            raise _Refused(409, "this Idempotency-Key was used for a refund of another amount")
        return web.json_response(entry, status=200)
    if checkout.current_status() != "paid":
        raise _Refused(409, f"the checkout is {checkout.status}, not paid")
    if amount > checkout.amount - checkout.refunded:
        raise _Refused(409, f"only {checkout.amount - checkout.refunded} cents are left to refund")
    entry = {"id": "re_" + secrets.token_hex(12), "status": "succeeded", "amount": amount}
    checkout.refunds.append(entry)
    if key is not None:
        checkout.refund_keys[key] = entry
    return web.json_response(entry, status=201)


async def set_default_behaviour(request: web.Request) -> web.Response:
    state: SimState = request.app[STATE_KEY]
    data = await _json(request)
    behaviour, delay = _behaviour(data, state)
    state.default_expires_in_s = _expires_in(data, state)
    state.default_behaviour, state.default_delay_s = behaviour, delay
    return web.Response(status=204)


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "checkouts": len(request.app[STATE_KEY].checkouts)})


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Checkout - simulated payment provider</title>
<style>body{{font-family:sans-serif;max-width:26rem;margin:2rem auto;padding:0 1rem}}
.amount{{font-size:2rem;margin:1rem 0}}form{{display:inline}}button{{font-size:1.1rem;padding:.5rem 1.5rem;
margin-right:.5rem}}.note{{color:#666;font-size:.85rem}}</style></head>
<body><h1>Simulated payment provider</h1>
<p>Payment for <strong>{reference}</strong></p>
<p class="amount" id="amount">{amount}</p>
{body}
<p class="note">A test double: no money moves.</p></body></html>
"""


def _money(cents: int, currency: str) -> str:
    return f"{cents // 100},{cents % 100:02d} {currency}"


def _page(checkout: SimCheckout, body: str, status: int = 200) -> web.Response:
    text = PAGE.format(reference=html.escape(checkout.reference),
                       amount=html.escape(_money(checkout.amount, checkout.currency)), body=body)
    return web.Response(text=text, content_type="text/html", status=status)


def _back_url(checkout: SimCheckout) -> str:
    return str(URL(checkout.return_url).update_query(checkout_id=checkout.id))


def _expired_body(checkout: SimCheckout) -> str:
    return ('<p id="status">Status: expired</p>'
            '<p id="expired">This checkout has expired: it was not paid in time and can no longer be paid. '
            'Nothing was charged.</p>'
            f'<p><a id="back" href="{html.escape(_back_url(checkout))}">Back to the shop</a></p>')


async def checkout_page(request: web.Request) -> web.Response:
    checkout = _checkout(request)
    action = html.escape(f"/checkout/{checkout.id}")
    if checkout.current_status() == "expired":
        body = _expired_body(checkout)
    elif checkout.submitted:
        body = f'<p id="status">Status: {html.escape(checkout.current_status())}</p>'
    else:
        body = (f'<form method="post" action="{action}"><input type="hidden" name="action" value="pay">'
                f'<button type="submit" id="pay">Pay</button></form>'
                f'<form method="post" action="{action}"><input type="hidden" name="action" value="cancel">'
                f'<button type="submit" id="cancel">Cancel</button></form>')
    return _page(checkout, body)


async def submit_checkout(request: web.Request) -> web.Response:
    state: SimState = request.app[STATE_KEY]
    checkout = _checkout(request)
    form = await request.post()
    action = form.get("action")
    if action not in ("pay", "cancel"):
        raise _Refused(400, "action must be pay or cancel")
    if checkout.current_status() == "expired":
        # A page left open past the expiry: the checkout is closed, nothing is charged.
        return _page(checkout, _expired_body(checkout), status=409)
    if not checkout.submitted:
        checkout.submitted = True
        outcome = "declined" if action == "cancel" or checkout.behaviour == "declines" else "paid"
        if checkout.behaviour == "never-answers":
            pass
        elif checkout.behaviour == "late":
            checkout.outcome, checkout.due = outcome, time.monotonic() + checkout.delay_s
            state.spawn(state.settle_late(checkout))
        else:
            checkout.status = outcome
            state.spawn(state.deliver(checkout, WEBHOOK_COPIES.get(checkout.behaviour, 1)))
    raise web.HTTPSeeOther(_back_url(checkout))


async def _startup(app: web.Application) -> None:
    app[STATE_KEY].session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT_S))


async def _cleanup(app: web.Application) -> None:
    state: SimState = app[STATE_KEY]
    for task in list(state.tasks):
        task.cancel()
    await asyncio.gather(*state.tasks, return_exceptions=True)
    if state.session is not None:
        await state.session.close()


def create_app(secret: str, *, retry_delays_s: tuple[float, ...] = WEBHOOK_RETRY_DELAYS_S) -> web.Application:
    """The simulated provider; ``secret`` signs its webhooks."""
    if not secret:
        raise ValueError("the simulated provider needs a webhook secret")
    app = web.Application(middlewares=[_errors], client_max_size=MAX_BODY)
    app[STATE_KEY] = SimState(secret, retry_delays_s)
    app.router.add_get("/health", health, allow_head=False)
    app.router.add_post("/v1/checkouts", create_checkout)
    app.router.add_get("/v1/checkouts/{id}", get_checkout, allow_head=False)
    app.router.add_post("/v1/checkouts/{id}/refunds", refund)
    app.router.add_put("/v1/sim/default-behaviour", set_default_behaviour)
    app.router.add_get("/checkout/{id}", checkout_page, allow_head=False)
    app.router.add_post("/checkout/{id}", submit_checkout)
    app.on_startup.append(_startup)
    app.on_cleanup.append(_cleanup)
    return app


@contextlib.asynccontextmanager
async def provider_sim_service(secret: str, port: int = 0, host: str = DEFAULT_HOST) -> AsyncIterator[str]:
    """Serve the simulated provider on ``host:port`` while the block runs; yields its base URL (port 0: a free one)."""
    if host not in ("127.0.0.1", "::1", "localhost"):
        raise ValueError("the simulated provider listens on the loopback interface only")
    runner = web.AppRunner(create_app(secret), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        bound = runner.addresses[0][1] if runner.addresses else port
        yield f"http://{host}:{bound}"
    finally:
        await runner.cleanup()
