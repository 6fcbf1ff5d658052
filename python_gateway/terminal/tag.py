"""Virtual NFC tags: one JSON file per wristband, protected by a MAC (SPEC §7).

A tag holds its UID, the balance as last written, the next tag transaction number and
the log of every charge written to it that the backend has not acknowledged yet.  The
MAC is HMAC-SHA256, keyed with the event's (base64-decoded) tag key, over
:func:`canonical` of everything else.  A file whose MAC does not match is refused
(:class:`TagTampered`); nothing is charged from it.

A *blank* tag (as it comes from the factory, ``mac: null``) is accepted only when it is
pristine: balance 0, next number 0, empty log.  The first terminal write signs it.

Every write increments the tag transaction number (SPEC §4): a charge, the rewrite after
the backend settled the log at the first tap, and a top-up or refund balance write.

Every terminal of an event holds the tag key, so the tag's MAC cannot tell which terminal
wrote a charge.  Each log entry therefore carries its own ``mac``, written by the charging
terminal with its assignment secret (:func:`python_gateway.signing.log_entry_mac`); the
backend trusts an uploaded entry only when it verifies.  The tag's MAC covers the entries'
``mac`` too.  A file may hold entries without a ``mac``: they read as ``mac=None`` and are
written back without the member, so the file still verifies; the backend refuses such an
entry as forged.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

FORMAT = 1


class TagError(Exception):
    """The tag cannot be used; ``slug`` names the reason (machine-readable)."""

    slug = "tag-error"

    def __init__(self, message: str, slug: str | None = None):
        super().__init__(message)
        if slug is not None:
            self.slug = slug


class TagCorrupt(TagError):
    """The file is not a readable tag (bad JSON, missing or mistyped fields)."""

    slug = "tag-corrupt"


class TagTampered(TagError):
    """The MAC does not match the content: the tag was modified outside a terminal."""

    slug = "tag-tampered"


class TagRefused(TagError):
    """The tag refuses a charge: log full, offline limit reached, or balance too low."""


_UID_RE = re.compile(r"^[0-9A-F]{8,20}$")


def normalize_uid(uid: str) -> str:
    """Upper-case hex without separators, 4 to 10 bytes (as the backend normalises UIDs)."""
    value = uid.strip().replace(":", "").replace(" ", "").upper()
    if not _UID_RE.match(value):
        raise ValueError(f"tag UID {uid!r} is not 4 to 10 bytes of hex")
    return value


@dataclass(frozen=True)
class LogEntry:
    """One charge written to the tag and not yet acknowledged by the backend."""

    assignment_id: int
    terminal_tx_number: int
    tag_tx_number: int
    amount: int
    time: str
    mac: str | None = None
    """The charging terminal's MAC of the entry (base64); None for an entry written without one."""

    @property
    def key(self) -> tuple[int, int]:
        return (self.assignment_id, self.terminal_tx_number)

    def to_json(self) -> dict[str, Any]:
        obj = asdict(self)
        if self.mac is None:
            del obj["mac"]
        return obj


@dataclass(frozen=True)
class TagData:
    """The content of a tag (without its MAC)."""

    uid: str
    balance: int = 0
    next_tag_tx_number: int = 0
    log: tuple[LogEntry, ...] = field(default_factory=tuple)

    @property
    def unacknowledged_total(self) -> int:
        return sum(e.amount for e in self.log)

    @property
    def pristine(self) -> bool:
        return self.balance == 0 and self.next_tag_tx_number == 0 and not self.log

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "uid": self.uid,
            "balance": self.balance,
            "next_tag_tx_number": self.next_tag_tx_number,
            "log": [e.to_json() for e in self.log],
        }

    # -- the writes a terminal makes (each returns a new TagData with the number incremented)

    def check_charge(self, amount: int, *, offline: bool, log_size: int, offline_limit: int) -> None:
        """Raises :class:`TagRefused` when this tag cannot take a charge of ``amount``.

        Always: the log must have room (every charge goes into it until acknowledged).
        Offline: the balance must cover it and the unacknowledged total must stay within the
        offline limit.
        """
        if amount <= 0:
            raise TagRefused(f"amount must be positive, not {amount}", "validation")
        if len(self.log) >= log_size:
            raise TagRefused(
                f"the tag's log is full ({len(self.log)} of {log_size} unacknowledged charges); "
                "sync the tag online first",
                "tag-log-full",
            )
        if offline:
            if self.balance < amount:
                raise TagRefused(
                    f"the tag's balance {self.balance} does not cover {amount}", "insufficient-balance"
                )
            if self.unacknowledged_total + amount > offline_limit:
                raise TagRefused(
                    f"offline limit reached: {self.unacknowledged_total} unacknowledged + {amount} "
                    f"> {offline_limit}",
                    "offline-limit-reached",
                )

    def charged(self, entry: LogEntry) -> "TagData":
        if entry.tag_tx_number != self.next_tag_tx_number:
            raise TagRefused(
                f"charge numbered {entry.tag_tx_number}, but the tag's next number is {self.next_tag_tx_number}",
                "tag-number-mismatch",
            )
        return replace(
            self,
            balance=self.balance - entry.amount,
            next_tag_tx_number=self.next_tag_tx_number + 1,
            log=self.log + (entry,),
        )

    def acknowledged(self, keys: set[tuple[int, int]], balance: int | None = None) -> "TagData":
        """The tag after the backend settled ``keys`` (acknowledged or refused them) and, online, told the
        balance: those entries leave the log."""
        return replace(
            self,
            balance=self.balance if balance is None else balance,
            next_tag_tx_number=self.next_tag_tx_number + 1,
            log=tuple(e for e in self.log if e.key not in keys),
        )

    def with_balance(self, balance: int) -> "TagData":
        return replace(self, balance=balance, next_tag_tx_number=self.next_tag_tx_number + 1)


