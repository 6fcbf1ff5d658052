"""The software TSE as an HTTP service (``festpay tse serve``) and its client RemoteTSE."""

from __future__ import annotations

import io
import tarfile

import pytest

from python_gateway.tse import verify
from python_gateway.tse.interface import TSE, TseRequestError, TseUnavailable
from python_gateway.tse.remote import RemoteTSE
from tests.gateway_server import free_port
from tests.fiscal_server import TseProcess


def test_unreachable_is_unavailable():
    """A closed port: unavailable (the relay retries and records an outage)."""
    remote = RemoteTSE(f"http://127.0.0.1:{free_port()}", timeout=2)
    with pytest.raises(TseUnavailable):
        remote.start_transaction("festpay-1", "Kassenbeleg-V1", "x")
    with pytest.raises(TseUnavailable):
        remote.health()


def test_service_round_trip(tmp_path):
    """Register (idempotent), start, finish, a repeated finish, a refused one, export; a second service is refused."""
    proc = TseProcess(str(tmp_path / "tse"), free_port())
    proc.start()
    try:
        remote = RemoteTSE(proc.url)
        assert isinstance(remote, TSE)
        with pytest.raises(TseRequestError):
            remote.start_transaction("festpay-unregistered", "Kassenbeleg-V1", "x")
        remote.register_client("festpay-1")
        remote.register_client("festpay-1")
        number = remote.start_transaction("festpay-1", "Kassenbeleg-V1", "Beleg^x")
        first = remote.finish_transaction("festpay-1", number, "Kassenbeleg-V1", "Beleg^x")
        assert remote.finish_transaction("festpay-1", number, "Kassenbeleg-V1", "Beleg^x") == first
        with pytest.raises(TseRequestError):
            remote.finish_transaction("festpay-1", number, "Kassenbeleg-V1", "Beleg^other")
        with pytest.raises(TseRequestError):
            remote.register_client("not printable ü")
        verify.verify_qr(first.qr_code())
        assert remote.serial_number == verify.serial_number_of(remote.public_key) == first.serial_number
        health = remote.health()
        assert health["status"] == "ok" and health["signature_counter"] == 2 and health["transaction_number"] == 1
        with tarfile.open(fileobj=io.BytesIO(remote.export())) as tar:
            names = tar.getnames()
            assert len(names) == 2 and names[1].endswith("_Finish_Client-festpay-1.log")
            verify.verify_log_file(tar.extractfile(names[1]).read(), remote.public_key)
        second = TseProcess(proc.directory, free_port())
        with pytest.raises(RuntimeError):
            second.start()  # the directory is locked by the running service
    finally:
        proc.stop()
