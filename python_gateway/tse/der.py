"""Minimal DER writer and reader: the only primitives shared by the TSE signer and the verifier.

Deliberately tiny (TLV, length, INTEGER, OID, OCTET STRING, SEQUENCE) so an auditor can read it whole.
"""

from __future__ import annotations

TAG_INTEGER = 0x02
TAG_OCTET_STRING = 0x04
TAG_OID = 0x06
TAG_SEQUENCE = 0x30


class DerError(ValueError):
    """Malformed or non-canonical DER input.

    Raised by the reader; the writer raises it for values it cannot encode.
    """


class DerTruncated(DerError):
    """The input ends inside a TLV: a prefix of something longer.

    What a write cut short by a crash leaves behind.
    """


def encode_length(n: int) -> bytes:
    """DER length octets: short form below 128, else 0x80|k followed by k big-endian bytes.

    Always the minimal form, as DER requires.
    """
    if n < 0:
        raise DerError(f"negative length {n}")
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    if len(body) > 126:
        raise DerError(f"length {n} too large")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, content: bytes) -> bytes:
    """One TLV with a single-byte tag (all tags used here are < 31).

    The content is taken as given; callers build it with the helpers below.
    """
    if not 0 <= tag <= 0xFF or tag & 0x1F == 0x1F:
        raise DerError(f"unsupported tag 0x{tag:02x}")
    return bytes([tag]) + encode_length(len(content)) + bytes(content)


def integer_content(n: int) -> bytes:
    """Minimal two's-complement big-endian bytes of ``n`` (content of a DER INTEGER).

    0 is one zero byte; 128 is 00 80; -128 is 80; -129 is FF 7F.
    """
    length = n.bit_length() // 8 + 1 if n >= 0 else (-n - 1).bit_length() // 8 + 1
    return n.to_bytes(length, "big", signed=True)


def integer(n: int, tag: int = TAG_INTEGER) -> bytes:
    """A DER INTEGER (or an implicitly tagged one with ``tag``, e.g. 0x85).

    Encoded in minimal two's complement.
    """
    return tlv(tag, integer_content(n))


def oid_content(dotted: str) -> bytes:
    """Content octets of an OBJECT IDENTIFIER: first two arcs as 40*a+b, then base-128 arcs.

    Each arc is big-endian base 128 with the high bit set on all but its last byte.
    """
    try:
        arcs = [int(a) for a in dotted.split(".")]
    except ValueError as err:
        raise DerError(f"bad OID {dotted!r}") from err
    if len(arcs) < 2 or arcs[0] not in (0, 1, 2) or any(a < 0 for a in arcs) or (arcs[0] < 2 and arcs[1] > 39):
        raise DerError(f"bad OID {dotted!r}")
    out = bytearray()
    for arc in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out.extend(reversed(chunk))
    return bytes(out)


def oid(dotted: str) -> bytes:
    """A DER OBJECT IDENTIFIER from its dotted form.

    Example: ``oid("1.2.840.113549")`` is ``06 06 2A 86 48 86 F7 0D``.
    """
    return tlv(TAG_OID, oid_content(dotted))


def octet_string(data: bytes, tag: int = TAG_OCTET_STRING) -> bytes:
    """A DER OCTET STRING (or an implicitly tagged primitive string with ``tag``).

    Used for serial numbers, signatures and the context-tagged text fields.
    """
    return tlv(tag, data)


def sequence(*items: bytes) -> bytes:
    """A DER SEQUENCE of already-encoded items.

    The items are concatenated in the given order.
    """
    return tlv(TAG_SEQUENCE, b"".join(items))


def read_tlv(data: bytes, offset: int = 0) -> tuple[int, bytes, int]:
    """Read one TLV at ``offset``: returns (tag, content, offset after it).

    Strict: single-byte tags, definite minimal lengths, no reading past the end.
    """
    if offset >= len(data):
        raise DerTruncated("truncated: no tag")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise DerError("multi-byte tags are not supported")
    if offset + 1 >= len(data):
        raise DerTruncated("truncated: no length")
    first = data[offset + 1]
    pos = offset + 2
    if first < 0x80:
        length = first
    elif first == 0x80:
        raise DerError("indefinite length is not DER")
    else:
        k = first & 0x7F
        if pos + k > len(data):
            raise DerTruncated("truncated length")
        length = int.from_bytes(data[pos : pos + k], "big")
        if length < 0x80 or data[pos] == 0:
            raise DerError("non-minimal length")
        pos += k
    end = pos + length
    if end > len(data):
        raise DerTruncated("truncated content")
    return tag, bytes(data[pos:end]), end


def decode_integer(content: bytes) -> int:
    """The value of INTEGER content octets, rejecting empty or non-minimal encodings.

    Two's complement, big-endian.
    """
    if not content:
        raise DerError("empty INTEGER")
    if len(content) > 1 and (
        (content[0] == 0x00 and content[1] < 0x80) or (content[0] == 0xFF and content[1] >= 0x80)
    ):
        raise DerError("non-minimal INTEGER")
    return int.from_bytes(content, "big", signed=True)


def decode_oid(content: bytes) -> str:
    """The dotted form of OBJECT IDENTIFIER content octets.

    Rejects empty content, non-minimal arcs and a truncated last arc.
    """
    if not content or content[-1] & 0x80:
        raise DerError("bad OID content")
    arcs: list[int] = []
    value = 0
    fresh = True
    for byte in content:
        if fresh and byte == 0x80:
            raise DerError("non-minimal OID arc")
        value = (value << 7) | (byte & 0x7F)
        fresh = not byte & 0x80
        if fresh:
            arcs.append(value)
            value = 0
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(a) for a in head + arcs[1:])
