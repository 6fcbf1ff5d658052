"""``festpay tse verify``: re-check every stored TSE signature against the ledger, independently of the signer.

For each row of ``ledger.tse_signature`` the log message is REBUILT from the ledger, not from what the relay stored:

- process data recomputed here in Python from the transaction's type, amount, payment and line items (the rules of
  SPEC §8 / ``ledger.tse_process_data``, written out again), and compared with the stored process data;
- client id from the till (``festpay-<assignment id>`` or ``festpay-backend``), process type ``Kassenbeleg-V1``;
- transaction number, signature counter, log time and serial number as stored;

and the signature is checked with :mod:`python_gateway.tse.verify` (the verifier's own DER rebuild and the stored
public key; the serial number must be SHA-256 of it).  Reads as the database owner or superuser.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row, tuple_row

from .verify import VerificationError, verify_fields

PROCESS_TYPE = "Kassenbeleg-V1"
# DSFinV-K's five VAT slots of the process data, in order: 19 %, 7 %, 10.7 %, 5.5 %, 0 %.
VAT_SLOTS = (Decimal("19"), Decimal("7"), Decimal("10.7"), Decimal("5.5"), Decimal("0"))
_INFLOW = ("purchase", "topup")  # money the till takes in; everything else pays out


def money(cents: int) -> str:
    """Cents as a decimal amount with a point and two places: -1050 -> ``-10.50``."""
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"


def process_data(tx_type: str, amount: int, payment: str | None, items: list[tuple[int, int, Decimal]]) -> str:
    """The Kassenbeleg-V1 process data of a receipt: ``Beleg^<gross 19_7_10.7_5.5_0>^<total>:<Bar|Unbar>``.

    ``items`` are (quantity, unit price in cents, VAT rate).  Sales with items are split by VAT rate; a deposit
    return is its items at 0 %; anything else (top-ups, payouts, refunds, chargebacks, sales without items) is the
    amount at 0 %.  Money leaving the customer for the till is positive.
    """
    sign = 1 if tx_type in _INFLOW else -1
    gross = [0, 0, 0, 0, 0]
    if tx_type == "purchase" and items:
        for quantity, unit_price, rate in items:
            rate = Decimal(rate)
            slot = next((i for i, r in enumerate(VAT_SLOTS) if r == rate), None)
            if slot is None:
                raise ValueError(f"VAT rate {rate} is not one of DSFinV-K's five")
            gross[slot] += sign * quantity * unit_price
    elif tx_type == "deposit_return":
        gross[4] = sign * sum(quantity * unit_price for quantity, unit_price, _ in items)
    else:
        gross[4] = sign * amount
    return "Beleg^{}^{}:{}".format("_".join(money(g) for g in gross), money(sum(gross)),
                                   "Bar" if payment == "cash" else "Unbar")


def client_id_of(assignment_id: int | None) -> str:
    """The TSE client id of a till: ``festpay-<assignment id>``, or ``festpay-backend`` without a till."""
    return "festpay-backend" if assignment_id is None else f"festpay-{assignment_id}"


@dataclass
class Failure:
    transaction_id: int
    reason: str


@dataclass
class Report:
    checked: int = 0
    late: int = 0
    unsigned: int = 0
    failures: list[Failure] = field(default_factory=list)
    per_tse: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures


_QUERY = """
SELECT s.transaction_id, s.tse_serial, s.client_id, s.process_type, s.process_data, s.tse_tx_number,
       s.signature_counter, extract(epoch FROM s.start_time)::bigint AS start_unix,
       extract(epoch FROM s.log_time)::bigint AS log_unix, s.log_time = to_timestamp(extract(epoch FROM s.log_time)::bigint)
           AS whole_second, s.algorithm, s.signature, s.public_key, s.late,
       t.type::text AS type, t.amount, t.payment::text AS payment, t.assignment_id, t.state::text AS state,
       (SELECT coalesce(json_agg(json_build_array(i.quantity, i.unit_price, i.vat_rate::text) ORDER BY i.line_no), '[]')
          FROM ledger.item i WHERE i.transaction_id = t.id) AS items
  FROM ledger.tse_signature s JOIN ledger.transaction t ON t.id = s.transaction_id
 WHERE (%(event)s::bigint IS NULL OR t.event_id = %(event)s)
 ORDER BY s.transaction_id
"""

_UNSIGNED = """
SELECT count(*) FROM ledger.outbox o JOIN ledger.transaction t ON t.id = o.transaction_id
 WHERE o.topic = 'tse' AND o.done_at IS NULL AND (%(event)s::bigint IS NULL OR t.event_id = %(event)s)
"""


def check_row(row: dict[str, Any]) -> str | None:
    """Verify one stored signature against its rebuilt log message; returns why it fails, or None."""
    items = [(int(q), int(p), Decimal(r)) for q, p, r in row["items"]]
    try:
        expected_data = process_data(row["type"], int(row["amount"]), row["payment"], items)
    except ValueError as err:
        return str(err)
    expected_client = client_id_of(row["assignment_id"])
    problems = []
    if row["state"] != "Committed":
        problems.append(f"signed but not committed (state {row['state']})")
    if row["process_data"] != expected_data:
        problems.append(f"stored process data {row['process_data']!r} differs from the ledger's {expected_data!r}")
    if row["client_id"] != expected_client:
        problems.append(f"stored client id {row['client_id']!r} is not the till's {expected_client!r}")
    if row["process_type"] != PROCESS_TYPE:
        problems.append(f"stored process type {row['process_type']!r} is not {PROCESS_TYPE}")
    if not row["whole_second"]:
        problems.append("log time is not a whole second (unixTime)")
    if row["start_unix"] > row["log_unix"]:
        problems.append("start time is after log time")
    try:
        serial = bytes.fromhex(row["tse_serial"])
    except ValueError:
        return "; ".join([*problems, "serial number is not hex"])
    try:
        verify_fields(
            client_id=expected_client,
            process_data=expected_data,
            process_type=PROCESS_TYPE,
            transaction_number=int(row["tse_tx_number"]),
            signature_counter=int(row["signature_counter"]),
            log_time=int(row["log_unix"]),
            signature=bytes(row["signature"]),
            public_key=bytes(row["public_key"]),
            serial_number=serial,
            algorithm=row["algorithm"],
        )
    except VerificationError as err:
        problems.append(f"signature over the rebuilt log message: {err}")
    return "; ".join(problems) or None


def iter_rows(conn: psycopg.Connection, event_id: int | None) -> Iterator[dict[str, Any]]:
    """The stored signatures with their ledger data, streamed (server-side cursor; needs a transaction)."""
    with conn.cursor(name="festpay_tse_verify", row_factory=dict_row) as cur:
        cur.itersize = 2000
        cur.execute(_QUERY, {"event": event_id})
        yield from cur


def verify_ledger(conn: psycopg.Connection, event_id: int | None = None) -> Report:
    """Verify every stored signature (of one event, or all); ``conn`` reads as owner or superuser."""
    report = Report()
    with conn.transaction():
        for row in iter_rows(conn, event_id):
            report.checked += 1
            report.late += bool(row["late"])
            report.per_tse[row["tse_serial"]] = report.per_tse.get(row["tse_serial"], 0) + 1
            reason = check_row(row)
            if reason:
                report.failures.append(Failure(int(row["transaction_id"]), reason))
        with conn.cursor(row_factory=tuple_row) as cur:
            report.unsigned = cur.execute(_UNSIGNED, {"event": event_id}).fetchone()[0]
    return report
