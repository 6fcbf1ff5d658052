"""The HTTP gateway for terminals (SPEC §6-7): aiohttp, a thin layer over the ``api`` functions of the ledger.

Modules: :mod:`.app` (application, pool, expiry task, serving), :mod:`.auth` (HMAC signatures),
:mod:`.idempotency` (Idempotency-Key), :mod:`.terminal_api` (the handlers), :mod:`.validation` and
:mod:`.openapi` (the document and the edge checks built from it), :mod:`.problems` (RFC 9457),
:mod:`.health` (liveness and readiness).
"""

from .app import GatewayError, GatewayOptions, create_app, gateway_service

__all__ = ["GatewayError", "GatewayOptions", "create_app", "gateway_service"]
