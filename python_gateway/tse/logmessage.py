"""The signer's side of TR-03153 transaction log messages and of the DSFinV-K receipt QR code.

Byte layout as pinned down by shared/tse/README.md and its real-TSE test vector.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import datetime, timezone

from . import der

LOG_MESSAGE_VERSION = 2
#: certifiedDataType of transaction logs (bsi-de 3.7.1.1).
OID_TRANSACTION_LOG = "0.4.0.127.0.7.3.7.1.1"
#: ecdsa-plain-SHA384 (BSI TR-03111).
OID_ECDSA_PLAIN_SHA384 = "0.4.0.127.0.7.1.1.4.1.4"
ALGORITHM = "ecdsa-plain-SHA384"
LOG_TIME_FORMAT = "unixTime"
QR_VERSION = "V0"

START = "StartTransaction"
UPDATE = "UpdateTransaction"
FINISH = "FinishTransaction"
OPERATION_TYPES = (START, UPDATE, FINISH)
#: Short names used in export file names (…_Log-Tra_No-13_Finish_Client-…).
OPERATION_SHORT = {START: "Start", UPDATE: "Update", FINISH: "Finish"}

_PRINTABLE = re.compile(r"[A-Za-z0-9 '()+,\-./:=?]+")
_QR_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


def check_printable(name: str, value: str, max_len: int) -> None:
    """Raise ValueError unless ``value`` is a non-empty ASN.1 PrintableString of at most ``max_len``.

    TR-03153 types clientId (≤ 30) and processType (≤ 100) as PrintableString.
    """
    if not value or len(value) > max_len or not _PRINTABLE.fullmatch(value):
        raise ValueError(f"{name} must be 1..{max_len} PrintableString characters, got {value!r}")


def encode_transaction_log(
    *,
    operation_type: str,
    client_id: str,
    process_data: bytes,
    process_type: str,
    transaction_number: int,
    serial_number: bytes,
    signature_counter: int,
    log_time: int,
) -> bytes:
    """The signed bytes: the log message fields DER-encoded and concatenated, no outer SEQUENCE.

    Optional [4] additionalExternalData and [6] additionalInternalData are absent; logTime is unixTime.
    """
    if operation_type not in OPERATION_TYPES:
        raise ValueError(f"unknown operation type {operation_type!r}")
    return b"".join(
        (
            der.integer(LOG_MESSAGE_VERSION),
            der.oid(OID_TRANSACTION_LOG),
            der.octet_string(operation_type.encode("ascii"), tag=0x80),
            der.octet_string(client_id.encode("utf-8"), tag=0x81),
            der.octet_string(process_data, tag=0x82),
            der.octet_string(process_type.encode("utf-8"), tag=0x83),
            der.integer(transaction_number, tag=0x85),
            der.octet_string(serial_number),
            der.sequence(der.oid(OID_ECDSA_PLAIN_SHA384)),
            der.integer(signature_counter),
            der.integer(log_time),
        )
    )


def encode_log_file(signed_part: bytes, signature: bytes) -> bytes:
    """A complete TR-03151 LogMessage as stored in an export's ``.log`` file.

    SEQUENCE { <the signed fields>, signatureValue OCTET STRING (raw r‖s) }.
    """
    return der.tlv(der.TAG_SEQUENCE, signed_part + der.octet_string(signature))


def log_file_name(
    *, log_time: int, signature_counter: int, transaction_number: int, operation_type: str, client_id: str
) -> str:
    """The export file name of a transaction log, as real TSEs name it.

    ``Unixt_<logTime>_Sig-<counter>_Log-Tra_No-<tx>_<Start|Update|Finish>_Client-<clientId>.log``.
    """
    return (
        f"Unixt_{log_time}_Sig-{signature_counter}_Log-Tra_No-{transaction_number}"
        f"_{OPERATION_SHORT[operation_type]}_Client-{client_id}.log"
    )


def format_qr_time(unix_seconds: int) -> str:
    """A Unix time as DSFinV-K writes it in the QR code: ``2019-11-22T11:29:49.000Z``.

    Always UTC, always milliseconds (zero: the TSE's unixTime has whole seconds).
    """
    return datetime.fromtimestamp(unix_seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def parse_qr_time(text: str) -> float:
    """Unix time (with milliseconds) of a QR time string ``YYYY-MM-DDThh:mm:ss.fffZ``.

    Raises ValueError for anything else.
    """
    if not _QR_TIME.fullmatch(text):
        raise ValueError(f"bad QR time {text!r}")
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


@dataclass(frozen=True)
class QrCode:
    """The twelve fields of a DSFinV-K receipt QR code (``V0;…``).

    Times are kept as their text; signature and public key as decoded bytes.
    """

    client_id: str
    process_type: str
    process_data: str
    transaction_number: int
    signature_counter: int
    start_time: str
    log_time: str
    signature: bytes
    public_key: bytes
    algorithm: str = ALGORITHM
    log_time_format: str = LOG_TIME_FORMAT
    version: str = QR_VERSION

    def text(self) -> str:
        """The QR code text, fields joined by ``;``.

        Refuses fields that would not parse back to the same values.
        """
        for name in ("client_id", "process_type", "process_data", "start_time", "log_time", "algorithm"):
            if ";" in getattr(self, name):
                raise ValueError(f"{name} must not contain ';'")
        return ";".join(
            (
                self.version,
                self.client_id,
                self.process_type,
                self.process_data,
                str(self.transaction_number),
                str(self.signature_counter),
                self.start_time,
                self.log_time,
                self.algorithm,
                self.log_time_format,
                base64.b64encode(self.signature).decode("ascii"),
                base64.b64encode(self.public_key).decode("ascii"),
            )
        )


def build_qr(
    *,
    client_id: str,
    process_type: str,
    process_data: str,
    transaction_number: int,
    signature_counter: int,
    start_time: int,
    log_time: int,
    signature: bytes,
    public_key: bytes,
) -> str:
    """The DSFinV-K QR code text of a signed FinishTransaction (Unix-second times).

    ``V0;<client>;<type>;<data>;<tx>;<counter>;<start>;<end>;ecdsa-plain-SHA384;unixTime;<sig>;<key>``.
    """
    return QrCode(
        client_id=client_id,
        process_type=process_type,
        process_data=process_data,
        transaction_number=transaction_number,
        signature_counter=signature_counter,
        start_time=format_qr_time(start_time),
        log_time=format_qr_time(log_time),
        signature=signature,
        public_key=public_key,
    ).text()


def _strict_b64(name: str, text: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as err:
        raise ValueError(f"{name}: bad base64") from err
    if base64.b64encode(raw).decode("ascii") != text:
        raise ValueError(f"{name}: non-canonical base64")
    return raw


def _strict_uint(name: str, text: str) -> int:
    if not re.fullmatch(r"0|[1-9][0-9]*", text):
        raise ValueError(f"{name}: not a canonical decimal number: {text!r}")
    return int(text)


def parse_qr(text: str) -> QrCode:
    """Parse a DSFinV-K QR code text into a :class:`QrCode`.

    Strict: exactly 12 fields, ``V0``, canonical numbers, QR time format and canonical base64.
    """
    fields = text.strip().split(";")
    if len(fields) != 12:
        raise ValueError(f"a DSFinV-K QR code has 12 fields, got {len(fields)}")
    version, client_id, process_type, process_data, tx, counter, start, end, alg, fmt, sig, key = fields
    if version != QR_VERSION:
        raise ValueError(f"unknown QR version {version!r}")
    parse_qr_time(start)
    parse_qr_time(end)
    return QrCode(
        client_id=client_id,
        process_type=process_type,
        process_data=process_data,
        transaction_number=_strict_uint("transaction number", tx),
        signature_counter=_strict_uint("signature counter", counter),
        start_time=start,
        log_time=end,
        signature=_strict_b64("signature", sig),
        public_key=_strict_b64("public key", key),
        algorithm=alg,
        log_time_format=fmt,
        version=version,
    )


@dataclass(frozen=True)
class LogRecord:
    """A transaction LogMessage read back from the software TSE's own store.

    The signer's reader (for recovery and export names); the verifier has its own.
    """

    operation_type: str
    client_id: str
    process_data: bytes
    process_type: str
    transaction_number: int
    serial_number: bytes
    signature_counter: int
    log_time: int
    signed_part: bytes
    signature: bytes


def decode_log_file(data: bytes) -> LogRecord:
    """Read a complete LogMessage (as written by :func:`encode_log_file`).

    Raises der.DerError or ValueError for anything else.
    """
    tag, body, end = der.read_tlv(data)
    if tag != der.TAG_SEQUENCE or end != len(data):
        raise der.DerError("not a single LogMessage SEQUENCE")
    values: list[bytes] = []
    pos = 0
    for want in (0x02, 0x06, 0x80, 0x81, 0x82, 0x83, 0x85, 0x04, 0x30, 0x02, 0x02, 0x04):
        got, content, pos = der.read_tlv(body, pos)
        if got != want:
            raise der.DerError(f"expected tag 0x{want:02x}, got 0x{got:02x}")
        values.append(content)
    if pos != len(body):
        raise der.DerError("unexpected fields after signatureValue")
    sig_tlv_len = len(der.octet_string(values[11]))
    return LogRecord(
        operation_type=values[2].decode("ascii"),
        client_id=values[3].decode("utf-8"),
        process_data=values[4],
        process_type=values[5].decode("utf-8"),
        transaction_number=der.decode_integer(values[6]),
        serial_number=values[7],
        signature_counter=der.decode_integer(values[9]),
        log_time=der.decode_integer(values[10]),
        signed_part=body[: len(body) - sig_tlv_len],
        signature=values[11],
    )
