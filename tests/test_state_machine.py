"""Model-based test of the transaction state machine (SPEC 3-5, 7).

A Hypothesis ``RuleBasedStateMachine`` drives the real api functions in random order -- top-up, reserve, replication
in every state (also of terminal transactions the backend has not seen), tag sync with the tag's log, reserve expiry,
admin resolution, refund, transfer, block/unblock, online top-ups (created, pending, settled paid or declined, past the
provider check window), chargebacks (directly and through support), deposit returns, payout requests and payout runs
(made, done, revoked; ledger.payout_candidates' eligibility rule) and repeats of each -- against a small Python model
of the spec that predicts every answer: outcome or named problem, state, balance and held amount.  After every step the
model and the ledger agree (each tag's balance, held amount and status, each transaction's state and hold, each payout
run's state, the system accounts' sums) and ``api.check_invariants()`` is empty.

Calls are made as production makes them: terminal functions as ``festpay_terminal``, expiry and the provider's
answers as ``festpay_relay``, the rest as the DBA.  The online top-up's checkout row (and its relay request) is
inserted by the DBA, as ``api.portal_topup_start`` / ``api.portal_topup_pending`` would, without a portal session; so
is a payout request (the ``ledger.payout_bank`` row ``api.portal_payout_set`` stores).  Runs and support's chargebacks
are made with an admin session; each example starts by revoking the open runs of earlier ones and blocking their
customers' payouts, so that a run takes this example's customers only.

Profiles: ``festpay-ci`` (the default) runs 90 examples of up to 25 steps (about 2,000 steps, ~22 s), derandomized so
that CI runs the same sequences every time (a failure is reproducible, never flaky); with
``FESTPAY_STATE_MACHINE_STEPS=N`` (``make chaos``: 10,000) it runs new random sequences until at least N steps were
checked.  Short examples: Hypothesis switches rules off at random per example (swarm testing), so many examples mix
more.  One database and one event serve the module; every example uses fresh tags.  The tests after the random run
walk sequences the random run reaches only now and then, step by step through the same model and checks.
"""

from __future__ import annotations

import collections
import itertools
import os
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (Bundle, RuleBasedStateMachine, initialize, invariant, precondition, rule,
                                 run_state_machine_as_test)
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from python_gateway.signing import log_entry_mac
from tests.conftest import migrated_database
from tests.races import register_terminal

STEPS_PER_EXAMPLE = 25
CHAOS_STEPS = int(os.environ.get("FESTPAY_STATE_MACHINE_STEPS", "0") or 0)

settings.register_profile(
    "festpay-ci", max_examples=90, stateful_step_count=STEPS_PER_EXAMPLE, deadline=None, derandomize=True,
    database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], print_blob=True)
settings.register_profile(
    "festpay-chaos", max_examples=max(1, CHAOS_STEPS // (2 * STEPS_PER_EXAMPLE)), stateful_step_count=STEPS_PER_EXAMPLE,
    deadline=None, derandomize=False, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], print_blob=True)

MAX_BALANCE = 15_000
MIN_TOPUP, MAX_TOPUP = 100, 10_000
FEES = {"cash": 0, "card": 50, "online": 30}
OFFLINE_LIMIT = 5_000
PAYOUT_FEE = 150
CUP_DEPOSIT = 200
IBAN = "DE89370400440532013000"

# SPEC 5's transition table (schema/50_transactions.sql) and the states that hold customer money (ledger.holds).
TRANSITIONS = {
    ("ReservePending", "Reserve"), ("ReservePending", "ReserveExpired"), ("ReservePending", "Committed"),
    ("ReservePending", "Aborted"), ("ReservePending", "TerminalConfirmUnknown"), ("Reserve", "Committed"),
    ("ReserveExpired", "Committed"), ("ReserveExpired", "Aborted"), ("TerminalConfirmUnknown", "Committed"),
    ("TerminalConfirmUnknown", "Aborted"), ("Open", "ExternalPending"), ("ExternalPending", "Committed"),
    ("ExternalPending", "Aborted"), ("ExternalPending", "ExternalUnknown"), ("ExternalUnknown", "Committed"),
    ("ExternalUnknown", "Aborted"),
}
HOLDING = {"ReservePending", "Reserve", "TerminalConfirmUnknown", "Open", "ExternalPending"}


# --------------------------------------------------------------------------------------------------------------
# The module's database and event
# --------------------------------------------------------------------------------------------------------------


@dataclass
class World:
    """Connections and the event all examples share."""

    su: psycopg.Connection
    terminal: psycopg.Connection
    relay: psycopg.Connection
    event_id: int
    sale: int                      # a Bar terminal's assignment
    sale_secret: str               # its secret, base64 (for the MACs of its tag log entries)
    topup: int                     # the top-up terminal's assignment
    tip: int                       # a product of free price: one item of any amount
    cup: int                       # a returnable product (a deposit of CUP_DEPOSIT)
    admin: str                     # an admin session token (role admin: support and finance)
    accounts: dict[str, int]       # system accounts: merchant, drawer, topup:card, topup:online, fee, deposit, ...
    slugs: dict[str, str]          # SQLSTATE -> problem slug
    sale_numbers: itertools.count = field(default_factory=lambda: itertools.count(1))
    topup_numbers: itertools.count = field(default_factory=lambda: itertools.count(1))
    steps: int = 0
    bank_numbers: itertools.count = field(default_factory=lambda: itertools.count(1))
    paths: collections.Counter = field(default_factory=collections.Counter)   # how often the rarer paths were taken


WORLD: World | None = None


def make_world(su: psycopg.Connection, terminal: psycopg.Connection, relay: psycopg.Connection) -> World:
    event_id = su.execute(
        "SELECT api.create_event(%s, 'EUR', %s, %s, %s, p_topup_fee_cash => %s, p_topup_fee_card => %s,"
        " p_topup_fee_online => %s, p_reserve_timeout_s => 86400, p_offline_limit => %s)",
        ("State machine", MAX_BALANCE, MIN_TOPUP, MAX_TOPUP, FEES["cash"], FEES["card"], FEES["online"],
         OFFLINE_LIMIT)).fetchone()[0]
    merchant = su.execute("SELECT api.create_merchant(%s, 'Bar')", (event_id,)).fetchone()[0]
    su.execute("SELECT api.create_position(%s, 'Bar', 'sale', %s)", (event_id, merchant))
    su.execute("SELECT api.create_position(%s, 'Top-up', 'topup')", (event_id,))
    tip = su.execute("SELECT api.create_product(%s, 'Tip', NULL, 0, false, false)", (event_id,)).fetchone()[0]
    cup = su.execute("SELECT api.create_product(%s, 'Cup', %s, 0, true, true)", (event_id, CUP_DEPOSIT)).fetchone()[0]
    su.execute("UPDATE ledger.event SET payout_fee = %s, payout_debtor_name = 'Festival', payout_debtor_iban = %s"
               " WHERE id = %s", (PAYOUT_FEE, IBAN, event_id))
    su.execute("INSERT INTO ledger.admin_user (username, password_hash, role)"
               " VALUES ('state-machine', extensions.crypt('pw', extensions.gen_salt('bf', 4)), 'admin')")
    admin = su.execute("SELECT token FROM api.admin_sign_in('state-machine', 'pw', 'state machine')").fetchone()[0]
    assert admin is not None
    sale = register_terminal(su, event_id, "Bar")
    topup = register_terminal(su, event_id, "Top-up")
    secret = su.execute("SELECT encode(secret, 'base64') FROM ledger.assignment WHERE id = %s", (sale,)).fetchone()[0]
    accounts = {
        "merchant": su.execute("SELECT account_id FROM ledger.merchant WHERE id = %s", (merchant,)).fetchone()[0],
        "drawer": su.execute("SELECT cash_account_id FROM ledger.assignment WHERE id = %s", (topup,)).fetchone()[0],
        "topup:card": su.execute("SELECT ledger.system_account(%s, 'topup', 'card')", (event_id,)).fetchone()[0],
        "topup:online": su.execute("SELECT ledger.system_account(%s, 'topup', 'online')", (event_id,)).fetchone()[0],
        "fee": su.execute("SELECT ledger.system_account(%s, 'fee', 'fees')", (event_id,)).fetchone()[0],
    }
    for kind in ("deposit", "payout", "donation"):
        accounts[kind] = su.execute("SELECT ledger.system_account(%s, %s, %s)", (event_id, kind, kind)).fetchone()[0]
    assert None not in accounts.values()
    slugs = dict(su.execute("SELECT sqlstate::text, slug FROM ledger.problem").fetchall())
    return World(su, terminal, relay, event_id, sale, secret, topup, tip, cup, admin, accounts, slugs)


