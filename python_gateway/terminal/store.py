"""The terminal's own SQLite database: the seed's Transaction / TransactionItem model and a snapshot table.

Every state change is committed before the terminal goes on (what a crash leaves behind is what the
next start-up's cleanup sees).  Timestamps are RFC 3339 UTC strings.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

from . import machine
from .machine import State, SyncStatus

SCHEMA = """
CREATE TABLE IF NOT EXISTS "transaction" (
    assignment_id      INTEGER NOT NULL,
    terminal_tx_number INTEGER NOT NULL CHECK (terminal_tx_number > 0),
    rfid_uid           TEXT    NOT NULL,
    transaction_time   TEXT    NOT NULL,
    transaction_type   TEXT    NOT NULL CHECK (transaction_type IN ('purchase', 'topup', 'refund')),
    operator_id        INTEGER,
    position_id        INTEGER,
    status             TEXT    NOT NULL CHECK (status IN ('Open', 'TerminalConfirmStarted', 'TerminalConfirmUnknown',
                                                          'Committed', 'Aborted')),
    sync_status        TEXT    NOT NULL CHECK (sync_status IN ('local', 'pending', 'synced')),
    amount             INTEGER NOT NULL CHECK (amount > 0),
    tag_tx_number      INTEGER,
    payment            TEXT,
    problem            TEXT,
    offline            INTEGER NOT NULL DEFAULT 0,
    transaction_id     INTEGER,
    backend_state      TEXT,
    sync_problem       TEXT,
    updated_at         TEXT    NOT NULL,
    PRIMARY KEY (assignment_id, terminal_tx_number)
);
CREATE INDEX IF NOT EXISTS transaction_sync ON "transaction" (sync_status, assignment_id, terminal_tx_number);
CREATE INDEX IF NOT EXISTS transaction_status ON "transaction" (status);

CREATE TABLE IF NOT EXISTS transaction_item (
    assignment_id      INTEGER NOT NULL,
    terminal_tx_number INTEGER NOT NULL,
    item_number        INTEGER NOT NULL CHECK (item_number > 0),
    product_id         INTEGER NOT NULL,
    product_name       TEXT    NOT NULL,
    quantity           INTEGER NOT NULL CHECK (quantity > 0),
    unit_price         INTEGER NOT NULL CHECK (unit_price >= 0),
    vat_rate           TEXT    NOT NULL,
    PRIMARY KEY (assignment_id, terminal_tx_number, item_number),
    FOREIGN KEY (assignment_id, terminal_tx_number)
        REFERENCES "transaction" (assignment_id, terminal_tx_number) ON DELETE CASCADE
);

-- Last known online info per tag UID, for offline first taps.
CREATE TABLE IF NOT EXISTS tag_snapshot (
    uid           TEXT    PRIMARY KEY,
    status        TEXT    NOT NULL,
    balance       INTEGER NOT NULL,
    held          INTEGER NOT NULL,
    available     INTEGER NOT NULL,
    tag_tx_number INTEGER,
    updated_at    TEXT    NOT NULL
);
"""


def utcnow() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Item:
    """One line of a transaction, with the product's name, price and VAT rate as sold."""

    product_id: int
    product_name: str
    quantity: int
    unit_price: int
    vat_rate: Decimal
    item_number: int = 0

    @property
    def total(self) -> int:
        return self.quantity * self.unit_price


@dataclass(frozen=True)
class StoredTransaction:
    assignment_id: int
    terminal_tx_number: int
    rfid_uid: str
    transaction_time: str
    transaction_type: str
    status: State
    sync_status: SyncStatus
    amount: int
    tag_tx_number: int | None = None
    payment: str | None = None
    problem: str | None = None
    operator_id: int | None = None
    position_id: int | None = None
    offline: bool = False
    transaction_id: int | None = None
    backend_state: str | None = None
    sync_problem: str | None = None
    updated_at: str = ""
    items: tuple[Item, ...] = field(default_factory=tuple)

    def replication_entry(self) -> dict:
        """The entry of POST /terminal/v1/transactions for this transaction."""
        entry: dict = {
            "terminal_tx_number": self.terminal_tx_number,
            "type": self.transaction_type,
            "state": self.status.value,
            "uid": self.rfid_uid,
            "tag_tx_number": self.tag_tx_number,
            "time": self.transaction_time,
            "amount": self.amount,
            "payment": self.payment,
        }
        if self.items:
            entry["items"] = [
                {"product_id": i.product_id, "quantity": i.quantity, "unit_price": i.unit_price} for i in self.items
            ]
        return entry


@dataclass(frozen=True)
class Snapshot:
    uid: str
    status: str
    balance: int
    held: int
    available: int
    tag_tx_number: int | None
    updated_at: str


