"""Backups and point-in-time restore of the embedded cluster with pgBackRest (Debian package ``pgbackrest``).

The backup folder (``DATA_DIR/backup``, or FESTPAY_BACKUP_DIR) belongs to the OS user the server runs as
(``postgres`` when we are root) and holds:

    pgbackrest.conf   stanza ``festpay``: this folder's repo/, the cluster's data dir, socket and port
    repo/             the pgBackRest repository: backups and the archived WAL
    log/              pgBackRest's log files
    lock/             pgBackRest's lock files (one cluster's locks never meet another's)

``init`` also writes ``festpay-backup.conf`` into the data dir (included by postgresql.conf; festpay.conf is
rewritten at every start, this file is not): ``archive_mode = on`` and an ``archive_command`` that pushes every
WAL segment into the repository.  pgBackRest runs as the server's OS user, the way the server's own tools do.
"""

from __future__ import annotations

import os
import shlex
import shutil
import time
from datetime import datetime
from pathlib import Path

import psycopg

from .embedded import EmbeddedPostgres, EmbeddedPostgresError, can_search, _conf_value, write_private

STANZA = "festpay"
BACKUP_CONF_FILE_NAME = "festpay-backup.conf"
BACKUP_INCLUDE_LINE = f"include_if_exists = '{BACKUP_CONF_FILE_NAME}'\t# festpay: WAL archiving (festpay backup)"
BACKUP_TYPES = ("full", "incr", "diff")


class BackupError(EmbeddedPostgresError):
    """A backup step failed; the message says which and shows pgBackRest's output."""


def _pgbackrest() -> str:
    found = shutil.which("pgbackrest")
    if not found:
        raise BackupError("pgbackrest not found; install it: apt-get install pgbackrest")
    return found


def config_path(backup_dir: Path) -> Path:
    return backup_dir / "pgbackrest.conf"


def _prepare_dirs(cluster: EmbeddedPostgres, backup_dir: Path) -> None:
    """Create the backup folder and its repo/, log/, lock/ for the server user; it must be able to reach them."""
    backup_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
    os.chown(backup_dir, cluster._server_uid, cluster._server_gid)
    resolved = backup_dir.resolve()
    if not all(can_search(p, cluster._server_uid, cluster._server_gids) for p in resolved.parents):
        raise BackupError(
            f"OS user {cluster.server_user} cannot reach {backup_dir}; set FESTPAY_BACKUP_DIR to a folder it can reach"
        )
    for path in (backup_dir, backup_dir / "repo", backup_dir / "log", backup_dir / "lock"):
        path.mkdir(mode=0o750, exist_ok=True)
        os.chown(path, cluster._server_uid, cluster._server_gid)


def write_config(cluster: EmbeddedPostgres, backup_dir: Path) -> Path:
    """(Re)write pgbackrest.conf for the cluster as it is now (its port may move); returns its path."""
    _prepare_dirs(cluster, backup_dir)
    conf = config_path(backup_dir)
    text = "\n".join([
        "# Written by `festpay backup`; change the backup folder with FESTPAY_BACKUP_DIR, not here.",
        "[global]",
        f"repo1-path={backup_dir / 'repo'}",
        f"log-path={backup_dir / 'log'}",
        f"lock-path={backup_dir / 'lock'}",
        "start-fast=y",
        "",
        f"[{STANZA}]",
        f"pg1-path={cluster.data_dir}",
        f"pg1-socket-path={cluster.socket_dir}",
        f"pg1-port={cluster.port}",
        "pg1-user=postgres",
        "",
    ])
    write_private(conf, text, mode=0o640, owner=(cluster._server_uid, cluster._server_gid))
    return conf


def _run(cluster: EmbeddedPostgres, backup_dir: Path, command: str, *options: str, timeout: float = 1800) -> str:
    """``pgbackrest --config=... --stanza=festpay [options] command`` as the server's OS user; its output."""
    args = [_pgbackrest(), f"--config={config_path(backup_dir)}", f"--stanza={STANZA}", *options, command]
    result = cluster._run_server_tool(args, timeout=timeout)
    output = "\n".join(part.strip() for part in (result.stdout, result.stderr) if part.strip())
    if result.returncode != 0:
        raise BackupError(f"pgbackrest {command} failed (exit {result.returncode}):\n{output}")
    return output


def _archive_conf(backup_dir: Path) -> str:
    command = (f"{shlex.quote(_pgbackrest())} --config={shlex.quote(str(config_path(backup_dir)))} "
               f"--stanza={STANZA} archive-push %p")
    return "\n".join([
        "# Written by `festpay backup init`: every WAL segment goes into the pgBackRest repository.",
        "archive_mode = on",
        f"archive_command = {_conf_value(command)}",
        "",
    ])