# --------------------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class MTag:
    """A wristband: what the ledger holds of it, and what is physically written on it (next number, unacked log)."""

    uid: str
    exists: bool = False           # known to the ledger
    status: str = "new"
    balance: int = 0
    held: int = 0
    booked: bool = False           # has booking lines (unblock makes it active, else new)
    next_no: int = 0
    log: list["MTx"] = field(default_factory=list)
    overdrawn: bool = False        # an unreviewed ledger.overdraft row (a booking took it below 0)
    donate: str | None = None      # payout bank data: None (none given), 'none', 'part' or 'all'
    donation: int = 0              # the part donated ('part')
    bank_no: int = 0               # order of entry (entered_at)
    run: "MRun | None" = None      # the open or done payout run it is in

    def __repr__(self) -> str:
        return f"MTag({self.uid})"


@dataclass(eq=False)
class MTx:
    """A purchase of the Bar terminal; state None while the backend has not seen it."""

    number: int
    tag: MTag
    amount: int
    tag_no: int
    id: int | None = None
    state: str | None = None
    held: int = 0
    written: bool = False          # charged on the tag (a log entry)
    reserved: bool = False         # made by api.reserve
    charged_back: int = 0

    def __repr__(self) -> str:
        return f"MTx(#{self.number} {self.amount} {self.state})"


@dataclass(eq=False)
class MOnline:
    """An online top-up with its checkout (reference) and the relay's provider request (outbox row)."""

    id: int
    reference: str
    outbox_id: int
    tag: MTag
    amount: int
    state: str
    aged: bool = False             # created before the event's provider check window
    refund_due: bool = False

    def __repr__(self) -> str:
        return f"MOnline({self.amount} {self.state})"


@dataclass(eq=False)
class MLine:
    """A customer's line of a payout run: its transfer, fee and donation, and their transactions."""

    tag: MTag
    transfer: int
    fee: int
    donation: int
    payout_id: int | None
    donation_id: int | None


@dataclass(eq=False)
class MRun:
    id: int
    lines: list[MLine]
    state: str = "open"

    def __repr__(self) -> str:
        return f"MRun({self.id} {self.state} {len(self.lines)})"


@dataclass(eq=False)
class MTopup:
    number: int
    tag: MTag
    amount: int
    method: str


class Refused(Exception):
    """A named problem the api raised."""

    def __init__(self, slug: str):
        super().__init__(slug)
        self.slug = slug


tx_outcomes = st.sampled_from(["Committed", "Aborted", "TerminalConfirmUnknown"])
decisions = st.sampled_from(["Committed", "Aborted"])


