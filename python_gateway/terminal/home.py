"""A terminal's home directory: terminal.json (registration and config snapshot), its database, its lock.

    HOME/terminal.json     gateway URL, assignment id, secret, tag key, event config snapshot (mode 0600)
    HOME/terminal.sqlite3  the terminal database (store.py)
    HOME/terminal.lock     held (flock) while a Terminal is open: one terminal app per home
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .tag import write_atomic

SETTINGS_FILE = "terminal.json"
DATABASE_FILE = "terminal.sqlite3"
LOCK_FILE = "terminal.lock"


class NotRegistered(Exception):
    pass


class TerminalBusy(Exception):
    pass


def default_home(name: str = "default") -> Path:
    """``$FESTPAY_TERMINAL_HOME``, else ``<data dir>/terminals/NAME`` (data dir: FESTPAY_DATA_DIR or ./data)."""
    env = os.environ.get("FESTPAY_TERMINAL_HOME", "").strip()
    if env and name == "default":
        return Path(env).expanduser()
    from ..config import load_settings

    return load_settings().data_dir / "terminals" / name


def default_tag_dir() -> Path:
    env = os.environ.get("FESTPAY_TAG_DIR", "").strip()
    if env:
        return Path(env).expanduser()
    from ..config import load_settings

    return load_settings().data_dir / "tags"


@dataclass
class TerminalSettings:
    """What registration gave this terminal, and the last config it fetched."""

    url: str
    assignment_id: int
    event_id: int
    secret: str
    tag_key: str
    device: str = "festpay-reference-terminal"
    registered_at: str = ""
    operator_id: int | None = None
    config: dict[str, Any] = field(default_factory=dict)
    config_fetched_at: str | None = None

    @classmethod
    def load(cls, home: Path) -> "TerminalSettings":
        path = Path(home) / SETTINGS_FILE
        try:
            obj = json.loads(path.read_text())
        except FileNotFoundError:
            raise NotRegistered(
                f"no terminal in {home} (no {SETTINGS_FILE}); register first: festpay terminal register --code ..."
            ) from None
        known = {k: obj[k] for k in cls.__dataclass_fields__ if k in obj}
        return cls(**known)

    def save(self, home: Path) -> None:
        path = Path(home) / SETTINGS_FILE
        write_atomic(path, (json.dumps(asdict(self), indent=2, sort_keys=True) + "\n").encode())
        os.chmod(path, 0o600)

    # -- the config snapshot

    @property
    def event(self) -> dict[str, Any]:
        return self.config.get("event") or {}

    @property
    def position(self) -> dict[str, Any]:
        return self.config.get("position") or {}

    @property
    def products(self) -> list[dict[str, Any]]:
        return list(self.config.get("products") or [])

    @property
    def offline_limit(self) -> int:
        value = self.event.get("offline_limit")
        return int(value) if value is not None else 0

    @property
    def offline_log_size(self) -> int:
        value = self.event.get("offline_log_size")
        return int(value) if value is not None else 16

    @property
    def currency(self) -> str:
        return str(self.event.get("currency") or "")


class HomeLock:
    """An exclusive flock on HOME/terminal.lock: a second process on the same terminal is refused."""

    def __init__(self, home: Path):
        self.path = Path(home) / LOCK_FILE
        self.fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise TerminalBusy(
                f"the terminal in {self.path.parent} is in use by another process"
                + (f" (pid {holder})" if holder else "")
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            try:
                os.ftruncate(self.fd, 0)
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = None
