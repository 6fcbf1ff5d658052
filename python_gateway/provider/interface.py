"""What the gateway needs from a payment provider: the :class:`PaymentProvider` protocol and its results.

A checkout is one payment attempt for one ``reference`` (our key: booking is keyed by it, so a webhook and a poll
racing, or a webhook sent twice, book once).  Statuses: ``pending`` (the provider may still take the money: never
show "failed"), ``paid`` and ``declined`` (determinate), ``expired`` (determinate: the visitor left the checkout
unpaid until the provider closed it; nothing was charged, so it settles as declined), ``unknown`` (the provider
cannot say, e.g. it does not know the checkout).

Errors: :class:`ProviderUnavailable` (unreachable, timed out, 5xx, garbled answer: retry later with backoff),
:class:`ProviderRequestError` (the provider refused the request: retrying the same will not help),
:class:`InvalidWebhook` (a webhook whose signature or body is not acceptable: answer 4xx, book nothing).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class Status(str, enum.Enum):
    """The state of a checkout at the provider."""

    PENDING = "pending"
    PAID = "paid"
    DECLINED = "declined"
    EXPIRED = "expired"
    UNKNOWN = "unknown"

    @property
    def determinate(self) -> bool:
        """True for paid, declined and expired: the provider's final word."""
        return self.result is not None

    @property
    def result(self) -> str | None:
        """The final word as ``api.external_topup_settle`` takes it: ``paid``, or ``declined`` for declined and
        expired (nothing was charged); None while the provider has none."""
        if self is Status.PAID:
            return "paid"
        if self in (Status.DECLINED, Status.EXPIRED):
            return "declined"
        return None


@dataclass(frozen=True)
class Checkout:
    """A created checkout: the provider's id and the hosted page the visitor's browser is sent to."""

    id: str
    url: str


@dataclass(frozen=True)
class WebhookEvent:
    """A verified webhook: checkout ``checkout_id`` of our ``reference`` is now ``status``."""

    checkout_id: str
    reference: str
    status: Status


@dataclass(frozen=True)
class Refund:
    """A refund at the provider: its id and status (``succeeded``, or ``pending`` while it is under way)."""

    id: str
    status: str


class ProviderError(Exception):
    """Something went wrong talking to the payment provider."""


class ProviderUnavailable(ProviderError):
    """The provider could not be reached or answered with a server error: retry later (with backoff)."""


class ProviderRequestError(ProviderError):
    """The provider refused the request (4xx): the same request will not succeed later either."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class InvalidWebhook(ProviderError):
    """A webhook with a missing or wrong signature, or a body that is not a status event: refuse it."""


@runtime_checkable
class PaymentProvider(Protocol):
    """The payment provider interface of online top-ups."""

    async def create_checkout(self, reference: str, amount_cents: int, currency: str, return_url: str) -> Checkout:
        """A new checkout of ``amount_cents`` for our ``reference``; the browser goes to ``Checkout.url`` and comes
        back to ``return_url``.  Creating it again with the same reference returns the same checkout."""
        ...

    async def fetch_status(self, checkout_id: str) -> Status:
        """The checkout's status now (polling)."""
        ...

    def verify_webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        """The event of a webhook request (its raw body and headers); :class:`InvalidWebhook` when the signature
        or the body is not acceptable."""
        ...

    async def refund(self, checkout_id: str, amount_cents: int, *, key: str | None = None) -> Refund:
        """Refund ``amount_cents`` of a paid checkout.  ``key`` (our checkout reference) makes it idempotent: a repeat
        with the same key is answered with the refund made the first time, never a second one."""
        ...
