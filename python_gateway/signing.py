"""Request signing of the terminal API (SPEC §7): the ONE place that knows the scheme.

Every terminal request but ``register`` carries three headers:

- ``X-Festpay-Assignment``: the assignment id,
- ``X-Festpay-Timestamp``: Unix seconds, within :data:`MAX_SKEW_S` of the server's clock,
- ``X-Festpay-Signature``: base64 of HMAC-SHA256, keyed with the base64-decoded
  assignment secret, over ``METHOD + "\\n" + path-with-query + "\\n" + timestamp
  + "\\n" + hex(SHA-256(raw body))``.

Used by the gateway (:func:`verify`) and by terminals (:func:`sign`,
:func:`signed_headers`).

The same secret signs each charge a terminal writes to a tag's log (:func:`log_entry_mac`): base64 of
HMAC-SHA256 over ``assignment_id + "\n" + terminal_tx_number + "\n" + uid + "\n" + tag_tx_number + "\n" +
amount`` (decimal integers, the UID in upper-case hex), so that no terminal can charge in another's name. The
database checks it (``api.tag_sync``).

Webhooks of the payment provider (python_gateway/provider/) carry ``X-Festpay-Provider-Signature``:
``sha256=`` and the lower-case hex HMAC-SHA256 of the raw request body, keyed with the UTF-8 bytes of the shared
webhook secret (FESTPAY_PROVIDER_SECRET, or the one generated in the data folder) — :func:`provider_webhook_signature`,
:func:`provider_webhook_valid`.  No timestamp: a replayed webhook only repeats a status that is booked once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time

HEADER_ASSIGNMENT = "X-Festpay-Assignment"
HEADER_TIMESTAMP = "X-Festpay-Timestamp"
HEADER_SIGNATURE = "X-Festpay-Signature"

#: Largest accepted difference between a request's timestamp and the server clock, in seconds.
MAX_SKEW_S = 300


def _key(secret_b64: str) -> bytes:
    return base64.b64decode(secret_b64, validate=True)


def message(method: str, path_qs: str, timestamp: int | str, body: bytes) -> bytes:
    """The signed string: ``METHOD\\npath-with-query\\ntimestamp\\nhex(sha256(body))``, UTF-8."""
    return "\n".join(
        (method.upper(), path_qs, str(timestamp), hashlib.sha256(body).hexdigest())
    ).encode("utf-8")


def sign(secret_b64: str, method: str, path_qs: str, timestamp: int, body: bytes) -> str:
    """Base64 HMAC-SHA256 of :func:`message`, keyed with the base64-decoded ``secret_b64``.

    ``path_qs`` is the request path with its query string exactly as sent
    (e.g. ``/terminal/v1/config`` or ``/terminal/v1/x?a=1``); ``body`` the raw
    body bytes (``b""`` for none).
    """
    digest = hmac.new(_key(secret_b64), message(method, path_qs, timestamp, body), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify(
    secret_b64: str, method: str, path_qs: str, timestamp: int | str, body: bytes, signature: str
) -> bool:
    """True when ``signature`` is the signature of this request; constant-time comparison.

    Does NOT check the clock window; see :func:`timestamp_fresh`.  A malformed
    secret or signature is simply False.
    """
    try:
        expected = hmac.new(
            _key(secret_b64), message(method, path_qs, timestamp, body), hashlib.sha256
        ).digest()
        given = base64.b64decode(signature.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeError):
        return False
    return hmac.compare_digest(expected, given)


def log_entry_mac(secret_b64: str, assignment_id: int, terminal_tx_number: int, uid: str, tag_tx_number: int,
                  amount: int) -> str:
    """The ``mac`` of one tag log entry, written by the charging terminal with its own assignment secret."""
    text = "\n".join((str(int(assignment_id)), str(int(terminal_tx_number)), uid.upper(), str(int(tag_tx_number)),
                      str(int(amount))))
    digest = hmac.new(_key(secret_b64), text.encode("ascii"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def timestamp_fresh(timestamp: int, now: float | None = None, max_skew_s: int = MAX_SKEW_S) -> bool:
    """True when ``|now - timestamp| <= max_skew_s`` (``now`` defaults to the current time)."""
    now = time.time() if now is None else now
    return abs(now - timestamp) <= max_skew_s


def signed_headers(
    assignment_id: int,
    secret_b64: str,
    method: str,
    path_qs: str,
    body: bytes = b"",
    timestamp: int | None = None,
) -> dict[str, str]:
    """The three auth headers for one request (``timestamp`` defaults to now)."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    return {
        HEADER_ASSIGNMENT: str(assignment_id),
        HEADER_TIMESTAMP: str(ts),
        HEADER_SIGNATURE: sign(secret_b64, method, path_qs, ts, body),
    }


# --------------------------------------------------------------------------- payment provider webhooks

PROVIDER_SIGNATURE_HEADER = "X-Festpay-Provider-Signature"
_PROVIDER_SCHEME = "sha256="


def provider_webhook_signature(secret: str, body: bytes) -> str:
    """The value of :data:`PROVIDER_SIGNATURE_HEADER` for a webhook with this raw ``body``."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return _PROVIDER_SCHEME + digest


def provider_webhook_valid(secret: str, body: bytes, signature: str | None) -> bool:
    """True when ``signature`` (the header's value) signs ``body``; constant-time; a missing one is False."""
    if not signature or not secret:
        return False
    return hmac.compare_digest(provider_webhook_signature(secret, body).encode("utf-8"),
                               signature.strip().encode("utf-8", "replace"))
