"""The relay: the one mechanism by which "something outside must hear about a commit" (SPEC §8).

A booking writes a row into ``ledger.outbox`` (a topic, an ordering key, the transaction) and sends
``NOTIFY festpay_outbox, '<topic>'`` in its own database transaction.  A relay:

- logs in as ``festpay_relay`` (it may execute only the outbox, TSE, payment-provider and expiry calls of the
  ``api``) and LISTENs on ``festpay_outbox``;
- at start, on every notification and after every poll interval (so a lost notification only delays) drains its
  topics: ``api.outbox_prepare(topic)`` gives new tills their lock row, then, in a transaction on its claim
  connection, ``api.outbox_claim(topic, limit)`` locks ONE ordering key (a till) FOR UPDATE SKIP LOCKED and hands
  over its due requests, which the relay handles strictly in order on its work connection (autocommit: each result
  is committed at once), stopping that key's batch at the first failure (later requests of the till must not
  overtake it); ending the claim transaction gives the till back;
- does so with several workers at once (``workers``, default 4), each with its own two connections, so no two
  workers (nor two relays) ever hold one till; it tells the database it sleeps (``api.relay_sleep``) only when no
  worker found work;
- leaves what a request means to a :class:`Handler` registered for its topic.  Topic ``tse`` is
  :class:`TseHandler` (sign the receipt), topic ``provider`` :class:`ProviderHandler` (the payment provider's status
  of an online top-up, and its refund when an admin asked for one).

Two relays side by side never handle one request at the same time (the row lock per key); for the TSE, the
started record (``api.tse_started``, committed before finishing) and the TSE's idempotent repeated finish make a
retry after a crash finish the same TSE transaction, so nothing is signed twice.

Besides the outbox, the relay expires overdue reservations (``api.expire_reservations()`` every ``expire_s``
seconds, SPEC §5: "a function that the listener calls periodically").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from .migrate import libpq_url
from .tse.interface import TSE, TseError, TseRequestError, TseUnavailable

log = logging.getLogger("festpay.relay")

CHANNEL = "festpay_outbox"
APPLICATION_NAME = "festpay-relay"
DEFAULT_POLL_S = 2.0
DEFAULT_BATCH = 100
RECONNECT_MAX_S = 10.0
DEFAULT_WORKERS = 4
IDLE_NAP_S = 0.05        # a worker without work while others work looks again at least this often
EXPIRE_INTERVAL_S = 5.0  # seconds between api.expire_reservations() calls


@dataclass(frozen=True)
class OutboxRequest:
    """One claimed outbox row: what ``api.outbox_claim`` returns."""

    outbox_id: int
    ordering_key: str
    transaction_id: int
    attempts: int
    started: dict[str, Any] | None


class Handler(Protocol):
    """What a topic means: handle one request (and record its success through an api function), or record why not.

    ``handle`` raises on failure; the relay then calls ``failed`` and stops the key's batch.
    """

    topic: str

    async def handle(self, conn: psycopg.AsyncConnection, request: OutboxRequest) -> None:
        """Do the work for one request and mark it done in the database (e.g. api.tse_store)."""
        ...

    async def failed(self, conn: psycopg.AsyncConnection, request: OutboxRequest,
                     error: BaseException) -> datetime | None:
        """Record a failed attempt (backoff); returns when the request is due again, if known."""
        ...


# --------------------------------------------------------------------------- the relay


class Relay:
    """Drains the outbox for the registered handlers (one per topic) until :meth:`stop`.

    ``database_url`` should log in as festpay_relay.  ``poll_s`` bounds how long a lost notification or a backoff
    can delay work; ``batch`` is the claim limit.  ``workers`` concurrent worker tasks, each with its OWN two database
    connections (claim: the transaction holding a till's lock row; work: the requests, autocommit), each draining:
    claim a till, handle its requests in order, give it back, repeat.  The relay tells the database it sleeps
    (``api.relay_sleep``) only when no worker found work.  ``expire_s``: seconds between reservation expiry runs
    (None: none).
    """

    def __init__(self, database_url: str, handlers: Iterable[Handler], *, poll_s: float = DEFAULT_POLL_S,
                 batch: int = DEFAULT_BATCH, name: str = APPLICATION_NAME, workers: int = DEFAULT_WORKERS,
                 expire_s: float | None = EXPIRE_INTERVAL_S) -> None:
        self.database_url = libpq_url(database_url)
        self.handlers: dict[str, Handler] = {}
        for handler in handlers:
            if handler.topic in self.handlers:
                raise ValueError(f"two handlers for topic {handler.topic!r}")
            self.handlers[handler.topic] = handler
        if not self.handlers:
            raise ValueError("a relay needs at least one handler")
        if workers < 1:
            raise ValueError("a relay needs at least one worker")
        self.poll_s = poll_s
        self.batch = batch
        self.name = name
        self.workers = workers
        self.expire_s = expire_s
        # Wake-ups: _kick() bumps the generation and sets the current event; a worker that saw generation g before
        # looking for work waits only while it is still g, so no kick between its look and its wait is lost.
        self._gen = 0
        self._event = asyncio.Event()
        self._stopping = False
        self._busy = 0                        # workers looking for or doing work right now
        self._round_handled = 0               # handled since the relay last found nothing at all
        self._next_due: float | None = None  # monotonic time a backed-off request is due again
        self.handled = 0                      # requests handled successfully (for tests and the bench)
        self.failures = 0                     # failed attempts recorded
        self.peak_busy_keys = 0               # most keys (tills) in hand at the same time (for tests)
        self._keys_in_hand = 0

    # ---- lifecycle -------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the relay to stop: each worker finishes the request in hand, gives back its key; run() returns."""
        self._stopping = True
        self._kick()

    def wake(self) -> None:
        """Drain now (what a notification does)."""
        self._kick()

    def _kick(self) -> None:
        self._gen += 1
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def _wait(self, since_gen: int, seconds: float) -> None:
        """Wait up to ``seconds`` for a kick, returning at once if there was one since generation ``since_gen``."""
        if self._gen != since_gen or self._stopping:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._event.wait(), max(0.0, seconds))

    async def _pause(self, seconds: float) -> None:
        """Wait ``seconds``; only stop() cuts it short (reconnect backoff)."""
        deadline = time.monotonic() + seconds
        while not self._stopping and (left := deadline - time.monotonic()) > 0:
            await self._wait(self._gen, left)

    async def _connect(self) -> psycopg.AsyncConnection:
        return await psycopg.AsyncConnection.connect(self.database_url, autocommit=True, row_factory=dict_row,
                                                     application_name=self.name)

    async def run(self) -> None:
        """Listen and drain with ``workers`` workers until :meth:`stop`; each reconnects (with backoff) when the
        database goes away."""
        listener = asyncio.create_task(self._listen(), name=f"{self.name}-listen")
        workers = [asyncio.create_task(self._worker(i), name=f"{self.name}-worker-{i}") for i in range(self.workers)]
        helpers = [listener]
        if self.expire_s:
            helpers.append(asyncio.create_task(self._expire_forever(self.expire_s), name=f"{self.name}-expire"))
        try:
            await asyncio.gather(*workers)
        finally:
            for task in (*workers, *helpers):
                task.cancel()
            for task in (*workers, *helpers):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _expire_forever(self, interval_s: float) -> None:
        """Calls api.expire_reservations() every ``interval_s`` seconds until stop(); errors are logged."""
        conn: psycopg.AsyncConnection | None = None
        try:
            while not self._stopping:
                await self._pause(interval_s)
                if self._stopping:
                    break
                try:
                    if conn is None or conn.closed:
                        conn = await self._connect()
                    cur = await conn.execute("SELECT api.expire_reservations() AS expired")
                    row = await cur.fetchone()
                    if row and row["expired"]:
                        log.info("expired %d reservation(s)", row["expired"])
                except psycopg.Error as err:
                    log.warning("api.expire_reservations() failed: %s", str(err).strip() or type(err).__name__)
                    if conn is not None:
                        await conn.close()
                    conn = None
        finally:
            if conn is not None:
                await conn.close()

    async def _worker(self, index: int) -> None:
        """One worker: its own claim and work connections, draining until stop()."""
        delay = 0.5
        while not self._stopping:
            try:
                async with await self._connect() as claim, await self._connect() as conn:
                    delay = 0.5
                    await self._loop(claim, conn)
            except (psycopg.OperationalError, psycopg.InterfaceError) as err:
                if self._stopping:
                    break
                log.warning("relay worker %d: database connection lost (%s); retrying in %.1f s", index,
                            str(err).strip() or type(err).__name__, delay)
                await self._pause(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
            except Exception:  # noqa: BLE001 - e.g. recording a failure failed: log, start over later
                if self._stopping:
                    break
                log.exception("relay worker %d: unexpected error; starting over in %.1f s", index, delay)
                await self._pause(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)

    async def _loop(self, claim: psycopg.AsyncConnection, conn: psycopg.AsyncConnection) -> None:
        while not self._stopping:
            gen = self._gen
            self._busy += 1
            try:
                handled = await self.drain(claim, conn)
            finally:
                self._busy -= 1
            self._round_handled += handled
            if self._stopping:
                return
            if self._busy:
                # Other workers are still at work (and no NOTIFY comes while the relay is awake): look again when
                # one of them gives a till back, on a wake-up, or after a short nap.
                await self._wait(gen, IDLE_NAP_S)
                continue
            # No worker found work: the relay as a whole may sleep.
            handled, self._round_handled = self._round_handled, 0
            gen = self._gen
            if await self._going_to_sleep(conn):
                # Work became due after all: drain again at once; when it is another relay's till, nap briefly.
                if handled:
                    self._kick()
                    continue
                await self._wait(gen, 0.05)
                continue
            timeout = self.poll_s
            if self._next_due is not None:
                left = self._next_due - time.monotonic()
                if left <= 0:
                    self._next_due = None  # it was due before this look: drained (or another relay has it)
                else:
                    timeout = max(0.05, min(timeout, left))
            await self._wait(gen, timeout)

    async def _going_to_sleep(self, conn: psycopg.AsyncConnection) -> bool:
        """Tells the database this relay will wait for NOTIFY (bookings notify only then: NOTIFY serialises
        commits), for every topic; returns True when requests are due after all, so it should not wait."""
        due = False
        for topic in self.handlers:
            cur = await conn.execute("SELECT api.relay_sleep(%s) AS due", (topic,))
            row = await cur.fetchone()
            due = due or bool(row["due"])
        return due

    async def _listen(self) -> None:
        """LISTEN on its own connection; every notification of a topic we handle wakes the workers."""
        delay = 0.5
        while not self._stopping:
            try:
                async with await self._connect() as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    delay = 0.5
                    self.wake()  # anything committed while we were not listening
                    while not self._stopping:
                        async for note in conn.notifies(timeout=5.0):
                            if not note.payload or note.payload in self.handlers:
                                self.wake()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - polling still works; listen again later
                log.warning("relay: LISTEN connection lost (%s); polling until it is back",
                            str(err).strip() or type(err).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)

    # ---- the work --------------------------------------------------------------------------

    async def drain(self, claim: psycopg.AsyncConnection, conn: psycopg.AsyncConnection) -> int:
        """Handle everything due now that no other worker or relay holds, key by key, for every topic: tills are
        claimed on ``claim``, requests handled on ``conn``; returns how many requests were handled."""
        total = 0
        for topic, handler in self.handlers.items():
            await conn.execute("SELECT api.outbox_prepare(%s)", (topic,))
            while not self._stopping:
                done, claimed = await self._claim_and_handle(claim, conn, topic, handler)
                total += done
                if not claimed:
                    break
        return total

    async def _claim_and_handle(self, claim: psycopg.AsyncConnection, conn: psycopg.AsyncConnection, topic: str,
                                handler: Handler) -> tuple[int, bool]:
        async with claim.transaction():  # holds the till's lock row; its end gives the till back
            cur = await claim.execute(
                "SELECT outbox_id, ordering_key, transaction_id, attempts, started FROM api.outbox_claim(%s, %s)",
                (topic, self.batch))
            rows = await cur.fetchall()
            if not rows:
                return 0, False
            done = await self._handle_batch(conn, topic, handler, rows)
        if self.workers > 1:
            self._kick()  # idle workers look again: work may have come in meanwhile
        return done, True

    async def _handle_batch(self, conn: psycopg.AsyncConnection, topic: str, handler: Handler,
                            rows: list[dict[str, Any]]) -> int:
        """Handles one till's claimed requests in order on ``conn``; stops at the first failure (recorded)."""
        key = rows[0]["ordering_key"]
        done = 0
        self._keys_in_hand += 1
        self.peak_busy_keys = max(self.peak_busy_keys, self._keys_in_hand)
        try:
            for row in rows:
                if self._stopping:
                    break
                request = OutboxRequest(row["outbox_id"], row["ordering_key"], row["transaction_id"],
                                        row["attempts"], row["started"])
                try:
                    await handler.handle(conn, request)
                except asyncio.CancelledError:
                    raise
                except (psycopg.OperationalError, psycopg.InterfaceError) as err:
                    if connection_lost(conn, err):
                        raise  # a connection is gone (and the claim transaction with it): whoever claims next retries
                    # The database refused the request itself (a named problem: psycopg files class FP under
                    # OperationalError), e.g. process data it cannot make: recorded and retried with backoff.
                    self.failures += 1
                    log.warning("relay: %s request %s (transaction %s, %s) refused by the database: %s", topic,
                                request.outbox_id, request.transaction_id, key, str(err).strip())
                    self._note_due(await handler.failed(conn, request, err))
                    break
                except Exception as err:  # noqa: BLE001 - recorded; the key's batch stops here (order!)
                    waiting = isinstance(err, NotDeterminate)      # no final answer yet: polled again, no failure
                    self.failures += not waiting
                    log.log(logging.DEBUG if waiting else logging.WARNING,
                            "relay: %s request %s (transaction %s, %s) %s: %s", topic, request.outbox_id,
                            request.transaction_id, key, "waits" if waiting else "failed",
                            str(err).strip() or type(err).__name__)
                    retry_at = await handler.failed(conn, request, err)
                    self._note_due(retry_at)
                    break
                done += 1
                self.handled += 1
        finally:
            self._keys_in_hand -= 1
        return done

    def _note_due(self, retry_at: datetime | None) -> None:
        if retry_at is None:
            return
        due = time.monotonic() + max(0.0, (retry_at - datetime.now(timezone.utc)).total_seconds())
        self._next_due = due if self._next_due is None else min(self._next_due, due)


def connection_lost(conn: psycopg.AsyncConnection, err: psycopg.Error) -> bool:
    """Tells whether ``err`` means the connection is gone, not that the database refused one statement (which has a
    SQLSTATE and leaves the connection usable)."""
    return conn.closed or conn.broken or not err.sqlstate or err.sqlstate.startswith(("08", "57"))


# --------------------------------------------------------------------------- topic tse


class TseHandler:
    """Topic ``tse``: sign a committed receipt with the TSE, exactly once, in order per till.

    ``api.tse_request`` says what to sign; a request not started yet is started at the TSE and the started TSE
    transaction recorded (``api.tse_started``, committed) BEFORE it is finished, so a retry after any crash finishes
    that same TSE transaction (the TSE answers a repeated identical finish with the stored signature).  The result
    goes to ``api.tse_store``; a failure to ``api.tse_failed`` (backoff; opens the outage record).
    """

    topic = "tse"

    def __init__(self, tse: TSE) -> None:
        self.tse = tse
        self._registered: set[str] = set()

    async def _call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    async def handle(self, conn: psycopg.AsyncConnection, request: OutboxRequest) -> None:
        cur = await conn.execute(
            "SELECT client_id, process_type, process_data, started FROM api.tse_request(%s)", (request.outbox_id,))
        row = await cur.fetchone()
        if row is None:
            raise RuntimeError(f"signing request {request.outbox_id} is unknown")
        client_id, process_type, process_data = row["client_id"], row["process_type"], row["process_data"]
        started = row["started"]
        if client_id not in self._registered:
            await self._call(self.tse.register_client, client_id)  # idempotent at the TSE
            self._registered.add(client_id)
        if not started:
            try:
                number = await self._call(self.tse.start_transaction, client_id, process_type, process_data)
            except TseRequestError:
                self._registered.discard(client_id)  # e.g. a TSE that forgot the client: register again next time
                raise
            # Committed (autocommit) before the finish: from here on only the recorded TSE transaction can sign the
            # receipt -- the first one recorded, should another relay have started one too.
            cur = await conn.execute("SELECT api.tse_started(%s, %s) AS started", (
                request.outbox_id, Jsonb({"transaction_number": number, "start_time": int(time.time())})))
            started = (await cur.fetchone())["started"]
        signed = await self._call(self.tse.finish_transaction, client_id, int(started["transaction_number"]),
                                  process_type, process_data)
        await conn.execute("SELECT api.tse_store(%s, %s)", (request.outbox_id, Jsonb(signed.to_json())))

    async def failed(self, conn: psycopg.AsyncConnection, request: OutboxRequest,
                     error: BaseException) -> datetime | None:
        if isinstance(error, TseUnavailable):
            kind = "TSE unavailable"
        elif isinstance(error, TseRequestError):
            kind = "TSE refused the request"  # retrying will not help: an admin has to look
        elif isinstance(error, TseError):
            kind = "TSE error"
        else:
            kind = "relay error"
        cause = f"{kind}: {str(error).strip() or type(error).__name__}"
        cur = await conn.execute("SELECT api.tse_failed(%s, %s) AS retry_at", (request.outbox_id, cause))
        row = await cur.fetchone()
        return row["retry_at"] if row else None


# --------------------------------------------------------------------------- topic provider


class ProviderHandler:
    """Topic ``provider``: what the payment provider is to be asked for an online top-up's checkout (one request per
    checkout, its own ordering key, so a slow one holds up no other).  ``api.provider_request`` says what:

    - ``poll`` (the outcome is open: ExternalPending, ExternalUnknown; or an admin aborted it before the provider's
      final answer, asked for up to 7 days so a payment it still takes is refunded): fetch the checkout's status; a determinate one
      (paid; declined or expired, both settled as declined: see ``Status.result``) goes to
      ``api.external_topup_settle``, keyed by the checkout reference, so a webhook racing the poll books once.  No
      answer yet (pending, unknown, no checkout id recorded yet, the provider unreachable) raises, and ``failed``
      records it with ``api.provider_failed`` (backoff 1, 2, 4 ... 60 s, then every 60 s); past the event's check
      window the database moves the top-up to ExternalUnknown there, and the polling goes on, so a late answer still
      settles it.
    - ``refund`` (an admin asked to refund a payment that could not be booked): ``provider.refund`` of the amount,
      keyed by the checkout reference (a repeat after a crash is the same refund), recorded by
      ``api.provider_refunded``; a refusal (4xx) by ``api.provider_refund_refused`` (back in the admin queue); an
      unreachable provider or a refund still under way is retried with backoff.
    - nothing (the provider answered, the refund is done, or 7 days passed): the request is done.
    """

    topic = "provider"

    def __init__(self, provider: Any) -> None:
        self.provider = provider

    async def handle(self, conn: psycopg.AsyncConnection, request: OutboxRequest) -> None:
        cur = await conn.execute("SELECT reference, checkout_id, state, action, amount FROM api.provider_request(%s)",
                                 (request.outbox_id,))
        row = await cur.fetchone()
        if row["action"] == "refund":
            await self._refund(conn, request, row)
        elif row["action"] == "poll":
            await self._poll(conn, row)

    async def _poll(self, conn: psycopg.AsyncConnection, row: dict[str, Any]) -> None:
        if not row["checkout_id"]:
            raise NotDeterminate("no provider checkout id recorded yet")
        status = await self.provider.fetch_status(row["checkout_id"])
        if not status.determinate:
            raise NotDeterminate(f"checkout {row['checkout_id']} is {status.value}")
        await conn.execute("SELECT * FROM api.external_topup_settle(%s, %s, %s)",
                           (row["reference"], status.result, row["checkout_id"]))

    async def _refund(self, conn: psycopg.AsyncConnection, request: OutboxRequest, row: dict[str, Any]) -> None:
        from .provider.interface import ProviderRequestError

        try:
            refund = await self.provider.refund(row["checkout_id"], row["amount"], key=row["reference"])
        except ProviderRequestError as err:
            log.warning("relay: the provider refused the refund of checkout %s (%s): %s", row["checkout_id"],
                        row["reference"], err)
            await conn.execute("SELECT api.provider_refund_refused(%s, %s)",
                               (request.outbox_id, f"the provider refused the refund: {str(err).strip()}"))
            return
        if refund.status != "succeeded":
            raise NotDeterminate(f"refund {refund.id} of checkout {row['checkout_id']} is {refund.status}")
        await conn.execute("SELECT api.provider_refunded(%s, %s)", (request.outbox_id, refund.id))

    async def failed(self, conn: psycopg.AsyncConnection, request: OutboxRequest,
                     error: BaseException) -> datetime | None:
        cause = f"{type(error).__name__}: {str(error).strip()}"
        cur = await conn.execute("SELECT api.provider_failed(%s, %s) AS retry_at", (request.outbox_id, cause))
        row = await cur.fetchone()
        return row["retry_at"] if row else None


class NotDeterminate(Exception):
    """The provider has no final answer for a checkout yet: poll again later."""


# --------------------------------------------------------------------------- running it


def make_tse(url: str | None = None, directory: str | None = None) -> TSE:
    """The TSE the relay signs with: a remote TSE service at ``url``, or a software TSE opened in ``directory``."""
    if url:
        from .tse.remote import RemoteTSE

        return RemoteTSE(url)
    if directory:
        from .tse.software import SoftwareTSE

        return SoftwareTSE(directory)
    raise ValueError("no TSE: give a TSE service URL or a software TSE directory")


@contextlib.asynccontextmanager
async def relay_service(database_url: str, handlers: Iterable[Handler], *, poll_s: float = DEFAULT_POLL_S,
                        workers: int = DEFAULT_WORKERS, expire_s: float | None = EXPIRE_INTERVAL_S,
                        stop_timeout_s: float = 15.0) -> AsyncIterator[Relay]:
    """Run a relay (``workers`` workers, reservation expiry every ``expire_s``) in a task while the block runs; at
    the end each worker finishes the request in hand and it stops."""
    relay = Relay(database_url, handlers, poll_s=poll_s, workers=workers, expire_s=expire_s)
    task = asyncio.create_task(relay.run(), name="festpay-relay")
    try:
        yield relay
    finally:
        relay.stop()
        try:
            await asyncio.wait_for(asyncio.shield(task), stop_timeout_s)
        except asyncio.TimeoutError:
            log.warning("relay: did not stop within %.0f s; cancelling", stop_timeout_s)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        except Exception as err:  # noqa: BLE001
            log.warning("relay: stopped with an error: %s", err)