class Store:
    """The terminal database (one file per terminal)."""

    def __init__(self, path: Path | str, *, durable: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.path), isolation_level=None, timeout=30)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        # durable=False (benchmarks): WAL with synchronous=NORMAL, no fsync per commit.
        self.db.execute("PRAGMA synchronous=FULL" if durable else "PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.executescript(SCHEMA)
        columns = {r["name"] for r in self.db.execute('PRAGMA table_info("transaction")')}
        if "sync_problem" not in columns:          # databases made before the column existed
            self.db.execute('ALTER TABLE "transaction" ADD COLUMN sync_problem TEXT')

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # ------------------------------------------------------------------ transactions

    def next_number(self, assignment_id: int) -> int:
        row = self.db.execute(
            'SELECT coalesce(max(terminal_tx_number), 0) + 1 FROM "transaction" WHERE assignment_id = ?',
            (assignment_id,),
        ).fetchone()
        return int(row[0])

    def create(
        self,
        *,
        assignment_id: int,
        uid: str,
        transaction_type: str,
        amount: int,
        tag_tx_number: int | None = None,
        items: Sequence[Item] = (),
        payment: str | None = None,
        operator_id: int | None = None,
        position_id: int | None = None,
        offline: bool = False,
    ) -> StoredTransaction:
        """Creates a transaction in state Open with the next terminal transaction number."""
        now = utcnow()
        with self._tx() as db:
            number = self.next_number(assignment_id)
            db.execute(
                'INSERT INTO "transaction" (assignment_id, terminal_tx_number, rfid_uid, transaction_time, '
                "transaction_type, operator_id, position_id, status, sync_status, amount, tag_tx_number, payment, "
                "offline, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (assignment_id, number, uid, now, transaction_type, operator_id, position_id, State.OPEN.value,
                 SyncStatus.LOCAL.value, amount, tag_tx_number, payment, int(offline), now),
            )
            for n, item in enumerate(items, start=1):
                db.execute(
                    "INSERT INTO transaction_item (assignment_id, terminal_tx_number, item_number, product_id, "
                    "product_name, quantity, unit_price, vat_rate) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (assignment_id, number, n, item.product_id, item.product_name, item.quantity, item.unit_price,
                     str(item.vat_rate)),
                )
        return self.get(assignment_id, number)

    def set_state(
        self,
        assignment_id: int,
        number: int,
        to: State,
        *,
        problem: str | None = None,
        offline: bool | None = None,
        transaction_id: int | None = None,
        backend_state: str | None = None,
    ) -> StoredTransaction:
        """Moves a transaction to ``to`` (checked against the state machine) and commits."""
        with self._tx() as db:
            row = db.execute(
                'SELECT status FROM "transaction" WHERE assignment_id = ? AND terminal_tx_number = ?',
                (assignment_id, number),
            ).fetchone()
            if row is None:
                raise KeyError(f"no transaction {assignment_id}/{number}")
            machine.check(State(row["status"]), to, number)
            db.execute(
                'UPDATE "transaction" SET status = ?, sync_status = ?, problem = coalesce(?, problem), '
                "offline = coalesce(?, offline), transaction_id = coalesce(?, transaction_id), "
                "backend_state = coalesce(?, backend_state), updated_at = ? "
                "WHERE assignment_id = ? AND terminal_tx_number = ?",
                (to.value, machine.sync_status_for(to).value, problem,
                 None if offline is None else int(offline), transaction_id, backend_state, utcnow(),
                 assignment_id, number),
            )
        return self.get(assignment_id, number)

    def note_backend(self, assignment_id: int, number: int, *, transaction_id: int | None,
                     backend_state: str | None) -> None:
        """Remembers what the backend said about a transaction (no state change)."""
        self.db.execute(
            'UPDATE "transaction" SET transaction_id = coalesce(?, transaction_id), '
            "backend_state = coalesce(?, backend_state), updated_at = ? "
            "WHERE assignment_id = ? AND terminal_tx_number = ?",
            (transaction_id, backend_state, utcnow(), assignment_id, number),
        )

    def cleanup(self, *, abort_open: bool = False) -> list[StoredTransaction]:
        """Moves every TerminalConfirmStarted transaction to TerminalConfirmUnknown and, with ``abort_open`` (at
        start-up, when no purchase of this terminal can be under way), every Open one to Aborted with problem
        ``interrupted``: the tag is written only after TerminalConfirmStarted, so an Open one never charged it, and
        replicating it releases a reserve the backend may hold for it. Returns the moved transactions."""
        moves = [(State.CONFIRM_STARTED, State.CONFIRM_UNKNOWN, None)]
        if abort_open:
            moves.append((State.OPEN, State.ABORTED, "interrupted"))
        moved: list[tuple[int, int]] = []
        with self._tx() as db:
            for frm, to, problem in moves:
                rows = db.execute(
                    'SELECT assignment_id, terminal_tx_number FROM "transaction" WHERE status = ?', (frm.value,),
                ).fetchall()
                for row in rows:
                    machine.check(frm, to, row["terminal_tx_number"])
                db.execute(
                    'UPDATE "transaction" SET status = ?, sync_status = ?, problem = coalesce(?, problem), '
                    "updated_at = ? WHERE status = ?",
                    (to.value, SyncStatus.PENDING.value, problem, utcnow(), frm.value),
                )
                moved += [(r["assignment_id"], r["terminal_tx_number"]) for r in rows]
        return [self.get(a, n) for a, n in moved]

    def mark_synced(self, assignment_id: int, number: int, *, transaction_id: int | None,
                    backend_state: str | None, problem: str | None = None) -> None:
        """The backend acknowledged the transaction (``problem``: why it rejected it, if it did)."""
        self.db.execute(
            'UPDATE "transaction" SET sync_status = ?, transaction_id = coalesce(?, transaction_id), '
            "backend_state = coalesce(?, backend_state), sync_problem = ?, updated_at = ? "
            "WHERE assignment_id = ? AND terminal_tx_number = ? AND sync_status = ?",
            (SyncStatus.SYNCED.value, transaction_id, backend_state, problem, utcnow(), assignment_id, number,
             SyncStatus.PENDING.value),
        )

    def get(self, assignment_id: int, number: int) -> StoredTransaction:
        row = self.db.execute(
            'SELECT * FROM "transaction" WHERE assignment_id = ? AND terminal_tx_number = ?',
            (assignment_id, number),
        ).fetchone()
        if row is None:
            raise KeyError(f"no transaction {assignment_id}/{number}")
        return self._with_items([row])[0]

    def pending(self, assignment_id: int, limit: int = 100) -> list[StoredTransaction]:
        """Final transactions of this assignment waiting for replication, oldest first."""
        rows = self.db.execute(
            'SELECT * FROM "transaction" WHERE sync_status = ? AND assignment_id = ? '
            "ORDER BY terminal_tx_number LIMIT ?",
            (SyncStatus.PENDING.value, assignment_id, limit),
        ).fetchall()
        return self._with_items(rows)

    def count_pending(self, assignment_id: int | None = None) -> int:
        if assignment_id is None:
            row = self.db.execute('SELECT count(*) FROM "transaction" WHERE sync_status = ?',
                                  (SyncStatus.PENDING.value,)).fetchone()
        else:
            row = self.db.execute('SELECT count(*) FROM "transaction" WHERE sync_status = ? AND assignment_id = ?',
                                  (SyncStatus.PENDING.value, assignment_id)).fetchone()
        return int(row[0])

    def transactions(self, limit: int | None = None) -> list[StoredTransaction]:
        """All transactions, newest first."""
        sql = 'SELECT * FROM "transaction" ORDER BY assignment_id DESC, terminal_tx_number DESC'
        rows = self.db.execute(sql + (" LIMIT ?" if limit else ""), (limit,) if limit else ()).fetchall()
        return self._with_items(rows)

    def _with_items(self, rows: Sequence[sqlite3.Row]) -> list[StoredTransaction]:
        out = []
        for row in rows:
            items = tuple(
                Item(product_id=i["product_id"], product_name=i["product_name"], quantity=i["quantity"],
                     unit_price=i["unit_price"], vat_rate=Decimal(i["vat_rate"]), item_number=i["item_number"])
                for i in self.db.execute(
                    "SELECT * FROM transaction_item WHERE assignment_id = ? AND terminal_tx_number = ? "
                    "ORDER BY item_number",
                    (row["assignment_id"], row["terminal_tx_number"]),
                )
            )
            out.append(
                StoredTransaction(
                    assignment_id=row["assignment_id"], terminal_tx_number=row["terminal_tx_number"],
                    rfid_uid=row["rfid_uid"], transaction_time=row["transaction_time"],
                    transaction_type=row["transaction_type"], status=State(row["status"]),
                    sync_status=SyncStatus(row["sync_status"]), amount=row["amount"],
                    tag_tx_number=row["tag_tx_number"], payment=row["payment"], problem=row["problem"],
                    operator_id=row["operator_id"], position_id=row["position_id"], offline=bool(row["offline"]),
                    transaction_id=row["transaction_id"], backend_state=row["backend_state"],
                    sync_problem=row["sync_problem"], updated_at=row["updated_at"], items=items,
                )
            )
        return out

    # ------------------------------------------------------------------ snapshots

    def put_snapshot(self, uid: str, *, status: str, balance: int, held: int, available: int,
                     tag_tx_number: int | None) -> Snapshot:
        now = utcnow()
        self.db.execute(
            "INSERT INTO tag_snapshot (uid, status, balance, held, available, tag_tx_number, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (uid) DO UPDATE SET status = excluded.status, "
            "balance = excluded.balance, held = excluded.held, available = excluded.available, "
            "tag_tx_number = excluded.tag_tx_number, updated_at = excluded.updated_at",
            (uid, status, balance, held, available, tag_tx_number, now),
        )
        return Snapshot(uid, status, balance, held, available, tag_tx_number, now)

    def snapshot(self, uid: str) -> Snapshot | None:
        row = self.db.execute("SELECT * FROM tag_snapshot WHERE uid = ?", (uid,)).fetchone()
        if row is None:
            return None
        return Snapshot(row["uid"], row["status"], row["balance"], row["held"], row["available"],
                        row["tag_tx_number"], row["updated_at"])
