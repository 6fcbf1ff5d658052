"""The software TSE: a persistent brainpoolP384r1 key, counters that only go up, signed TR-03153 logs.

One directory per TSE, used by one process at a time (flock); see :class:`SoftwareTSE` for the layout.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import io
import json
import logging
import os
import stat
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from . import der
from .interface import SignedLog, TseError, TseRequestError, TseUnavailable
from .logmessage import (
    FINISH,
    START,
    LogRecord,
    check_printable,
    decode_log_file,
    encode_log_file,
    encode_transaction_log,
    log_file_name,
)

KEY_FILE = "private_key.pem"
STATE_FILE = "state.json"
LOG_FILE = "logs.der"
LOCK_FILE = "lock"
_SCALAR = 48

log = logging.getLogger("festpay.tse")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _iter_records(data: bytes, start: int = 0) -> Iterator[tuple[int, bytes]]:
    """Yield (offset, bytes) of each complete LogMessage in ``data`` from ``start``.

    Raises der.DerError at the first record that is incomplete or malformed.
    """
    pos = start
    while pos < len(data):
        _, _, end = der.read_tlv(data, pos)
        yield pos, data[pos:end]
        pos = end


CHECKPOINT_EVERY = 1000   # signatures between two writes of state.json (bounds the log scan when opening)


class SoftwareTSE:
    """A software TSE in ``directory``: ``private_key.pem`` (0600), ``state.json``, ``logs.der``, ``lock``.

    ``logs.der`` is the truth: a signature is handed out only after its log record is appended and fsync'd, so the
    highest transaction number and signature counter in the store are the highest ever released, and opening the TSE
    counts in every record past the last checkpoint (``state.json``: counters, clients, open transactions and the log
    offset they cover; written on client registration, every CHECKPOINT_EVERY signatures and on close). A crash
    before the fsync loses a signature nobody has seen, whose numbers are then given out again: counters never repeat
    among released signatures and never go back. Signing is serialised (one mutex); the fsync is not: callers that
    signed meanwhile share one (group commit), which is what lets several relay workers sign in parallel.
    """

    def __init__(self, directory: str | os.PathLike[str], *, clock: Callable[[], float] = time.time) -> None:
        self.directory = Path(directory)
        self._clock = clock
        self._mutex = threading.Lock()        # counters, open transactions, appends
        self._flush_lock = threading.Lock()   # one fsync of logs.der at a time; see _flush
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock_fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise TseUnavailable(f"TSE directory {self.directory} is in use by another process or object") from None
        try:
            self._key = self._load_or_create_key()
            self._public_key = self._key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
            self._serial = hashlib.sha256(self._public_key).digest()
            self._load_state()
            self._log_fd = os.open(self.directory / LOG_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._flushed = self._log_size
            self._checkpoint_counter = self._counter
            _fsync_dir(self.directory)
        except BaseException:
            self.close()
            raise

    # ---- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Release the directory lock and close files.

        The object is unusable afterwards; a new one may open the directory. Writes a checkpoint first (best effort:
        opening again recovers from the log store without one).
        """
        if getattr(self, "_log_fd", -1) >= 0:
            try:
                with self._mutex:
                    self._save_state()
            except OSError as err:
                log.warning("TSE %s: no checkpoint on close: %s", self.directory, err)
            os.close(self._log_fd)
            self._log_fd = -1
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = -1

    def __enter__(self) -> SoftwareTSE:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- key and state ---------------------------------------------------------------------

    def _load_or_create_key(self) -> ec.EllipticCurvePrivateKey:
        path = self.directory / KEY_FILE
        if path.exists():
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode & 0o077:
                raise TseError(f"{path} must not be readable by others (mode {mode:o}, want 600)")
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "brainpoolP384r1":
                raise TseError(f"{path} is not a brainpoolP384r1 private key")
            return key
        key = ec.generate_private_key(ec.BrainpoolP384R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(self.directory)
        return key

    def _load_state(self) -> None:
        """Read the checkpoint ``state.json`` and count in every record of ``logs.der`` past it.

        A torn last append (a crash before its fsync) is cut off: that signature was never released.
        """
        path = self.directory / STATE_FILE
        state: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        self._tx = int(state.get("transaction_number", 0))
        self._counter = int(state.get("signature_counter", 0))
        self._last_log_time = int(state.get("last_log_time", 0))
        self._clients: set[str] = set(state.get("clients", []))
        self._open: dict[int, dict[str, Any]] = {int(k): v for k, v in state.get("open", {}).items()}
        self._pending: dict[str, Any] = state.get("pending") or {}
        offset = int(state.get("log_offset", 0))
        log_path = self.directory / LOG_FILE
        data = log_path.read_bytes() if log_path.exists() else b""
        if len(data) < offset:
            raise TseError(f"{log_path} is shorter than recorded: signed logs are missing")
        good = offset
        try:
            for pos, raw in _iter_records(data, offset):
                try:
                    rec = decode_log_file(raw)
                except (der.DerError, ValueError) as err:
                    raise TseError(f"{log_path}: corrupt record at byte {pos}: {err}") from err
                self._counter = max(self._counter, rec.signature_counter)
                self._tx = max(self._tx, rec.transaction_number)
                self._last_log_time = max(self._last_log_time, rec.log_time)
                if rec.operation_type == START:
                    self._open[rec.transaction_number] = {"client_id": rec.client_id, "start_time": rec.log_time}
                elif rec.operation_type == FINISH:
                    self._open.pop(rec.transaction_number, None)
                good = pos + len(raw)
        except der.DerTruncated:
            pass  # a torn append: that signature was never released
        except der.DerError as err:
            raise TseError(f"{log_path}: corrupt data at byte {good}: {err}") from err
        if good == offset and self._pending.get("operation_type") == START:
            # A checkpoint of an older version, written when a start was reserved but not yet signed: not started.
            self._open.pop(int(self._pending["transaction_number"]), None)
        if good < len(data):
            with open(log_path, "r+b") as f:
                f.truncate(good)
                os.fsync(f.fileno())
        self._log_size = good

    def _sync_appended(self) -> None:
        """Make every record appended so far durable. The caller holds the mutex, so none is being appended."""
        if self._log_fd >= 0 and self._flushed < self._log_size:
            os.fsync(self._log_fd)
            self._flushed = self._log_size

    def _save_state(self) -> None:
        """Write a checkpoint atomically and durably (tmp file, fsync, rename, fsync directory).

        The caller holds the mutex. The log store is fsync'd first: the checkpoint covers every record appended so far.
        """
        self._sync_appended()
        self._checkpoint_counter = self._counter
        self._pending = {}
        state = {
            "transaction_number": self._tx,
            "signature_counter": self._counter,
            "last_log_time": self._last_log_time,
            "log_offset": self._log_size,
            "pending": self._pending,
            "clients": sorted(self._clients),
            "open": {str(k): v for k, v in sorted(self._open.items())},
        }
        tmp = self.directory / (STATE_FILE + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.directory / STATE_FILE)
        _fsync_dir(self.directory)

    # ---- signing ---------------------------------------------------------------------------

    def _sign_raw(self, message: bytes) -> bytes:
        r, s = decode_dss_signature(self._key.sign(message, ec.ECDSA(hashes.SHA384())))
        return r.to_bytes(_SCALAR, "big") + s.to_bytes(_SCALAR, "big")

    def _check_open(self) -> None:
        if self._lock_fd < 0 or self._log_fd < 0:
            raise TseUnavailable("TSE is closed")

    def _next_log_time(self) -> int:
        self._last_log_time = max(int(self._clock()), self._last_log_time)  # never goes back
        return self._last_log_time

    def _sign(
        self,
        operation_type: str,
        client_id: str,
        number: int,
        process_type: str,
        process_data: str,
        log_time: int,
        start_time: int,
    ) -> tuple[SignedLog, int]:
        """Take the next signature counter, sign and append the log message (not yet fsync'd: see :meth:`_flush`).

        The caller holds the mutex and has already updated the in-memory transaction state. Returns the signed log and
        the end offset of its record, which must be flushed before the signature is handed out.
        """
        message = encode_transaction_log(
            operation_type=operation_type,
            client_id=client_id,
            process_data=process_data.encode("utf-8"),
            process_type=process_type,
            transaction_number=number,
            serial_number=self._serial,
            signature_counter=self._counter + 1,
            log_time=log_time,
        )
        signature = self._sign_raw(message)
        record = encode_log_file(message, signature)
        try:
            view = memoryview(record)
            while view:
                view = view[os.write(self._log_fd, view) :]
        except OSError as err:  # e.g. disk full: cut off a partial record, release nothing
            os.ftruncate(self._log_fd, self._log_size)
            raise TseUnavailable(f"cannot store the signed log: {err}") from err
        self._counter += 1
        self._log_size += len(record)
        signed = SignedLog(
            operation_type=operation_type,
            client_id=client_id,
            process_type=process_type,
            process_data=process_data,
            transaction_number=number,
            signature_counter=self._counter,
            start_time=start_time,
            log_time=log_time,
            serial_number=self._serial,
            signature=signature,
            public_key=self._public_key,
            message=message,
        )
        return signed, self._log_size

    def _flush(self, end: int) -> None:
        """Make the log store durable up to offset ``end`` (group commit): one fsync covers every record appended
        before it began, so a caller whose record a concurrent fsync already covered does not fsync again. The caller
        does NOT hold the mutex (others keep signing meanwhile); every CHECKPOINT_EVERY signatures a checkpoint follows.
        """
        with self._flush_lock:
            if self._flushed < end:
                target = self._log_size        # everything appended so far (>= end)
                try:
                    os.fsync(self._log_fd)
                except OSError as err:
                    raise TseUnavailable(f"cannot store the signed log: {err}") from err
                self._flushed = max(self._flushed, target)
        if self._counter - self._checkpoint_counter >= CHECKPOINT_EVERY:
            with self._mutex:
                if self._counter - self._checkpoint_counter >= CHECKPOINT_EVERY:
                    try:
                        self._save_state()
                    except OSError as err:  # the signature is durable already; opening again replays the log
                        log.warning("TSE %s: no checkpoint: %s", self.directory, err)

    # ---- the TSE interface -----------------------------------------------------------------

    @property
    def serial_number(self) -> bytes:
        """SHA-256 of the uncompressed public key (32 bytes).

        Shown as hex on receipts and in the DSFinV-K export.
        """
        return self._serial

    @property
    def public_key(self) -> bytes:
        """The uncompressed public point 04‖X‖Y (97 bytes).

        Base64 of it goes into the receipt QR code.
        """
        return self._public_key

    def register_client(self, client_id: str) -> None:
        """Register a client id (PrintableString, at most 30 characters); idempotent.

        Persisted before returning.
        """
        check_printable("client id", client_id, 30)
        with self._mutex:
            self._check_open()
            if client_id not in self._clients:
                self._clients.add(client_id)
                self._save_state()

    def start_transaction(self, client_id: str, process_type: str, process_data: str) -> int:
        """Start a transaction: sign its StartTransaction log and return its new transaction number.

        The number is handed out only once its Start log is durable in the log store.
        """
        check_printable("process type", process_type, 100)
        with self._mutex:
            self._check_open()
            if client_id not in self._clients:
                raise TseRequestError(f"client {client_id!r} is not registered")
            self._tx += 1
            number = self._tx
            start = self._next_log_time()
            self._open[number] = {"client_id": client_id, "start_time": start}
            try:
                _, end = self._sign(START, client_id, number, process_type, process_data, start, start)
            except BaseException:
                del self._open[number]  # the number stays used; this transaction never started
                raise
        self._flush(end)
        return number

    def finish_transaction(self, client_id: str, number: int, process_type: str, process_data: str) -> SignedLog:
        """Finish transaction ``number`` and return its signed FinishTransaction log.

        Repeating an identical finish returns the stored signature instead of signing twice.
        """
        check_printable("process type", process_type, 100)
        with self._mutex:
            self._check_open()
            tx = self._open.get(number)
            if tx is None:
                signed, end = self._replay_finish(client_id, number, process_type, process_data), self._log_size
            else:
                if tx["client_id"] != client_id:
                    raise TseRequestError(f"transaction {number} belongs to client {tx['client_id']!r}")
                log_time = self._next_log_time()
                signed, end = self._sign(FINISH, client_id, number, process_type, process_data, log_time,
                                         int(tx["start_time"]))
                del self._open[number]  # recovery re-derives it from logs.der
        self._flush(end)  # also a replayed one: its record may still wait for the fsync of a concurrent caller
        return signed

    def _records(self) -> Iterator[LogRecord]:
        data = (self.directory / LOG_FILE).read_bytes()[: self._log_size]
        for _, raw in _iter_records(data):
            yield decode_log_file(raw)

    def _replay_finish(self, client_id: str, number: int, process_type: str, process_data: str) -> SignedLog:
        """Return the stored FinishTransaction of ``number`` if it matches exactly, else refuse.

        A rare path (a retried request after a lost answer), so it scans the log store.
        """
        start: int | None = None
        for rec in self._records():
            if rec.transaction_number != number:
                continue
            if rec.operation_type == START:
                start = rec.log_time
            elif rec.operation_type == FINISH:
                same = (rec.client_id, rec.process_type, rec.process_data) == (
                    client_id,
                    process_type,
                    process_data.encode("utf-8"),
                )
                if not same:
                    raise TseRequestError(f"transaction {number} was already finished with other data")
                return SignedLog(
                    operation_type=FINISH,
                    client_id=client_id,
                    process_type=process_type,
                    process_data=process_data,
                    transaction_number=number,
                    signature_counter=rec.signature_counter,
                    start_time=rec.log_time if start is None else start,
                    log_time=rec.log_time,
                    serial_number=self._serial,
                    signature=rec.signature,
                    public_key=self._public_key,
                    message=rec.signed_part,
                )
        raise TseRequestError(f"transaction {number} was never started")

    def export(self) -> bytes:
        """A TAR of every signed log message, one ``.log`` file each, named like real TSE exports.

        ``Unixt_<logTime>_Sig-<counter>_Log-Tra_No-<tx>_<Start|Finish>_Client-<id>.log``, in counter order.
        """
        with self._mutex:
            self._check_open()
            try:
                self._sync_appended()  # hand out only what a crash cannot take back
            except OSError as err:
                raise TseUnavailable(f"cannot store the signed log: {err}") from err
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
                for rec in self._records():
                    raw = encode_log_file(rec.signed_part, rec.signature)
                    info = tarfile.TarInfo(
                        log_file_name(
                            log_time=rec.log_time,
                            signature_counter=rec.signature_counter,
                            transaction_number=rec.transaction_number,
                            operation_type=rec.operation_type,
                            client_id=rec.client_id,
                        )
                    )
                    info.size, info.mtime, info.mode = len(raw), rec.log_time, 0o444
                    tar.addfile(info, io.BytesIO(raw))
            return buf.getvalue()

    def health(self) -> dict[str, Any]:
        """Status and counters of this TSE, for /health/ready and the CLI.

        ``status`` is ``ok`` while the directory is held open.
        """
        with self._mutex:
            ok = self._lock_fd >= 0 and self._log_fd >= 0
            return {
                "status": "ok" if ok else "closed",
                "serial_number": self._serial.hex(),
                "public_key": base64.b64encode(self._public_key).decode("ascii"),
                "algorithm": "ecdsa-plain-SHA384",
                "transaction_number": self._tx,
                "signature_counter": self._counter,
                "open_transactions": len(self._open),
                "clients": len(self._clients),
            }

