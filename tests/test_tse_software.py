"""The software TSE: its signatures verify independently, counters only go up, one user per directory.

Also crash recovery (skipped, never repeated counters; a torn append) and the TAR export.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from python_gateway.tse import TSE, SoftwareTSE, TseRequestError, TseUnavailable
from python_gateway.tse.interface import SignedLog
from python_gateway.tse import logmessage
from python_gateway.tse.software import LOG_FILE
from python_gateway.tse.verify import VerificationError, verify_fields, verify_log_file, verify_qr

CLIENT = "TILL-0001"
TYPE = "Kassenbeleg-V1"
REPO_ROOT = Path(__file__).resolve().parents[1]
EXPORT_NAME = re.compile(r"Unixt_(\d+)_Sig-(\d+)_Log-Tra_No-(\d+)_(Start|Finish)_Client-([A-Za-z0-9-]+)\.log")


def beleg(cents: int) -> str:
    amount = f"{cents // 100}.{cents % 100:02d}"
    return f"Beleg^{amount}_0.00_0.00_0.00_0.00^{amount}:Unbar"


@pytest.fixture
def tse(tmp_path: Path) -> Iterator[SoftwareTSE]:
    with SoftwareTSE(tmp_path / "tse") as t:
        t.register_client(CLIENT)
        yield t


def sell(tse: SoftwareTSE, cents: int, client: str = CLIENT):
    number = tse.start_transaction(client, TYPE, "")
    return tse.finish_transaction(client, number, TYPE, beleg(cents))


def test_is_a_tse(tse: SoftwareTSE) -> None:
    assert isinstance(tse, TSE)


def test_signature_verifies_independently(tse: SoftwareTSE) -> None:
    signed = sell(tse, 705)
    assert signed.serial_number == hashlib.sha256(signed.public_key).digest() == tse.serial_number
    assert len(signed.signature) == 96 and len(signed.public_key) == 97
    verified = verify_fields(
        client_id=signed.client_id,
        process_data=signed.process_data,
        process_type=signed.process_type,
        transaction_number=signed.transaction_number,
        signature_counter=signed.signature_counter,
        log_time=signed.log_time,
        signature=signed.signature,
        public_key=signed.public_key,
        serial_number=signed.serial_number,
    )
    assert verified.message == signed.message


def test_qr_round_trip(tse: SoftwareTSE) -> None:
    signed = sell(tse, 1999)
    qr = signed.qr_code()
    assert qr.startswith(f"V0;{CLIENT};{TYPE};{beleg(1999)};{signed.transaction_number};")
    verified = verify_qr(qr)
    assert (verified.transaction_number, verified.signature_counter) == (
        signed.transaction_number,
        signed.signature_counter,
    )
    assert logmessage.parse_qr(qr).text() == qr
    tampered = qr.replace(beleg(1999), beleg(1998))
    with pytest.raises(VerificationError):
        verify_qr(tampered)


def test_tampering_one_byte_fails(tse: SoftwareTSE) -> None:
    signed = sell(tse, 250)
    data = signed.process_data.encode()
    for i in range(len(data)):
        with pytest.raises(VerificationError):
            verify_fields(
                client_id=signed.client_id,
                process_data=data[:i] + bytes([data[i] ^ 1]) + data[i + 1 :],
                process_type=signed.process_type,
                transaction_number=signed.transaction_number,
                signature_counter=signed.signature_counter,
                log_time=signed.log_time,
                signature=signed.signature,
                public_key=signed.public_key,
            )


def test_counters_strictly_increase_and_survive_restart(tmp_path: Path) -> None:
    directory = tmp_path / "tse"
    seen: list[tuple[int, int]] = []
    with SoftwareTSE(directory) as first:
        first.register_client(CLIENT)
        first.register_client("TILL-0002")
        serial = first.serial_number
        for i in range(5):
            signed = sell(first, 100 + i, client=CLIENT if i % 2 else "TILL-0002")
            seen.append((signed.transaction_number, signed.signature_counter))
    with SoftwareTSE(directory) as second:
        assert second.serial_number == serial
        assert second.health()["signature_counter"] == seen[-1][1]
        for i in range(3):
            signed = sell(second, 200 + i)  # clients are remembered too
            seen.append((signed.transaction_number, signed.signature_counter))
    numbers, counters = zip(*seen)
    assert list(numbers) == list(range(1, 9))
    assert list(counters) == list(range(2, 17, 2))  # each transaction signs its Start and its Finish


def test_key_file_is_private_and_persistent(tmp_path: Path) -> None:
    directory = tmp_path / "tse"
    with SoftwareTSE(directory) as t:
        key = t.public_key
    assert stat.S_IMODE((directory / "private_key.pem").stat().st_mode) == 0o600
    with SoftwareTSE(directory) as t:
        assert t.public_key == key


def test_crash_before_the_signature_is_stored_releases_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The log store is the truth: a signature that never reached it was never handed out, so its counter is given
    # out again (once) -- no released counter repeats, none goes back.
    directory = tmp_path / "tse"
    with SoftwareTSE(directory) as t:
        t.register_client(CLIENT)
        number = t.start_transaction(CLIENT, TYPE, "")
        before = t.health()["signature_counter"]

        def crash(message: bytes) -> bytes:
            raise SystemExit("power cut")  # after the counter was reserved on disk

        monkeypatch.setattr(t, "_sign_raw", crash)
        with pytest.raises(SystemExit):
            t.finish_transaction(CLIENT, number, TYPE, beleg(100))
    monkeypatch.undo()
    with SoftwareTSE(directory) as t:
        signed = t.finish_transaction(CLIENT, number, TYPE, beleg(100))  # still open: finish it now
        assert signed.signature_counter == before + 1
        verify_qr(signed.qr_code())


def test_torn_append_is_cut_off(tmp_path: Path) -> None:
    directory = tmp_path / "tse"
    with SoftwareTSE(directory) as t:
        t.register_client(CLIENT)
        sell(t, 100)
        good_size = (directory / LOG_FILE).stat().st_size
    with open(directory / LOG_FILE, "ab") as f:
        f.write(bytes.fromhex("3082020002"))  # a record that never finished writing
    with SoftwareTSE(directory) as t:
        assert (directory / LOG_FILE).stat().st_size == good_size
        signed = sell(t, 200)
        assert signed.signature_counter == 4
        with tarfile.open(fileobj=io.BytesIO(t.export())) as tar:
            assert len(tar.getmembers()) == 4


def test_finish_is_idempotent_and_never_signs_twice(tse: SoftwareTSE) -> None:
    signed = sell(tse, 300)
    again = tse.finish_transaction(CLIENT, signed.transaction_number, TYPE, beleg(300))
    assert again == signed
    assert tse.health()["signature_counter"] == signed.signature_counter
    with pytest.raises(TseRequestError):
        tse.finish_transaction(CLIENT, signed.transaction_number, TYPE, beleg(301))


@pytest.mark.parametrize(
    ("client", "number", "ptype"),
    [("TILL-9", 1, TYPE), (CLIENT, 99, TYPE), ("TILL-0002", 1, TYPE), (CLIENT, 1, "Kassenbeleg;V1")],
    ids=["unregistered client", "unknown transaction", "other client's transaction", "bad process type"],
)
def test_bad_requests_are_refused(tse: SoftwareTSE, client: str, number: int, ptype: str) -> None:
    tse.register_client("TILL-0002")
    tse.start_transaction(CLIENT, TYPE, "")
    with pytest.raises((TseRequestError, ValueError)):
        tse.finish_transaction(client, number, ptype, beleg(1))


def test_bad_client_id_is_refused(tse: SoftwareTSE) -> None:
    for bad in ("", "X" * 31, "TILL_1", "TILL;1", "Kasse-ü"):
        with pytest.raises(ValueError):
            tse.register_client(bad)


def test_log_time_never_goes_back(tmp_path: Path) -> None:
    times = iter([1_700_000_100, 1_700_000_050, 1_700_000_040, 1_700_000_200])
    with SoftwareTSE(tmp_path / "tse", clock=lambda: next(times)) as t:
        t.register_client(CLIENT)
        first = sell(t, 1)
        second = sell(t, 2)
    assert (first.start_time, first.log_time, second.start_time, second.log_time) == (
        1_700_000_100,
        1_700_000_100,
        1_700_000_100,
        1_700_000_200,
    )


def test_second_object_cannot_open_a_locked_dir(tse: SoftwareTSE) -> None:
    with pytest.raises(TseUnavailable):
        SoftwareTSE(tse.directory)


def test_second_process_cannot_open_a_locked_dir(tse: SoftwareTSE) -> None:
    code = (
        "import sys\n"
        "from python_gateway.tse import SoftwareTSE, TseUnavailable\n"
        "try:\n    SoftwareTSE(sys.argv[1])\nexcept TseUnavailable:\n    sys.exit(3)\n"
    )
    run = lambda: subprocess.run([sys.executable, "-c", code, str(tse.directory)], cwd=REPO_ROOT)  # noqa: E731
    assert run().returncode == 3
    tse.close()
    assert run().returncode == 0


def test_threads_get_distinct_counters(tse: SoftwareTSE) -> None:
    results: list[int] = []

    def worker() -> None:
        for i in range(5):
            results.append(sell(tse, i).signature_counter)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(results) == sorted(set(results)) and len(results) == 20


def test_export_has_one_verifying_log_per_signature(tse: SoftwareTSE) -> None:
    signed = [sell(tse, 100 * i) for i in range(1, 4)]
    with tarfile.open(fileobj=io.BytesIO(tse.export())) as tar:
        members = tar.getmembers()
        files = {m.name: tar.extractfile(m).read() for m in members}  # type: ignore[union-attr]
    assert len(files) == tse.health()["signature_counter"] == 6
    counters = []
    for name, raw in files.items():
        m = EXPORT_NAME.fullmatch(name)
        assert m, name
        verified = verify_log_file(raw, tse.public_key)
        assert (int(m[1]), int(m[2]), int(m[3]), m[5]) == (
            verified.log_time,
            verified.signature_counter,
            verified.transaction_number,
            verified.client_id,
        )
        assert verified.operation_type == f"{m[4]}Transaction"
        counters.append(verified.signature_counter)
    assert counters == list(range(1, 7))
    finishes = [verify_log_file(raw, tse.public_key) for name, raw in files.items() if "_Finish_" in name]
    assert [v.signature for v in finishes] == [s.signature for s in signed]
    assert [v.message for v in finishes] == [s.message for s in signed]


def test_tampering_one_byte_of_an_exported_log_fails(tse: SoftwareTSE) -> None:
    sell(tse, 705)
    with tarfile.open(fileobj=io.BytesIO(tse.export())) as tar:
        member = [m for m in tar.getmembers() if "_Finish_" in m.name][0]
        raw = tar.extractfile(member).read()  # type: ignore[union-attr]
    verify_log_file(raw, tse.public_key)
    for i in range(len(raw)):
        with pytest.raises(VerificationError):
            verify_log_file(raw[:i] + bytes([raw[i] ^ 0x01]) + raw[i + 1 :], tse.public_key)
    other_key = SoftwareTSE(tse.directory.parent / "other")
    try:
        with pytest.raises(VerificationError):
            verify_log_file(raw, other_key.public_key)
    finally:
        other_key.close()


def test_state_files_are_private(tse: SoftwareTSE) -> None:
    sell(tse, 1)
    for name in ("state.json", LOG_FILE, "private_key.pem"):
        assert not stat.S_IMODE(os.stat(tse.directory / name).st_mode) & 0o077, name


def test_finish_recorded_only_in_the_log_store_survives_restart(tmp_path: Path) -> None:
    directory = tmp_path / "tse"
    with SoftwareTSE(directory) as t:
        t.register_client(CLIENT)
        signed = sell(t, 400)  # state.json still lists it as open; logs.der has the Finish
    with SoftwareTSE(directory) as t:
        assert t.health()["open_transactions"] == 0
        assert t.finish_transaction(CLIENT, signed.transaction_number, TYPE, beleg(400)) == signed
        assert t.health()["signature_counter"] == signed.signature_counter


def test_crash_before_a_start_signature_leaves_no_open_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "tse"
    with SoftwareTSE(directory) as t:
        t.register_client(CLIENT)
        monkeypatch.setattr(t, "_sign_raw", lambda message: (_ for _ in ()).throw(SystemExit("power cut")))
        with pytest.raises(SystemExit):
            t.start_transaction(CLIENT, TYPE, "")
    monkeypatch.undo()
    with SoftwareTSE(directory) as t:
        assert t.health()["open_transactions"] == 0
        with pytest.raises(TseRequestError):
            t.finish_transaction(CLIENT, 1, TYPE, beleg(1))  # never started: no Start log exists
        signed = sell(t, 1)
        # Number 1 stays used (closing wrote a checkpoint); its start signature never existed, so no counter gap.
        assert (signed.transaction_number, signed.signature_counter) == (2, 2)


def test_corrupt_complete_record_is_not_silently_dropped(tmp_path: Path) -> None:
    directory = tmp_path / "tse"
    with SoftwareTSE(directory) as t:
        t.register_client(CLIENT)
        sell(t, 1)
    data = bytearray((directory / LOG_FILE).read_bytes())
    data[-100] ^= 0xFF  # inside the last record, which the state has not yet covered
    (directory / LOG_FILE).write_bytes(bytes(data))
    from python_gateway.tse import TseError

    try:
        with SoftwareTSE(directory) as t:
            pass
    except TseError:
        pass
    assert (directory / LOG_FILE).read_bytes() == bytes(data)


def test_recovers_from_the_log_store_without_a_checkpoint(tmp_path: Path) -> None:
    # A crash (no close, so no checkpoint) after released signatures: opening again counts them in from logs.der,
    # open transactions included, and goes on without repeating a counter.
    directory = tmp_path / "tse"
    t = SoftwareTSE(directory)
    t.register_client(CLIENT)
    sold = [sell(t, 100 + i) for i in range(3)]
    open_number = t.start_transaction(CLIENT, TYPE, "")
    state_before = (directory / "state.json").read_bytes()
    os.close(t._log_fd)  # the process dies: no checkpoint, the flock goes with it
    os.close(t._lock_fd)
    assert (directory / "state.json").read_bytes() == state_before
    with SoftwareTSE(directory) as again:
        health = again.health()
        assert (health["transaction_number"], health["signature_counter"], health["open_transactions"]) == (4, 7, 1)
        signed = again.finish_transaction(CLIENT, open_number, TYPE, beleg(7))
        assert signed.signature_counter == 8
        assert again.finish_transaction(CLIENT, sold[1].transaction_number, TYPE, beleg(101)) == sold[1]


def test_concurrent_callers_share_fsyncs_and_get_distinct_counters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with SoftwareTSE(tmp_path / "tse") as t:
        t.register_client(CLIENT)
        fsyncs = 0
        real_fsync = os.fsync

        def counting_fsync(fd: int) -> None:
            nonlocal fsyncs
            fsyncs += 1
            time.sleep(0.002)  # a slow disk: concurrent callers pile up behind one fsync
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", counting_fsync)
        results: list[SignedLog] = []
        lock = threading.Lock()

        def work(i: int) -> None:
            signed = sell(t, 1000 + i)
            with lock:
                results.append(signed)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        counters = {r.signature_counter for r in results}
        assert len(counters) == 16 and counters <= set(range(1, 33))  # starts and finishes interleave
        assert t.health()["signature_counter"] == 32
        assert fsyncs < 32  # 32 signatures, fewer fsyncs: they were shared
        for r in results:
            verify_qr(r.qr_code())
