"""A TSE reached over HTTP: the client side of ``festpay tse serve`` (python_gateway/tse/service.py).

:class:`RemoteTSE` implements the :class:`~python_gateway.tse.interface.TSE` protocol, so the relay does not care
whether its TSE is the software TSE in another process or an adapter to a real (cloud) TSE speaking the same
interface.  Blocking (http.client), like the protocol; the relay calls it from a worker thread.

The wire format (JSON unless said otherwise)::

    GET  /health                         -> TSE.health() (status, serial_number hex, public_key base64, counters)
    POST /clients            {client_id} -> 204                         register_client (idempotent)
    POST /transactions       {client_id, process_type, process_data}
                                         -> 201 {transaction_number}    start_transaction
    POST /transactions/{n}/finish {client_id, process_type, process_data}
                                         -> 200 <signed log>            finish_transaction (a repeat returns the same)
    GET  /export                         -> 200 application/x-tar       export

A signed log travels as :meth:`SignedLog.to_json`: serial hex, signature / public key / message base64, times Unix seconds.
Errors: 4xx ``{"error": "request", "message"}`` -> :class:`TseRequestError`; 503 (and connection refused, timeouts,
anything else) -> :class:`TseUnavailable`.
"""

from __future__ import annotations

import base64
import http.client
import json
import urllib.parse
from typing import Any

from .interface import SignedLog, TseError, TseRequestError, TseUnavailable

DEFAULT_TIMEOUT_S = 10.0


class RemoteTSE:
    """The TSE interface over HTTP (see the module doc); thread-safe (a connection per call).

    Connection refused, timeouts and 5xx answers raise :class:`TseUnavailable`; 4xx raise :class:`TseRequestError`.
    """

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.url = url.rstrip("/")
        self._https = parsed.scheme == "https"
        self._host = parsed.hostname
        self._port = parsed.port
        self._prefix = parsed.path.rstrip("/")
        self.timeout = timeout
        self._identity: tuple[bytes, bytes] | None = None

    # ---- plumbing --------------------------------------------------------------------------

    def _connection(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        return cls(self._host, self._port, timeout=self.timeout)

    def close(self) -> None:
        """Nothing to release: every call uses its own connection."""

    def _call(self, method: str, path: str, body: Any = None, *, raw: bool = False) -> Any:
        """One request on a fresh connection.

        No keep-alive on purpose: a kept connection that the service closed (it restarted) fails on reuse, and
        resending a start that may have arrived could start a second TSE transaction.
        """
        data = None if body is None else json.dumps(body).encode()
        headers = {"Connection": "close"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        conn = self._connection()
        try:
            conn.request(method, self._prefix + path, body=data, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
            status = resp.status
        except (OSError, http.client.HTTPException) as err:
            # Refused, reset, timed out, or the service went away mid-answer: retry later.
            raise TseUnavailable(f"TSE at {self.url} unreachable: {type(err).__name__}: {err}") from err
        finally:
            conn.close()
        if 200 <= status < 300:
            if raw:
                return payload
            if not payload:
                return None
            try:
                return json.loads(payload)
            except ValueError as err:
                raise TseUnavailable(f"TSE at {self.url} answered {status} without JSON") from err
        try:
            message = json.loads(payload).get("message") or payload[:200].decode("utf-8", "replace")
        except (ValueError, AttributeError):
            message = payload[:200].decode("utf-8", "replace")
        if 400 <= status < 500:
            raise TseRequestError(f"TSE refused {method} {path}: {message}")
        raise TseUnavailable(f"TSE at {self.url} answered {status}: {message}")

    def _load_identity(self) -> tuple[bytes, bytes]:
        if self._identity is None:
            health = self.health()
            try:
                self._identity = (bytes.fromhex(health["serial_number"]),
                                  base64.b64decode(health["public_key"], validate=True))
            except (KeyError, TypeError, ValueError) as err:
                raise TseError(f"TSE at {self.url}: malformed health answer: {err}") from err
        return self._identity

    # ---- the TSE interface -----------------------------------------------------------------

    @property
    def serial_number(self) -> bytes:
        """SHA-256 of the public key, as the TSE reports it (fetched once)."""
        return self._load_identity()[0]

    @property
    def public_key(self) -> bytes:
        """The uncompressed public point, as the TSE reports it (fetched once)."""
        return self._load_identity()[1]

    def register_client(self, client_id: str) -> None:
        self._call("POST", "/clients", {"client_id": client_id})

    def start_transaction(self, client_id: str, process_type: str, process_data: str) -> int:
        answer = self._call("POST", "/transactions",
                            {"client_id": client_id, "process_type": process_type, "process_data": process_data})
        try:
            return int(answer["transaction_number"])
        except (KeyError, TypeError, ValueError) as err:
            raise TseError(f"malformed start answer from the TSE: {answer!r}") from err

    def finish_transaction(self, client_id: str, number: int, process_type: str, process_data: str) -> SignedLog:
        answer = self._call("POST", f"/transactions/{int(number)}/finish",
                            {"client_id": client_id, "process_type": process_type, "process_data": process_data})
        if not isinstance(answer, dict):
            raise TseError(f"malformed finish answer from the TSE: {answer!r}")
        return SignedLog.from_json(answer)

    def export(self) -> bytes:
        return self._call("GET", "/export", raw=True)

    def health(self) -> dict[str, Any]:
        answer = self._call("GET", "/health")
        if not isinstance(answer, dict):
            raise TseUnavailable(f"TSE at {self.url}: malformed health answer")
        return answer
