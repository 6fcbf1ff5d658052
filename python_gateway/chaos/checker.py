"""The chaos run's verdict: what every till holds in its own database and every tag holds, against the ledger and
the TSE's own log.

Counted (each is a list of findings; the run prints their lengths):

``lost``      a transaction a till holds as Committed that the ledger does not hold Committed with the same amount;
              a charge a tag carries (tag numbers 0 .. next - 1) that no Committed purchase books.
``doubled``   two Committed ledger transactions for one charge of a tag (same tag, same tag number), or for one
              terminal transaction.
``unproven``  a Committed ledger transaction that no till committed (its till holds it Aborted or Open, or does not
              hold it) or that no tag proves (a purchase whose tag number the tag never reached, or one its till holds
              as TerminalConfirmUnknown that was booked without uploaded tag data showing the charge).
``unresolved`` a TerminalConfirmUnknown, ReservePending or Reserve transaction left in the ledger after the drain
              (SPEC 7: the complete tag log settles every unknown outcome), one a till still holds
              TerminalConfirmUnknown without its backend's acknowledgement, or one a till left Open or TerminalConfirmStarted.
``unsigned``  a committed receipt without a TSE signature, or with one that does not verify against the ledger.
``signed_twice`` a Finish record in the TSE's log that is not the one signature the ledger stores for its receipt.
``tse_counter`` signature counters in the TSE's log not exactly 1..n, or transaction numbers not exactly 1..m.
``invariants_broken`` rows of ``api.check_invariants()`` (among them: every event's balances sum to 0).
"""

from __future__ import annotations

import collections
import io
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg.rows import dict_row

from ..terminal import State, Store, StoredTransaction, VirtualTag
from ..tse import verify
from ..tse.audit import verify_ledger
from ..tse.software import SoftwareTSE

RECEIPT_TYPES = ("purchase", "topup", "refund")
BOOKED = "Committed"


@dataclass
class Verdict:
    findings: dict[str, list[str]] = field(default_factory=lambda: collections.defaultdict(list))
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, text: str) -> None:
        self.findings[kind].append(text)

    def value(self, kind: str) -> int:
        return len(self.findings.get(kind, ()))


def _till_transactions(stores: list[Path]) -> dict[tuple[int, int], StoredTransaction]:
    held: dict[tuple[int, int], StoredTransaction] = {}
    for path in stores:
        store = Store(path)
        try:
            for tx in store.transactions():
                held[(tx.assignment_id, tx.terminal_tx_number)] = tx
        finally:
            store.close()
    return held


def check_tills(verdict: Verdict, tills: dict[tuple[int, int], StoredTransaction], ledger: list[dict]) -> None:
    """Every till transaction against the ledger's transaction under the same (assignment, terminal number)."""
    by_key: dict[tuple[int, int], list[dict]] = collections.defaultdict(list)
    for row in ledger:
        if row["assignment_id"] is not None:
            by_key[(row["assignment_id"], row["terminal_tx_number"])].append(row)
    for key, rows in by_key.items():
        if len(rows) > 1:
            verdict.add("doubled", f"terminal transaction {key} is {len(rows)} ledger transactions")
    for key, tx in tills.items():
        row = (by_key.get(key) or [None])[0]
        state = row["state"] if row else None
        name = f"{tx.transaction_type} {key} ({tx.status.value} at the till, {state or 'absent'} in the ledger)"
        if tx.status is State.COMMITTED and (state != BOOKED or row["amount"] != tx.amount):
            verdict.add("lost", name)
        elif tx.status in (State.ABORTED, State.OPEN) and state == BOOKED:
            verdict.add("unproven", name)
        elif tx.status is State.CONFIRM_UNKNOWN and tx.sync_status.value != "synced":
            verdict.add("unresolved", name + ": never acknowledged")
        elif tx.status in (State.CONFIRM_STARTED, State.OPEN):
            verdict.add("unresolved", name + ": left unfinished at the till (its start-up cleanup never ran)")
        elif (tx.status is State.CONFIRM_UNKNOWN and tx.transaction_type == "purchase" and state == BOOKED
              and not row["tag_proved"]):
            # (A top-up or refund is booked online when the backend answers; only a sale's outcome is the tag's.)
            verdict.add("unproven", name + ": booked without the tag's log showing the charge")
    for key, rows in by_key.items():
        if key not in tills and rows[0]["state"] == BOOKED:
            verdict.add("unproven", f"{rows[0]['type']} {key} booked, but no till holds it")
    for row in ledger:
        if row["state"] in ("TerminalConfirmUnknown", "ReservePending", "Reserve"):
            key = (row["assignment_id"], row["terminal_tx_number"])
            held = tills.get(key)
            at_till = f"{held.status.value}, {held.sync_status.value}" if held else "not held by any till"
            verdict.add("unresolved", f"transaction {row['id']} {key} is {row['state']} (at the till: {at_till})")
    states = collections.Counter((tx.transaction_type, tx.status.value) for tx in tills.values())
    verdict.counts.update({
        "purchases": states[("purchase", BOOKED)],
        "purchases_offline": sum(1 for tx in tills.values() if tx.transaction_type == "purchase"
                                 and tx.status is State.COMMITTED and tx.offline),
        "topups": states[("topup", BOOKED)],
        "refunds": states[("refund", BOOKED)],
        "confirm_unknown": sum(n for (_, s), n in states.items() if s == State.CONFIRM_UNKNOWN.value),
        "confirm_unknown_booked": sum(1 for tx in tills.values() if tx.status is State.CONFIRM_UNKNOWN
                                      and tx.backend_state == BOOKED),
    })


