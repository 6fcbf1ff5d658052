"""The terminal's HTTP client for the terminal API (SPEC §7), with aiohttp.

Every request but ``register`` is signed (python_gateway.signing).  ``register`` and tag ``sync`` carry an
``Idempotency-Key``; a caller that retries the same logical request passes the same key again.

Failures are raised as:
- :class:`Problem` for an answer with status >= 400 (RFC 9457 body when the gateway sent one);
  ``problem.transient`` is true for 5xx, 408, 429 and 409 idempotency-request-running;
- :class:`Unreachable` when no answer arrived (connection refused, reset, timeout).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

from .. import signing

API = "/terminal/v1"
TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class ClientError(Exception):
    """Base of what the client raises."""


class Unreachable(ClientError):
    """No answer: the gateway could not be reached, or the answer did not arrive in time."""


class Problem(ClientError):
    """An error answer (status >= 400), with the RFC 9457 problem document."""

    def __init__(self, status: int, body: dict[str, Any] | None = None):
        self.status = status
        self.body: dict[str, Any] = body or {}
        super().__init__(str(self))

    @property
    def slug(self) -> str:
        """The last segment of the problem type (e.g. ``insufficient-balance``), or ``http-<status>``."""
        t = self.body.get("type")
        if isinstance(t, str) and t and t != "about:blank":
            return t.rstrip("/").rsplit("/", 1)[-1]
        return f"http-{self.status}"

    @property
    def detail(self) -> str:
        return str(self.body.get("detail") or self.body.get("title") or "")

    @property
    def transient(self) -> bool:
        return self.status in TRANSIENT_STATUS or self.slug == "idempotency-request-running"

    def __str__(self) -> str:
        return f"{self.status} {self.slug}: {self.detail}"


@dataclass(frozen=True)
class Credentials:
    assignment_id: int
    secret: str  # base64


class GatewayClient:
    """One terminal's connection to the gateway.  Pass a shared ``session`` to run many terminals at once."""

    def __init__(
        self,
        base_url: str,
        credentials: Credentials | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout_s: float = 10.0,
    ):
        self.base_url = URL(base_url.rstrip("/"))
        self.credentials = credentials
        self._session = session
        self._own_session = session is None
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def __aenter__(self) -> "GatewayClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self._own_session = True
        return self._session

    async def close(self) -> None:
        if self._own_session and self._session is not None and not self._session.closed:
            await self._session.close()

    # ------------------------------------------------------------------ plumbing

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        signed: bool = True,
        idempotency_key: str | None = None,
        expect: tuple[int, ...] = (200, 201),
    ) -> tuple[int, dict[str, Any]]:
        """Sends one request; returns (status, JSON answer) or raises :class:`Problem` / :class:`Unreachable`."""
        raw = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        url = self.base_url.with_path(self.base_url.path.rstrip("/") + path, encoded=True)
        headers = {"Accept": "application/json, application/problem+json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        if signed:
            if self.credentials is None:
                raise ClientError("this terminal is not registered (no credentials)")
            headers.update(
                signing.signed_headers(self.credentials.assignment_id, self.credentials.secret, method,
                                       url.raw_path_qs, raw)
            )
        try:
            async with self.session.request(method, url, data=raw if body is not None else None, headers=headers,
                                            timeout=self.timeout) as resp:
                text = await resp.read()
                status = resp.status
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError, OSError) as err:
            raise Unreachable(f"{method} {path}: {type(err).__name__}: {err}".rstrip(": ")) from err
        try:
            answer = json.loads(text) if text else {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            answer = {"title": text[:200].decode("utf-8", "replace")}
        if not isinstance(answer, dict):
            answer = {"value": answer}
        if status >= 400 or status not in expect:
            raise Problem(status, answer)
        return status, answer

    # ------------------------------------------------------------------ the terminal API

    async def register(self, code: str, device: str, idempotency_key: str | None = None) -> dict[str, Any]:
        """POST /register (unsigned) -> {assignment_id, event_id, secret, tag_key}."""
        _, answer = await self.request(
            "POST", f"{API}/register", {"registration_code": code, "device": device}, signed=False,
            idempotency_key=idempotency_key or str(uuid.uuid4()),
        )
        return answer

    async def config(self) -> dict[str, Any]:
        _, answer = await self.request("GET", f"{API}/config")
        return answer

    async def tag_sync(self, uid: str, tag_tx_number: int, balance: int, log: list[dict[str, Any]],
                       idempotency_key: str | None = None) -> dict[str, Any]:
        """POST /tags/{uid}/sync -> {uid, status, balance, held, available, acknowledged, refused}.

        ``log``: the tag's entries as written, each with the charging terminal's ``mac``."""
        _, answer = await self.request(
            "POST", f"{API}/tags/{quote(uid, safe='')}/sync",
            {"tag_tx_number": tag_tx_number, "balance": balance, "log": log},
            idempotency_key=idempotency_key or str(uuid.uuid4()),
        )
        return answer

    async def reserve(self, terminal_tx_number: int, uid: str, tag_tx_number: int, amount: int,
                      items: list[dict[str, Any]]) -> dict[str, Any]:
        _, answer = await self.request(
            "POST", f"{API}/reserve",
            {"terminal_tx_number": terminal_tx_number, "uid": uid, "tag_tx_number": tag_tx_number,
             "amount": amount, "items": items},
        )
        return answer

    async def topup(self, terminal_tx_number: int, uid: str, amount: int, payment: str) -> dict[str, Any]:
        _, answer = await self.request(
            "POST", f"{API}/topups",
            {"terminal_tx_number": terminal_tx_number, "uid": uid, "amount": amount, "payment": payment},
        )
        return answer

    async def refund(self, terminal_tx_number: int, uid: str, amount: int) -> dict[str, Any]:
        _, answer = await self.request(
            "POST", f"{API}/refunds", {"terminal_tx_number": terminal_tx_number, "uid": uid, "amount": amount},
        )
        return answer

    async def replicate(self, transactions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """POST /transactions -> the per-entry results."""
        _, answer = await self.request("POST", f"{API}/transactions", {"transactions": transactions}, expect=(200,))
        results = answer.get("results")
        if not isinstance(results, list):
            raise Problem(502, {"type": "/problems/bad-answer", "detail": "the answer has no results list"})
        return results

    async def transaction(self, terminal_tx_number: int) -> dict[str, Any]:
        _, answer = await self.request("GET", f"{API}/transactions/{terminal_tx_number}", expect=(200,))
        return answer

    async def health(self) -> dict[str, Any]:
        _, answer = await self.request("GET", "/health", signed=False, expect=(200,))
        return answer
