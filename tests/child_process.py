"""festpay's services as child processes for tests: started, their READY line awaited, stopped by a signal.

- :func:`start_service`: ``festpay <args> --stop-on-stdin-eof`` in its own process; waits for its first line,
  ``READY <url> pid <pid>``, and returns the process and the URL (tests/fiscal_server.TseProcess starts the TSE
  with it).
- :func:`stop_service`: SIGTERM, then the process's pipes closed; :func:`stop_process`: a signal, a while to end,
  then killed.
- :func:`provider_sim`: the simulated payment provider (``festpay provider-sim``) on a free loopback port, as a
  context manager yielding its URL.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence

from python_gateway.config import PROJECT_ROOT

START_TIMEOUT_S = 20


def start_service(args: Sequence[str], what: str, env: Mapping[str, str] | None = None,
                  timeout: float = START_TIMEOUT_S) -> tuple[subprocess.Popen, str]:
    """``festpay <args> --stop-on-stdin-eof`` in its own process, in the project folder, stderr discarded (it stops by
    itself when our end of its stdin pipe is gone); waits at most ``timeout`` seconds for its first line,
    ``READY http://127.0.0.1:<port> pid <pid>``. Returns the process and its URL; raises RuntimeError ("``what`` did
    not start") after stopping the process when that line does not come."""
    proc = subprocess.Popen([sys.executable, "-m", "python_gateway.cli", *args, "--stop-on-stdin-eof"],
                            cwd=PROJECT_ROOT, env=None if env is None else dict(env), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        line = proc.stdout.readline() if sel.select(timeout) else ""
    if not line.startswith("READY http://127.0.0.1:"):
        stop_service(proc)
        raise RuntimeError(f"{what} did not start: {line!r}")
    return proc, line.split()[1]


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
    """Sends ``sig`` to ``proc`` and waits at most ``timeout`` seconds for it to end; kills it if it has not."""
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def stop_service(proc: subprocess.Popen) -> None:
    """Stops a process of :func:`start_service` (SIGTERM, killed after 10 s) and closes its pipes."""
    stop_process(proc)
    proc.stdin.close()
    proc.stdout.close()


@contextlib.contextmanager
def provider_sim(secret: str) -> Iterator[str]:
    """``festpay provider-sim --port 0`` (a free loopback port), its webhooks signed with ``secret``; yields its URL
    and stops it afterwards."""
    proc, url = start_service(["provider-sim", "--port", "0"], "provider-sim",
                              dict(os.environ, FESTPAY_PROVIDER_SECRET=secret))
    try:
        yield url
    finally:
        stop_service(proc)
