"""The official DSFinV-K example receipt (a real signature from a real TSE) against our verifier and encoder.

The vector must verify, and no single changed byte of a signed field may.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from python_gateway.tse import logmessage
from python_gateway.tse.verify import VerificationError, verify_fields, verify_qr

SHARED_TSE = Path(__file__).resolve().parents[2] / "shared" / "tse"
SHARED_VECTOR = SHARED_TSE / "dsfinvk-example-qr.txt"
#: Our copy of the official DSFinV-K example receipt, so that the suite runs wherever the repo is cloned;
#: when shared/ is beside the repo, test_repo_copy_is_the_shared_vector proves the two are identical.
VECTOR_FILE = Path(__file__).resolve().parent / "vectors" / "dsfinvk-example-qr.txt"

#: The rebuilt signed bytes of the vector, field by field (see shared/tse/README.md).
EXPECTED_LAYOUT = [
    ("version INTEGER 2", "020102"),
    ("certifiedDataType OID 0.4.0.127.0.7.3.7.1.1", "060904007f000703070101"),
    ("[0] operationType 'FinishTransaction'", "8011" + b"FinishTransaction".hex()),
    ("[1] clientId 'AMA-2642'", "8108" + b"AMA-2642".hex()),
    ("[2] processData", "8227" + b"Beleg^4.05_3.00_0.00_0.00_0.00^7.05:Bar".hex()),
    ("[3] processType 'Kassenbeleg-V1'", "830e" + b"Kassenbeleg-V1".hex()),
    ("[5] transactionNumber 13", "85010d"),
    ("serialNumber OCTET STRING (SHA-256 of the key)", "0420bf1b13c1cf8a6f7958c190201daf9e18b850cf2cdc0885078d48868f625955e3"),
    ("signatureAlgorithm SEQUENCE { OID 0.4.0.127.0.7.1.1.4.1.4 }", "300c060a04007f00070101040104"),
    ("signatureCounter INTEGER 44131", "020300ac63"),
    ("logTime INTEGER 1574422189 (2019-11-22T11:29:49Z)", "02045dd7c6ad"),
]


def _vector() -> str:
    """The vector's text: shared/tse's when the repo sits beside shared/, else our identical copy."""
    source = SHARED_VECTOR if SHARED_VECTOR.is_file() else VECTOR_FILE
    return source.read_text(encoding="utf-8").strip()


def test_repo_copy_is_the_shared_vector():
    """Our copy must be byte for byte the shared one (checked wherever shared/ is beside the repo, as in CI)."""
    if not SHARED_VECTOR.is_file():
        pytest.skip(f"{SHARED_VECTOR} is not beside this clone; the repo copy is used")
    assert VECTOR_FILE.read_bytes() == SHARED_VECTOR.read_bytes()


@pytest.fixture(scope="module")
def qr() -> str:
    return _vector()


def test_vector_verifies(qr: str) -> None:
    verified = verify_qr(qr)
    assert verified.client_id == "AMA-2642"
    assert verified.transaction_number == 13
    assert verified.signature_counter == 44131
    assert verified.log_time == 1574422189
    assert verified.serial_number == hashlib.sha256(verified.public_key).digest()


def test_vector_byte_layout(qr: str) -> None:
    message = verify_qr(qr).message
    assert message.hex() == "".join(hex_ for _, hex_ in EXPECTED_LAYOUT)
    assert len(message) == 162


def test_signer_encoder_produces_the_same_bytes(qr: str) -> None:
    parsed = logmessage.parse_qr(qr)
    encoded = logmessage.encode_transaction_log(
        operation_type=logmessage.FINISH,
        client_id=parsed.client_id,
        process_data=parsed.process_data.encode(),
        process_type=parsed.process_type,
        transaction_number=parsed.transaction_number,
        serial_number=hashlib.sha256(parsed.public_key).digest(),
        signature_counter=parsed.signature_counter,
        log_time=int(logmessage.parse_qr_time(parsed.log_time)),
    )
    assert encoded == verify_qr(qr).message


def test_qr_parse_and_build_round_trip(qr: str) -> None:
    parsed = logmessage.parse_qr(qr)
    assert parsed.text() == qr
    assert len(parsed.signature) == 96 and len(parsed.public_key) == 97 and parsed.public_key[0] == 4
    rebuilt = logmessage.build_qr(
        client_id=parsed.client_id,
        process_type=parsed.process_type,
        process_data=parsed.process_data,
        transaction_number=parsed.transaction_number,
        signature_counter=parsed.signature_counter,
        start_time=int(logmessage.parse_qr_time(parsed.start_time)),
        log_time=int(logmessage.parse_qr_time(parsed.log_time)),
        signature=parsed.signature,
        public_key=parsed.public_key,
    )
    assert rebuilt == qr


def _field_span(qr: str, index: int) -> range:
    fields = qr.split(";")
    start = sum(len(f) + 1 for f in fields[:index])
    return range(start, start + len(fields[index]))


def _other_char(c: str) -> str:
    return "B" if c == "A" else "0" if c == "1" else "1" if c.isdigit() else "A"


@pytest.mark.parametrize(
    ("field", "index"),
    [
        ("client id", 1),
        ("process type", 2),
        ("process data", 3),
        ("transaction number", 4),
        ("signature counter", 5),
        ("log time", 7),
        ("algorithm", 8),
        ("log time format", 9),
        ("signature", 10),
        ("public key", 11),
    ],
)
def test_any_changed_character_of_a_signed_field_fails(qr: str, field: str, index: int) -> None:
    for pos in _field_span(qr, index):
        tampered = qr[:pos] + _other_char(qr[pos]) + qr[pos + 1 :]
        with pytest.raises(VerificationError):
            verify_qr(tampered)
            pytest.fail(f"{field}: changing position {pos} still verifies")


def test_every_changed_byte_outside_the_start_time_fails(qr: str) -> None:
    start_time = _field_span(qr, 6)
    for pos in range(len(qr)):
        if pos in start_time:
            continue
        for repl in {_other_char(qr[pos]), ";", "/"} - {qr[pos]}:
            with pytest.raises(VerificationError):
                verify_qr(qr[:pos] + repl + qr[pos + 1 :])


def test_start_time_is_not_signed_but_is_checked(qr: str) -> None:
    """The FinishTransaction log does not contain the start time: only its form and order are checkable.

    (It is signed in the StartTransaction log, which the QR code does not carry.)
    """
    fields = qr.split(";")
    for bad in ("2019-11-22T11:29:50.000Z", "2019-11-22 11:29:48.000Z", "2019-11-22T11:29:48Z", "2019-13-22T11:29:48.000Z"):
        with pytest.raises(VerificationError):
            verify_qr(";".join(fields[:6] + [bad] + fields[7:]))


@pytest.mark.parametrize("what", ["process_data", "client_id", "transaction_number", "signature_counter", "log_time", "signature", "public_key"])
def test_every_changed_byte_of_stored_fields_fails(qr: str, what: str) -> None:
    parsed = logmessage.parse_qr(qr)
    good = dict(
        client_id=parsed.client_id,
        process_data=parsed.process_data.encode(),
        process_type=parsed.process_type,
        transaction_number=parsed.transaction_number,
        signature_counter=parsed.signature_counter,
        log_time=int(logmessage.parse_qr_time(parsed.log_time)),
        signature=parsed.signature,
        public_key=parsed.public_key,
        serial_number=hashlib.sha256(parsed.public_key).digest(),
    )
    verify_fields(**good)
    value = good[what]
    if isinstance(value, int):
        variants = [value + d for d in (-1, 1, 256, 1 << 32)] + [value ^ (1 << b) for b in range(value.bit_length() + 1)]
    else:
        raw = value.encode() if isinstance(value, str) else value
        variants = [raw[:i] + bytes([raw[i] ^ 1]) + raw[i + 1 :] for i in range(len(raw))]
        variants = [v.decode() for v in variants] if isinstance(value, str) else variants
    for variant in variants:
        with pytest.raises(VerificationError):
            verify_fields(**{**good, what: variant})


def test_serial_number_must_match_the_key(qr: str) -> None:
    parsed = logmessage.parse_qr(qr)
    with pytest.raises(VerificationError, match="serial number"):
        verify_fields(
            client_id=parsed.client_id,
            process_data=parsed.process_data,
            process_type=parsed.process_type,
            transaction_number=parsed.transaction_number,
            signature_counter=parsed.signature_counter,
            log_time=1574422189,
            signature=parsed.signature,
            public_key=parsed.public_key,
            serial_number=bytes(32),
        )


def test_non_canonical_base64_is_rejected(qr: str) -> None:
    fields = qr.split(";")
    key = fields[11]
    assert key.endswith("A==")  # the last 4 bits of the last character are padding
    same_bytes = key[:-3] + "B=="
    assert base64.b64decode(same_bytes) == base64.b64decode(key)
    with pytest.raises(VerificationError, match="non-canonical"):
        verify_qr(";".join(fields[:11] + [same_bytes]))


def test_verifier_is_independent_of_the_signer() -> None:
    import ast

    import python_gateway.tse.verify as verify_module

    tree = ast.parse(Path(verify_module.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in imported if m and ("logmessage" in m or "software" in m or "interface" in m)}
    assert {n.names[0].name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 1} == {"der"}