def _enable_archiving(cluster: EmbeddedPostgres, backup_dir: Path) -> bool:
    """Write festpay-backup.conf and include it from postgresql.conf; True when a setting changed."""
    conf = cluster.data_dir / BACKUP_CONF_FILE_NAME
    wanted = _archive_conf(backup_dir)
    changed = False
    try:
        current = conf.read_text()
    except FileNotFoundError:
        current = None
    if current != wanted:
        write_private(conf, wanted, owner=(cluster._server_uid, cluster._server_gid))
        changed = True
    main_conf = cluster.data_dir / "postgresql.conf"
    if BACKUP_INCLUDE_LINE not in main_conf.read_text().splitlines():
        with open(main_conf, "a") as f:
            f.write(f"{BACKUP_INCLUDE_LINE}\n")
        changed = True
    return changed


def _archive_mode_on(cluster: EmbeddedPostgres) -> bool:
    with cluster.connect("postgres", autocommit=True) as conn:
        return conn.execute("SELECT current_setting('archive_mode')").fetchone()[0] == "on"


def init(cluster: EmbeddedPostgres, backup_dir: Path) -> str:
    """Set up pgBackRest for the cluster: the config, WAL archiving (restarting a running cluster when archive_mode
    was off; starting a stopped one for the checks and stopping it again), ``stanza-create`` and ``check``.
    Returns pgBackRest's output; raises BackupError."""
    cluster.init()
    write_config(cluster, backup_dir)
    changed = _enable_archiving(cluster, backup_dir)
    started = cluster.start()
    try:
        if not _archive_mode_on(cluster):
            cluster.stop()
            cluster.start()
        elif changed:
            with cluster.connect("postgres", autocommit=True) as conn:
                conn.execute("SELECT pg_reload_conf()")
        output = _run(cluster, backup_dir, "stanza-create")
        output += "\n" + _run(cluster, backup_dir, "check")
    finally:
        if started:
            cluster.stop()
    return output.strip()


def is_initialized(cluster: EmbeddedPostgres, backup_dir: Path) -> bool:
    return config_path(backup_dir).exists() and (cluster.data_dir / BACKUP_CONF_FILE_NAME).exists()


def _require_init(cluster: EmbeddedPostgres, backup_dir: Path) -> None:
    if not is_initialized(cluster, backup_dir):
        raise BackupError(f"no backups set up for {cluster.root} in {backup_dir}; run `festpay backup init` first")


def run(cluster: EmbeddedPostgres, backup_dir: Path, backup_type: str | None = None) -> str:
    """Take a backup of the running cluster (starting and stopping it when it is down): ``backup_type`` full, incr
    or diff; None: pgBackRest's default, incr (a full one when there is none yet). Returns pgBackRest's output."""
    if backup_type is not None and backup_type not in BACKUP_TYPES:
        raise BackupError(f"backup type {backup_type!r} is not one of {', '.join(BACKUP_TYPES)}")
    _require_init(cluster, backup_dir)
    write_config(cluster, backup_dir)
    started = cluster.start()
    try:
        return _run(cluster, backup_dir, "backup", *([f"--type={backup_type}"] if backup_type else []))
    finally:
        if started:
            cluster.stop()


def info(cluster: EmbeddedPostgres, backup_dir: Path) -> str:
    """pgBackRest's ``info`` on the stanza: the backups and the archived WAL range."""
    _require_init(cluster, backup_dir)
    return _run(cluster, backup_dir, "info", timeout=120)


def _wait_until_writable(cluster: EmbeddedPostgres, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with cluster.connect("postgres", autocommit=True) as conn:
                if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                    return
        except psycopg.OperationalError:
            pass
        if time.monotonic() > deadline:
            raise BackupError(f"the restored cluster is still in recovery after {timeout:.0f} s; "
                              f"see {cluster.log_file}")
        time.sleep(0.2)


def restore(cluster: EmbeddedPostgres, backup_dir: Path, target_time: datetime | None = None,
            *, timeout: float = 600) -> str:
    """Restore the cluster from the repository: to ``target_time`` (timezone-aware) or else to the end of the
    archived WAL.  A running cluster first archives its current WAL segment (``check``) and is stopped; the
    restore is ``--delta``; the cluster is started and this returns once recovery has ended and it accepts writes.
    The caller holds the cluster's lock.  Returns pgBackRest's output."""
    if target_time is not None and target_time.tzinfo is None:
        raise BackupError("the restore target time needs a time zone, e.g. 2026-12-06 04:30:00+00")
    _require_init(cluster, backup_dir)
    write_config(cluster, backup_dir)
    output = ""
    if cluster.is_running():
        output += _run(cluster, backup_dir, "check") + "\n"
        cluster.stop()
    options = ["--delta"]
    if target_time is not None:
        options += ["--type=time", f"--target={target_time.isoformat(sep=' ')}", "--target-action=promote"]
    output += _run(cluster, backup_dir, "restore", *options)
    cluster.start()
    _wait_until_writable(cluster, timeout)
    return output.strip()
