"""The reference terminal: registration, first tap, purchase, top-up, refund, replication (SPEC §5, §7).

Usage (async; one :class:`Terminal` per terminal home)::

    terminal = await Terminal.register(home, "http://127.0.0.1:8080", code)     # once
    async with Terminal.open(home) as terminal:                                  # start-up cleanup
        result = await terminal.buy(tag_path, [("Beer 0.5 l", 2)])               # -> PurchaseResult
        await terminal.replicate(deadline_s=10)                                  # or start_replicator()
    # leaving the block: cleanup at exit, stop the background replicator

Python decides nothing about money here beyond what a terminal must decide offline (the tag's own
limits); online, the backend answers every question.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import aiohttp

from .. import signing
from .client import Credentials, GatewayClient, Problem, Unreachable
from .home import DATABASE_FILE, HomeLock, NotRegistered, TerminalSettings
from .machine import State
from .store import Item, Snapshot, Store, StoredTransaction, utcnow
from .tag import LogEntry, TagData, TagError, TagRefused, VirtualTag, normalize_uid

log = logging.getLogger("festpay.terminal")

Crash = Literal["before-write", "after-write"]
BATCH_SIZE = 100


class TerminalError(Exception):
    """An expected failure of a terminal operation; ``slug`` is machine-readable."""

    def __init__(self, message: str, slug: str = "error"):
        super().__init__(message)
        self.slug = slug


class SimulatedCrash(Exception):
    """Raised by ``buy(..., crash=...)``: the process "dies" here; the terminal does no cleanup at exit."""

    def __init__(self, where: Crash, terminal_tx_number: int, state: State):
        super().__init__(f"simulated crash {where} the tag write (transaction {terminal_tx_number} left {state.value})")
        self.where = where
        self.terminal_tx_number = terminal_tx_number
        self.state = state


# ---------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ItemRequest:
    """What the operator keys in: a product (id or name), a quantity, and a price for open-price products."""

    product: str | int
    quantity: int = 1
    unit_price: int | None = None

    @classmethod
    def parse(cls, spec: str) -> "ItemRequest":
        """``PRODUCT[:QTY][@PRICE]``, e.g. ``Beer:2``, ``3:1``, ``Tip:1@100``."""
        text = spec.strip()
        price: int | None = None
        if "@" in text:
            text, _, price_text = text.rpartition("@")
            try:
                price = int(price_text)
            except ValueError:
                raise ValueError(f"bad price in item {spec!r}: {price_text!r} is not a whole number of cents") from None
        product, quantity = text, 1
        if ":" in text:
            head, _, tail = text.rpartition(":")
            if tail.strip().lstrip("-").isdigit():
                product, quantity = head, int(tail)
        if not product.strip():
            raise ValueError(f"item {spec!r} names no product")
        if quantity <= 0:
            raise ValueError(f"item {spec!r}: the quantity must be positive")
        return cls(product.strip(), quantity, price)


@dataclass(frozen=True)
class RefusedEntry:
    """A log entry the backend refused at a tag sync (SPEC §7): nothing was held or booked for it, and the
    terminal dropped it from the tag.  ``problem``: log-entry-forged, log-entry-foreign,
    log-entry-number-too-high, offline-limit-exceeded, implausible-offline-charge or idempotency-conflict."""

    assignment_id: int
    terminal_tx_number: int
    problem: str
    tag_tx_number: int | None = None       # from the tag's entry (None if the tag did not hold it)
    amount: int | None = None

    @property
    def key(self) -> tuple[int, int]:
        return (self.assignment_id, self.terminal_tx_number)


@dataclass(frozen=True)
class TapResult:
    """The first tap: what the tag says, and (online) what the backend says about its customer."""

    uid: str
    online: bool
    status: str                    # active, blocked, new (online or snapshot), or unknown
    tag_balance: int
    next_tag_tx_number: int
    unacknowledged: int            # log entries still on the tag
    acknowledged: int = 0          # log entries the backend acknowledged at this tap
    refused: tuple[RefusedEntry, ...] = ()   # log entries the backend refused at this tap (dropped from the tag)
    balance: int | None = None     # online info (or last snapshot when offline)
    held: int | None = None
    available: int | None = None
    snapshot_time: str | None = None
    offline_reason: str | None = None

    def summary(self) -> str:
        parts = [f"uid={self.uid}", f"online={'yes' if self.online else 'no'}", f"status={self.status}",
                 f"tag_balance={self.tag_balance}", f"next_tag_tx_number={self.next_tag_tx_number}",
                 f"acknowledged={self.acknowledged}", f"refused={len(self.refused)}",
                 f"unacknowledged={self.unacknowledged}"]
        if self.available is not None:
            parts.append(f"available={self.available}")
        return " ".join(parts)


@dataclass(frozen=True)
class PurchaseResult:
    state: State
    uid: str
    amount: int
    online: bool
    terminal_tx_number: int
    tag_tx_number: int | None
    transaction_id: int | None = None
    tag_balance: int | None = None
    available: int | None = None
    problem: str | None = None
    detail: str | None = None
    tap: TapResult | None = None

    @property
    def ok(self) -> bool:
        return self.state is State.COMMITTED

    def summary(self) -> str:
        parts = [f"state={self.state.value}",
                 f"transaction_id={self.transaction_id if self.transaction_id is not None else '-'}",
                 f"terminal_tx_number={self.terminal_tx_number}",
                 f"uid={self.uid}", f"amount={self.amount}", f"online={'yes' if self.online else 'no'}"]
        if self.tag_balance is not None:
            parts.append(f"tag_balance={self.tag_balance}")
        if self.available is not None:
            parts.append(f"available={self.available}")
        if self.problem:
            parts.append(f"problem={self.problem}")
        return " ".join(parts)


@dataclass(frozen=True)
class BookingResult:
    """A top-up or refund (online only)."""

    kind: str                       # topup or refund
    state: State
    uid: str
    amount: int
    terminal_tx_number: int
    transaction_id: int | None = None
    balance: int | None = None      # the backend's booked balance after it
    tag_balance: int | None = None
    problem: str | None = None
    detail: str | None = None

    @property
    def ok(self) -> bool:
        return self.state is State.COMMITTED

    def summary(self) -> str:
        parts = [f"state={self.state.value}",
                 f"transaction_id={self.transaction_id if self.transaction_id is not None else '-'}",
                 f"type={self.kind}", f"terminal_tx_number={self.terminal_tx_number}",
                 f"uid={self.uid}", f"amount={self.amount}"]
        if self.balance is not None:
            parts.append(f"balance={self.balance}")
        if self.tag_balance is not None:
            parts.append(f"tag_balance={self.tag_balance}")
        if self.problem:
            parts.append(f"problem={self.problem}")
        return " ".join(parts)


@dataclass
class ReplicationResult:
    sent: int = 0
    booked: int = 0
    duplicate: int = 0
    rejected: int = 0
    remaining: int = 0
    errors: list[str] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)

    @property
    def acknowledged(self) -> int:
        return self.booked + self.duplicate + self.rejected

    def summary(self) -> str:
        return (f"replicated={self.acknowledged} booked={self.booked} duplicate={self.duplicate} "
                f"rejected={self.rejected} remaining={self.remaining}")


# ---------------------------------------------------------------------------------------------- terminal


class Terminal:
    """One reference terminal: its home (settings, database, lock), its tag key and its gateway client."""

    def __init__(self, home: Path, settings: TerminalSettings, store: Store, lock: HomeLock | None,
                 client: GatewayClient, *, durable: bool = True):
        self.home = home
        self.durable = durable
        self.settings = settings
        self.store = store
        self._lock = lock
        self.client = client
        self._crashed = False
        self._closed = False
        self._replicator: asyncio.Task | None = None
        self._kick: asyncio.Event | None = None
        self.cleaned_up: list[StoredTransaction] = []

    # ------------------------------------------------------------------ life cycle

    @classmethod
    def open(cls, home: Path | str, *, session: aiohttp.ClientSession | None = None, cleanup: bool = True,
             lock: bool = True, timeout_s: float = 10.0, durable: bool = True) -> "Terminal":
        """Opens a registered terminal: takes its lock and runs the start-up cleanup (TCS -> TCU, Open -> Aborted).

        ``session``: a shared aiohttp session (many terminals in one process); ``durable=False`` skips the fsyncs
        of the SQLite commits and tag writes (load benchmarks only)."""
        home = Path(home)
        settings = TerminalSettings.load(home)
        home_lock = HomeLock(home) if lock else None
        if home_lock is not None:
            home_lock.acquire()
        try:
            store = Store(home / DATABASE_FILE, durable=durable)
        except BaseException:
            if home_lock is not None:
                home_lock.release()
            raise
        client = GatewayClient(settings.url, Credentials(settings.assignment_id, settings.secret), session=session,
                               timeout_s=timeout_s)
        terminal = cls(home, settings, store, home_lock, client, durable=durable)
        if cleanup:
            terminal.cleaned_up = terminal.cleanup(at_start=True)
        return terminal

    @classmethod
    async def register(cls, home: Path | str, url: str, code: str, *, device: str | None = None,
                       session: aiohttp.ClientSession | None = None, force: bool = False,
                       fetch_config: bool = True, timeout_s: float = 10.0, durable: bool = True) -> "Terminal":
        """Registers with a one-time code (POST register), stores terminal.json, fetches the config."""
        home = Path(home)
        try:
            old = TerminalSettings.load(home)
        except NotRegistered:
            old = None
        if old is not None and not force:
            raise TerminalError(f"{home} is registered already (assignment {old.assignment_id}); use --force "
                                "to register again", "already-registered")
        if old is not None:
            pending = Store(home / DATABASE_FILE)
            try:
                waiting = pending.count_pending(old.assignment_id)
            finally:
                pending.close()
            if waiting:
                raise TerminalError(f"{waiting} transactions of assignment {old.assignment_id} still wait for "
                                    "replication; replicate them first", "replication-pending")
        device = device or f"festpay-reference-terminal@{socket.gethostname()}:{home.name}"
        client = GatewayClient(url, session=session, timeout_s=timeout_s)
        key = str(uuid.uuid4())
        try:
            answer = await _retry(lambda: client.register(code, device, idempotency_key=key), attempts=3)
        finally:
            await client.close()
        settings = TerminalSettings(
            url=url, assignment_id=int(answer["assignment_id"]), event_id=int(answer["event_id"]),
            secret=str(answer["secret"]), tag_key=str(answer["tag_key"]), device=device, registered_at=utcnow(),
        )
        home.mkdir(parents=True, exist_ok=True)
        settings.save(home)
        terminal = cls.open(home, session=session, timeout_s=timeout_s, durable=durable)
        if fetch_config:
            try:
                await terminal.fetch_config()
            except BaseException:
                await terminal.close(replicate=False)
                raise
        return terminal

    async def __aenter__(self) -> "Terminal":
        return self

    async def __aexit__(self, exc_type, exc, tb) -> None:
        await self.close()

    async def close(self, *, replicate: bool = False, deadline_s: float = 10.0) -> None:
        """Exit: stops the background replicator, runs the exit cleanup (unless the terminal "crashed"),
        optionally replicates for up to ``deadline_s``, releases the home."""
        if self._closed:
            return
        self._closed = True
        try:
            await self.stop_replicator()
            if not self._crashed:
                self.cleanup()
                if replicate:
                    await self.replicate(deadline_s=deadline_s)
        finally:
            await self.client.close()
            self.store.close()
            if self._lock is not None:
                self._lock.release()

    def cleanup(self, *, at_start: bool = False) -> list[StoredTransaction]:
        """Moves every transaction left in TerminalConfirmStarted to TerminalConfirmUnknown (SPEC §5); at start-up
        also every one left Open to Aborted (a crash stopped it before the tag was written)."""
        moved = self.store.cleanup(abort_open=at_start)
        for tx in moved:
            log.warning("cleanup: transaction %s was left unfinished -> %s", tx.terminal_tx_number, tx.status.value)
        if moved:
            self._wake_replicator()
        return moved

    @property
    def assignment_id(self) -> int:
        return self.settings.assignment_id

    # ------------------------------------------------------------------ config

    async def fetch_config(self) -> dict[str, Any]:
        """GET config; stores it as the terminal's config snapshot."""
        config = await _retry(self.client.config, attempts=3)
        self.settings.config = config
        self.settings.config_fetched_at = utcnow()
        self.settings.save(self.home)
        return config

    async def _ensure_config(self, offline: bool) -> None:
        if self.settings.config:
            return
        if offline:
            raise TerminalError("no config snapshot yet; run once online (festpay terminal config)", "no-config")
        await self.fetch_config()

    def resolve_items(self, requests: Iterable[ItemRequest | tuple[str | int, int] | str]) -> list[Item]:
        """Turns keyed-in items into sold items with the product's name, price and VAT rate from the config."""
        items: list[Item] = []
        for req in requests:
            if isinstance(req, str):
                req = ItemRequest.parse(req)
            elif isinstance(req, tuple):
                req = ItemRequest(*req)
            product = self.find_product(req.product)
            price = product.get("price")
            if req.unit_price is not None:
                if product.get("fixed_price", True) and price is not None and req.unit_price != price:
                    raise TerminalError(f"{product['name']} has the fixed price {price}", "price-mismatch")
                price = req.unit_price
            if price is None:
                raise TerminalError(f"{product['name']} has no fixed price; key one in as {product['name']}:QTY@CENTS",
                                    "validation")
            items.append(Item(product_id=int(product["id"]), product_name=str(product["name"]),
                              quantity=req.quantity, unit_price=int(price),
                              vat_rate=Decimal(str(product.get("vat_rate", 0)))))
        if not items:
            raise TerminalError("no items", "validation")
        return items

    def find_product(self, key: str | int) -> dict[str, Any]:
        products = self.settings.products
        text = str(key).strip()
        if text.isdigit():
            for p in products:
                if int(p["id"]) == int(text):
                    return p
        lowered = text.casefold()
        exact = [p for p in products if str(p["name"]).casefold() == lowered]
        if len(exact) == 1:
            return exact[0]
        prefix = [p for p in products if str(p["name"]).casefold().startswith(lowered)]
        if len(prefix) == 1:
            return prefix[0]
        names = ", ".join(f"{p['id']}:{p['name']}" for p in products)
        if len(prefix) > 1:
            raise TerminalError(f"product {text!r} is ambiguous; products: {names}", "unknown-product")
        raise TerminalError(f"no product {text!r}; products: {names}", "unknown-product")

    # ------------------------------------------------------------------ first tap

    def _tag(self, tag_path: Path | str) -> "_Tag":
        return _Tag(VirtualTag(Path(tag_path)), self.durable)

    def read_tag(self, tag_path: Path | str) -> TagData:
        """Reads and verifies a tag (raises TagTampered / TagCorrupt / TagError)."""
        return self._tag(tag_path).read(self.settings.tag_key)

    async def first_tap(self, tag_path: Path | str, *, offline: bool = False) -> TapResult:
        """Reads the tag; online, uploads its log (POST sync), removes what the backend settled (acknowledged or
        refused), writes the backend's balance to it and keeps a snapshot; offline (or when the backend cannot be
        reached), combines the tag with the last snapshot."""
        tag = self._tag(tag_path)
        data = tag.read(self.settings.tag_key)
        reason = "forced offline" if offline else None
        if not offline:
            try:
                answer = await _retry(
                    lambda key=str(uuid.uuid4()): self.client.tag_sync(
                        data.uid, data.next_tag_tx_number, data.balance, [e.to_json() for e in data.log],
                        idempotency_key=key),
                    attempts=2,
                )
            except (Unreachable, _TransientProblem) as err:
                reason = f"backend unreachable: {err}"
                log.warning("first tap: %s; going on offline", reason)
            except Problem as err:
                raise TerminalError(f"tag sync refused: {err}", err.slug) from err
            else:
                return self._after_sync(tag, data, answer)
        snap = self.store.snapshot(data.uid)
        return TapResult(
            uid=data.uid, online=False, status=snap.status if snap else "unknown", tag_balance=data.balance,
            next_tag_tx_number=data.next_tag_tx_number, unacknowledged=len(data.log),
            balance=snap.balance if snap else None, held=snap.held if snap else None,
            available=snap.available if snap else None, snapshot_time=snap.updated_at if snap else None,
            offline_reason=reason,
        )

    def _after_sync(self, tag: "_Tag", data: TagData, answer: dict[str, Any]) -> TapResult:
        acked = {(int(a["assignment_id"]), int(a["terminal_tx_number"])) for a in answer.get("acknowledged") or []}
        refused = _refused_entries(data, answer.get("refused") or [])
        for r in refused:
            log.warning("tag %s: the backend refused log entry %s/%s (tag number %s, amount %s): %s; "
                        "dropped from the tag", data.uid, r.assignment_id, r.terminal_tx_number, r.tag_tx_number,
                        r.amount, r.problem)
        # A refused entry is settled like an acknowledged one: the backend holds nothing for it, the tag drops it.
        settled = acked | {r.key for r in refused}
        remaining = sum(e.amount for e in data.log if e.key not in settled)
        available = int(answer.get("available", 0))
        # The tag learns the backend's view: what is available, less the charges it still carries unsettled.
        new = data.acknowledged(settled, balance=available - remaining)
        tag.write(new, self.settings.tag_key)
        status = str(answer.get("status", "unknown"))
        self.store.put_snapshot(new.uid, status=status, balance=int(answer.get("balance", 0)),
                                held=int(answer.get("held", 0)), available=available,
                                tag_tx_number=new.next_tag_tx_number)
        return TapResult(
            uid=new.uid, online=True, status=status, tag_balance=new.balance,
            next_tag_tx_number=new.next_tag_tx_number, unacknowledged=len(new.log),
            acknowledged=sum(1 for e in data.log if e.key in acked), refused=tuple(refused),
            balance=int(answer.get("balance", 0)),
            held=int(answer.get("held", 0)), available=available,
        )

    async def sync_tag(self, tag_path: Path | str) -> TapResult:
        """First tap only (online): upload the log, learn the balance.  Raises when the backend is unreachable."""
        tap = await self.first_tap(tag_path)
        if not tap.online:
            raise TerminalError(f"tag sync needs the backend: {tap.offline_reason}", "unreachable")
        return tap

    # ------------------------------------------------------------------ purchase

    async def buy(self, tag_path: Path | str, items: Sequence[ItemRequest | tuple[str | int, int] | str], *,
                  offline: bool = False, crash: Crash | None = None,
                  operator_id: int | None = None) -> PurchaseResult:
        """A purchase (SPEC §7): cleanup, first tap, Open, completion (reserve online / tag limits offline),
        TerminalConfirmStarted, second tap and tag write, Committed.  Aborted with ``problem`` when refused.
        ``crash`` simulates a crash before or after the tag write (raises :class:`SimulatedCrash`)."""
        self._check_open()
        self.cleanup()
        await self._ensure_config(offline)
        try:
            sold = self.resolve_items(items)
        except TerminalError as err:
            if offline or err.slug != "unknown-product":
                raise
            try:
                await self.fetch_config()          # a product added since the last config: look again
            except (Unreachable, Problem):
                raise err from None
            sold = self.resolve_items(items)
        amount = sum(i.total for i in sold)
        if amount <= 0:
            raise TerminalError("the purchase amount must be positive", "validation")
        tag = self._tag(tag_path)
        tap = await self.first_tap(tag_path, offline=offline)
        online = tap.online
        tx = self.store.create(
            assignment_id=self.assignment_id, uid=tap.uid, transaction_type="purchase", amount=amount,
            tag_tx_number=tap.next_tag_tx_number, items=sold, operator_id=operator_id or self.settings.operator_id,
            offline=not online,
        )
        number = tx.terminal_tx_number

        def aborted(problem: str, detail: str, available: int | None = None,
                    transaction_id: int | None = None) -> PurchaseResult:
            self.store.set_state(self.assignment_id, number, State.ABORTED, problem=problem)
            self._wake_replicator()
            log.info("purchase %s aborted: %s", number, detail)
            return PurchaseResult(State.ABORTED, tap.uid, amount, online, number, tx.tag_tx_number,
                                  transaction_id=transaction_id, tag_balance=tap.tag_balance, available=available,
                                  problem=problem, detail=detail, tap=tap)

        # -- completion: reserve online, else the tag's own limits
        transaction_id: int | None = None
        available: int | None = tap.available
        if online:
            try:
                answer = await _retry(
                    lambda: self.client.reserve(number, tap.uid, tx.tag_tx_number, amount,
                                                [{"product_id": i.product_id, "quantity": i.quantity,
                                                  "unit_price": i.unit_price} for i in sold]),
                    attempts=2,
                )
            except (Unreachable, _TransientProblem) as err:
                log.warning("reserve: %s; completing offline", err)
                online = False
            except Problem as err:
                avail = err.body.get("available")
                return aborted(err.slug, err.detail or str(err), int(avail) if avail is not None else None)
            else:
                transaction_id = _int_or_none(answer.get("transaction_id"))
                available = _int_or_none(answer.get("available"))
                self.store.note_backend(self.assignment_id, number, transaction_id=transaction_id,
                                        backend_state=answer.get("state"))
        if not online:
            if tap.status == "blocked":
                return aborted("tag-blocked", f"tag {tap.uid} is blocked (last known online info)")
            try:
                self.read_tag(tag_path).check_charge(amount, offline=True, log_size=self.settings.offline_log_size,
                                                     offline_limit=self.settings.offline_limit)
            except TagRefused as err:
                return aborted(err.slug, str(err), tap.tag_balance if err.slug == "insufficient-balance" else None)
        self.store.set_state(self.assignment_id, number, State.CONFIRM_STARTED, offline=not online)
        if crash == "before-write":
            self._crashed = True
            raise SimulatedCrash("before-write", number, State.CONFIRM_STARTED)

        # -- second tap: same UID, same next number; write the charge
        try:
            data = tag.read(self.settings.tag_key)
        except TagError as err:
            return aborted(err.slug, f"second tap: {err}", available, transaction_id)
        if data.uid != tap.uid or data.next_tag_tx_number != tx.tag_tx_number:
            return aborted("second-tap-mismatch",
                           f"second tap: expected tag {tap.uid} at number {tx.tag_tx_number}, got {data.uid} at "
                           f"{data.next_tag_tx_number}", available, transaction_id)
        try:
            data.check_charge(amount, offline=not online, log_size=self.settings.offline_log_size,
                              offline_limit=self.settings.offline_limit)
        except TagRefused as err:
            return aborted(err.slug, f"second tap: {err}", available, transaction_id)
        entry = LogEntry(self.assignment_id, number, tx.tag_tx_number, amount, _rfc3339(tx.transaction_time),
                         mac=signing.log_entry_mac(self.settings.secret, self.assignment_id, number, tap.uid,
                                                   tx.tag_tx_number, amount))
        written = data.charged(entry)
        tag.write(written, self.settings.tag_key)
        if crash == "after-write":
            self._crashed = True
            raise SimulatedCrash("after-write", number, State.CONFIRM_STARTED)
        self.store.set_state(self.assignment_id, number, State.COMMITTED)
        self._wake_replicator()
        return PurchaseResult(State.COMMITTED, tap.uid, amount, online, number, tx.tag_tx_number,
                              transaction_id=transaction_id, tag_balance=written.balance, available=available, tap=tap)

    # ------------------------------------------------------------------ top-up and refund (online only)

    async def topup(self, tag_path: Path | str, amount: int, payment: str = "cash", *,
                    operator_id: int | None = None) -> BookingResult:
        """Online top-up: first tap, POST topups, then the new balance is written to the tag."""
        if payment not in ("cash", "card"):
            raise TerminalError("payment must be cash or card", "validation")
        return await self._online_booking("topup", tag_path, amount, payment, operator_id)

    async def refund(self, tag_path: Path | str, amount: int, *, operator_id: int | None = None) -> BookingResult:
        """Online cash refund: first tap, POST refunds, then the new balance is written to the tag."""
        return await self._online_booking("refund", tag_path, amount, "cash", operator_id)

    async def _online_booking(self, kind: str, tag_path: Path | str, amount: int, payment: str,
                              operator_id: int | None) -> BookingResult:
        self._check_open()
        self.cleanup()
        if amount <= 0:
            raise TerminalError("the amount must be positive", "validation")
        tag = self._tag(tag_path)
        tap = await self.first_tap(tag_path)
        if not tap.online:
            raise TerminalError(f"{kind}s need the backend online ({tap.offline_reason})", "offline")
        tx = self.store.create(
            assignment_id=self.assignment_id, uid=tap.uid, transaction_type=kind, amount=amount,
            tag_tx_number=tap.next_tag_tx_number, payment=payment,
            operator_id=operator_id or self.settings.operator_id,
        )
        number = tx.terminal_tx_number
        self.store.set_state(self.assignment_id, number, State.CONFIRM_STARTED)
        try:
            if kind == "topup":
                answer = await _retry(lambda: self.client.topup(number, tap.uid, amount, payment), attempts=4)
            else:
                answer = await _retry(lambda: self.client.refund(number, tap.uid, amount), attempts=4)
        except (Unreachable, _TransientProblem) as err:
            # The request may or may not have been booked: the outcome is unknown; replication settles it.
            self.store.set_state(self.assignment_id, number, State.CONFIRM_UNKNOWN, problem="unreachable")
            self._wake_replicator()
            return BookingResult(kind, State.CONFIRM_UNKNOWN, tap.uid, amount, number, tag_balance=tap.tag_balance,
                                 problem="unreachable", detail=str(err))
        except Problem as err:
            # The backend refused and booked nothing: its answer is the acknowledgement, nothing to replicate.
            self.store.set_state(self.assignment_id, number, State.ABORTED, problem=err.slug)
            self.store.mark_synced(self.assignment_id, number, transaction_id=None, backend_state=None)
            return BookingResult(kind, State.ABORTED, tap.uid, amount, number, tag_balance=tap.tag_balance,
                                 problem=err.slug, detail=err.detail or str(err))
        transaction_id = _int_or_none(answer.get("transaction_id"))
        balance = _int_or_none(answer.get("balance"))
        self.store.note_backend(self.assignment_id, number, transaction_id=transaction_id,
                                backend_state=answer.get("state"))
        tag_balance = tap.tag_balance
        try:
            data = tag.read(self.settings.tag_key)
            if data.uid != tap.uid:
                raise TagError(f"expected tag {tap.uid}, got {data.uid}", "second-tap-mismatch")
            if balance is not None:
                # booked balance, less what is held, less the charges the tag still carries unacknowledged
                new = data.with_balance(balance - (tap.held or 0) - data.unacknowledged_total)
                tag.write(new, self.settings.tag_key)
                tag_balance = new.balance
        except TagError as err:
            # Booked online already: the next online first tap writes the right balance to the tag.
            log.warning("%s %s booked, but the tag was not written: %s", kind, number, err)
        self.store.set_state(self.assignment_id, number, State.COMMITTED)
        self._wake_replicator()
        return BookingResult(kind, State.COMMITTED, tap.uid, amount, number, transaction_id=transaction_id,
                             balance=balance, tag_balance=tag_balance)

    # ------------------------------------------------------------------ replication

    async def replicate(self, *, deadline_s: float | None = 30.0, batch_size: int = BATCH_SIZE) -> ReplicationResult:
        """Replicates Committed, Aborted and TerminalConfirmUnknown transactions in batches (POST transactions),
        retrying network errors and 5xx with backoff, until none is left or ``deadline_s`` passed (None: forever).
        booked, duplicate and rejected all count as acknowledged."""
        result = ReplicationResult()
        start = time.monotonic()
        delay = 0.1
        size = batch_size
        while True:
            batch = self.store.pending(self.assignment_id, size)
            if not batch:
                break
            try:
                progressed = await self._replicate_batch(batch, result)
            except (Unreachable, Problem) as err:
                if isinstance(err, Problem) and not err.transient:
                    if err.status in (401, 403):
                        result.errors.append(f"replication refused: {err}")
                        break
                    if len(batch) > 1:
                        size = 1            # judge the entries one by one to find the one the gateway refuses
                        continue
                    tx = batch[0]
                    log.error("replication of %s refused for good: %s", tx.terminal_tx_number, err)
                    self.store.mark_synced(self.assignment_id, tx.terminal_tx_number, transaction_id=None,
                                           backend_state=None, problem=err.slug)
                    result.rejected += 1
                    continue
                result.errors.append(str(err))
                progressed = False
            if progressed:
                delay = 0.1
                if size == 1 and batch_size > 1:
                    size = batch_size
                continue
            if deadline_s is not None and time.monotonic() - start + delay > deadline_s:
                break
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 5.0)
        result.remaining = self.store.count_pending(self.assignment_id)
        return result

    async def _replicate_batch(self, batch: list[StoredTransaction], result: ReplicationResult) -> bool:
        by_number = {tx.terminal_tx_number: tx for tx in batch}
        answers = await self.client.replicate([tx.replication_entry() for tx in batch])
        result.sent += len(batch)
        progressed = False
        for r in answers:
            number = _int_or_none(r.get("terminal_tx_number"))
            if number not in by_number:
                continue
            outcome = r.get("outcome")
            if outcome not in ("booked", "duplicate", "rejected"):
                continue
            setattr(result, outcome, getattr(result, outcome) + 1)
            result.results.append(r)
            if outcome == "rejected":
                log.warning("replication of %s rejected: %s (backend state %s)", number, r.get("problem"),
                            r.get("state"))
            self.store.mark_synced(self.assignment_id, number, transaction_id=_int_or_none(r.get("transaction_id")),
                                   backend_state=r.get("state"), problem=r.get("problem"))
            progressed = True
        return progressed

    def start_replicator(self, interval_s: float = 2.0) -> asyncio.Task:
        """Starts background replication: after every final state change, and every ``interval_s``."""
        if self._replicator is None or self._replicator.done():
            self._kick = asyncio.Event()
            self._replicator = asyncio.create_task(self._replicate_forever(interval_s),
                                                   name=f"replicator-{self.assignment_id}")
        return self._replicator

    async def stop_replicator(self) -> None:
        task, self._replicator = self._replicator, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    def _wake_replicator(self) -> None:
        if self._kick is not None:
            self._kick.set()

    async def _replicate_forever(self, interval_s: float) -> None:
        assert self._kick is not None
        while True:
            try:
                await asyncio.wait_for(self._kick.wait(), timeout=interval_s)
            except asyncio.TimeoutError:
                pass
            self._kick.clear()
            try:
                res = await self.replicate(deadline_s=interval_s)
                if res.errors:
                    log.debug("background replication: %s", res.errors[-1])
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - keep replicating; the next round retries
                log.exception("background replication round failed")

    # ------------------------------------------------------------------ status

    def transactions(self, limit: int | None = None) -> list[StoredTransaction]:
        return self.store.transactions(limit)

    def snapshot(self, uid: str) -> Snapshot | None:
        return self.store.snapshot(normalize_uid(uid))

    def _check_open(self) -> None:
        if self._closed:
            raise TerminalError("this terminal is closed", "closed")
        if self._crashed:
            raise TerminalError("this terminal crashed (simulated); open it again", "crashed")


