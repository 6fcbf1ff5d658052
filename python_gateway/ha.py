"""High availability on one machine: an etcd and three PostgreSQL nodes managed by Patroni, on 127.0.0.1.

``festpay ha up`` / ``festpay ha down`` / ``festpay ha status``.  Everything lives in one folder (``--dir``,
default DATA_DIR/ha), which the OS user ``postgres`` must be able to reach when we run as root (etcd, Patroni and
PostgreSQL then run as that user)::

    DIR/ports.json              the ports chosen on first use (etcd client and peer; per node: PostgreSQL, REST API)
    DIR/secrets.json            passwords of the superuser ``postgres`` and the replication user (0600)
    DIR/etcd/                   etcd's data; DIR/etcd.log, DIR/etcd.pid
    DIR/nodeN.yml               Patroni's configuration of node N (written at every start)
    DIR/nodeN/data/             node N's data directory (its server log in data/log/); DIR/nodeN.log, DIR/nodeN.pid

The cluster runs in ``synchronous_mode_strict``: a commit returns only after one standby has flushed it, and with
no standby left at all, commits wait rather than go on alone.  With three nodes, one can be lost and commits go on
(the third becomes the sync standby of the new leader).  Clients find the leader themselves: libpq's multi-host
URL with ``target_session_attrs=read-write`` (:meth:`HaCluster.database_url`).

Timing (Patroni's dynamic configuration, :data:`DCS_TIMING`): ``ttl`` 10 s, ``loop_wait`` 2 s, ``retry_timeout``
4 s (Patroni needs ``loop_wait + 2 * retry_timeout <= ttl``).  A lost leader (its Patroni gone too) is noticed
when its leader lease runs out, at most ``ttl`` after its last renewal; a crashed postmaster under a live Patroni
is noticed within ``loop_wait`` and, with ``primary_start_timeout`` 0, fails over instead of restarting in place.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import secrets
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from .config import Settings
from .embedded import (SUPERUSER, EmbeddedPostgresError, can_search, find_pg_bindir, pick_free_port, read_int,
                       server_account, write_private)
from .migrate import migrate

SCOPE = "festpay"
NODES = ("node1", "node2", "node3")
DBNAME = "festpay"
REPLICATION_USER = "replicator"
DCS_TIMING = {"ttl": 10, "loop_wait": 2, "retry_timeout": 4}
UP_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 60.0
HOST = "127.0.0.1"


class HaError(EmbeddedPostgresError):
    """An expected failure of the HA cluster, with a message for humans."""


@dataclass(frozen=True)
class Member:
    """One node as Patroni's REST API (``GET /cluster``) reports it."""

    name: str
    role: str          # leader, sync_standby, replica
    state: str         # running, starting, stopped, ...
    port: int | None
    timeline: int | None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _http_json(url: str, timeout: float = 2.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


class HaCluster:
    """The etcd and the three Patroni nodes of one folder (see the module docstring)."""

    def __init__(self, root: str | os.PathLike, *, pg_bin: str | None = None):
        self.root = Path(root).expanduser().absolute()
        self.pg_bin = pg_bin
        self._account = server_account()

    # ------------------------------------------------------------------ files

    def _node_dir(self, node: str) -> Path:
        return self.root / node

    def data_dir(self, node: str) -> Path:
        return self._node_dir(node) / "data"

    def _config_file(self, node: str) -> Path:
        return self.root / f"{node}.yml"

    def _pid_file(self, name: str) -> Path:
        return self.root / f"{name}.pid"

    def _log_file(self, name: str) -> Path:
        return self.root / f"{name}.log"

    def _json_file(self, name: str, make: Callable[[], dict[str, Any]], mode: int) -> dict[str, Any]:
        """DIR/<name>: read, or made by ``make`` and written on first use."""
        path = self.root / name
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            value = make()
            write_private(path, json.dumps(value, indent=1) + "\n", mode=mode)
            return value

    @property
    def ports(self) -> dict[str, Any]:
        """``{"etcd": client, "etcd_peer": peer, "nodes": {name: {"pg": port, "rest": port}}}``."""
        ports: set[int] = set()

        def free() -> int:
            while (port := pick_free_port()) in ports:
                pass
            ports.add(port)
            return port

        return self._json_file("ports.json", lambda: {
            "etcd": free(), "etcd_peer": free(), "nodes": {n: {"pg": free(), "rest": free()} for n in NODES}}, 0o644)

    @property
    def _secrets(self) -> dict[str, str]:
        return self._json_file("secrets.json", lambda: {
            "superuser": secrets.token_urlsafe(24), "replication": secrets.token_urlsafe(24)}, 0o600)

    def database_url(self, dbname: str = DBNAME) -> str:
        """The multi-host libpq URL of the leader, as the superuser: libpq tries the three nodes in turn and keeps
        the one that accepts writes (``target_session_attrs=read-write``)."""
        nodes = self.ports["nodes"]
        return make_conninfo(host=",".join(HOST for _ in NODES), port=",".join(str(nodes[n]["pg"]) for n in NODES),
                             dbname=dbname, user=SUPERUSER, password=self._secrets["superuser"],
                             target_session_attrs="read-write", connect_timeout=3)

    def node_url(self, node: str, dbname: str = DBNAME) -> str:
        """One node, whatever its role, as the superuser."""
        return make_conninfo(host=HOST, port=str(self.ports["nodes"][node]["pg"]), dbname=dbname, user=SUPERUSER,
                             password=self._secrets["superuser"], connect_timeout=3)

    # ------------------------------------------------------------------ configuration

    def _prepare(self) -> None:
        """The folder and its files, owned by the server user; refused when that user cannot reach it."""
        uid, gid, groups = self._account.uid, self._account.gid, self._account.gids
        self.root.mkdir(parents=True, exist_ok=True)
        resolved = self.root.resolve()
        blocked = [p for p in (resolved, *resolved.parents) if not can_search(p, uid, groups)]
        if blocked:
            raise HaError(f"OS user {self._account.name} cannot reach {self.root} ({blocked[-1]} is closed "
                          "to it); choose another folder with --dir")
        for path in (self.root, *(self._node_dir(n) for n in NODES), self.root / "etcd"):
            path.mkdir(mode=0o700, exist_ok=True)
            os.chown(path, uid, gid)
            os.chmod(path, 0o700)
        for node in NODES:
            write_private(self._config_file(node), json.dumps(self._patroni_config(node), indent=1) + "\n",
                           mode=0o600, owner=(uid, gid))

    def _patroni_config(self, node: str) -> dict[str, Any]:
        """Patroni's configuration of ``node`` (JSON is YAML): REST API and PostgreSQL on 127.0.0.1, etcd3, and the
        dynamic configuration every node bootstraps with."""
        ports, pw = self.ports, self._secrets
        mine = ports["nodes"][node]
        bindir, _ = find_pg_bindir(self.pg_bin)
        return {
            "scope": SCOPE,
            "namespace": "/festpay/",
            "name": node,
            "restapi": {"listen": f"{HOST}:{mine['rest']}", "connect_address": f"{HOST}:{mine['rest']}"},
            "etcd3": {"hosts": [f"{HOST}:{ports['etcd']}"]},
            "bootstrap": {
                "dcs": {
                    **DCS_TIMING,
                    "maximum_lag_on_failover": 1048576,
                    "primary_start_timeout": 0,
                    "synchronous_mode": True,
                    "synchronous_mode_strict": True,
                    "synchronous_node_count": 1,
                    "postgresql": {
                        "use_pg_rewind": True,
                        "use_slots": True,
                        "parameters": {"wal_log_hints": "on", "max_connections": 200, "max_wal_senders": 10,
                                       "max_replication_slots": 10, "wal_keep_size": "256MB",
                                       "hot_standby": "on", "synchronous_commit": "on",
                                       # a standby whose new leader has no slot for it yet tries again after 1 s
                                       # (not the default 5 s, which would stall commits in strict mode)
                                       "wal_retrieve_retry_interval": "1s"},
                    },
                },
                "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}, "data-checksums"],
            },
            "postgresql": {
                "listen": f"{HOST}:{mine['pg']}",
                "connect_address": f"{HOST}:{mine['pg']}",
                "data_dir": str(self.data_dir(node)),
                "bin_dir": str(bindir),
                "pgpass": str(self._node_dir(node) / "pgpass"),
                "authentication": {
                    "superuser": {"username": SUPERUSER, "password": pw["superuser"]},
                    "replication": {"username": REPLICATION_USER, "password": pw["replication"]},
                    "rewind": {"username": SUPERUSER, "password": pw["superuser"]},
                },
                "parameters": {"unix_socket_directories": str(self._node_dir(node)),
                               "unix_socket_permissions": "0700", "shared_buffers": "128MB",
                               "logging_collector": "on", "log_directory": "log"},
                "pg_hba": ["local all all trust",
                           f"host replication {REPLICATION_USER} {HOST}/32 scram-sha-256",
                           f"host all all {HOST}/32 scram-sha-256"],
            },
            "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False, "nosync": False},
        }

    # ------------------------------------------------------------------ processes

    def pid(self, name: str) -> int | None:
        """The live process ``name`` (etcd, node1..3: its Patroni) started from this folder, or None."""
        pid = read_int(self._pid_file(name))
        if pid is None:
            return None
        marker = str(self.root / "etcd") if name == "etcd" else str(self._config_file(name))
        return pid if marker in _cmdline(pid) else None

    def postmaster_pid(self, node: str) -> int | None:
        """The live postmaster of ``node`` (from its postmaster.pid), or None."""
        try:
            pid = read_int(self.data_dir(node) / "postmaster.pid")
        except PermissionError:
            pid = None
        return pid if pid and str(self.data_dir(node)) in _cmdline(pid) else None

    def _spawn(self, name: str, args: list[str]) -> int:
        """``args`` as the server user in its own session, output to DIR/<name>.log; its pid in DIR/<name>.pid."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "PATRONI", "ETCD"))}
        env["LC_MESSAGES"] = "C"
        user = {}
        if self._account.switch:
            user = {"user": self._account.uid, "group": self._account.gid, "extra_groups": list(self._account.gids)}
            env["HOME"] = pwd.getpwuid(self._account.uid).pw_dir
        with open(self._log_file(name), "ab") as out:
            if self._account.switch:
                os.chown(self._log_file(name), self._account.uid, self._account.gid)
            proc = subprocess.Popen(args, cwd=self.root, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True, **user)
        self._pid_file(name).write_text(f"{proc.pid}\n")
        return proc.pid

    def _start_etcd(self) -> None:
        if self.pid("etcd"):
            return
        client, peer = f"http://{HOST}:{self.ports['etcd']}", f"http://{HOST}:{self.ports['etcd_peer']}"
        self._spawn("etcd", ["etcd", "--name", "festpay-etcd", "--data-dir", str(self.root / "etcd"),
                             "--listen-client-urls", client, "--advertise-client-urls", client,
                             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                             "--initial-cluster", f"festpay-etcd={peer}", "--initial-cluster-state", "new"])
        self.wait_until(lambda: self._etcd_healthy(), 30, "etcd did not become healthy", "etcd")

    def _etcd_healthy(self) -> bool:
        try:
            return _http_json(f"http://{HOST}:{self.ports['etcd']}/health").get("health") == "true"
        except (OSError, ValueError):
            return False

    def start_node(self, node: str) -> None:
        """Start ``node``'s Patroni (which starts its PostgreSQL) unless it runs."""
        if not self.pid(node):
            self._spawn(node, ["patroni", str(self._config_file(node))])

    def wait_until(self, ready: Callable[[], Any], timeout: float, what: str, log_name: str | None = None) -> Any:
        """Polls ``ready()`` until it returns something true, and returns that; raises HaError (``what`` did not
        happen, with the tail of DIR/<log_name>.log) after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            result = ready()
            if result:
                return result
            if time.monotonic() > deadline:
                tail = ""
                if log_name:
                    with contextlib.suppress(OSError):
                        tail = "; last lines of its log:\n" + "\n".join(
                            self._log_file(log_name).read_text(errors="replace").splitlines()[-15:])
                raise HaError(f"{what} within {timeout:.0f} s{tail}")
            time.sleep(0.2)

    # ------------------------------------------------------------------ state

    def members(self) -> list[Member]:
        """The cluster as the first node answering Patroni's REST API sees it; [] when none answers."""
        for node in NODES:
            try:
                answer = _http_json(f"http://{HOST}:{self.ports['nodes'][node]['rest']}/cluster")
            except (OSError, ValueError):
                continue
            return [Member(m["name"], m["role"], m.get("state", ""), m.get("port"), m.get("timeline"))
                    for m in answer.get("members", [])]
        return []

    def leader(self) -> str | None:
        """The node holding the leader lock and running, or None."""
        return next((m.name for m in self.members() if m.role == "leader" and m.state == "running"), None)

    def streaming_standbys(self, leader: str) -> dict[str, str]:
        """``{node: sync_state}`` of the standbys streaming from ``leader`` (its pg_stat_replication); {} when the
        leader does not answer."""
        try:
            with psycopg.connect(self.node_url(leader, "postgres"), autocommit=True) as conn:
                rows = conn.execute("SELECT application_name, sync_state FROM pg_stat_replication"
                                    " WHERE state = 'streaming'").fetchall()
        except psycopg.Error:
            return {}
        return dict(rows)

    def healthy(self, nodes: tuple[str, ...] = NODES) -> str | None:
        """The leader, when it runs and every other of ``nodes`` streams from it, one of them the synchronous standby
        (Patroni's and the leader's view agree); else None."""
        members = self.members()
        leader = next((m.name for m in members if m.role == "leader" and m.state == "running"), None)
        if leader is None or leader not in nodes:
            return None
        sync = {m.name for m in members if m.role == "sync_standby"}
        standbys = self.streaming_standbys(leader)
        others = [n for n in nodes if n != leader]
        if all(n in standbys for n in others) and any(standbys.get(n) == "sync" for n in sync):
            return leader
        return None

    def wait_healthy(self, timeout: float = UP_TIMEOUT_S, nodes: tuple[str, ...] = NODES) -> str:
        """Waits until :meth:`healthy`; returns the leader."""
        return self.wait_until(lambda: self.healthy(nodes), timeout,
                          f"no leader with {len(nodes) - 1} streaming standbys (one synchronous)", "node1")

    # ------------------------------------------------------------------ up, down

    def up(self, timeout: float = UP_TIMEOUT_S) -> str:
        """etcd and the three nodes started (those not running), a leader with two streaming standbys, the festpay
        database created and migrated on the leader.  Returns the leader's name."""
        self._prepare()
        self._start_etcd()
        for node in NODES:
            self.start_node(node)
        leader = self.wait_healthy(timeout)
        with psycopg.connect(self.database_url("postgres"), autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DBNAME,)).fetchone():
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DBNAME)))
        migrate(self.database_url())
        return leader

    def stop_process(self, name: str, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S) -> bool:
        """Sends ``sig`` to process ``name`` (etcd, a node's Patroni) and waits for it to end (SIGKILL after
        ``timeout``); False when it was not running."""
        pid = self.pid(name)
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while self.pid(name) == pid and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.pid(name) == pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return True

    def kill_postmaster(self, node: str) -> None:
        """A crashed server: SIGKILL ``node``'s postmaster (its Patroni stays)."""
        pid = self.postmaster_pid(node)
        if pid is None:
            raise HaError(f"{node} has no running server")
        os.kill(pid, signal.SIGKILL)

    def kill_machine(self, node: str) -> None:
        """A lost machine: SIGKILL ``node``'s Patroni and postmaster at once (its server's other processes end
        when they notice the postmaster is gone)."""
        pids = [p for p in (self.pid(node), self.postmaster_pid(node)) if p]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def stop_node(self, node: str) -> None:
        """Stops ``node``: its Patroni (which stops its PostgreSQL), then a postmaster left behind."""
        self.stop_process(node)
        postmaster = self.postmaster_pid(node)
        if postmaster:
            with contextlib.suppress(ProcessLookupError):
                os.kill(postmaster, signal.SIGINT)  # fast shutdown
            self.wait_until(lambda: self.postmaster_pid(node) is None, STOP_TIMEOUT_S, f"{node}'s server did not stop")

    def down(self) -> list[str]:
        """Stops the standbys, then the leader, then etcd; returns what was running."""
        leader = self.leader() if self.pid("etcd") else None
        order = sorted((n for n in NODES if self.pid(n) or self.postmaster_pid(n)), key=lambda n: n == leader)
        for node in order:
            self.stop_node(node)
        stopped = list(order)
        if self.stop_process("etcd"):
            stopped.append("etcd")
        return stopped

    def switchover(self, leader: str, candidate: str) -> None:
        """``patronictl switchover``: ``leader`` hands over to ``candidate``, planned."""
        result = subprocess.run(["patronictl", "-c", str(self._config_file(leader)), "switchover", "--leader",
                                 leader, "--candidate", candidate, "--force"],
                                capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise HaError(f"patronictl switchover failed: {(result.stderr or result.stdout).strip()}")

    def patronictl_list(self) -> str:
        """``patronictl list``'s table."""
        result = subprocess.run(["patronictl", "-c", str(self._config_file(NODES[0])), "list"],
                                capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        return (result.stdout or result.stderr).strip()


# --------------------------------------------------------------------------- festpay ha


def default_dir(settings: Settings) -> Path:
    """DATA_DIR/ha."""
    return settings.data_dir / "ha"


def _cluster(args: argparse.Namespace, settings: Settings) -> HaCluster:
    return HaCluster(Path(args.dir) if args.dir else default_dir(settings), pg_bin=settings.pg_bin)


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    ha = _cluster(args, settings)
    print(f"Starting etcd and three Patroni nodes in {ha.root} ...", flush=True)
    leader = ha.up()
    print(ha.patronictl_list())
    print(f"Leader: {leader}; the festpay database is migrated.  Put this in .env:\n")
    print(f'DATABASE_URL="{ha.database_url()}"')
    print(f"\nStop with: festpay ha down --dir {ha.root}")
    return 0


def cmd_down(args: argparse.Namespace, settings: Settings) -> int:
    stopped = _cluster(args, settings).down()
    print("Stopped: " + ", ".join(stopped) if stopped else "Nothing was running.")
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    ha = _cluster(args, settings)
    members = ha.members()
    for name in ("etcd", *NODES):
        pid = ha.pid(name)
        print(f"{name:6} {'running (pid %d)' % pid if pid else 'stopped'}")
    if not members:
        print("no Patroni node answers")
        return 3
    print(ha.patronictl_list())
    return 0 if ha.healthy() else 3


def add_parser(sub: argparse._SubParsersAction) -> None:
    """``festpay ha up|down|status``."""
    ha = sub.add_parser("ha", help="etcd and three PostgreSQL nodes under Patroni on 127.0.0.1 (high availability)")
    hasub = ha.add_subparsers(dest="ha_command", required=True, metavar="ACTION")
    for name, func, text in (
        ("up", cmd_up, "start etcd and three Patroni nodes, wait for a leader and two streaming standbys, create "
                       "and migrate the festpay database, print DATABASE_URL"),
        ("down", cmd_down, "stop the nodes (standbys first) and etcd, by the pids recorded in the folder"),
        ("status", cmd_status, "what runs, and patronictl list (exit 3 unless healthy)"),
    ):
        p = hasub.add_parser(name, help=text)
        p.add_argument("--dir", help="the cluster's folder (default FESTPAY_DATA_DIR/ha); the OS user postgres must "
                                     "reach it when festpay runs as root")
        p.set_defaults(func=func)
