"""The software TSE as a process and relays in threads, for tests (shared by test_fiscal_outage and test_tse_remote).

- :class:`TseProcess`: ``festpay tse serve`` in its own process on a fixed loopback port (started and stopped by
  tests/child_process.py); stop() and start() it again to make an outage.
- :class:`RunningRelay`: a relay (topic tse, a RemoteTSE, or the handlers given) on its own event loop in a
  background thread.
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
from collections.abc import Sequence

from python_gateway.relay import DEFAULT_WORKERS, Handler, Relay, TseHandler
from python_gateway.tse.remote import RemoteTSE
from tests.child_process import start_service, stop_service


class TseProcess:
    """``festpay tse serve`` in its own process on a fixed loopback port; stop() and start() again for outages."""

    def __init__(self, directory: str, port: int):
        self.directory, self.port = directory, port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        """Starts the service and waits for its READY line; RuntimeError when it does not start."""
        assert self.proc is None
        self.proc, _ = start_service(["tse", "serve", "--dir", self.directory, "--port", str(self.port)],
                                     "the TSE service")

    def stop(self) -> None:
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        stop_service(proc)


class RunningRelay:
    """A relay (topic tse with a RemoteTSE at ``tse_url``, or ``handlers``) on its own event loop in a background
    thread; ``expire_s``: its reservation expiry interval (None: no expiry)."""

    def __init__(self, database_url: str, tse_url: str | None = None, name: str = "test-relay",
                 workers: int = DEFAULT_WORKERS, *, handlers: Sequence[Handler] | None = None,
                 expire_s: float | None = None):
        if handlers is None:
            assert tse_url is not None, "a relay needs a TSE URL or handlers"
            handlers = [TseHandler(RemoteTSE(tse_url, timeout=5))]
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()
        self.relay = Relay(database_url, handlers, poll_s=0.3, name=name, workers=workers, expire_s=expire_s)
        self.future = asyncio.run_coroutine_threadsafe(self.relay.run(), self.loop)

    def stop(self) -> None:
        try:
            self.loop.call_soon_threadsafe(self.relay.stop)
            self.future.result(20)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()
