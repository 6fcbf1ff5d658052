"""Handlers of the terminal API (SPEC §7): each parses and validates, calls ONE ``api`` function, shapes the answer.

No money logic and no SQL here beyond ``SELECT ... FROM api.fn(...)``: the ledger decides everything, and its
named errors become problem responses (:mod:`.problems`).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

import psycopg
from aiohttp import web
from psycopg.types.json import Jsonb

from .. import receipts
from .auth import ASSIGNMENT
from .database import POOL_KEY, call_all, call_one
from .idempotency import run_idempotent
from .validation import json_body, path_params

PREFIX = "/terminal/v1"


def rfc3339(value: datetime | None) -> str | None:
    """A timestamptz as RFC 3339 UTC (``2025-07-01T12:00:00.123456Z``)."""
    if value is None:
        return None
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _pick(entry: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """Only the documented members go to the ledger."""
    return {k: entry[k] for k in fields if k in entry}


ITEM_FIELDS = ("product_id", "quantity", "unit_price")
LOG_FIELDS = ("assignment_id", "terminal_tx_number", "tag_tx_number", "amount", "time", "mac")
REPLICATED_FIELDS = ("terminal_tx_number", "type", "state", "uid", "tag_tx_number", "time", "amount", "payment")


def _items(items: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    return None if items is None else [_pick(item, ITEM_FIELDS) for item in items]


async def _one(request: web.Request, query: str, params: tuple[Any, ...]) -> dict[str, Any]:
    async with request.app[POOL_KEY].connection() as conn:
        return await call_one(conn, query, params)


# ----------------------------------------------------------------------------- calls


async def register(request: web.Request) -> web.Response:
    """POST /terminal/v1/register -> 201 {assignment_id, event_id, secret, tag_key} (api.register_terminal)."""
    body, raw = await json_body(request, "register")

    async def work(conn: psycopg.AsyncConnection) -> tuple[int, dict[str, Any]]:
        row = await call_one(
            conn,
            "SELECT assignment_id, event_id, secret, tag_key FROM api.register_terminal(%s, %s)",
            (body["registration_code"], body["device"]),
        )
        return 201, {"assignment_id": row["assignment_id"], "event_id": row["event_id"],
                     "secret": row["secret"].replace("\n", ""), "tag_key": row["tag_key"].replace("\n", "")}

    return await run_idempotent(request, "register", raw, work)


async def config(request: web.Request) -> web.Response:
    """GET /terminal/v1/config (api.terminal_config)."""
    row = await _one(request, "SELECT api.terminal_config(%s::bigint) AS config", (request[ASSIGNMENT],))
    return web.json_response(row["config"])


async def sync_tag(request: web.Request) -> web.Response:
    """POST /terminal/v1/tags/{uid}/sync (api.tag_sync); Idempotency-Key honoured.

    The ledger judges each log entry (its ``mac`` among others) and answers which it holds (``acknowledged``) and
    which it refused, with the problem (``refused``); the terminal drops both from the tag.
    """
    params = path_params(request, "syncTag")
    body, raw = await json_body(request, "syncTag")
    assignment_id = request[ASSIGNMENT]
    log = [_pick(entry, LOG_FIELDS) for entry in body["log"]]

    async def work(conn: psycopg.AsyncConnection) -> tuple[int, dict[str, Any]]:
        row = await call_one(
            conn,
            "SELECT uid, status, balance, held, available, acknowledged, refused"
            " FROM api.tag_sync(%s::bigint, %s::text, %s::integer, %s::bigint, %s::jsonb)",
            (assignment_id, params["uid"], body["tag_tx_number"], body["balance"], Jsonb(log)),
        )
        return 200, {"uid": row["uid"], "status": row["status"], "balance": row["balance"], "held": row["held"],
                     "available": row["available"], "acknowledged": row["acknowledged"],
                     "refused": row["refused"]}

    return await run_idempotent(request, f"assignment:{assignment_id}", raw, work)


async def reserve(request: web.Request) -> web.Response:
    """POST /terminal/v1/reserve -> 201 (api.reserve); short balance: 402 insufficient-balance with available."""
    body, _ = await json_body(request, "reserve")
    row = await _one(
        request,
        "SELECT transaction_id, state, available, expires_at"
        " FROM api.reserve(%s::bigint, %s::bigint, %s::text, %s::integer, %s::bigint, %s::jsonb)",
        (request[ASSIGNMENT], body["terminal_tx_number"], body["uid"], body["tag_tx_number"], body["amount"],
         Jsonb(_items(body["items"]))),
    )
    return web.json_response({"transaction_id": row["transaction_id"], "state": row["state"],
                              "available": row["available"], "expires_at": rfc3339(row["expires_at"])},
                             status=201)


async def topup(request: web.Request) -> web.Response:
    """POST /terminal/v1/topups -> 201 {transaction_id, state, balance} (api.topup)."""
    body, _ = await json_body(request, "topup")
    row = await _one(
        request,
        "SELECT transaction_id, state, balance FROM api.topup(%s::bigint, %s::bigint, %s::text, %s::bigint, %s::text)",
        (request[ASSIGNMENT], body["terminal_tx_number"], body["uid"], body["amount"], body["payment"]),
    )
    return web.json_response(dict(row), status=201)


async def refund(request: web.Request) -> web.Response:
    """POST /terminal/v1/refunds -> 201 {transaction_id, state, balance} (api.refund)."""
    body, _ = await json_body(request, "refund")
    row = await _one(
        request,
        "SELECT transaction_id, state, balance FROM api.refund(%s::bigint, %s::bigint, %s::text, %s::bigint)",
        (request[ASSIGNMENT], body["terminal_tx_number"], body["uid"], body["amount"]),
    )
    return web.json_response(dict(row), status=201)


async def replicate(request: web.Request) -> web.Response:
    """POST /terminal/v1/transactions -> 200 {results} (api.replicate; each entry judged alone)."""
    body, _ = await json_body(request, "replicate")
    entries = []
    for entry in body["transactions"]:
        picked = _pick(entry, REPLICATED_FIELDS)
        if entry.get("items") is not None:
            picked["items"] = _items(entry["items"])
        entries.append(picked)
    async with request.app[POOL_KEY].connection() as conn:
        rows = await call_all(
            conn,
            "SELECT terminal_tx_number, transaction_id, state, outcome, problem"
            " FROM api.replicate(%s::bigint, %s::jsonb)",
            (request[ASSIGNMENT], Jsonb(entries)),
        )
    return web.json_response({"results": [dict(row) for row in rows]})


async def get_transaction(request: web.Request) -> web.Response:
    """GET /terminal/v1/transactions/{terminal_tx_number} -> {transaction_id, state}, or 404 not-found."""
    params = path_params(request, "getTransaction")
    row = await _one(
        request,
        "SELECT transaction_id, state FROM api.terminal_transaction(%s::bigint, %s::bigint)",
        (request[ASSIGNMENT], params["terminal_tx_number"]),
    )
    return web.json_response(dict(row))


async def get_receipt(request: web.Request) -> web.Response:
    """GET /terminal/v1/transactions/{terminal_tx_number}/receipt -> text/html (api.terminal_receipt).

    A till prints its own receipts only; 404 not-found for an unknown number or one that is no committed receipt.
    """
    params = path_params(request, "getReceipt")
    receipt = (await _one(request, "SELECT api.terminal_receipt(%s::bigint, %s::bigint) AS receipt",
                          (request[ASSIGNMENT], params["terminal_tx_number"])))["receipt"]
    # Rendering (the QR code above all) is CPU work: off the event loop.
    html = await asyncio.get_running_loop().run_in_executor(None, receipts.render_html, receipt)
    return web.Response(text=html, content_type="text/html", charset="utf-8")


def add_routes(app: web.Application) -> None:
    app.router.add_post(f"{PREFIX}/register", register)
    app.router.add_get(f"{PREFIX}/config", config, allow_head=False)
    app.router.add_post(f"{PREFIX}/tags/{{uid}}/sync", sync_tag)
    app.router.add_post(f"{PREFIX}/reserve", reserve)
    app.router.add_post(f"{PREFIX}/topups", topup)
    app.router.add_post(f"{PREFIX}/refunds", refund)
    app.router.add_post(f"{PREFIX}/transactions", replicate)
    app.router.add_get(f"{PREFIX}/transactions/{{terminal_tx_number}}", get_transaction, allow_head=False)
    app.router.add_get(f"{PREFIX}/transactions/{{terminal_tx_number}}/receipt", get_receipt, allow_head=False)
