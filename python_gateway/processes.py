"""Tool processes for the bench and the fault runs: started with their output in a log file, awaited until a marker
line appears, stopped by their own pid.

- :func:`tool_env`: the environment for them (PG* variables of the caller dropped, messages in English);
- :func:`start_logged`: start ``cmd`` (in the project folder), wait for the log line with ``marker``;
- :func:`wait_for_line`: wait for a marker in a log file, from an offset on (a restarted process appends);
- :func:`stop_process`: SIGTERM to that one pid, SIGKILL when it does not end in time.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from .config import PROJECT_ROOT


class ProcessFailure(RuntimeError):
    """A tool process exited or stayed silent instead of getting ready."""


def tool_env() -> dict[str, str]:
    """The caller's environment without PG* variables (they must not redirect the tools to another server)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")} | {"LC_MESSAGES": "C"}


def wait_for_line(proc: subprocess.Popen, logfile: Path, marker: str, what: str, timeout: float = 60,
                  offset: int = 0) -> str:
    """Waits until ``marker`` appears in the process's log file after byte ``offset``; returns that line. Raises
    ProcessFailure when the process exits first or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        with open(logfile, "rb") as fh:
            fh.seek(offset)
            text = fh.read().decode(errors="replace")
        for line in text.splitlines():
            if marker in line:
                return line
        if proc.poll() is not None:
            raise ProcessFailure(f"{what} (pid {proc.pid}) exited with {proc.returncode}:\n{text[-2000:]}")
        if time.monotonic() > deadline:
            raise ProcessFailure(f"{what} (pid {proc.pid}) did not get ready within {timeout:.0f} s")
        time.sleep(0.05)


def start_logged(cmd: list[str], logfile: Path, marker: str, what: str, *, env: dict[str, str] | None = None,
                 stdin: int = subprocess.DEVNULL, timeout: float = 60, append: bool = False,
                 ) -> tuple[subprocess.Popen, str]:
    """Starts ``cmd`` in the project folder, its output to ``logfile`` (appended to with ``append``), and waits for
    its log line with ``marker``; returns the process and that line. Stops it again and raises ProcessFailure when it
    exits or stays silent."""
    offset = logfile.stat().st_size if append and logfile.exists() else 0
    with open(logfile, "a" if append else "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=stdin, env=env or tool_env(),
                                cwd=PROJECT_ROOT)
    try:
        return proc, wait_for_line(proc, logfile, marker, what, timeout, offset)
    except BaseException:
        stop_process(proc, what)
        raise


def stop_process(proc: subprocess.Popen, name: str, timeout: float = 15) -> None:
    """SIGTERM to this one pid, then SIGKILL if it does not end within ``timeout`` seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"   {name} (pid {proc.pid}) did not stop on SIGTERM; killing it", flush=True)
        proc.kill()
        proc.wait()