def decode_key(tag_key_b64: str) -> bytes:
    try:
        key = base64.b64decode(tag_key_b64, validate=True)
    except (binascii.Error, ValueError) as err:
        raise ValueError(f"the tag key is not base64: {err}") from None
    if not key:
        raise ValueError("the tag key is empty")
    return key


def canonical(data: TagData) -> bytes:
    """The bytes the MAC covers: sorted-key compact JSON of everything but the MAC."""
    return json.dumps(data.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def compute_mac(data: TagData, tag_key_b64: str) -> str:
    return base64.b64encode(hmac.new(decode_key(tag_key_b64), canonical(data), hashlib.sha256).digest()).decode()


def _int(obj: dict, name: str, minimum: int | None = 0) -> int:
    value = obj.get(name)
    if type(value) is not int:  # noqa: E721 - bool is not an int here
        raise TagCorrupt(f"field {name!r} must be an integer, not {value!r}")
    if minimum is not None and value < minimum:
        raise TagCorrupt(f"field {name!r} must be at least {minimum}, not {value}")
    return value


def parse(raw: bytes | str) -> tuple[TagData, str | None]:
    """Parses a tag file into its data and its MAC (None for a blank tag)."""
    try:
        obj = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise TagCorrupt(f"not a tag file: {err}") from None
    if not isinstance(obj, dict):
        raise TagCorrupt("not a tag file: expected a JSON object")
    if obj.get("format", FORMAT) != FORMAT:
        raise TagCorrupt(f"unknown tag format {obj.get('format')!r}")
    uid = obj.get("uid")
    if not isinstance(uid, str):
        raise TagCorrupt("field 'uid' must be a string")
    try:
        uid = normalize_uid(uid)
    except ValueError as err:
        raise TagCorrupt(str(err)) from None
    log_raw = obj.get("log")
    if not isinstance(log_raw, list):
        raise TagCorrupt("field 'log' must be a list")
    log = []
    for item in log_raw:
        if not isinstance(item, dict) or not isinstance(item.get("time"), str):
            raise TagCorrupt(f"bad log entry {item!r}")
        entry_mac = item.get("mac")
        if entry_mac is not None and not isinstance(entry_mac, str):
            raise TagCorrupt(f"log entry field 'mac' must be a string, not {entry_mac!r}")
        log.append(
            LogEntry(
                assignment_id=_int(item, "assignment_id", 1),
                terminal_tx_number=_int(item, "terminal_tx_number", 1),
                tag_tx_number=_int(item, "tag_tx_number"),
                amount=_int(item, "amount", 1),
                time=item["time"],
                mac=entry_mac,
            )
        )
    mac = obj.get("mac")
    if mac is not None and not isinstance(mac, str):
        raise TagCorrupt("field 'mac' must be a string or null")
    data = TagData(
        uid=uid,
        balance=_int(obj, "balance", None),
        next_tag_tx_number=_int(obj, "next_tag_tx_number"),
        log=tuple(log),
    )
    return data, mac


def verify(data: TagData, mac: str | None, tag_key_b64: str) -> None:
    """Raises :class:`TagTampered` unless ``mac`` is the MAC of ``data`` (or the tag is blank and pristine)."""
    if mac is None:
        if data.pristine:
            return
        raise TagTampered(f"tag {data.uid} has no MAC but carries data; refused")
    expected = compute_mac(data, tag_key_b64)
    if not hmac.compare_digest(expected.encode(), mac.encode()):
        raise TagTampered(f"tag {data.uid}: the MAC does not match its content (tampered); refused")


def serialize(data: TagData, tag_key_b64: str | None) -> bytes:
    obj = data.to_json()
    obj["mac"] = compute_mac(data, tag_key_b64) if tag_key_b64 else None
    return (json.dumps(obj, indent=2) + "\n").encode()


@dataclass(frozen=True)
class VirtualTag:
    """A tag file on disk: read (and verify) it, write it atomically."""

    path: Path

    def read(self, tag_key_b64: str) -> TagData:
        """Reads and verifies the tag (raises :class:`TagTampered`, :class:`TagCorrupt`)."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            raise TagError(f"no tag at {self.path}", "tag-missing") from None
        data, mac = parse(raw)
        verify(data, mac, tag_key_b64)
        return data

    def write(self, data: TagData, tag_key_b64: str | None, *, fsync: bool = True) -> None:
        """Writes the tag with a fresh MAC, atomically (a reader sees the old or the new tag, never half)."""
        write_atomic(self.path, serialize(data, tag_key_b64), fsync=fsync)


def write_atomic(path: Path, content: bytes, *, fsync: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def new_tag(path: Path, uid: str, tag_key_b64: str | None = None, *, overwrite: bool = False) -> TagData:
    """Creates a fresh tag file (balance 0, next number 0, empty log); signed when a tag key is given."""
    data = TagData(uid=normalize_uid(uid))
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists already")
    write_atomic(path, serialize(data, tag_key_b64))
    return data
