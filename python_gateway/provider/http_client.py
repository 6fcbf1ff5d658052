""":class:`HttpProvider`: the :class:`~.interface.PaymentProvider` protocol over HTTP, to a provider with the API of
the simulated provider (python_gateway/provider/sim.py, where the wire format is documented).

One aiohttp session per object (close it with :meth:`HttpProvider.close` or ``async with``); every call has a
timeout.  Connection errors, timeouts, 5xx and garbled answers raise :class:`ProviderUnavailable` (retry later with
backoff); other 4xx raise :class:`ProviderRequestError`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import aiohttp

from ..signing import PROVIDER_SIGNATURE_HEADER, provider_webhook_valid
from .interface import (Checkout, InvalidWebhook, ProviderRequestError, ProviderUnavailable, Refund, Status,
                        WebhookEvent)

DEFAULT_TIMEOUT_S = 10.0


class HttpProvider:
    """A payment provider at ``url`` (e.g. ``http://127.0.0.1:8082``).

    ``webhook_url``: where the provider POSTs its webhooks for our checkouts (None: no webhooks, polling only);
    ``secret``: the shared webhook secret (see :func:`python_gateway.provider.webhook_secret`).
    """

    def __init__(self, url: str, secret: str, *, webhook_url: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT_S) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.url = url.rstrip("/")
        self.secret = secret
        self.webhook_url = webhook_url
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HttpProvider:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def _call(self, method: str, path: str, body: Any = None,
                    headers: Mapping[str, str] | None = None) -> tuple[int, Any]:
        """(HTTP status, decoded JSON) of one request; 5xx and transport failures raise ProviderUnavailable."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        try:
            async with self._session.request(method, self.url + path, json=body, headers=headers) as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as err:
            raise ProviderUnavailable(f"payment provider at {self.url} unreachable: "
                                      f"{type(err).__name__}: {err}") from err
        if status >= 500:
            raise ProviderUnavailable(f"payment provider at {self.url} answered {status} to {method} {path}")
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            raise ProviderUnavailable(f"payment provider at {self.url} answered {status} with no JSON") from None
        if status >= 400 and status != 404:
            message = data.get("message") if isinstance(data, dict) else None
            raise ProviderRequestError(f"payment provider refused {method} {path}: {status} {message or ''}".strip(),
                                       status)
        return status, data

    @staticmethod
    def _field(data: Any, name: str) -> str:
        value = data.get(name) if isinstance(data, dict) else None
        if not isinstance(value, str) or not value:
            raise ProviderUnavailable(f"the payment provider's answer has no {name}")
        return value

    async def create_checkout(self, reference: str, amount_cents: int, currency: str, return_url: str, *,
                              extra: Mapping[str, Any] | None = None) -> Checkout:
        """See :class:`~.interface.PaymentProvider`; ``extra``: more fields for the provider (the simulated one
        takes ``behaviour``, ``behaviour_delay_s`` and ``expires_in_s``)."""
        body: dict[str, Any] = {"reference": reference, "amount": amount_cents, "currency": currency,
                                "return_url": return_url}
        if self.webhook_url:
            body["webhook_url"] = self.webhook_url
        body.update(extra or {})
        status, data = await self._call("POST", "/v1/checkouts", body)
        if status == 404:
            raise ProviderRequestError("the payment provider has no checkout API at this URL", status)
        return Checkout(id=self._field(data, "id"), url=self._field(data, "url"))

    async def fetch_status(self, checkout_id: str) -> Status:
        status, data = await self._call("GET", f"/v1/checkouts/{_segment(checkout_id)}")
        if status == 404:
            return Status.UNKNOWN
        try:
            return Status(self._field(data, "status"))
        except ValueError:
            return Status.UNKNOWN

    def verify_webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        signature = _header(headers, PROVIDER_SIGNATURE_HEADER)
        if not provider_webhook_valid(self.secret, body, signature):
            raise InvalidWebhook(f"the webhook's {PROVIDER_SIGNATURE_HEADER} header is wrong" if signature
                                 else f"the webhook has no {PROVIDER_SIGNATURE_HEADER} header")
        try:
            data = json.loads(body)
            event = WebhookEvent(checkout_id=data["checkout_id"], reference=data["reference"],
                                 status=Status(data["status"]))
        except (ValueError, KeyError, TypeError) as err:
            raise InvalidWebhook(f"the webhook's body is not a checkout status event: {err}") from None
        if not (isinstance(event.checkout_id, str) and isinstance(event.reference, str)):
            raise InvalidWebhook("the webhook's checkout_id and reference must be strings")
        return event

    async def refund(self, checkout_id: str, amount_cents: int, *, key: str | None = None) -> Refund:
        """See :class:`~.interface.PaymentProvider`; ``key`` goes in the ``Idempotency-Key`` header."""
        status, data = await self._call("POST", f"/v1/checkouts/{_segment(checkout_id)}/refunds",
                                        {"amount": amount_cents}, {"Idempotency-Key": key} if key else None)
        if status == 404:
            raise ProviderRequestError(f"the payment provider does not know checkout {checkout_id!r}", status)
        return Refund(id=self._field(data, "id"), status=self._field(data, "status"))


def _segment(checkout_id: str) -> str:
    """A checkout id as one URL path segment (ids are the provider's; refuse anything that could change the path)."""
    if not checkout_id or not all(c.isalnum() or c in "-_" for c in checkout_id):
        raise ProviderRequestError(f"not a checkout id: {checkout_id!r}")
    return checkout_id


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value from any mapping (aiohttp's CIMultiDict or a plain dict), case-insensitively."""
    value = headers.get(name)
    if value is None:
        lower = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lower), None)
    return value
