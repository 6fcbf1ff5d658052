"""Live values for many viewers from ONE query per interval: a :class:`Broadcaster` asks the database once with the
session token of one connected viewer whose session is still valid, and hands the answer to every connected viewer
(server-sent events, :func:`stream`).

A viewer whose session the database refuses (expired, revoked) is dropped and the next one's token is tried; each
stream ends after ``max_stream_s`` (the browser's EventSource reconnects, which checks that viewer's session again).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp_sse import sse_response

log = logging.getLogger("festpay.web")

Fetch = Callable[[str], Awaitable[Any]]
"""Runs the one summary query with a viewer's session token; returns its JSON value."""
SignedOut = Callable[[BaseException], bool]
"""Whether a failure of ``Fetch`` means the token's session is not valid (or may not see the values)."""


@dataclass(eq=False)
class Subscriber:
    token: str
    queue: asyncio.Queue[tuple[int, Any] | None] = field(default_factory=lambda: asyncio.Queue(maxsize=1))

    def offer(self, item: tuple[int, Any] | None) -> None:
        """Put ``item`` in; an older value not yet sent is replaced (a slow viewer gets the newest only)."""
        with contextlib.suppress(asyncio.QueueEmpty):
            self.queue.get_nowait()
        self.queue.put_nowait(item)


class Broadcaster:
    def __init__(self, fetch: Fetch, signed_out: SignedOut, interval_s: float = 5.0):
        self.fetch = fetch
        self.signed_out = signed_out
        self.interval_s = interval_s
        self.subscribers: list[Subscriber] = []
        self.sequence = 0
        """How many summary queries answered (the event id of the last broadcast)."""
        self._task: asyncio.Task[None] | None = None

    def subscribe(self, token: str) -> Subscriber:
        subscriber = Subscriber(token)
        self.subscribers.append(subscriber)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="festpay-live-broadcast")
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with contextlib.suppress(ValueError):
            self.subscribers.remove(subscriber)

    async def _once(self) -> None:
        for subscriber in list(self.subscribers):  # the longest-connected viewer first
            try:
                payload = await self.fetch(subscriber.token)
            except Exception as err:
                if self.signed_out(err):
                    self.unsubscribe(subscriber)
                    subscriber.offer(None)
                    continue
                log.warning("live summary failed: %s", str(err).strip() or type(err).__name__)
                return
            self.sequence += 1
            for each in list(self.subscribers):
                each.offer((self.sequence, payload))
            return

    async def _run(self) -> None:
        while self.subscribers:
            await self._once()
            await asyncio.sleep(self.interval_s)

    async def close(self) -> None:
        for subscriber in list(self.subscribers):
            subscriber.offer(None)
        self.subscribers.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def stream(request: web.Request, broadcaster: Broadcaster, token: str, *, event: str = "summary",
                 max_stream_s: float = 300.0) -> web.StreamResponse:
    """Server-sent events to one viewer until it leaves, its session ends, or ``max_stream_s`` passed."""
    subscriber = broadcaster.subscribe(token)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_stream_s
    try:
        async with sse_response(request) as response:
            await response.send("connected", event="hello", retry=int(broadcaster.interval_s * 1000) + 1000)
            while response.is_connected():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(subscriber.queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
                try:
                    if item is None:
                        await response.send("signed-out", event="signed-out")
                        break
                    sequence, payload = item
                    await response.send(json.dumps(payload, default=str, separators=(",", ":")), event=event,
                                        id=str(sequence))
                except (ConnectionError, RuntimeError):  # the viewer left
                    break
    finally:
        broadcaster.unsubscribe(subscriber)
    return response