# ---------------------------------------------------------------------------------------------- helpers


class _Tag:
    """A VirtualTag written with or without fsync, as the terminal is configured."""

    def __init__(self, tag: VirtualTag, fsync: bool):
        self.tag, self.fsync = tag, fsync

    def read(self, tag_key_b64: str) -> TagData:
        return self.tag.read(tag_key_b64)

    def write(self, data: TagData, tag_key_b64: str | None) -> None:
        self.tag.write(data, tag_key_b64, fsync=self.fsync)


class _TransientProblem(Problem):
    """Marker type for except clauses: a :class:`Problem` that is worth retrying (5xx, 409, 429)."""


async def _retry(call, *, attempts: int = 3, base_delay: float = 0.2):
    """Calls ``call()``; retries Unreachable and transient problems. Raises the last error; a transient
    Problem is re-raised as :class:`_TransientProblem` so callers can tell it from a refusal."""
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except Unreachable:
            if attempt == attempts:
                raise
        except Problem as err:
            if not err.transient:
                raise
            if attempt == attempts:
                raise _TransientProblem(err.status, err.body) from err
        await asyncio.sleep(base_delay * (2 ** (attempt - 1)) * (0.5 + random.random()))
    raise AssertionError("unreachable")  # pragma: no cover


def _refused_entries(data: TagData, refused: list[dict[str, Any]]) -> list[RefusedEntry]:
    """The sync answer's ``refused`` list, with tag number and amount from the tag's own entries."""
    by_key = {e.key: e for e in data.log}
    result = []
    for r in refused:
        key = (int(r["assignment_id"]), int(r["terminal_tx_number"]))
        entry = by_key.get(key)
        result.append(RefusedEntry(key[0], key[1], str(r.get("problem") or "refused"),
                                   entry.tag_tx_number if entry else None, entry.amount if entry else None))
    return result


def _int_or_none(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _rfc3339(stamp: str) -> str:
    """Seconds precision for the tag log (it is small): 2025-07-10T12:00:00Z."""
    return stamp[:19] + "Z" if len(stamp) >= 19 else stamp
