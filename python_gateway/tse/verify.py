"""Independent verifier of TSE signatures: QR codes, stored fields and exported ``.log`` files.

Shares only the DER primitives (der.py) with the signer; rebuilds every byte itself, so an auditor can trust it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timezone

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from . import der

# Written out again on purpose (not imported from the signer's logmessage.py).
_VERSION = 2
_OID_TRANSACTION_LOG = "0.4.0.127.0.7.3.7.1.1"
_OID_ECDSA_PLAIN_SHA384 = "0.4.0.127.0.7.1.1.4.1.4"
_ALGORITHM = "ecdsa-plain-SHA384"
_OPERATIONS = ("StartTransaction", "UpdateTransaction", "FinishTransaction")
_SCALAR = 48  # brainpoolP384r1: 384-bit r and s
_TIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{3})Z")
_NUMBER = re.compile(r"0|[1-9][0-9]*")


class VerificationError(Exception):
    """A signature, a field or an encoding did not check out.

    The message says which check failed.
    """


@dataclass(frozen=True)
class VerifiedLog:
    """What a successful verification established.

    ``message`` is the exact byte string the signature covers.
    """

    operation_type: str
    client_id: str
    process_data: bytes
    process_type: str
    transaction_number: int
    serial_number: bytes
    signature_counter: int
    log_time: int
    signature: bytes
    public_key: bytes
    message: bytes


def serial_number_of(public_key: bytes) -> bytes:
    """The TSE serial number belonging to a public key: SHA-256 of the uncompressed point.

    32 bytes; shown as hex on receipts.
    """
    return hashlib.sha256(public_key).digest()


def verify_signature(message: bytes, signature: bytes, public_key: bytes) -> None:
    """Check a raw r‖s ecdsa-plain-SHA384 signature over ``message`` on brainpoolP384r1.

    ``public_key`` is the uncompressed point 04‖X‖Y (97 bytes); raises VerificationError.
    """
    if len(public_key) != 1 + 2 * _SCALAR or public_key[0] != 0x04:
        raise VerificationError("public key is not an uncompressed brainpoolP384r1 point (97 bytes, 04‖X‖Y)")
    if len(signature) != 2 * _SCALAR:
        raise VerificationError(f"signature must be {2 * _SCALAR} bytes r‖s, got {len(signature)}")
    try:
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.BrainpoolP384R1(), public_key)
    except ValueError as err:
        raise VerificationError(f"public key is not a point on brainpoolP384r1: {err}") from err
    r = int.from_bytes(signature[:_SCALAR], "big")
    s = int.from_bytes(signature[_SCALAR:], "big")
    try:
        key.verify(encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature as err:
        raise VerificationError("signature does not verify") from err


def rebuild_message(
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
    """The verifier's own rebuild of the signed transaction log message bytes.

    INTEGER 2, OID, [0] op, [1] client, [2] data, [3] type, [5] tx, OCTET serial, SEQ{OID alg}, INTEGER counter, INTEGER time.
    """
    if operation_type not in _OPERATIONS:
        raise VerificationError(f"unknown operation type {operation_type!r}")
    parts = [
        der.tlv(0x02, der.integer_content(_VERSION)),
        der.tlv(0x06, der.oid_content(_OID_TRANSACTION_LOG)),
        der.tlv(0x80, operation_type.encode("ascii")),
        der.tlv(0x81, client_id.encode("utf-8")),
        der.tlv(0x82, process_data),
        der.tlv(0x83, process_type.encode("utf-8")),
        der.tlv(0x85, der.integer_content(transaction_number)),
        der.tlv(0x04, serial_number),
        der.tlv(0x30, der.tlv(0x06, der.oid_content(_OID_ECDSA_PLAIN_SHA384))),
        der.tlv(0x02, der.integer_content(signature_counter)),
        der.tlv(0x02, der.integer_content(log_time)),
    ]
    return b"".join(parts)


def verify_fields(
    *,
    client_id: str,
    process_data: str | bytes,
    process_type: str,
    transaction_number: int,
    signature_counter: int,
    log_time: int,
    signature: bytes,
    public_key: bytes,
    serial_number: bytes | None = None,
    operation_type: str = "FinishTransaction",
    algorithm: str = _ALGORITHM,
) -> VerifiedLog:
    """Verify a signature from stored (or QR) fields; ``log_time`` in Unix seconds.

    Checks the algorithm, serial number = SHA-256(public key) when given, and the signature over the rebuilt bytes.
    """
    if algorithm != _ALGORITHM:
        raise VerificationError(f"unsupported signature algorithm {algorithm!r}")
    expected_serial = serial_number_of(public_key)
    if serial_number is not None and bytes(serial_number) != expected_serial:
        raise VerificationError("serial number is not SHA-256 of the public key")
    data = process_data.encode("utf-8") if isinstance(process_data, str) else bytes(process_data)
    message = rebuild_message(
        operation_type=operation_type,
        client_id=client_id,
        process_data=data,
        process_type=process_type,
        transaction_number=transaction_number,
        serial_number=expected_serial,
        signature_counter=signature_counter,
        log_time=log_time,
    )
    verify_signature(message, signature, public_key)
    return VerifiedLog(
        operation_type=operation_type,
        client_id=client_id,
        process_data=data,
        process_type=process_type,
        transaction_number=transaction_number,
        serial_number=expected_serial,
        signature_counter=signature_counter,
        log_time=log_time,
        signature=bytes(signature),
        public_key=bytes(public_key),
        message=message,
    )


def _qr_time(name: str, text: str) -> tuple[int, int]:
    m = _TIME.fullmatch(text)
    if not m:
        raise VerificationError(f"{name}: not YYYY-MM-DDThh:mm:ss.fffZ: {text!r}")
    y, mo, d, h, mi, s, ms = (int(g) for g in m.groups())
    try:
        when = datetime(y, mo, d, h, mi, s, tzinfo=timezone.utc)
    except ValueError as err:
        raise VerificationError(f"{name}: {err}") from err
    return int(when.timestamp()), ms


def _qr_number(name: str, text: str) -> int:
    if not _NUMBER.fullmatch(text):
        raise VerificationError(f"{name}: not a canonical decimal number: {text!r}")
    return int(text)


def _qr_base64(name: str, text: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as err:
        raise VerificationError(f"{name}: bad base64") from err
    if base64.b64encode(raw).decode("ascii") != text:
        raise VerificationError(f"{name}: non-canonical base64")
    return raw


def verify_qr(text: str) -> VerifiedLog:
    """Verify a DSFinV-K receipt QR code (``V0;…``) on its own, with the public key it carries.

    Every field the signature covers must round-trip byte for byte; the start time is only format-checked.
    """
    fields = text.strip().split(";")
    if len(fields) != 12:
        raise VerificationError(f"a DSFinV-K QR code has 12 fields, got {len(fields)}")
    version, client_id, process_type, process_data, tx, counter, start, end, alg, fmt, sig, key = fields
    if version != "V0":
        raise VerificationError(f"unknown QR version {version!r}")
    if fmt != "unixTime":
        raise VerificationError(f"unsupported log time format {fmt!r}")
    start_s, _ = _qr_time("start time", start)
    end_s, end_ms = _qr_time("log time", end)
    if end_ms != 0:
        raise VerificationError("log time: unixTime has whole seconds, milliseconds must be 000")
    if start_s > end_s:
        raise VerificationError("start time is after log time")
    return verify_fields(
        client_id=client_id,
        process_data=process_data,
        process_type=process_type,
        transaction_number=_qr_number("transaction number", tx),
        signature_counter=_qr_number("signature counter", counter),
        log_time=end_s,
        signature=_qr_base64("signature", sig),
        public_key=_qr_base64("public key", key),
        algorithm=alg,
    )


def _expect(data: bytes, pos: int, tag: int, what: str) -> tuple[bytes, int]:
    try:
        got, content, nxt = der.read_tlv(data, pos)
    except der.DerError as err:
        raise VerificationError(f"{what}: {err}") from err
    if got != tag:
        raise VerificationError(f"{what}: expected tag 0x{tag:02x}, got 0x{got:02x}")
    return content, nxt


def _int(content: bytes, what: str) -> int:
    try:
        return der.decode_integer(content)
    except der.DerError as err:
        raise VerificationError(f"{what}: {err}") from err


def verify_log_file(data: bytes, public_key: bytes) -> VerifiedLog:
    """Verify one exported ``.log`` file (TR-03151 LogMessage with signatureValue) against a public key.

    Parses it, checks the signature over the exact inner bytes, and that a rebuild from the parsed fields is identical.
    """
    body, end = _expect(data, 0, 0x30, "LogMessage")
    if end != len(data):
        raise VerificationError("trailing bytes after LogMessage")
    pos = 0
    version, pos = _expect(body, pos, 0x02, "version")
    if _int(version, "version") != _VERSION:
        raise VerificationError("version is not 2")
    data_type, pos = _expect(body, pos, 0x06, "certifiedDataType")
    if data_type != der.oid_content(_OID_TRANSACTION_LOG):
        raise VerificationError("not a transaction log (certifiedDataType)")
    op, pos = _expect(body, pos, 0x80, "operationType")
    client, pos = _expect(body, pos, 0x81, "clientId")
    process_data, pos = _expect(body, pos, 0x82, "processData")
    process_type, pos = _expect(body, pos, 0x83, "processType")
    tx, pos = _expect(body, pos, 0x85, "transactionNumber")
    serial, pos = _expect(body, pos, 0x04, "serialNumber")
    alg, pos = _expect(body, pos, 0x30, "signatureAlgorithm")
    if alg != der.tlv(0x06, der.oid_content(_OID_ECDSA_PLAIN_SHA384)):
        raise VerificationError("signature algorithm is not ecdsa-plain-SHA384")
    counter, pos = _expect(body, pos, 0x02, "signatureCounter")
    log_time, pos = _expect(body, pos, 0x02, "logTime (unixTime)")
    signed_part = body[:pos]
    signature, pos = _expect(body, pos, 0x04, "signatureValue")
    if pos != len(body):
        raise VerificationError("unexpected fields after signatureValue")
    try:
        op_text, client_text, type_text = op.decode("ascii"), client.decode("utf-8"), process_type.decode("utf-8")
    except UnicodeDecodeError as err:
        raise VerificationError(f"text field is not valid text: {err}") from err
    verified = verify_fields(
        operation_type=op_text,
        client_id=client_text,
        process_data=process_data,
        process_type=type_text,
        transaction_number=_int(tx, "transactionNumber"),
        signature_counter=_int(counter, "signatureCounter"),
        log_time=_int(log_time, "logTime"),
        signature=signature,
        public_key=public_key,
        serial_number=serial,
    )
    if verified.message != signed_part:
        raise VerificationError("log message bytes differ from their canonical rebuild")
    return verified
