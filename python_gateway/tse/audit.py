"""``festpay tse verify``: re-check every stored TSE signature against the ledger, independently of the signer.

For each stored signature (``api.tse_signatures``) the log message is REBUILT from the ledger, not from what the relay
stored:

- process data as the ledger makes it today (``ledger.tse_process_data`` over ``ledger.receipt_lines``, the rules the
  receipt and the DSFinV-K export share), compared with the stored process data;
- client id of the till (``festpay-<assignment id>`` or ``festpay-backend``), process type ``Kassenbeleg-V1``;
- transaction number, signature counter, log time and serial number as stored;

and the signature is checked with :mod:`python_gateway.tse.verify` (the verifier's own DER rebuild and the stored
public key; the serial number must be SHA-256 of it).  Reads as a DBA (the functions are not granted to a service).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import dict_row, tuple_row

from .verify import VerificationError, verify_fields

PROCESS_TYPE = "Kassenbeleg-V1"


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


def check_row(row: dict[str, Any]) -> str | None:
    """Verify one stored signature against its rebuilt log message; returns why it fails, or None."""
    if row["expected_error"]:
        return row["expected_error"]
    expected_data = row["expected_process_data"]
    expected_client = row["expected_client_id"]
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
        cur.execute("SELECT * FROM api.tse_signatures(%s)", (event_id,))
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
            report.unsigned = cur.execute("SELECT api.tse_unsigned(%s)", (event_id,)).fetchone()[0]
    return report
