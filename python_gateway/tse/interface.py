"""The TSE backend interface (SPEC §8): what the relay needs from any TSE, software or real.

A real (e.g. cloud) TSE plugs in by implementing :class:`TSE`.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .logmessage import ALGORITHM, LOG_TIME_FORMAT, build_qr


class TseError(Exception):
    """Any TSE failure; the relay retries later and records the outage.

    Subclasses say what kind.
    """


class TseUnavailable(TseError):
    """The TSE cannot be reached or used right now (e.g. locked by another process).

    Worth retrying.
    """


class TseRequestError(TseError):
    """The request itself is wrong (unknown client or transaction, bad field).

    Retrying the same request will not help.
    """


@dataclass(frozen=True)
class SignedLog:
    """A signed transaction log message and everything a receipt and an audit need of it.

    Times are Unix seconds; ``message`` is the exact signed byte string (no outer SEQUENCE).
    """

    operation_type: str
    client_id: str
    process_type: str
    process_data: str
    transaction_number: int
    signature_counter: int
    start_time: int
    log_time: int
    serial_number: bytes
    signature: bytes
    public_key: bytes
    message: bytes
    algorithm: str = ALGORITHM
    log_time_format: str = LOG_TIME_FORMAT

    def to_json(self) -> dict[str, Any]:
        """This signed log as JSON (the TSE service's answer, and what api.tse_store takes): serial number hex,
        signature, public key and message base64, times Unix seconds."""
        return {
            "operation_type": self.operation_type,
            "client_id": self.client_id,
            "process_type": self.process_type,
            "process_data": self.process_data,
            "transaction_number": self.transaction_number,
            "signature_counter": self.signature_counter,
            "start_time": self.start_time,
            "log_time": self.log_time,
            "serial_number": self.serial_number.hex(),
            "signature": base64.b64encode(self.signature).decode("ascii"),
            "public_key": base64.b64encode(self.public_key).decode("ascii"),
            "message": base64.b64encode(self.message).decode("ascii"),
            "algorithm": self.algorithm,
            "log_time_format": self.log_time_format,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "SignedLog":
        """The inverse of :meth:`to_json`; raises TseError for a malformed document."""
        try:
            return cls(
                operation_type=str(data["operation_type"]),
                client_id=str(data["client_id"]),
                process_type=str(data["process_type"]),
                process_data=str(data["process_data"]),
                transaction_number=int(data["transaction_number"]),
                signature_counter=int(data["signature_counter"]),
                start_time=int(data["start_time"]),
                log_time=int(data["log_time"]),
                serial_number=bytes.fromhex(data["serial_number"]),
                signature=base64.b64decode(data["signature"], validate=True),
                public_key=base64.b64decode(data["public_key"], validate=True),
                message=base64.b64decode(data["message"], validate=True),
                algorithm=str(data["algorithm"]),
                log_time_format=str(data["log_time_format"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise TseError(f"malformed signed log: {err}") from err

    def qr_code(self) -> str:
        """The DSFinV-K receipt QR code text (``V0;…``) of this signed log.

        Meaningful for FinishTransaction logs.
        """
        return build_qr(
            client_id=self.client_id,
            process_type=self.process_type,
            process_data=self.process_data,
            transaction_number=self.transaction_number,
            signature_counter=self.signature_counter,
            start_time=self.start_time,
            log_time=self.log_time,
            signature=self.signature,
            public_key=self.public_key,
        )


@runtime_checkable
class TSE(Protocol):
    """A technical security system (TSE) as the relay uses it.

    Implementations raise :class:`TseError` subclasses on failure.
    """

    @property
    def serial_number(self) -> bytes:
        """SHA-256 of the uncompressed public key (32 bytes)."""
        ...

    @property
    def public_key(self) -> bytes:
        """The signing key's uncompressed point 04‖X‖Y."""
        ...

    def register_client(self, client_id: str) -> None:
        """Register a client (till serial number); idempotent."""
        ...

    def start_transaction(self, client_id: str, process_type: str, process_data: str) -> int:
        """Start (and sign the start of) a transaction; returns its transaction number."""
        ...

    def finish_transaction(
        self, client_id: str, number: int, process_type: str, process_data: str
    ) -> SignedLog:
        """Finish a started transaction and return its signed FinishTransaction log."""
        ...

    def export(self) -> bytes:
        """A TAR of all signed log messages, one ``.log`` file each."""
        ...

    def health(self) -> dict[str, Any]:
        """Liveness and counters, for /health/ready."""
        ...
