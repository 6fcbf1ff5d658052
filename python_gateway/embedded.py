"""A private PostgreSQL cluster for development and tests.

``EmbeddedPostgres(root)`` keeps everything it needs under ``root``:

    root/festpay.lock            flock held by ``festpay run`` (and by the test session)
    root/pg-port                 the port chosen on first use
    root/pg-superuser-password   password of the superuser ``postgres`` (0600), for TCP
    root/cluster-location        only when the cluster lives elsewhere (see below)
    <base>/pgdata/               the data directory (initdb), with festpay-server.log
    <base>/run/                  the Unix socket directory

``<base>`` is ``root`` itself, unless the server user cannot reach ``root`` (when
running as root the server runs as OS user ``postgres``; a project under /root,
mode 0700, is out of its reach) or the socket path would be too long.  Then the
cluster goes to a private folder ``/tmp/festpay-<hash of root>`` (mode 0700,
owned by the server user) and ``root/cluster-location`` records where it is.

Clients connect through the Unix socket, where authentication is ``trust``
(the socket directory is 0700, so only the server user and root get there), or
over TCP on 127.0.0.1 with scram-sha-256 (password in root/pg-superuser-password).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import hashlib
import logging
import os
import pwd
import re
import secrets
import shutil
import socket
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

log = logging.getLogger("festpay.embedded")

MIN_PG_VERSION = 15
SERVER_USER_WHEN_ROOT = "postgres"
SUPERUSER = "postgres"
DEFAULT_DBNAME = "festpay"
# sun_path holds 108 bytes including the terminating NUL.
SOCKET_PATH_LIMIT = 107
FALLBACK_PARENT = Path("/tmp")

DEFAULT_SERVER_SETTINGS: dict[str, str | int] = {
    "listen_addresses": "127.0.0.1",
    "unix_socket_permissions": "0700",
    "shared_buffers": "256MB",
    "max_connections": 200,
}
CONF_FILE_NAME = "festpay.conf"
INCLUDE_LINE = f"include_if_exists = '{CONF_FILE_NAME}'\t# festpay: port, sockets, memory"


class EmbeddedPostgresError(RuntimeError):
    """An expected failure of the embedded cluster, with a message for humans."""


class ClusterLocked(EmbeddedPostgresError):
    """Another process holds the lock of this cluster (e.g. a running ``festpay run``)."""

    def __init__(self, message: str, holder_pid: int | None):
        super().__init__(message)
        self.holder_pid = holder_pid


# --------------------------------------------------------------------------- binaries


def _server_version(bindir: Path) -> int | None:
    """Major version of ``bindir/postgres``, or None when it is not a usable server."""
    for name in ("postgres", "initdb", "pg_ctl"):
        if not os.access(bindir / name, os.X_OK):
            return None
    try:
        out = subprocess.run(
            [str(bindir / "postgres"), "--version"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"\(PostgreSQL\)\s+(\d+)", out)
    return int(match.group(1)) if match else None


def _version_key(path: str) -> tuple[int, ...]:
    name = Path(path).parent.name  # /usr/lib/postgresql/<version>/bin
    return tuple(int(part) for part in re.findall(r"\d+", name)) or (0,)


def find_pg_bindir(pg_bin: str | os.PathLike | None = None) -> tuple[Path, int]:
    """Folder with the server binaries of PostgreSQL >= 15, and its major version.

    Looks at ``pg_bin`` (or the PG_BIN environment variable), then at
    ``pg_config --bindir``, then at ``/usr/lib/postgresql/*/bin``, highest version first.
    """
    tried: list[str] = []
    explicit = pg_bin or os.environ.get("PG_BIN") or None
    if explicit:
        bindir = Path(explicit).expanduser()
        version = _server_version(bindir)
        if version is None:
            raise EmbeddedPostgresError(
                f"PG_BIN={explicit}: no PostgreSQL server binaries (postgres, initdb, pg_ctl) there"
            )
        if version < MIN_PG_VERSION:
            raise EmbeddedPostgresError(
                f"PG_BIN={explicit} holds PostgreSQL {version}; Festpay needs {MIN_PG_VERSION} or newer"
            )
        return bindir, version

    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=30, check=True
            ).stdout.strip()
            if out:
                candidates.append(Path(out))
        except (OSError, subprocess.SubprocessError):
            pass
    candidates += [
        Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    ]
    for bindir in candidates:
        version = _server_version(bindir)
        tried.append(f"{bindir} ({'no server' if version is None else f'PostgreSQL {version}'})")
        if version is not None and version >= MIN_PG_VERSION:
            return bindir, version
    raise EmbeddedPostgresError(
        f"no PostgreSQL {MIN_PG_VERSION}+ server binaries found"
        + (f" (tried: {', '.join(tried)})" if tried else "")
        + f"; install postgresql-{MIN_PG_VERSION} or set PG_BIN to the folder with initdb and pg_ctl"
    )


# --------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class ServerAccount:
    """The OS user PostgreSQL (and the HA cluster's etcd and Patroni) run as: ``postgres`` when we are root (the
    server refuses root), else we ourselves (``switch`` False)."""

    name: str
    uid: int
    gid: int
    gids: frozenset[int]
    switch: bool


def server_account() -> ServerAccount:
    """Who the servers run as (see :class:`ServerAccount`); raises EmbeddedPostgresError when we are root and the
    OS user ``postgres`` does not exist."""
    if os.geteuid() != 0:
        return ServerAccount(pwd.getpwuid(os.geteuid()).pw_name, os.geteuid(), os.getegid(),
                             frozenset({os.getegid(), *os.getgroups()}), switch=False)
    try:
        pw = pwd.getpwnam(SERVER_USER_WHEN_ROOT)
    except KeyError:
        raise EmbeddedPostgresError(
            f"running as root, the servers must run as OS user {SERVER_USER_WHEN_ROOT!r}, "
            "which does not exist (install postgresql or create that user)"
        ) from None
    return ServerAccount(pw.pw_name, pw.pw_uid, pw.pw_gid, frozenset(os.getgrouplist(pw.pw_name, pw.pw_gid)),
                         switch=True)


def can_search(path: Path, uid: int, gids: set[int] | frozenset[int]) -> bool:
    """Whether a user may traverse (x) directory ``path``."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return True  # will be created by us
    except PermissionError:
        return False
    if uid == 0:
        return True
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid in gids:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def _socket_path_ok(socket_dir: Path) -> bool:
    return len(os.fsencode(str(socket_dir / ".s.PGSQL.65535"))) < SOCKET_PATH_LIMIT


def _port_is_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:port (as postgres does, with SO_REUSEADDR,
    so connections of an earlier run in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen(1)
        except OSError:
            return False
    return True


def pick_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _conf_value(value: str | int) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def write_private(path: Path, text: str, mode: int = 0o600, owner: tuple[int, int] | None = None) -> None:
    """Atomically replace ``path`` with ``text`` (mode ``mode``, optionally chowned)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, mode)
        if owner is not None:
            os.chown(tmp, *owner)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None


# --------------------------------------------------------------------------- cluster


class EmbeddedPostgres:
    """A PostgreSQL cluster owned by one folder (``root``); see the module docstring."""

    def __init__(
        self,
        root: str | os.PathLike,
        port: int | None = None,
        *,
        pg_bin: str | os.PathLike | None = None,
        server_settings: dict[str, str | int] | None = None,
    ):
        self.root = Path(root).expanduser().absolute()
        self._explicit_port = port
        self._pg_bin = pg_bin
        self._bindir: Path | None = None
        self._version: int | None = None
        self._lock_fd: int | None = None
        self._base: Path | None = None
        self.server_settings = {**DEFAULT_SERVER_SETTINGS, **(server_settings or {})}

        account = server_account()
        self.server_user = account.name
        self._server_uid, self._server_gid, self._server_gids = account.uid, account.gid, set(account.gids)

    # ------------------------------------------------------------------ files in root

    @property
    def lock_file(self) -> Path:
        return self.root / "festpay.lock"

    @property
    def port_file(self) -> Path:
        return self.root / "pg-port"

    @property
    def password_file(self) -> Path:
        return self.root / "pg-superuser-password"

    @property
    def location_file(self) -> Path:
        return self.root / "cluster-location"

    # ------------------------------------------------------------------ cluster location

    @property
    def fallback_dir(self) -> Path:
        digest = hashlib.sha256(os.fsencode(str(self.root.resolve()))).hexdigest()[:12]
        return FALLBACK_PARENT / f"festpay-{digest}"

    def _root_usable_in_place(self) -> bool:
        if not _socket_path_ok(self.root / "run"):
            return False
        root = self.root.resolve()
        return all(can_search(p, self._server_uid, self._server_gids) for p in (root, *root.parents))

    def _recorded_location(self) -> Path | None:
        try:
            text = self.location_file.read_text().strip()
        except FileNotFoundError:
            return None
        if not text or not os.path.isabs(text):
            raise EmbeddedPostgresError(f"{self.location_file} does not hold an absolute path; remove it")
        return Path(text)

    @property
    def base_dir(self) -> Path:
        """The folder holding pgdata/ and run/: root, or the /tmp fallback."""
        if self._base is None:
            recorded = self._recorded_location()
            if recorded is not None:
                self._base = recorded
            elif (self.root / "pgdata").exists() or self._root_usable_in_place():
                self._base = self.root
            else:
                self._base = self.fallback_dir
        return self._base

    @property
    def uses_fallback(self) -> bool:
        return self.base_dir != self.root

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "pgdata"

    @property
    def socket_dir(self) -> Path:
        return self.base_dir / "run"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "festpay-server.log"

    def _check_private_dir(self, path: Path) -> None:
        """``path`` must be a real directory owned by the server user, mode 0700."""
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode):
            raise EmbeddedPostgresError(f"{path} exists and is not a directory; remove it")
        if st.st_uid != self._server_uid or stat.S_IMODE(st.st_mode) & 0o077:
            raise EmbeddedPostgresError(
                f"{path} is not private to user {self.server_user} (owner uid {st.st_uid}, "
                f"mode {stat.S_IMODE(st.st_mode):o}); refusing to use it — remove it"
            )

    def _make_server_dir(self, path: Path) -> None:
        """Create ``path`` (if missing) owned by the server user, mode 0700."""
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        else:
            os.chown(path, self._server_uid, self._server_gid)
            os.chmod(path, 0o700)
        self._check_private_dir(path)

    def _prepare_base(self) -> None:
        """Create root, decide where the cluster lives, create its private folders."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._base = None  # decide again now that root exists
        base = self.base_dir
        if base != self.root:
            if not base.exists() and self._recorded_location() is not None:
                log.warning("the cluster recorded in %s is gone (%s); creating a new one",
                            self.location_file, base)
            if not _socket_path_ok(base / "run"):
                raise EmbeddedPostgresError(f"socket path under {base} is too long")
            self._make_server_dir(base)
            if self._recorded_location() != base:
                write_private(self.location_file, f"{base}\n", mode=0o644)
                log.info("the cluster of %s lives in %s (recorded in %s)", self.root, base, self.location_file)
        self._make_server_dir(self.data_dir)
        self._make_server_dir(self.socket_dir)

    # ------------------------------------------------------------------ binaries, commands

    @property
    def bindir(self) -> Path:
        if self._bindir is None:
            self._bindir, self._version = find_pg_bindir(self._pg_bin)
        return self._bindir

    @property
    def version(self) -> int:
        self.bindir
        assert self._version is not None
        return self._version

    @property
    def psql_path(self) -> str:
        candidate = self.bindir / "psql"
        if os.access(candidate, os.X_OK):
            return str(candidate)
        found = shutil.which("psql")
        if not found:
            raise EmbeddedPostgresError("psql not found (install postgresql-client)")
        return found

    def _server_cmd(self, args: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return args
        runuser = shutil.which("runuser") or next(
            (p for p in ("/usr/sbin/runuser", "/sbin/runuser") if os.access(p, os.X_OK)), None
        )
        if runuser is None:
            raise EmbeddedPostgresError("running as root needs runuser (util-linux) to start the server")
        return [runuser, "-u", self.server_user, "--", *args]

    def _run_server_tool(self, args: list[str], *, timeout: float = 120) -> subprocess.CompletedProcess:
        # PG* variables (PGDATA, PGPORT, ...) of the caller must not leak into the tools.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_MESSAGES"] = "C"
        return subprocess.run(
            self._server_cmd(args),
            cwd=self.base_dir,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    # ------------------------------------------------------------------ lock

    def acquire_lock(self) -> None:
        """Take the exclusive lock of this cluster, or raise ClusterLocked at once."""
        if self._lock_fd is not None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            holder = read_int(self.lock_file)
            raise ClusterLocked(
                f"the Festpay cluster in {self.root} is in use by another festpay process"
                + (f" (pid {holder})" if holder else "")
                + "; is `festpay run` already running?",
                holder,
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def release_lock(self) -> None:
        if self._lock_fd is not None:
            fd, self._lock_fd = self._lock_fd, None
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @property
    def holds_lock(self) -> bool:
        return self._lock_fd is not None

    @contextlib.contextmanager
    def locked(self):
        """``with cluster.locked(): ...`` holds the lock for the block (raises ClusterLocked)."""
        already = self.holds_lock
        self.acquire_lock()
        try:
            yield self
        finally:
            if not already:
                self.release_lock()

    def lock_holder(self) -> int | None:
        """Pid of another process holding the lock, None when the lock is free (or ours)."""
        if self._lock_fd is not None or not self.lock_file.exists():
            return None
        try:
            self.acquire_lock()
        except ClusterLocked as err:
            return err.holder_pid or -1
        self.release_lock()
        return None

    # ------------------------------------------------------------------ state

    def is_initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def _pids_in_data_dir(self) -> list[int]:
        """Processes whose working directory is the data directory (a server and its backends)."""
        try:
            target = os.stat(self.data_dir)
        except FileNotFoundError:
            return []
        pids = []
        for entry in os.scandir("/proc") if os.path.isdir("/proc") else []:
            if not entry.name.isdigit():
                continue
            try:
                st = os.stat(f"/proc/{entry.name}/cwd")
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
                pids.append(int(entry.name))
        return pids

    def _is_our_postmaster(self, pid: int) -> bool:
        if not os.path.isdir("/proc/self"):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
            return True
        try:
            return os.path.samefile(f"/proc/{pid}/cwd", self.data_dir)
        except FileNotFoundError:
            return False
        except PermissionError:
            pass
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return os.fsencode(str(self.data_dir)) in args

    def running_pid(self) -> int | None:
        """Pid of the live postmaster of this cluster, or None."""
        try:
            pid = read_int(self.data_dir / "postmaster.pid")
        except PermissionError:
            pid = None
        if pid is None or pid <= 0:
            return None
        return pid if self._is_our_postmaster(pid) else None

    def is_running(self) -> bool:
        return self.running_pid() is not None

    def _clear_stale_pid_file(self) -> None:
        """Remove a postmaster.pid whose pid now belongs to some unrelated process.

        A pid file of a dead process is left alone: the postmaster handles that
        itself (and also checks that no old backend still uses the shared memory).
        But if the pid was reused by another process, the postmaster would refuse
        to start forever.  We remove the file only when no process at all has
        the data directory as working directory, i.e. no old server process survives.
        """
        pid_file = self.data_dir / "postmaster.pid"
        pid = read_int(pid_file)
        if pid is None or self._is_our_postmaster(pid):
            return
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return  # dead: postgres deals with it
        except PermissionError:
            pass
        survivors = self._pids_in_data_dir()
        if survivors:
            raise EmbeddedPostgresError(
                f"processes of an old server still run in {self.data_dir} "
                f"(pids {', '.join(map(str, survivors))}); stop them first"
            )
        log.info("removing stale %s (pid %s is an unrelated process)", pid_file, pid)
        pid_file.unlink()
        for lock in self.socket_dir.glob(".s.PGSQL.*.lock"):
            lock_pid = read_int(lock)
            if lock_pid == pid:
                lock.unlink()

    # ------------------------------------------------------------------ port

    @property
    def port(self) -> int:
        """The server's port: the one given, else the one remembered in root/pg-port."""
        if self._explicit_port is not None:
            return self._explicit_port
        stored = read_int(self.port_file)
        if stored is None:
            raise EmbeddedPostgresError(
                f"no cluster initialised in {self.root} yet (run `festpay run` or `festpay db start`)"
            )
        return stored

    def _ensure_port(self) -> int:
        if self._explicit_port is not None:
            return self._explicit_port
        stored = read_int(self.port_file)
        if stored is not None and (self.is_running() or _port_is_free(stored)):
            return stored
        port = pick_free_port()
        if stored is not None:
            log.warning("port %s is taken by another program; the cluster moves to port %s", stored, port)
        write_private(self.port_file, f"{port}\n", mode=0o644)
        return port

    # ------------------------------------------------------------------ lifecycle

    def init(self) -> bool:
        """Create the cluster if it does not exist yet; True when it was created now."""
        self.bindir  # fail early without binaries
        self._prepare_base()
        self._ensure_port()
        if self.is_initialized():
            return False
        if any(self.data_dir.iterdir()):
            raise EmbeddedPostgresError(
                f"{self.data_dir} is not empty but holds no cluster (an interrupted initdb?); remove it"
            )
        password = secrets.token_urlsafe(24)
        pwfile = self.base_dir / ".initdb-pwfile"
        write_private(pwfile, password + "\n", owner=(self._server_uid, self._server_gid))
        locale = self._initdb_locale()
        try:
            result = self._run_server_tool(
                [
                    str(self.bindir / "initdb"),
                    "-D", str(self.data_dir),
                    "-U", SUPERUSER,
                    f"--pwfile={pwfile}",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--encoding=UTF8",
                    *([f"--locale={locale}"] if locale else ["--no-locale"]),
                ],
                timeout=300,
            )
        finally:
            with contextlib.suppress(FileNotFoundError):
                pwfile.unlink()
        if result.returncode != 0:
            raise EmbeddedPostgresError(
                f"initdb failed in {self.data_dir}:\n{(result.stderr or result.stdout).strip()}"
            )
        write_private(self.password_file, password + "\n", mode=0o600)
        conf = self.data_dir / "postgresql.conf"
        with open(conf, "a") as f:
            f.write(f"\n{INCLUDE_LINE}\n")
        log.info("initialised a PostgreSQL %s cluster in %s", self.version, self.data_dir)
        return True

    @staticmethod
    def _initdb_locale() -> str | None:
        try:
            out = subprocess.run(["locale", "-a"], capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        names = {line.strip().lower() for line in out.splitlines()}
        return "C.UTF-8" if names & {"c.utf8", "c.utf-8"} else None

    def _write_server_conf(self, port: int) -> None:
        settings = {
            **self.server_settings,
            "port": port,
            "unix_socket_directories": str(self.socket_dir),
        }
        lines = [
            "# Written by festpay at every start; change settings via .env, not here.",
            *(f"{key} = {_conf_value(value)}" for key, value in settings.items()),
        ]
        write_private(
            self.data_dir / CONF_FILE_NAME,
            "\n".join(lines) + "\n",
            owner=(self._server_uid, self._server_gid),
        )

    def start(self) -> bool:
        """Start the cluster (initialising it first if needed); False if it was running already."""
        self.init()
        if self.is_running():
            return False
        self._clear_stale_pid_file()
        port = self._ensure_port()
        self._write_server_conf(port)
        result = self._run_server_tool(
            [
                str(self.bindir / "pg_ctl"),
                "-D", str(self.data_dir),
                "-l", str(self.log_file),
                "-w", "-t", "120",
                "start",
            ],
            timeout=180,
        )
        if result.returncode != 0 or not self.is_running():
            raise EmbeddedPostgresError(
                f"PostgreSQL did not start (pg_ctl exit {result.returncode}); "
                f"last lines of {self.log_file}:\n{self._log_tail()}"
            )
        self.create_database(DEFAULT_DBNAME)
        return True

    def stop(self) -> bool:
        """Stop the cluster (fast shutdown); False if it was not running."""
        if not self.is_running():
            return False
        result = self._run_server_tool(
            [str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "120", "stop"],
            timeout=180,
        )
        if result.returncode != 0:
            raise EmbeddedPostgresError(
                f"PostgreSQL did not stop: {(result.stderr or result.stdout).strip()}"
            )
        return True

    def destroy(self) -> None:
        """Stop the cluster and delete it with all its data (and the /tmp fallback folder)."""
        self.stop()
        base = self.base_dir
        if base != self.root:
            shutil.rmtree(base, ignore_errors=True)
        else:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            shutil.rmtree(self.socket_dir, ignore_errors=True)
        for path in (self.location_file, self.port_file, self.password_file):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        self._base = None

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError as err:
            return f"(cannot read log: {err})"

    # ------------------------------------------------------------------ connecting

    def url(self, dbname: str = DEFAULT_DBNAME, user: str = SUPERUSER) -> str:
        """libpq URL through the Unix socket (trust authentication, any existing role)."""
        return (
            f"postgresql://{quote(user, safe='')}@/{quote(dbname, safe='')}"
            f"?host={quote(str(self.socket_dir), safe='/')}&port={self.port}"
        )

    def tcp_url(self, dbname: str = DEFAULT_DBNAME, user: str = SUPERUSER, password: str | None = None) -> str:
        """libpq URL over TCP 127.0.0.1 (scram-sha-256); the superuser's password is filled in."""
        if password is None and user == SUPERUSER:
            password = self.password_file.read_text().strip()
        auth = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "")
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{quote(dbname, safe='')}"

    def psql_command(self, dbname: str = DEFAULT_DBNAME, user: str = SUPERUSER) -> str:
        """A line to paste into a shell."""
        return f'psql "{self.url(dbname, user)}"'

    def connect(self, dbname: str = DEFAULT_DBNAME, user: str = SUPERUSER, **kwargs) -> psycopg.Connection:
        return psycopg.connect(self.url(dbname, user), **kwargs)

    def create_database(self, name: str, owner: str | None = None) -> bool:
        """Create database ``name`` unless it exists; True when it was created now."""
        with self.connect("postgres", autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                return False
            query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            if owner:
                query += sql.SQL(" OWNER {}").format(sql.Identifier(owner))
            conn.execute(query)
            return True

    def drop_database(self, name: str) -> None:
        with self.connect("postgres", autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def __repr__(self) -> str:
        return f"EmbeddedPostgres({str(self.root)!r})"
