"""The software TSE as its own component: a tiny HTTP service on 127.0.0.1 around :class:`SoftwareTSE`.

``festpay tse serve --dir DIR [--port P]`` runs it; :class:`~python_gateway.tse.remote.RemoteTSE` is its client (the
wire format is documented there).  Being a separate process, it can be stopped and started again to test TSE
outages, and the relay does not care whether a software TSE or an adapter to a real one answers.

Every TSE call runs in a worker thread (the software TSE fsyncs); the TSE object serialises them itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from .interface import TSE, TseRequestError, TseUnavailable

log = logging.getLogger("festpay.tse")

DEFAULT_HOST = "127.0.0.1"
TSE_KEY = web.AppKey("tse", object)
MAX_BODY = 64 * 1024


def _error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response({"error": kind, "message": message}, status=status)


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text='{"error": "request", "message": "the body is not JSON"}',
                                 content_type="application/json") from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text='{"error": "request", "message": "the body is not a JSON object"}',
                                 content_type="application/json")
    return data


def _text(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise TseRequestError(f"{name} must be a string")
    return value


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """TSE errors as JSON: a bad request 400 (retrying will not help), anything else 503 (retry later)."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except (TseRequestError, ValueError) as err:
        return _error(400, "request", str(err))
    except TseUnavailable as err:
        return _error(503, "unavailable", str(err))
    except Exception as err:  # noqa: BLE001 - a TSE failure of any kind: the relay retries and records an outage
        log.exception("TSE call failed")
        return _error(503, "unavailable", f"{type(err).__name__}: {err}")


async def health(request: web.Request) -> web.Response:
    tse: TSE = request.app[TSE_KEY]
    return web.json_response(await asyncio.to_thread(tse.health))


async def register_client(request: web.Request) -> web.Response:
    tse: TSE = request.app[TSE_KEY]
    data = await _body(request)
    await asyncio.to_thread(tse.register_client, _text(data, "client_id"))
    return web.Response(status=204)


async def start_transaction(request: web.Request) -> web.Response:
    tse: TSE = request.app[TSE_KEY]
    data = await _body(request)
    number = await asyncio.to_thread(tse.start_transaction, _text(data, "client_id"), _text(data, "process_type"),
                                     _text(data, "process_data"))
    return web.json_response({"transaction_number": number}, status=201)


async def finish_transaction(request: web.Request) -> web.Response:
    tse: TSE = request.app[TSE_KEY]
    try:
        number = int(request.match_info["number"])
    except ValueError:
        raise TseRequestError("the transaction number is not a number") from None
    data = await _body(request)
    signed = await asyncio.to_thread(tse.finish_transaction, _text(data, "client_id"), number,
                                     _text(data, "process_type"), _text(data, "process_data"))
    return web.json_response(signed.to_json())


async def export(request: web.Request) -> web.Response:
    tse: TSE = request.app[TSE_KEY]
    tar = await asyncio.to_thread(tse.export)
    return web.Response(body=tar, content_type="application/x-tar",
                        headers={"Content-Disposition": 'attachment; filename="tse-export.tar"'})


def create_app(tse: TSE) -> web.Application:
    """The HTTP face of a TSE object (usually a :class:`SoftwareTSE`)."""
    app = web.Application(middlewares=[_errors], client_max_size=MAX_BODY)
    app[TSE_KEY] = tse
    app.router.add_get("/health", health, allow_head=False)
    app.router.add_post("/clients", register_client)
    app.router.add_post("/transactions", start_transaction)
    app.router.add_post(r"/transactions/{number:\d+}/finish", finish_transaction)
    app.router.add_get("/export", export, allow_head=False)
    return app


@contextlib.asynccontextmanager
async def tse_service(directory: str | Path, port: int = 0, host: str = DEFAULT_HOST) -> AsyncIterator[str]:
    """Open the software TSE in ``directory`` and serve it on ``host:port`` while the block runs.

    Yields the base URL (port 0: a free one).  The directory stays locked (flock) until the block ends.
    """
    if host not in ("127.0.0.1", "::1", "localhost"):
        raise ValueError("the TSE service listens on the loopback interface only")
    from .software import SoftwareTSE

    tse = await asyncio.to_thread(SoftwareTSE, directory)
    try:
        runner = web.AppRunner(create_app(tse), access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port, reuse_address=True)
            await site.start()
            bound = runner.addresses[0][1] if runner.addresses else port
            yield f"http://{host}:{bound}"
        finally:
            await runner.cleanup()
    finally:
        tse.close()
