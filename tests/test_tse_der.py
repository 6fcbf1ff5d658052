"""The DER primitives shared by signer and verifier, against hand-checked encodings.

INTEGER encodings are also cross-checked against cryptography's own DER writer.
"""

from __future__ import annotations

import random

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from python_gateway.tse import der


@pytest.mark.parametrize(
    ("n", "expected"),
    [(0, "00"), (1, "01"), (127, "7f"), (128, "8180"), (255, "81ff"), (256, "820100"), (65536, "83010000")],
)
def test_length(n: int, expected: str) -> None:
    assert der.encode_length(n).hex() == expected


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, "020100"),
        (1, "020101"),
        (127, "02017f"),
        (128, "02020080"),
        (255, "020200ff"),
        (256, "02020100"),
        (44131, "020300ac63"),
        (-1, "0201ff"),
        (-128, "020180"),
        (-129, "0202ff7f"),
        (-256, "0202ff00"),
        (1574422189, "02045dd7c6ad"),
    ],
)
def test_integer(n: int, expected: str) -> None:
    assert der.integer(n).hex() == expected
    assert der.decode_integer(der.integer_content(n)) == n


def test_integer_matches_cryptography_der() -> None:
    rng = random.Random(4)
    for _ in range(300):
        r, s = rng.getrandbits(rng.randint(1, 400)) + 1, rng.getrandbits(rng.randint(1, 400)) + 1
        assert encode_dss_signature(r, s) == der.sequence(der.integer(r), der.integer(s))


@pytest.mark.parametrize(
    ("dotted", "expected"),
    [
        ("1.2.840.113549", "06062a864886f70d"),
        ("2.5.4.3", "0603550403"),
        ("0.4.0.127.0.7.3.7.1.1", "060904007f000703070101"),
        ("0.4.0.127.0.7.1.1.4.1.4", "060a04007f00070101040104"),
        ("2.999.3", "0603883703"),
    ],
)
def test_oid(dotted: str, expected: str) -> None:
    assert der.oid(dotted).hex() == expected
    assert der.decode_oid(der.oid_content(dotted)) == dotted


def test_long_form_tlv_round_trip() -> None:
    content = bytes(range(256)) * 2
    encoded = der.octet_string(content)
    assert encoded[:4].hex() == "04820200"
    assert der.read_tlv(encoded) == (0x04, content, len(encoded))


@pytest.mark.parametrize(
    "bad",
    ["0481050102030405", "0480", "040501", "048200050102030405", "04", "1f0100"],
    ids=["non-minimal length", "indefinite", "truncated content", "leading zero length", "no length", "long tag"],
)
def test_reader_is_strict(bad: str) -> None:
    with pytest.raises(der.DerError):
        der.read_tlv(bytes.fromhex(bad))


@pytest.mark.parametrize("bad", ["", "0001", "ff80"])
def test_non_minimal_integer_rejected(bad: str) -> None:
    with pytest.raises(der.DerError):
        der.decode_integer(bytes.fromhex(bad))


@pytest.mark.parametrize("bad", ["1.40.1", "3.1", "1", "1.a"])
def test_bad_oid_rejected(bad: str) -> None:
    with pytest.raises(der.DerError):
        der.oid(bad)