class LedgerMachine(RuleBasedStateMachine):
    tags = Bundle("tags")
    purchases = Bundle("purchases")
    onlines = Bundle("onlines")
    topups = Bundle("topups")

    def __init__(self) -> None:
        super().__init__()
        assert WORLD is not None
        self.w = WORLD
        self.all_tags: list[MTag] = []
        self.all_txs: list[MTx] = []
        self.all_onlines: list[MOnline] = []
        self.runs: list[MRun] = []
        # Earlier examples' customers take part in no payout run of this one: their open runs are revoked, their
        # payouts blocked (as support would).
        for (run_id,) in self.w.su.execute("SELECT id FROM ledger.payout_run WHERE state = 'open'").fetchall():
            self.w.su.execute("SELECT api.admin_payout_run_revoke(%s, %s, 'next example')", (self.w.admin, run_id))
        self.w.su.execute("UPDATE ledger.payout_bank SET blocked = true, blocked_reason = 'earlier example'"
                          " WHERE NOT blocked")
        self.sys_base = self.system_sums()
        self.sys = {k: 0 for k in self.w.accounts}

    # ---- talking to the ledger ---------------------------------------------------------------------------------

    def call(self, conn: psycopg.Connection, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
        """Rows of one api call; a named problem raises Refused, anything else fails the test."""
        try:
            with conn.cursor(row_factory=dict_row) as cur:
                return cur.execute(sql, params).fetchall()
        except psycopg.Error as err:
            slug = self.w.slugs.get(err.sqlstate or "")
            if slug is None:
                raise
            raise Refused(slug) from err

    def expect_refusal(self, slug: str, conn: psycopg.Connection, sql: str, params: tuple = ()) -> None:
        try:
            rows = self.call(conn, sql, params)
        except Refused as r:
            assert r.slug == slug, f"expected {slug}, got {r.slug}"
            if slug in ("payout-locked", "chargeback-exceeds-purchase", "payout-not-eligible", "payout-run-closed"):
                self.w.paths[slug] += 1
            return
        raise AssertionError(f"expected {slug}, got {rows}")

    def system_sums(self) -> dict[str, int]:
        ids = list(self.w.accounts.values())
        rows = dict(self.w.su.execute(
            "SELECT a, coalesce((SELECT sum(amount) FROM ledger.booking WHERE debit_account_id = a), 0)"
            "        - coalesce((SELECT sum(amount) FROM ledger.booking WHERE credit_account_id = a), 0)"
            "  FROM unnest(%s::bigint[]) AS a", (ids,)).fetchall())
        return {k: int(rows[v]) for k, v in self.w.accounts.items()}

    # ---- model helpers -----------------------------------------------------------------------------------------

    def book_purchase(self, tx: MTx) -> None:
        tx.tag.balance -= tx.amount
        tx.tag.held -= tx.held
        tx.held = 0
        tx.tag.booked = True
        self.sys["merchant"] += tx.amount
        if tx.tag.balance < 0:
            tx.tag.overdrawn = True

    def book_topup(self, tag: MTag, amount: int, fee: int, source: str) -> None:
        tag.balance += amount - fee
        tag.booked = True
        tag.exists = True
        if tag.status == "new":
            tag.status = "active"
        self.sys[source] -= amount
        self.sys["fee"] += fee

    def move(self, tx: MTx | MOnline, to: str) -> str:
        """ledger.set_state: 'duplicate', 'invalid' or 'changed' (hold released, booked when Committed)."""
        if tx.state == to:
            return "duplicate"
        if (tx.state, to) not in TRANSITIONS:
            return "invalid"
        tx.state = to
        if isinstance(tx, MOnline):
            if to == "Committed":
                self.book_topup(tx.tag, tx.amount, FEES["online"], "topup:online")
            return "changed"
        if to == "Committed":
            self.book_purchase(tx)
        elif to not in HOLDING:
            tx.tag.held -= tx.held
            tx.held = 0
        return "changed"

    def write_on_tag(self, tx: MTx) -> None:
        """The terminal writes the charge to the tag (second tap): a log entry, the tag's number moves past it."""
        if not tx.written:
            tx.written = True
            tx.tag.log.append(tx)
            tx.tag.next_no = max(tx.tag.next_no, tx.tag_no + 1)

    @staticmethod
    def items(w: World, amount: int) -> list[dict[str, int]]:
        return [{"product_id": w.tip, "quantity": 1, "unit_price": amount}]

    # ---- rules: tags and terminal money ------------------------------------------------------------------------

    @initialize(target=tags, amount=st.integers(MIN_TOPUP, MAX_TOPUP))
    def funded_tag(self, amount: int) -> MTag:
        """Every example starts with one tag topped up in cash (more tags come from new_tag)."""
        tag = self.new_tag()
        self.topup(tag, amount, "cash")
        return tag

    @precondition(lambda self: len(self.all_tags) < 5)
    @rule(target=tags)
    def new_tag(self) -> MTag:
        tag = MTag(uuid.uuid4().hex[:16].upper())
        self.all_tags.append(tag)
        return tag

    @rule(target=topups, tag=tags, amount=st.one_of(st.integers(MIN_TOPUP, 5_000), st.integers(50, 12_000)),
          method=st.sampled_from(["cash", "card"]))
    def topup(self, tag: MTag, amount: int, method: str):
        number = next(self.w.topup_numbers)
        sql = "SELECT * FROM api.topup(%s, %s, %s, %s, %s)"
        params = (self.w.topup, number, tag.uid, amount, method)
        fee = FEES[method]
        if tag.status == "blocked":
            slug = "tag-blocked"
        elif self.in_open_run(tag):
            slug = "payout-locked"
        elif not MIN_TOPUP <= amount <= MAX_TOPUP:
            slug = "topup-out-of-bounds"
        elif tag.balance + amount - fee > MAX_BALANCE:
            slug = "max-balance-exceeded"
        else:
            [row] = self.call(self.w.terminal, sql, params)
            self.book_topup(tag, amount, fee, "drawer" if method == "cash" else "topup:card")
            assert (row["state"], row["balance"]) == ("Committed", tag.balance)
            return MTopup(number, tag, amount, method)
        self.expect_refusal(slug, self.w.terminal, sql, params)
        return MTopup(0, tag, amount, method)

    @rule(t=topups)
    def repeat_topup(self, t: MTopup) -> None:
        """The same top-up again (a lost answer): the first booking's answer, nothing booked twice."""
        if t.number == 0:
            return
        [row] = self.call(self.w.terminal, "SELECT * FROM api.topup(%s, %s, %s, %s, %s)",
                          (self.w.topup, t.number, t.tag.uid, t.amount, t.method))
        assert (row["state"], row["balance"]) == ("Committed", t.tag.balance)

    @rule(tag=tags, amount=st.integers(1, 4_000))
    def refund(self, tag: MTag, amount: int) -> None:
        sql = "SELECT * FROM api.refund(%s, %s, %s, %s)"
        params = (self.w.topup, next(self.w.topup_numbers), tag.uid, amount)
        if not tag.exists:
            slug = "not-found"
        elif tag.status == "blocked":
            slug = "tag-blocked"
        elif tag.balance - tag.held < amount:
            slug = "insufficient-balance"
        else:
            [row] = self.call(self.w.terminal, sql, params)
            tag.balance -= amount
            tag.booked = True
            self.sys["drawer"] += amount
            assert (row["state"], row["balance"]) == ("Committed", tag.balance)
            return
        self.expect_refusal(slug, self.w.terminal, sql, params)

    @rule(src=tags, dst=tags, amount=st.one_of(st.none(), st.integers(1, 8_000)))
    def transfer(self, src: MTag, dst: MTag, amount: int | None) -> None:
        sql = "SELECT * FROM api.transfer(%s, %s, %s, %s)"
        params = (self.w.event_id, src.uid, dst.uid, amount)
        value = src.balance - src.held if amount is None else amount
        if not src.exists:
            slug = "not-found"
        elif src is dst or value <= 0:
            slug = "validation"
        elif dst.status == "blocked":
            slug = "tag-blocked"
        elif self.in_open_run(dst):
            slug = "payout-locked"
        elif dst.balance + value > MAX_BALANCE:
            slug = "max-balance-exceeded"
        elif src.balance - src.held < value:
            slug = "insufficient-balance"
        else:
            [row] = self.call(self.w.su, sql, params)
            src.balance -= value
            src.booked = dst.booked = dst.exists = True
            dst.balance += value
            if dst.status == "new":
                dst.status = "active"
            assert (row["from_balance"], row["to_balance"]) == (src.balance, dst.balance)
            return
        self.expect_refusal(slug, self.w.su, sql, params)

    @rule(tag=tags, blocked=st.booleans())
    def block(self, tag: MTag, blocked: bool) -> None:
        sql = "SELECT api.set_tag_blocked(%s, %s, %s) AS status"
        params = (self.w.event_id, tag.uid, blocked)
        if not tag.exists:
            self.expect_refusal("not-found", self.w.su, sql, params)
            return
        [row] = self.call(self.w.su, sql, params)
        tag.status = "blocked" if blocked else "active" if tag.booked else "new"
        assert row["status"] == tag.status

    @rule(tag=tags, amount=st.integers(1, 4_000), card=st.one_of(st.integers(1, 3_000), st.integers(1, 20_000)))
    def open_loop_purchase(self, tag: MTag, amount: int, card: int) -> None:
        """A sale paid partly by card at the till (SPEC 3): a card top-up of ``card`` (with the card fee) and the
        purchase, both booked or neither; money coming on is checked like a top-up only for what is left over."""
        sql = "SELECT * FROM api.open_loop_purchase(%s, %s, %s, %s, %s, %s, %s)"
        params = (self.w.sale, next(self.w.sale_numbers), tag.uid, tag.next_no, amount,
                  Jsonb(self.items(self.w, amount)), card)
        fee = FEES["card"]
        if not tag.exists:
            slug = "not-found"
        elif tag.status == "blocked":
            slug = "tag-blocked"
        elif card - amount > 0 and self.in_open_run(tag):
            slug = "payout-locked"
        elif tag.balance + card - amount - fee > MAX_BALANCE:
            slug = "max-balance-exceeded"
        elif tag.balance + card - fee - amount < tag.held:
            slug = "insufficient-balance"
        else:
            [row] = self.call(self.w.terminal, sql, params)
            self.book_topup(tag, card, fee, "topup:card")
            tag.balance -= amount
            self.sys["merchant"] += amount
            assert (row["state"], row["balance"]) == ("Committed", tag.balance)
            self.w.paths["open-loop"] += 1
            return
        self.expect_refusal(slug, self.w.terminal, sql, params)

    # ---- rules: purchases ---------------------------------------------------------------------------------------

    @rule(target=purchases, tag=tags, amount=st.integers(1, 2_000))
    def reserve(self, tag: MTag, amount: int) -> MTx:
        tx = MTx(next(self.w.sale_numbers), tag, amount, tag.next_no, reserved=True)
        sql = "SELECT * FROM api.reserve(%s, %s, %s, %s, %s, %s)"
        params = (self.w.sale, tx.number, tag.uid, tx.tag_no, amount, Jsonb(self.items(self.w, amount)))
        if not tag.exists:
            slug = "not-found"
        elif tag.status == "blocked":
            slug = "tag-blocked"
        elif tag.status == "new":
            slug = "tag-not-active"
        elif tag.balance - tag.held < amount:
            slug = "insufficient-balance"
        else:
            [row] = self.call(self.w.terminal, sql, params)
            tx.id, tx.state, tx.held = row["transaction_id"], "ReservePending", amount
            tag.held += amount
            assert (row["state"], row["available"]) == ("ReservePending", tag.balance - tag.held)
            self.all_txs.append(tx)
            return tx
        self.expect_refusal(slug, self.w.terminal, sql, params)
        # Refused: the terminal's number stays unseen; a later replication of it is an unseen terminal transaction.
        self.all_txs.append(tx)
        return tx

    @precondition(lambda self: any(t.reserved and t.id is not None for t in self.all_txs))
    @rule(data=st.data())
    def repeat_reserve(self, data: st.DataObject) -> None:
        """The same reserve again: the same transaction in whatever state it is now, nothing held twice."""
        tx = data.draw(st.sampled_from([t for t in self.all_txs if t.reserved and t.id is not None]))
        [row] = self.call(self.w.terminal, "SELECT * FROM api.reserve(%s, %s, %s, %s, %s, %s)",
                          (self.w.sale, tx.number, tx.tag.uid, tx.tag_no, tx.amount,
                           Jsonb(self.items(self.w, tx.amount))))
        assert (row["transaction_id"], row["state"]) == (tx.id, tx.state)

    @rule(target=purchases, tag=tags, amount=st.one_of(st.integers(1, 2_000), st.integers(1, 6_000)))
    def offline_sale(self, tag: MTag, amount: int) -> MTx:
        """The terminal charges the tag offline: only the tag's log knows, until tag sync or replication."""
        tx = MTx(next(self.w.sale_numbers), tag, amount, tag.next_no)
        self.write_on_tag(tx)
        self.all_txs.append(tx)
        return tx

    def second_tap(self, tx: MTx) -> None:
        """The terminal writes a reserved (or unknown) charge to the tag; its replication comes later, maybe after
        the tag's next first tap."""
        if tx.state in ("ReservePending", "ReserveExpired", "TerminalConfirmUnknown"):
            self.write_on_tag(tx)

    def predict_replicate(self, tx: MTx, outcome: str) -> tuple[str | None, str, str | None]:
        """(state after, outcome, problem) of replicating tx as `outcome`; updates the model."""
        tag = tx.tag
        if tx.state is None:
            if outcome == "Committed" and (not tag.exists or tag.status == "new" or tx.amount > OFFLINE_LIMIT):
                return None, "rejected", "implausible-offline-charge"
            if not tag.exists:
                tag.exists = True                     # an Aborted or unknown outcome registers the tag
            tx.state = outcome
            if outcome == "Committed":
                self.book_purchase(tx)
            return outcome, "booked", None
        target = outcome
        if outcome == "TerminalConfirmUnknown" and tx.state == "Reserve":
            target = "Committed"
        elif outcome == "TerminalConfirmUnknown" and tx.state in ("Committed", "Aborted"):
            target = tx.state
        result = self.move(tx, target)
        if result == "duplicate":
            return tx.state, "duplicate", None
        if result == "invalid":
            return tx.state, "rejected", "invalid-transition"
        return tx.state, "booked", None

    def replicate_once(self, tx: MTx, outcome: str) -> None:
        entry = {"terminal_tx_number": tx.number, "type": "purchase", "state": outcome, "uid": tx.tag.uid,
                 "tag_tx_number": tx.tag_no, "time": datetime.now(timezone.utc).isoformat(), "amount": tx.amount,
                 "items": self.items(self.w, tx.amount)}
        [row] = self.call(self.w.terminal, "SELECT * FROM api.replicate(%s, %s)", (self.w.sale, Jsonb([entry])))
        state, result, problem = self.predict_replicate(tx, outcome)
        if tx.id is None and row["transaction_id"] is not None:
            tx.id = row["transaction_id"]
        assert (row["state"], row["outcome"], row["problem"]) == (state, result, problem), (tx, outcome, row)

    def replicate(self, tx: MTx, outcome: str, written: bool, twice: bool) -> None:
        """A terminal replicates its transaction (Committed: it wrote the tag; unknown: it may have); with twice,
        the same batch again, which must change nothing."""
        if outcome == "Committed" or (outcome == "TerminalConfirmUnknown" and written):
            self.write_on_tag(tx)
        self.replicate_once(tx, outcome)
        if twice:
            before = (tx.state, tx.tag.balance, tx.tag.held)
            self.replicate_once(tx, outcome)
            if tx.state is not None:
                assert (tx.state, tx.tag.balance, tx.tag.held) == before

    @rule(tag=tags)
    def tag_sync(self, tag: MTag) -> None:
        """First tap: the tag's unacknowledged log goes up; the backend books what it proves."""
        log = [{"assignment_id": self.w.sale, "terminal_tx_number": tx.number, "tag_tx_number": tx.tag_no,
                "amount": tx.amount, "time": datetime.now(timezone.utc).isoformat(),
                "mac": log_entry_mac(self.w.sale_secret, self.w.sale, tx.number, tag.uid, tx.tag_no, tx.amount)}
               for tx in tag.log]
        [row] = self.call(self.w.terminal, "SELECT * FROM api.tag_sync(%s, %s, %s, %s, %s)",
                          (self.w.sale, tag.uid, tag.next_no, tag.balance, Jsonb(log)))
        acked, refused, offline, seen = [], [], 0, set()
        for tx in tag.log:
            if tx.state is None:
                if not tag.exists or tag.status == "new":
                    refused.append((tx.number, "implausible-offline-charge"))
                    continue
                if offline + tx.amount > OFFLINE_LIMIT:
                    refused.append((tx.number, "offline-limit-exceeded"))
                    continue
                offline += tx.amount
                tx.state, tx.held = "Reserve", tx.amount
                tag.held += tx.amount
                if tx.id is None:
                    tx.id = self.w.su.execute(
                        "SELECT id FROM ledger.transaction WHERE assignment_id = %s AND terminal_tx_number = %s",
                        (self.w.sale, tx.number)).fetchone()[0]
            elif tx.state == "ReservePending":
                self.move(tx, "Reserve")
            elif tx.state in ("TerminalConfirmUnknown", "ReserveExpired"):
                self.move(tx, "Committed")
            seen.add(id(tx))
            acked.append(tx.number)
        # The log is complete evidence: an unknown outcome at or below the tag's number that is not in it was not charged.
        for tx in self.all_txs:
            if (tx.tag is tag and tx.state == "TerminalConfirmUnknown" and tx.tag_no <= tag.next_no
                    and id(tx) not in seen):
                self.move(tx, "Aborted")
        tag.log.clear()
        assert [a["terminal_tx_number"] for a in row["acknowledged"]] == acked
        assert [(r["terminal_tx_number"], r["problem"]) for r in row["refused"]] == refused
        assert (row["status"], row["balance"], row["held"]) == (tag.status, tag.balance, tag.held)

    def expire(self, tx: MTx) -> None:
        """The reserve timeout passes (the DBA moves expires_at into the past); the relay expires reservations."""
        if tx.id is not None:
            self.w.su.execute("UPDATE ledger.transaction SET expires_at = now() - interval '1 second'"
                              " WHERE id = %s AND state = 'ReservePending'", (tx.id,))
        [row] = self.call(self.w.relay, "SELECT api.expire_reservations(%s) AS n", (self.w.event_id,))
        expected = 1 if tx.state == "ReservePending" else 0
        if expected:
            self.move(tx, "ReserveExpired")
        assert row["n"] == expected

    def resolve_purchase(self, tx: MTx, decision: str) -> None:
        if tx.id is None:
            return
        self.resolve(tx, decision)

    def resolve(self, tx: MTx | MOnline, decision: str) -> None:
        """An admin decides an unknown outcome; anything still in progress is refused (invalid-transition). An online
        top-up is booked only by the provider's paid: committing one is refused (validation), nothing changes."""
        if isinstance(tx, MOnline) and decision == "Committed" and tx.state != "Committed":
            self.expect_refusal("validation", self.w.su,
                                "SELECT * FROM api.resolve_transaction(%s, %s, 'state machine test')", (tx.id, decision))
            return
        [row] = self.call(self.w.su, "SELECT * FROM api.resolve_transaction(%s, %s, 'state machine test')",
                          (tx.id, decision))
        if tx.state not in ("TerminalConfirmUnknown", "ExternalUnknown", "Committed", "Aborted"):
            result = "invalid"
        else:
            result = self.move(tx, decision)
        expected = {"changed": ("booked", None), "duplicate": ("duplicate", None),
                    "invalid": ("rejected", "invalid-transition")}[result]
        assert (row["state"], row["outcome"], row["problem"]) == (tx.state, *expected), (tx, decision, row)

    # ---- rules: online top-ups ----------------------------------------------------------------------------------

    @rule(target=onlines, tag=tags, amount=st.one_of(st.integers(MIN_TOPUP, 5_000), st.integers(50, 12_000)))
    def online_topup(self, tag: MTag, amount: int):
        """A visitor starts an online top-up: created (Open), a checkout, ExternalPending before the provider call."""
        sql = "SELECT api.external_topup_create(%s, %s, %s) AS id"
        params = (self.w.event_id, tag.uid, amount)
        if not tag.exists:
            slug = "not-found"
        elif tag.status == "blocked":
            slug = "tag-blocked"
        elif self.in_open_run(tag):
            slug = "payout-locked"
        elif not MIN_TOPUP <= amount <= MAX_TOPUP:
            slug = "topup-out-of-bounds"
        elif tag.balance + amount - FEES["online"] > MAX_BALANCE:
            slug = "max-balance-exceeded"
        else:
            [row] = self.call(self.w.su, sql, params)
            reference = "ft_" + secrets.token_hex(16)
            self.w.su.execute("INSERT INTO ledger.external_checkout (reference, transaction_id) VALUES (%s, %s)",
                              (reference, row["id"]))
            outbox_id = self.w.su.execute(
                "INSERT INTO ledger.outbox (topic, ordering_key, transaction_id) VALUES ('provider', %s, %s)"
                " RETURNING id", (reference, row["id"])).fetchone()[0]
            [pending] = self.call(self.w.su, "SELECT * FROM api.external_topup_pending(%s)", (row["id"],))
            assert (pending["state"], pending["outcome"]) == ("ExternalPending", "booked")
            online = MOnline(row["id"], reference, outbox_id, tag, amount, "ExternalPending")
            self.all_onlines.append(online)
            return online
        self.expect_refusal(slug, self.w.su, sql, params)
        return None

    def settle_once(self, online: MOnline, result: str) -> None:
        [row] = self.call(self.w.relay, "SELECT * FROM api.external_topup_settle(%s, %s)", (online.reference, result))
        tag = online.tag
        reason = None
        if result == "paid" and online.state in ("ExternalPending", "ExternalUnknown"):
            if tag.status == "blocked":
                reason = "tag-blocked"
            elif tag.balance + online.amount - FEES["online"] > MAX_BALANCE:
                reason = "max-balance-exceeded"
        elif result == "paid" and online.state == "Aborted":
            reason = "aborted"
        if reason is not None:
            # The provider has the money, the ledger cannot take it: Aborted, nothing booked, a refund due (once).
            self.move(online, "Aborted")
            expected = ("Aborted", "duplicate" if online.refund_due else "refund-due",
                        None if reason == "aborted" else reason)
            online.refund_due = True
        else:
            moved = self.move(online, "Committed" if result == "paid" else "Aborted")
            expected = (online.state, *{"changed": ("booked", None), "duplicate": ("duplicate", None),
                                        "invalid": ("rejected", "invalid-transition")}[moved])
        assert (row["state"], row["outcome"], row["problem"]) == expected, (online, result, row)

    def settle(self, online: MOnline | None, result: str, twice: bool) -> None:
        """The provider's answer (webhook or poll); with twice, the same answer again (a duplicate)."""
        if online is None:
            return
        self.settle_once(online, result)
        if twice:
            before = (online.state, online.tag.balance)
            self.settle_once(online, result)
            assert (online.state, online.tag.balance) == before

    def provider_failed(self, online: MOnline | None, aged: bool) -> None:
        """The relay's poll gets no determinate answer; past the check window a pending top-up becomes unknown."""
        if online is None:
            return
        if aged and not online.aged:
            self.w.su.execute("UPDATE ledger.external_checkout c SET created_at = now() - e.provider_check_window"
                              " - interval '1 second' FROM ledger.event e WHERE c.reference = %s AND e.id = %s",
                              (online.reference, self.w.event_id))
            online.aged = True
        self.call(self.w.relay, "SELECT api.provider_failed(%s, 'no answer')", (online.outbox_id,))
        if online.state == "ExternalPending" and online.aged:
            self.move(online, "ExternalUnknown")

    def resolve_online(self, online: MOnline | None, decision: str) -> None:
        if online is not None:
            self.resolve(online, decision)

    # ---- one rule per kind of transaction: every action stays available in every example ---------------------

    @rule(tx=purchases, action=st.sampled_from(["replicate", "second_tap", "tag_sync", "expire", "resolve"]),
          outcome=tx_outcomes, written=st.booleans(), twice=st.booleans(), decision=decisions)
    def purchase_step(self, tx: MTx, action: str, outcome: str, written: bool, twice: bool, decision: str) -> None:
        """Something happens to a purchase: replication, the tag write, its tag's next first tap, expiry, an admin."""
        if action == "replicate":
            self.replicate(tx, outcome, written, twice)
        elif action == "second_tap":
            self.second_tap(tx)
        elif action == "tag_sync":
            self.tag_sync(tx.tag)
        elif action == "expire":
            self.expire(tx)
        else:
            self.resolve_purchase(tx, decision)

    @rule(online=onlines, action=st.sampled_from(["settle", "provider_failed", "resolve"]),
          result=st.sampled_from(["paid", "declined"]), twice=st.booleans(), aged=st.booleans(), decision=decisions)
    def online_step(self, online: MOnline | None, action: str, result: str, twice: bool, aged: bool,
                    decision: str) -> None:
        """Something happens to an online top-up: the provider's answer, a poll without one, an admin."""
        if action == "settle":
            self.settle(online, result, twice)
        elif action == "provider_failed":
            self.provider_failed(online, aged)
        else:
            self.resolve_online(online, decision)

    # ---- rules: chargebacks and deposit returns ------------------------------------------------------------------

    @precondition(lambda self: any(t.id is not None for t in self.all_txs))
    @rule(data=st.data(), committed=st.integers(0, 3), amount=st.one_of(st.integers(1, 1_000), st.integers(1, 2_000)),
          via_admin=st.booleans())
    def chargeback_rule(self, data: st.DataObject, committed: int, amount: int, via_admin: bool) -> None:
        """A chargeback of a committed purchase mostly (one in four: of any purchase the ledger knows, as it is); when
        none is committed yet, its terminal's replication (Committed) comes first."""
        known = [t for t in self.all_txs if t.id is not None]
        done = [t for t in known if t.state == "Committed"]
        tx = data.draw(st.sampled_from(done if done and committed else known))
        if committed and tx.state != "Committed":
            self.replicate(tx, "Committed", written=True, twice=False)
        self.chargeback(tx, amount, via_admin)

    def chargeback(self, tx: MTx, amount: int, via_admin: bool) -> None:
        """The merchant gives (part of) a committed purchase back (customer <- merchant): never more than is left of
        it; support's api.admin_chargeback names every refusal validation."""
        if via_admin:
            sql = "SELECT api.admin_chargeback(%s, %s, %s, 'state machine') AS transaction_id"
            params = (self.w.admin, tx.id, amount)
        else:
            sql, params = "SELECT * FROM api.chargeback(%s, %s)", (tx.id, amount)
        if tx.state != "Committed":
            slug = "not-found"
        elif amount > tx.amount - tx.charged_back:
            slug = "chargeback-exceeds-purchase"
        else:
            [row] = self.call(self.w.su, sql, params)
            tx.charged_back += amount
            tag = tx.tag
            tag.balance += amount
            if tag.status == "new":
                tag.status = "active"
            self.sys["merchant"] -= amount
            self.w.paths["chargeback"] += 1
            if not via_admin:
                assert (row["state"], row["balance"]) == ("Committed", tag.balance)
            return
        self.expect_refusal("validation" if via_admin else slug, self.w.su, sql, params)

    @rule(tag=tags, quantity=st.integers(1, 4))
    def deposit_return(self, tag: MTag, quantity: int) -> None:
        """Cups come back at a till: their deposit to the customer (customer <- deposit), blocked tag or not."""
        sql = "SELECT * FROM api.deposit_return(%s, %s, %s, %s)"
        params = (self.w.topup, next(self.w.topup_numbers), tag.uid,
                  Jsonb([{"product_id": self.w.cup, "quantity": quantity}]))
        if not tag.exists:
            self.expect_refusal("not-found", self.w.terminal, sql, params)
            return
        [row] = self.call(self.w.terminal, sql, params)
        tag.balance += quantity * CUP_DEPOSIT
        tag.booked = True
        if tag.status == "new":
            tag.status = "active"
        self.sys["deposit"] -= quantity * CUP_DEPOSIT
        self.w.paths["deposit-return"] += 1
        assert (row["state"], row["balance"]) == ("Committed", tag.balance)

    # ---- rules: payouts --------------------------------------------------------------------------------------------

    @staticmethod
    def in_open_run(tag: MTag) -> bool:
        return tag.run is not None and tag.run.state == "open"

    def unresolved(self, tag: MTag) -> bool:
        unresolved = {"ReservePending", "Reserve", "TerminalConfirmUnknown", "ExternalPending", "ExternalUnknown"}
        return (any(t.tag is tag and t.state in unresolved for t in self.all_txs)
                or any(o.tag is tag and o.state in unresolved for o in self.all_onlines))

    def payout_of(self, tag: MTag) -> tuple[int, int, int] | None:
        """ledger.payout_candidates for one tag: (transfer, fee, donation) when eligible, else None."""
        if (not tag.exists or tag.donate is None or tag.run is not None or self.unresolved(tag)
                or tag.overdrawn or tag.balance <= 0):
            return None
        d = {"none": 0, "part": min(tag.donation, tag.balance), "all": tag.balance}[tag.donate]
        rest = tag.balance - d - PAYOUT_FEE
        transfer, fee = (rest, PAYOUT_FEE) if rest > 0 else (0, 0)
        if transfer == 0 and d != tag.balance:
            return None                               # below-fee
        return transfer, fee, d

    @rule(tag=tags, donate=st.sampled_from(["none", "none", "part", "all"]), donation=st.integers(1, 3_000))
    def bank_data(self, tag: MTag, donate: str, donation: int) -> None:
        """The visitor's payout request: what api.portal_payout_set stores, inserted by the DBA (no portal session);
        like the portal, nothing changes while the tag is in a run."""
        if not tag.exists or tag.run is not None:
            return
        self.w.su.execute(
            "INSERT INTO ledger.payout_bank (tag_id, event_id, iban, holder, email, donate, donation, entered_at)"
            " SELECT id, event_id, %s, 'Visitor', 'visitor@example.org', %s, %s, clock_timestamp()"
            "   FROM ledger.tag WHERE event_id = %s AND uid = %s"
            " ON CONFLICT (tag_id) DO UPDATE SET donate = excluded.donate, donation = excluded.donation,"
            "                                    updated_at = now()",
            (IBAN, donate, donation if donate == "part" else None, self.w.event_id, tag.uid))
        if tag.donate is None:
            tag.bank_no = next(self.w.bank_numbers)
        tag.donate, tag.donation = donate, donation if donate == "part" else 0

    @rule(tag=tags, ask=st.booleans(), donate=st.sampled_from(["none", "none", "part", "all"]),
          donation=st.integers(1, 3_000), max_count=st.sampled_from([1, 10]))
    def payout_run_rule(self, tag: MTag, ask: bool, donate: str, donation: int, max_count: int) -> None:
        """A run, with a visitor's payout request just before it or not."""
        if ask:
            self.bank_data(tag, donate, donation)
        self.payout_run_create(max_count)

    def payout_run_create(self, max_count: int) -> None:
        """Finance makes a run of the eligible customers, oldest bank data first: their money is held at once."""
        sql = "SELECT api.admin_payout_run_create(%s, %s, %s, %s) AS id"
        params = (self.w.admin, max_count, 10**9, date.today() + timedelta(days=1))
        eligible = sorted((t for t in self.all_tags if self.payout_of(t) is not None), key=lambda t: t.bank_no)
        if not eligible:
            self.expect_refusal("payout-not-eligible", self.w.su, sql, params)
            return
        [row] = self.call(self.w.su, sql, params)
        lines = {r[0]: r[1:] for r in self.w.su.execute(
            "SELECT g.uid, l.line_no, l.amount, l.fee, l.donation, l.payout_transaction_id, l.donation_transaction_id"
            "  FROM ledger.payout_line l JOIN ledger.tag g ON g.id = l.tag_id WHERE l.run_id = %s", (row["id"],))}
        run = MRun(row["id"], [])
        for no, tag in enumerate(eligible[:max_count], 1):
            transfer, fee, d = self.payout_of(tag)
            line_no, amount, lfee, ldonation, payout_id, donation_id = lines.pop(tag.uid)
            assert (line_no, amount, lfee, ldonation) == (no, transfer, fee, d), tag
            assert (payout_id is not None, donation_id is not None) == (transfer > 0, d > 0)
            run.lines.append(MLine(tag, transfer, fee, d, payout_id, donation_id))
            tag.held += transfer + fee + d
            tag.run = run
        assert lines == {}, lines
        self.runs.append(run)
        self.w.paths["payout-run"] += 1
        self.w.paths["payout-line"] += len(run.lines)

    @precondition(lambda self: bool(self.runs))
    @rule(data=st.data(), done=st.booleans(), closed=st.integers(0, 3))
    def payout_run_close(self, data: st.DataObject, done: bool, closed: int = 0) -> None:
        """Finance marks a run done (booked, tags blocked) or revokes it (money released); a closed run is refused.
        An open run mostly (one in four: any run of the example)."""
        still_open = [r for r in self.runs if r.state == "open"]
        run = data.draw(st.sampled_from(still_open if still_open and closed else self.runs))
        if done:
            sql, params = "SELECT api.admin_payout_run_done(%s, %s) AS totals", (self.w.admin, run.id)
        else:
            sql, params = "SELECT api.admin_payout_run_revoke(%s, %s, 'state machine')", (self.w.admin, run.id)
        if run.state != "open":
            self.expect_refusal("payout-run-closed", self.w.su, sql, params)
            return
        [row] = self.call(self.w.su, sql, params)
        for line in run.lines:
            tag, total = line.tag, line.transfer + line.fee + line.donation
            tag.held -= total
            if done:
                tag.balance -= total
                tag.booked = True
                tag.status = "blocked"
                if tag.balance < 0:
                    tag.overdrawn = True
                self.sys["payout"] += line.transfer
                self.sys["fee"] += line.fee
                self.sys["donation"] += line.donation
            else:
                tag.run = None
        run.state = "done" if done else "revoked"
        self.w.paths["payout-" + run.state] += 1
        if done:
            assert row["totals"] == {"count": len(run.lines), "transfers": sum(x.transfer for x in run.lines),
                                     "fees": sum(x.fee for x in run.lines),
                                     "donations": sum(x.donation for x in run.lines)}

    # ---- after every step ---------------------------------------------------------------------------------------

    @invariant()
    def ledger_agrees(self) -> None:
        self.w.steps += 1
        su = self.w.su
        uids = [t.uid for t in self.all_tags]
        rows = {r[0]: r[1:] for r in su.execute(
            "SELECT g.uid, g.status::text, a.balance, a.held FROM ledger.tag g JOIN ledger.account a"
            " ON a.id = g.account_id WHERE g.event_id = %s AND g.uid = ANY(%s)", (self.w.event_id, uids))}
        for tag in self.all_tags:
            if tag.exists:
                assert rows.get(tag.uid) == (tag.status, tag.balance, tag.held), (tag, rows.get(tag.uid))
            else:
                assert tag.uid not in rows, tag
        txs: list[MTx | MOnline] = [t for t in self.all_txs if t.id is not None] + list(self.all_onlines)
        states = {r[0]: r[1:] for r in su.execute(
            "SELECT id, state::text, held FROM ledger.transaction WHERE id = ANY(%s)", ([t.id for t in txs],))}
        for tx in txs:
            held = tx.held if isinstance(tx, MTx) else 0
            assert states[tx.id] == (tx.state, held), (tx, states[tx.id])
        state_of = {"open": ("ExternalPending", True), "done": ("Committed", False), "revoked": ("Aborted", False)}
        expected = {}
        for run in self.runs:
            state, holds = state_of[run.state]
            for line in run.lines:
                if line.payout_id is not None:
                    expected[line.payout_id] = (state, line.transfer + line.fee if holds else 0)
                if line.donation_id is not None:
                    expected[line.donation_id] = (state, line.donation if holds else 0)
        if expected:
            got = {r[0]: r[1:] for r in su.execute(
                "SELECT id, state::text, held FROM ledger.transaction WHERE id = ANY(%s)", (list(expected),))}
            assert got == expected
            runs = dict(su.execute("SELECT id, state::text FROM ledger.payout_run WHERE id = ANY(%s)",
                                   ([r.id for r in self.runs],)).fetchall())
            assert runs == {r.id: r.state for r in self.runs}
        sums = self.system_sums()
        assert {k: sums[k] - self.sys_base[k] for k in sums} == self.sys
        broken = su.execute("SELECT * FROM api.check_invariants()").fetchall()
        assert broken == [], f"broken invariants: {broken}"


# --------------------------------------------------------------------------------------------------------------
# The test
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(pg_cluster):
    global WORLD
    with migrated_database(pg_cluster, "festpay_state_machine") as url, \
            psycopg.connect(url, autocommit=True) as su, \
            psycopg.connect(pg_cluster.url("festpay_state_machine", user="festpay_terminal"), autocommit=True) as term, \
            psycopg.connect(pg_cluster.url("festpay_state_machine", user="festpay_relay"), autocommit=True) as relay:
        WORLD = make_world(su, term, relay)
        try:
            yield WORLD
        finally:
            WORLD = None


def test_ledger_follows_the_model(world: World) -> None:
    """The random sequences: ~2,000 steps in CI (derandomized), FESTPAY_STATE_MACHINE_STEPS steps in chaos runs."""
    profile = settings.get_profile("festpay-chaos" if CHAOS_STEPS else "festpay-ci")
    started = time.monotonic()
    run_state_machine_as_test(LedgerMachine, settings=profile)
    while world.steps < CHAOS_STEPS:      # examples may stop short of the step count: run more until there
        run_state_machine_as_test(LedgerMachine, settings=profile)
    print(f"state machine: {world.steps} steps in {time.monotonic() - started:.1f} s;",
          dict(sorted(world.paths.items())))


# Sequences through the model that the random runs reach only now and then: each step checked like a random one.


class FixedData:
    """Stands in for st.data() in the fixed sequences: draws the one value given."""

    def __init__(self, value: Any):
        self.value = value

    def draw(self, _strategy: Any) -> Any:
        return self.value


def checked(world: World) -> LedgerMachine:
    machine = LedgerMachine()
    machine.ledger_agrees()
    return machine


def test_unknown_outcome_missing_from_the_tag_log_is_aborted_at_the_next_tap(world: World) -> None:
    m = checked(world)
    tag = m.funded_tag(2_000)
    tx = m.reserve(tag, 700)
    m.replicate(tx, "TerminalConfirmUnknown", written=False, twice=True)
    m.ledger_agrees()
    assert (tx.state, tag.held) == ("TerminalConfirmUnknown", 700)
    m.tag_sync(tag)
    m.ledger_agrees()
    assert (tx.state, tag.balance, tag.held) == ("Aborted", 2_000, 0)


def test_charge_on_the_tag_before_its_replication_is_held_then_booked(world: World) -> None:
    m = checked(world)
    tag = m.funded_tag(2_000)
    tx = m.reserve(tag, 500)
    m.second_tap(tx)
    m.tag_sync(tag)
    m.ledger_agrees()
    assert (tx.state, tag.held) == ("Reserve", 500)
    m.expire(tx)                                     # a Reserve never expires
    m.replicate(tx, "TerminalConfirmUnknown", written=True, twice=True)
    m.ledger_agrees()
    assert (tx.state, tag.balance, tag.held) == ("Committed", 1_500, 0)


def test_expired_reserve_replicated_as_committed_is_booked_even_when_it_overdraws(world: World) -> None:
    m = checked(world)
    tag = m.funded_tag(1_000)
    tx = m.reserve(tag, 800)
    m.expire(tx)
    m.refund(tag, 900)
    m.ledger_agrees()
    m.replicate(tx, "Committed", written=True, twice=True)
    m.ledger_agrees()
    assert (tx.state, tag.balance) == ("Committed", -700)


def test_offline_charges_beyond_the_offline_limit_are_refused_at_tag_sync(world: World) -> None:
    m = checked(world)
    tag = m.funded_tag(100)
    first, second = m.offline_sale(tag, 3_000), m.offline_sale(tag, 2_500)
    m.tag_sync(tag)
    m.ledger_agrees()
    assert (first.state, second.state, tag.held) == ("Reserve", None, 3_000)
    m.replicate(first, "Committed", written=True, twice=False)
    m.replicate(second, "Committed", written=True, twice=False)   # within the limit alone: booked, overdrawn
    m.ledger_agrees()
    assert tag.balance == 100 - 5_500


def test_paid_online_top_up_on_a_blocked_tag_books_nothing_and_owes_a_refund(world: World) -> None:
    m = checked(world)
    tag = m.funded_tag(1_000)
    online = m.online_topup(tag, 2_000)
    m.block(tag, True)
    m.settle(online, "paid", twice=True)
    m.ledger_agrees()
    assert (online.state, online.refund_due, tag.balance) == ("Aborted", True, 1_000)


def test_online_top_up_past_the_check_window_is_unknown_until_an_admin_decides(world: World) -> None:
    m = checked(world)
    tag = m.funded_tag(1_000)
    online = m.online_topup(tag, 2_000)
    m.provider_failed(online, aged=False)
    assert online.state == "ExternalPending"
    m.provider_failed(online, aged=True)
    m.ledger_agrees()
    assert online.state == "ExternalUnknown"
    m.resolve_online(online, "Committed")                # refused: only the provider's paid books it
    m.ledger_agrees()
    assert online.state == "ExternalUnknown"
    m.settle(online, "paid", twice=False)                # the late answer books it
    m.settle(online, "declined", twice=False)            # a decline after that: rejected
    m.ledger_agrees()
    assert (online.state, tag.balance) == ("Committed", 1_000 + 2_000 - FEES["online"])


def test_chargebacks_return_at_most_what_is_left_of_a_committed_purchase(world: World) -> None:
    m = checked(world)
    tag = m.funded_tag(2_000)
    tx = m.reserve(tag, 800)
    m.chargeback(tx, 100, via_admin=False)                # not committed yet: not-found
    m.replicate(tx, "Committed", written=True, twice=False)
    m.chargeback(tx, 500, via_admin=False)
    m.chargeback(tx, 301, via_admin=False)                # 300 left: chargeback-exceeds-purchase
    m.chargeback(tx, 301, via_admin=True)                 # support is told the same as a validation error
    m.ledger_agrees()
    m.chargeback(tx, 300, via_admin=True)
    m.ledger_agrees()
    m.chargeback(tx, 1, via_admin=False)
    m.ledger_agrees()
    assert (tx.charged_back, tag.balance, m.sys["merchant"]) == (800, 2_000, 0)


def test_deposit_return_pays_the_deposit_of_returned_cups(world: World) -> None:
    m = checked(world)
    tag = m.funded_tag(1_000)
    m.deposit_return(tag, 3)
    m.ledger_agrees()
    m.deposit_return(m.new_tag(), 1)                      # a tag the ledger does not know: not-found
    m.ledger_agrees()
    assert (tag.balance, m.sys["deposit"]) == (1_000 + 3 * CUP_DEPOSIT, -3 * CUP_DEPOSIT)


def test_payout_run_holds_the_money_refuses_top_ups_and_books_payout_fee_and_donation_when_done(world: World) -> None:
    m = checked(world)
    paid, donor, busy, poor = m.funded_tag(3_000), m.funded_tag(1_000), m.funded_tag(2_000), m.funded_tag(100)
    m.bank_data(paid, "none", 1)
    m.bank_data(donor, "part", 300)
    m.bank_data(busy, "none", 1)
    m.bank_data(poor, "none", 1)                          # 100 does not cover the fee: below-fee
    pending = m.reserve(busy, 500)                        # something unresolved: not in the run
    m.payout_run_create(10)
    m.ledger_agrees()
    [run] = m.runs
    assert [(x.tag, x.transfer, x.fee, x.donation) for x in run.lines] == [
        (paid, 3_000 - PAYOUT_FEE, PAYOUT_FEE, 0), (donor, 1_000 - 300 - PAYOUT_FEE, PAYOUT_FEE, 300)]
    assert (paid.held, donor.held, busy.run, poor.run) == (3_000, 1_000, None, None)
    m.topup(paid, 1_000, "cash")                          # payout-locked
    m.online_topup(donor, 1_000)                          # payout-locked
    m.transfer(busy, paid, 200)                           # payout-locked
    m.reserve(paid, 1)                                    # nothing available
    m.ledger_agrees()
    m.payout_run_close(FixedData(run), done=True)
    m.ledger_agrees()
    assert (paid.balance, paid.status, donor.balance, donor.status) == (0, "blocked", 0, "blocked")
    assert (m.sys["payout"], m.sys["donation"]) == (3_000 - PAYOUT_FEE + 1_000 - 300 - PAYOUT_FEE, 300)
    m.payout_run_close(FixedData(run), done=False)        # done already: payout-run-closed
    m.replicate(pending, "Committed", written=True, twice=False)
    m.payout_run_create(10)                               # busy is resolved now: a run of its own
    m.ledger_agrees()
    assert [x.tag for x in m.runs[1].lines] == [busy]


def test_revoked_payout_run_releases_the_money_and_frees_the_customer_for_the_next_run(world: World) -> None:
    m = checked(world)
    first, second = m.funded_tag(2_000), m.funded_tag(1_500)
    m.bank_data(first, "all", 1)                          # everything donated: no bank transfer, no fee
    m.bank_data(second, "none", 1)
    m.payout_run_create(1)                                # the maximum count: the oldest request only
    m.ledger_agrees()
    assert [(x.tag, x.transfer, x.fee, x.donation) for x in m.runs[0].lines] == [(first, 0, 0, 2_000)]
    m.payout_run_close(FixedData(m.runs[0]), done=False)
    m.ledger_agrees()
    assert (first.held, first.run) == (0, None)
    m.topup(first, 500, "cash")
    m.payout_run_create(10)
    m.ledger_agrees()
    assert [(x.tag, x.donation) for x in m.runs[1].lines] == [(first, 2_500), (second, 0)]
    m.payout_run_close(FixedData(m.runs[1]), done=True)
    m.payout_run_close(FixedData(m.runs[0]), done=True)   # revoked: payout-run-closed
    m.ledger_agrees()
    assert (first.balance, second.balance, m.sys["donation"]) == (0, 0, 2_500)


def test_charge_replicated_after_the_payout_run_was_made_overdraws_the_paid_out_tag(world: World) -> None:
    m = checked(world)
    tag = m.funded_tag(2_000)
    m.bank_data(tag, "none", 1)
    offline = m.offline_sale(tag, 700)                    # charged on the tag before the run, replicated after it
    m.payout_run_create(10)
    m.replicate(offline, "Committed", written=True, twice=False)
    m.ledger_agrees()
    m.payout_run_close(FixedData(m.runs[0]), done=True)
    m.ledger_agrees()
    assert (tag.balance, tag.held, tag.overdrawn, tag.status) == (-700, 0, True, "blocked")
    m.chargeback(offline, 700, via_admin=False)           # the merchant gives it back: the overdraft row stays
    m.payout_run_create(10)                               # done already: payout-not-eligible
    m.ledger_agrees()
    assert tag.balance == 0