def check_tags(verdict: Verdict, tags: list[Path], tag_key: str, ledger: list[dict], tag_ids: dict[str, int]) -> None:
    """Every write of a tag takes its next number, a charge's is in its log entry: a tag number is booked at most
    once and only below the tag's next number; after the drain no tag carries a charge the backend did not settle.
    (A settled charge is held as Reserve, which can only end Committed, or is Committed already.)"""
    booked: dict[int, list[int]] = collections.defaultdict(list)
    for row in ledger:
        if row["type"] == "purchase" and row["state"] == BOOKED:
            booked[row["tag_id"]].append(row["tag_tx_number"])
    for path in tags:
        data = VirtualTag(path).read(tag_key)
        for n, count in collections.Counter(booked.get(tag_ids.get(data.uid), [])).items():
            if count > 1:
                verdict.add("doubled", f"tag {data.uid}: charge {n} is booked {count} times")
            if n >= data.next_tag_tx_number:
                verdict.add("unproven", f"tag {data.uid}: a purchase booked as charge {n}, the tag is at "
                                        f"{data.next_tag_tx_number}")
        for entry in data.log:
            verdict.add("lost", f"tag {data.uid}: charge {entry.tag_tx_number} ({entry.assignment_id}/"
                                f"{entry.terminal_tx_number}, {entry.amount}) was never settled")


def check_signatures(verdict: Verdict, conn: psycopg.Connection, tse_dir: Path) -> None:
    """Every receipt signed once; the TSE's log continuous; its Finish records exactly the stored signatures."""
    unsigned = conn.execute(
        "SELECT t.id FROM ledger.transaction t LEFT JOIN ledger.tse_signature s ON s.transaction_id = t.id "
        "WHERE t.state = 'Committed' AND t.type = ANY(%s) AND s.transaction_id IS NULL", (list(RECEIPT_TYPES),),
    ).fetchall()
    for row in unsigned:
        verdict.add("unsigned", f"receipt {row['id']} has no signature")
    report = verify_ledger(conn)
    for failure in report.failures:
        verdict.add("unsigned", f"signature of {failure.transaction_id} does not verify: {failure.reason}")
    stored = {(r["tse_tx_number"], r["signature_counter"]) for r in conn.execute(
        "SELECT tse_tx_number, signature_counter FROM ledger.tse_signature").fetchall()}
    with SoftwareTSE(tse_dir) as tse:
        exported, public_key = tse.export(), tse.public_key
    logs = []
    with tarfile.open(fileobj=io.BytesIO(exported)) as tar:
        for member in tar.getmembers():
            logs.append(verify.verify_log_file(tar.extractfile(member).read(), public_key))
    counters = sorted(log.signature_counter for log in logs)
    if counters != list(range(1, len(counters) + 1)):
        verdict.add("tse_counter", f"signature counters are not 1..{len(counters)}")
    starts = sorted(log.transaction_number for log in logs if log.operation_type == "StartTransaction")
    if starts != list(range(1, len(starts) + 1)):
        verdict.add("tse_counter", f"started transaction numbers are not 1..{len(starts)}")
    finishes = [(log.transaction_number, log.signature_counter) for log in logs
                if log.operation_type == "FinishTransaction"]
    per_number = collections.Counter(n for n, _ in finishes)
    for number, count in per_number.items():
        if count > 1:
            verdict.add("signed_twice", f"TSE transaction {number} finished {count} times")
    for finish in finishes:
        if finish not in stored:
            verdict.add("signed_twice", f"TSE transaction {finish[0]} (counter {finish[1]}) signs no stored receipt")
    verdict.counts["signatures"] = len(stored)
    verdict.counts["tse_unfinished"] = len(set(starts) - set(per_number))   # started, never finished: allowed


def check_invariants(verdict: Verdict, conn: psycopg.Connection) -> None:
    for row in conn.execute("SELECT * FROM api.check_invariants()").fetchall():
        verdict.add("invariants_broken", str(dict(row)))
    pending = conn.execute("SELECT count(*) AS n FROM ledger.outbox WHERE done_at IS NULL").fetchone()["n"]
    if pending:
        verdict.add("unsigned", f"{pending} signing requests still wait in the outbox")


def check(database_url: str, stores: list[Path], tags: list[Path], tag_key: str, tse_dir: Path) -> Verdict:
    """The whole verdict; the TSE service must be stopped (its directory is opened here)."""
    verdict = Verdict()
    with psycopg.connect(database_url, row_factory=dict_row, autocommit=True) as conn:
        # tag_proved: uploaded tag data showed the charge (it was Reserve, or a till's tag sync committed an unknown
        # outcome; an admin's decision would be by 'admin:...').
        ledger = conn.execute(
            "SELECT id, type::text, state::text, amount, assignment_id, terminal_tx_number, tag_id, tag_tx_number, "
            "       EXISTS (SELECT FROM unnest(t.state_changes) c WHERE 'Reserve' IN (c.from_state, c.to_state) "
            "               OR (c.from_state = 'TerminalConfirmUnknown' AND c.to_state = 'Committed' "
            "                   AND c.actor LIKE 'assignment:%%')) AS tag_proved "
            "FROM ledger.transaction t ORDER BY id").fetchall()
        tag_ids = {r["uid"]: r["id"] for r in conn.execute("SELECT id, uid FROM ledger.tag").fetchall()}
        check_tills(verdict, _till_transactions(stores), ledger)
        check_tags(verdict, tags, tag_key, ledger, tag_ids)
        check_signatures(verdict, conn, tse_dir)
        check_invariants(verdict, conn)
        verdict.counts["violations"] = conn.execute("SELECT count(*) AS n FROM ledger.violation").fetchone()["n"]
    return verdict
