"""The ``festpay`` command line.

    festpay run                  database (embedded or DATABASE_URL) + migrate + demo data + gateway, until Ctrl-C
    festpay serve [--apps terminal,admin,portal]   the HTTP gateway only, against a running database, until Ctrl-C
    festpay admin create-user --username NAME --role ROLE   an admin user (password from a prompt or stdin)
    festpay registration-code --position NAME [--event ID|NAME]   a one-time terminal registration code
    festpay receipt TRANSACTION_ID [--html FILE]                  a receipt, as text or printable HTML
    festpay migrate              apply pending migrations and all procedures
    festpay relay                the outbox relay: sign receipts, check and refund online top-ups, until Ctrl-C
    festpay tse serve --dir DIR [--port P]   the software TSE as an HTTP service on 127.0.0.1, until Ctrl-C
    festpay tse verify [--event ID|NAME]     re-check every stored TSE signature against the ledger
    festpay provider-sim [--port P]          the simulated payment provider on 127.0.0.1, until Ctrl-C
    festpay export dsfinvk --event ID|NAME [--from DATE --to DATE] [--close] --out FILE.zip   DSFinV-K export
    festpay db start|stop|status|url|psql|env|destroy
    festpay backup init|run [--type full|incr|diff]|info|restore [--to TIME]   pgBackRest for the embedded cluster
    festpay ha up|down|status [--dir DIR]    etcd + three PostgreSQL nodes under Patroni on 127.0.0.1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import getpass
import logging
import os
import re
import secrets
import shlex
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from pathlib import Path
from typing import NoReturn

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from . import backup
from .config import SQL_DIR, ConfigError, Settings, load_settings
from .embedded import ClusterLocked, EmbeddedPostgres, EmbeddedPostgresError
from .gateway import GatewayError, GatewayOptions, gateway_service
from .gateway.app import APPS
from .migrate import MigrationError, libpq_url, load_sql_file, migrate

log = logging.getLogger("festpay")

EXIT_ERROR = 1
EXIT_NOT_RUNNING = 3
EXIT_INTERRUPTED = 130

DEMO_SQL = SQL_DIR / "demo.sql"


class CliError(Exception):
    """An expected failure: printed as one line, no traceback."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR):
        super().__init__(message)
        self.exit_code = exit_code


class _Terminate(BaseException):
    """Raised by the SIGTERM handler outside the event loop, so cleanup still runs."""


def _raise_terminate(signum, frame) -> NoReturn:
    raise _Terminate()


def _cluster(settings: Settings) -> EmbeddedPostgres:
    return EmbeddedPostgres(settings.data_dir, settings.pg_port, pg_bin=settings.pg_bin)


def _mask_password(url: str) -> str:
    """The connection string without its password (URL or key=value form)."""
    url = re.sub(r"(://[^:/@?]*:)[^@/?]*@", r"\1***@", url)
    return re.sub(r"(\bpassword=)('(?:[^'\\]|\\.)*'|\S*)", r"\1***", url)


# --------------------------------------------------------------------------- run

TERMINAL_ROLE = "festpay_terminal"
RELAY_ROLE = "festpay_relay"
WEB_ROLE = "festpay_web"


def acting_as(url: str, role: str) -> str:
    """``url`` with libpq's ``options=-c role=ROLE``: its login acts with ``role``'s privileges alone (the login
    must be a member of ``role``; a superuser is)."""
    conninfo = conninfo_to_dict(url)
    options = " ".join(filter(None, [conninfo.get("options"), f"-c role={role}"]))
    return make_conninfo(url, options=options)


def _service_url(settings: Settings, role: str, own_url: str | None) -> str:
    """Where a service logs in as ``role``: over the embedded cluster's socket, or with DATABASE_URL set, its own
    URL (FESTPAY_GATEWAY_DATABASE_URL, FESTPAY_RELAY_DATABASE_URL, FESTPAY_WEB_DATABASE_URL) or else DATABASE_URL's
    login acting as ``role``."""
    if settings.database_url:
        if own_url:
            return libpq_url(own_url)
        return acting_as(libpq_url(settings.database_url), role)
    return _cluster(settings).url("festpay", user=role)


def gateway_database_url(settings: Settings) -> str:
    """The terminal API's login: role festpay_terminal."""
    return _service_url(settings, TERMINAL_ROLE, settings.gateway_database_url)


def relay_database_url(settings: Settings) -> str:
    """The relay's login: role festpay_relay."""
    return _service_url(settings, RELAY_ROLE, settings.relay_database_url)


def web_database_url(settings: Settings) -> str:
    """The admin site's login: role festpay_web."""
    return _service_url(settings, WEB_ROLE, settings.web_database_url)


def gateway_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.http_port}"


def admin_site_url(settings: Settings) -> str:
    """Where browsers reach the admin site: FESTPAY_PUBLIC_URL's, else the gateway's."""
    return f"{settings.public_url or gateway_url(settings)}/admin/"


def gateway_with(apps: tuple[str, ...]) -> Service:
    """The gateway serving ``apps`` (see :data:`python_gateway.gateway.app.APPS`): the terminal API logs in as
    festpay_terminal, the admin site as festpay_web (health and problem types use the terminal login when the
    terminal API is served, else the web login)."""

    def gateway(url: str, settings: Settings) -> AbstractAsyncContextManager:
        web_site = "admin" in apps or "portal" in apps
        options = GatewayOptions(apps=apps, web_database_url=web_database_url(settings) if web_site else None,
                                 public_url=settings.public_url,
                                 provider=payment_provider(settings, webhooks=True) if "portal" in apps else None)
        root_url = gateway_database_url(settings) if "terminal" in apps else web_database_url(settings)
        return gateway_service(root_url, settings.http_port, options=options)

    return gateway


def _gateway(url: str, settings: Settings) -> AbstractAsyncContextManager:
    return gateway_with(APPS)(url, settings)


TSE_READY_TIMEOUT_S = 30.0


def local_tse_process(directory: Path, port: int) -> AbstractAsyncContextManager[str]:
    """``festpay tse serve`` as a child process while the block runs; yields its URL once it answers.

    Its own session (process group), so a Ctrl-C at the terminal does not stop it before the relay has finished
    the request in hand; it is stopped (SIGTERM) at the end, and stops by itself if this process dies (stdin EOF).
    """
    return _child_service(["tse", "serve", "--dir", str(directory), "--port", str(port)],
                          f"the local TSE (festpay tse serve --dir {directory} --port {port})")


def local_provider_process(port: int) -> AbstractAsyncContextManager[str]:
    """``festpay provider-sim`` as a child process while the block runs (like :func:`local_tse_process`)."""
    return _child_service(["provider-sim", "--port", str(port)],
                          f"the simulated payment provider (festpay provider-sim --port {port})")


@contextlib.asynccontextmanager
async def _child_service(command: list[str], what: str) -> AsyncIterator[str]:
    """``festpay COMMAND... --stop-on-stdin-eof`` as a child process in its own session; yields the URL of its
    ``READY <url>`` line (``what`` names it in the error when it does not start)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "python_gateway.cli", *command,
        "--stop-on-stdin-eof", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        start_new_session=True)
    try:
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), TSE_READY_TIMEOUT_S)
        except asyncio.TimeoutError:
            line = b""
        text = line.decode(errors="replace").strip()
        if not text.startswith("READY "):
            raise CliError(f"{what} did not start" + (f": {text}" if text else ""))
        yield text.split()[1]
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()


def _tse(url: str, settings: Settings) -> AbstractAsyncContextManager:
    """The local software TSE (a child process) unless FESTPAY_TSE_URL names one."""
    if settings.tse_url:
        return contextlib.nullcontext(settings.tse_url)
    return local_tse_process(settings.tse_directory, settings.tse_port)


def _provider(url: str, settings: Settings) -> AbstractAsyncContextManager:
    """The simulated payment provider (a child process) unless FESTPAY_PROVIDER_URL names one."""
    if settings.provider_url:
        return contextlib.nullcontext(settings.provider_url)
    from .provider import webhook_secret

    webhook_secret(settings)  # generated here, before the child and the gateway race to create it
    return local_provider_process(settings.provider_port)


def payment_provider(settings: Settings, *, webhooks: bool = False):  # noqa: ANN201 - an HttpProvider
    """The payment provider of online top-ups (FESTPAY_PROVIDER_URL, else the simulated one); ``webhooks``: it sends
    them to this gateway's ``/provider/webhook`` (FESTPAY_PUBLIC_URL, else 127.0.0.1 and the HTTP port)."""
    from .provider import webhook_secret
    from .provider.http_client import HttpProvider

    origin = (settings.public_url or f"http://127.0.0.1:{settings.http_port}").rstrip("/")
    return HttpProvider(settings.provider_base_url, webhook_secret(settings),
                        webhook_url=origin + "/provider/webhook" if webhooks else None)


@contextlib.asynccontextmanager
async def relay_handlers(settings: Settings, tse_dir: str | None = None) -> AsyncIterator[list[object]]:
    """The relay's handlers, the one place they are built (``festpay run`` and ``festpay relay``): topic ``tse`` signs
    with the TSE service at ``settings.relay_tse_url`` (or a software TSE opened in ``tse_dir``), topic ``provider``
    checks online top-ups with, and refunds them through, the payment provider (``payment_provider``:
    FESTPAY_PROVIDER_URL, else the simulated one ``festpay run`` starts).  Closed at the end of the block."""
    from .relay import ProviderHandler, TseHandler, make_tse

    tse = make_tse(directory=tse_dir) if tse_dir else make_tse(url=settings.relay_tse_url)
    try:
        async with payment_provider(settings) as provider:
            yield [TseHandler(tse), ProviderHandler(provider)]
    finally:
        close = getattr(tse, "close", None)
        if close is not None:
            close()


@contextlib.asynccontextmanager
async def _relay(url: str, settings: Settings) -> AsyncIterator[object]:
    from .relay import relay_service

    async with relay_handlers(settings) as handlers:
        async with relay_service(relay_database_url(settings), handlers, workers=settings.relay_workers) as relay:
            yield relay


# What `festpay run` serves while the database is up.  Each entry is called with
# (database url, settings) and returns an async context manager that is entered
# after migration and left at shutdown (in reverse order: the relay stops before the TSE).
Service = Callable[[str, Settings], AbstractAsyncContextManager]
SERVICES: list[Service] = [_tse, _provider, _gateway, _relay]


async def serve(url: str, settings: Settings, services: list[Service] | None = None,
                ready: Callable[[], None] | None = None) -> None:
    """Run the services until SIGINT or SIGTERM; ``ready`` is called once they all started."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with contextlib.AsyncExitStack() as stack:
            for service in SERVICES if services is None else services:
                await stack.enter_async_context(service(url, settings))
            if ready is not None:
                ready()
            await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _banner(lines: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in lines)
    rule = "=" * 72
    body = "\n".join(f"  {k.ljust(width)}  {v}" for k, v in lines)
    return f"\n{rule}\n  Festpay is running.\n\n{body}\n\n  Press Ctrl-C to stop.\n{rule}\n"


def cmd_run(args, settings: Settings) -> int:
    previous_term = signal.signal(signal.SIGTERM, _raise_terminate)
    try:
        with contextlib.ExitStack() as cleanup:
            pg: EmbeddedPostgres | None = None
            if settings.database_url:
                url = libpq_url(settings.database_url)
                print(f"Using DATABASE_URL {_mask_password(url)}", flush=True)
            else:
                pg = _cluster(settings)
                try:
                    pg.acquire_lock()
                except ClusterLocked as err:
                    raise CliError(
                        f"festpay run is already running for {pg.root}"
                        + (f" (pid {err.holder_pid})" if err.holder_pid else "")
                        + "; stop it with Ctrl-C first"
                    ) from None
                cleanup.callback(pg.release_lock)
                cleanup.callback(_stop_cluster, pg)
                pid = pg.running_pid()
                if pid is not None:
                    print(
                        f"Reusing the PostgreSQL server already running in {pg.data_dir} (pid {pid}); "
                        "it is stopped when this run ends.",
                        flush=True,
                    )
                else:
                    print(f"Starting PostgreSQL {pg.version} in {pg.data_dir} ...", flush=True)
                    pg.start()
                url = pg.url()

            migrate(url)
            if DEMO_SQL.exists():
                load_sql_file(url, DEMO_SQL, psql=pg.psql_path if pg else None)
                print(f"Loaded {DEMO_SQL.relative_to(SQL_DIR.parent)}", flush=True)
            admin_lines = first_admin(url, settings)

            lines = []
            if pg is not None:
                lines += [
                    ("database", f"PostgreSQL {pg.version}, data in {pg.data_dir}"),
                    ("psql", pg.psql_command()),
                    ("URL", pg.url()),
                    ("TCP", f"{_mask_password(pg.tcp_url())}  (password in {pg.password_file})"),
                ]
            else:
                lines += [("psql", f'psql "{_mask_password(url)}"'), ("", "or: festpay db psql")]
            lines += [("TSE", settings.tse_url or f"{settings.relay_tse_url}  (software TSE in "
                                                   f"{settings.tse_directory})"),
                      ("provider", settings.provider_url or f"{settings.provider_base_url}  (simulated payment "
                                                             "provider, festpay provider-sim)"),
                      ("relay", "signing committed receipts, checking and refunding online top-ups"),
                      ("gateway", gateway_url(settings)),
                      ("", ".venv/bin/festpay registration-code --position Bar   (a terminal's one-time code)"),
                      *admin_lines,
                      ("portal", f"{settings.public_url or gateway_url(settings)}/portal/  (visitors: tag UID and PIN; "
                                 "demo wristband 04A1B2C3D4E5F6, PIN 1234)")]

            asyncio.run(serve(url, settings, ready=lambda: print(_banner(lines), flush=True)))
            # Shutting down: a second Ctrl-C must not cut the clean stop short.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            print("Stopping ...", flush=True)
    except (KeyboardInterrupt, _Terminate):
        print("Interrupted; stopped.", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    print("Stopped.", flush=True)
    return 0


def first_admin(url: str, settings: Settings) -> list[tuple[str, str]]:
    """Creates the admin user ``admin`` with a random password when there is no admin user yet
    (``api.ensure_first_admin``, as the DBA), writes the password to DATA_DIR/admin-password (mode 0600).
    Returns the banner lines: the admin site's URL, and the login when it was just created."""
    password = secrets.token_urlsafe(15)
    with psycopg.connect(url, autocommit=True) as conn:
        created = conn.execute("SELECT * FROM api.ensure_first_admin(%s)", (password,)).fetchone()[0]
    lines = [("admin", admin_site_url(settings))]
    if created:
        path = settings.data_dir / "admin-password"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            os.fchmod(out.fileno(), 0o600)
            out.write(password + "\n")
        lines += [("", f"sign in as user admin with password {password}"),
                  ("", f"(shown once; also in {path}, mode 0600; change it at /admin/password)")]
    return lines


def _stop_cluster(pg: EmbeddedPostgres) -> None:
    if pg.stop():
        print(f"PostgreSQL in {pg.data_dir} stopped.", flush=True)


# --------------------------------------------------------------------------- serve


def parse_apps(text: str) -> tuple[str, ...]:
    """``terminal,admin`` -> ("terminal", "admin"); every name must be one of APPS."""
    apps = tuple(dict.fromkeys(a.strip() for a in text.split(",") if a.strip()))
    unknown = [a for a in apps if a not in APPS]
    if unknown or not apps:
        raise CliError(f"--apps takes a comma-separated list of {', '.join(APPS)}; not {text!r}")
    return apps


def cmd_serve(args, settings: Settings) -> int:
    """The gateway alone (the sub-applications --apps names), against the running embedded cluster or DATABASE_URL,
    until Ctrl-C."""
    apps = parse_apps(args.apps)
    if args.port is not None:
        settings = dataclasses.replace(settings, http_port=args.port)
    if not settings.database_url:
        pg = _cluster(settings)
        if not pg.is_running():
            raise CliError("the embedded cluster is not running; start it with `festpay run` or `festpay db start`",
                           EXIT_NOT_RUNNING)
    url = gateway_database_url(settings) if "terminal" in apps else web_database_url(settings)
    print(f"Database: {_mask_password(url)}", flush=True)
    if ("admin" in apps or "portal" in apps) and "terminal" in apps:
        print(f"Admin site and portal database: {_mask_password(web_database_url(settings))}", flush=True)

    def ready() -> None:
        admin = f"; admin site {admin_site_url(settings)}" if "admin" in apps else ""
        if "portal" in apps:
            admin += f"; customer portal {settings.public_url or gateway_url(settings)}/portal/"
        print(f"Gateway listening on {gateway_url(settings)}  (apps: {', '.join(apps)}{admin}; Ctrl-C stops)",
              flush=True)

    try:
        asyncio.run(serve(url, settings, services=[gateway_with(apps)], ready=ready))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    print("Stopped.", flush=True)
    return 0


# --------------------------------------------------------------------------- relay


def cmd_relay(args, settings: Settings) -> int:
    """The outbox relay alone (topics tse and provider: :func:`relay_handlers`), against the running embedded cluster
    or DATABASE_URL, until Ctrl-C."""
    from .relay import relay_service

    if not settings.database_url and not _cluster(settings).is_running():
        raise CliError("the embedded cluster is not running; start it with `festpay run` or `festpay db start`",
                       EXIT_NOT_RUNNING)
    if args.tse_url:
        settings = dataclasses.replace(settings, tse_url=args.tse_url)
    if args.provider_url:
        if not args.provider_url.startswith(("http://", "https://")):
            raise CliError(f"--provider-url {args.provider_url!r} is not an http(s) URL")
        settings = dataclasses.replace(settings, provider_url=args.provider_url.rstrip("/"))
    url = relay_database_url(settings)
    workers = args.workers if args.workers is not None else settings.relay_workers
    if workers < 1:
        raise CliError("--workers must be at least 1")
    where = f"software TSE in {args.tse_dir}" if args.tse_dir else settings.relay_tse_url
    print(f"Database: {_mask_password(url)}", flush=True)

    def ready() -> None:
        print(f"Relay signing receipts with the TSE at {where} and checking online top-ups with the payment provider "
              f"at {settings.provider_base_url}, {workers} worker(s)  (Ctrl-C stops)", flush=True)

    @contextlib.asynccontextmanager
    async def relay(db_url: str, _settings: Settings) -> AsyncIterator[object]:
        async with relay_handlers(settings, tse_dir=args.tse_dir) as handlers:
            async with relay_service(db_url, handlers, poll_s=args.poll, workers=workers) as running:
                yield running

    try:
        asyncio.run(serve(url, settings, services=[relay], ready=ready))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    print("Stopped.", flush=True)
    return 0


# --------------------------------------------------------------------------- tse


def _serve_child(open_service: Callable[[], AbstractAsyncContextManager], what: str, port: int,
                 stop_on_stdin_eof: bool, describe: Callable[[str], str]) -> None:
    """Runs one service on 127.0.0.1 until SIGINT/SIGTERM (or, with ``stop_on_stdin_eof``, until the parent holding
    our stdin pipe is gone); prints ``READY <url> pid <pid>`` on stdout once it listens and ``describe(url)`` on
    stderr. Raises CliError when it cannot listen."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if stop_on_stdin_eof:
            def stdin_readable() -> None:
                try:
                    data = os.read(0, 4096)
                except OSError:
                    data = b""
                if not data:
                    loop.remove_reader(0)
                    stop.set()

            loop.add_reader(0, stdin_readable)
        service = open_service()
        try:
            url = await service.__aenter__()
        except OSError as err:
            raise CliError(f"{what} cannot listen on 127.0.0.1:{port}: {err.strerror or err}") from None
        try:
            print(f"READY {url} pid {os.getpid()}", flush=True)
            print(describe(url), file=sys.stderr, flush=True)
            await stop.wait()
        finally:
            await service.__aexit__(None, None, None)

    asyncio.run(main())


def cmd_tse_serve(args, settings: Settings) -> int:
    """The software TSE in DIR as an HTTP service on 127.0.0.1; prints ``READY <url>`` once it listens."""
    from .tse.interface import TseError
    from .tse.service import tse_service

    directory = Path(args.dir) if args.dir else settings.tse_directory
    port = settings.tse_port if args.port is None else args.port
    try:
        _serve_child(lambda: tse_service(directory, port), "the TSE service", port, args.stop_on_stdin_eof,
                     lambda url: f"Software TSE in {directory} at {url}  (Ctrl-C stops)")
    except TseError as err:
        raise CliError(f"the TSE in {directory} cannot be opened: {err}") from None
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return 0


# --------------------------------------------------------------------------- provider-sim


def cmd_provider_sim(args, settings: Settings) -> int:
    """The simulated payment provider on 127.0.0.1; prints ``READY <url> pid <pid>`` once it listens."""
    from .provider import webhook_secret
    from .provider.sim import provider_sim_service

    port = settings.provider_port if args.port is None else args.port
    try:
        secret = webhook_secret(settings)
    except (OSError, ValueError) as err:
        raise CliError(f"no webhook secret for the simulated provider: {err}") from None
    where = "FESTPAY_PROVIDER_SECRET" if settings.provider_secret else str(settings.data_dir / "provider-secret")
    try:
        _serve_child(lambda: provider_sim_service(secret, port), "the simulated provider", port,
                     args.stop_on_stdin_eof,
                     lambda url: f"Simulated payment provider at {url}, webhooks signed with the secret in {where}  "
                                 "(Ctrl-C stops)")
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return 0


def _event_id(conn: psycopg.Connection, wanted: str | None) -> int | None:
    if wanted is None:
        return None
    events = conn.execute("SELECT id, name FROM api.events()").fetchall()
    wanted = wanted.strip()
    matches = [e for e in events if (wanted.isdigit() and e[0] == int(wanted)) or e[1] == wanted]
    if not matches:
        raise CliError(f"no event {wanted!r}; events: " + ", ".join(f"{i} {n!r}" for i, n in events))
    return matches[0][0]


def cmd_tse_verify(args, settings: Settings) -> int:
    """Re-check every stored signature from the public key and the log message rebuilt from the ledger."""
    from .tse.audit import verify_ledger

    url = args.database_url or _admin_url(settings)
    with psycopg.connect(url, autocommit=True) as conn:
        event_id = _event_id(conn, args.event)
        report = verify_ledger(conn, event_id)
    scope = f"event {event_id}" if event_id is not None else "all events"
    for failure in report.failures[: args.show]:
        print(f"FAIL transaction {failure.transaction_id}: {failure.reason}")
    if len(report.failures) > args.show:
        print(f"... and {len(report.failures) - args.show} more failures")
    tses = ", ".join(f"{serial[:16]}…: {n}" for serial, n in sorted(report.per_tse.items())) or "none"
    print(f"TSE signatures of {scope}: {report.checked} checked, {report.checked - len(report.failures)} valid, "
          f"{len(report.failures)} failed; {report.late} signed late; {report.unsigned} receipts still waiting "
          f"to be signed; per TSE: {tses}")
    return 0 if report.ok else EXIT_ERROR


# --------------------------------------------------------------------------- registration-code


def _admin_url(settings: Settings) -> str:
    if settings.database_url:
        return libpq_url(settings.database_url)
    pg = _cluster(settings)
    if not pg.is_running():
        raise CliError("the embedded cluster is not running; start it with `festpay run` or `festpay db start`",
                       EXIT_NOT_RUNNING)
    return pg.url()


def cmd_registration_code(args, settings: Settings) -> int:
    """Print a one-time registration code for a position of an event; the code is the LAST line."""
    with psycopg.connect(_admin_url(settings), autocommit=True) as conn:
        events = conn.execute("SELECT id, name FROM api.events()").fetchall()
        if not events:
            raise CliError("there is no event yet; `festpay run` loads the demo event")
        if args.event is None:
            event = events[0]
        else:
            wanted = args.event.strip()
            matches = [e for e in events if (wanted.isdigit() and e[0] == int(wanted)) or e[1] == wanted]
            if not matches:
                raise CliError(f"no event {wanted!r}; events: " + ", ".join(f"{i} {n!r}" for i, n in events))
            event = matches[0]
        try:
            code = conn.execute("SELECT api.create_registration_code(%s, %s)", (event[0], args.position)).fetchone()[0]
        except psycopg.Error as err:
            raise CliError(f"{(err.diag.message_primary or str(err)).strip()}") from None
    print(f"Registration code for position {args.position!r} of event {event[0]} {event[1]!r} (works once):")
    print(code)
    return 0


# --------------------------------------------------------------------------- admin


def read_new_password(stream=None) -> str:
    """The new user's password: typed twice at a prompt (getpass) when stdin is a terminal, else stdin's first line."""
    stream = stream or sys.stdin
    if stream.isatty():
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Password again: "):
            raise CliError("the two passwords differ")
    else:
        password = stream.readline().rstrip("\r\n")
    if not password:
        raise CliError("no password given")
    return password


def cmd_admin_create_user(args, settings: Settings) -> int:
    """An admin user of the admin site (``api.create_admin_user``, as the DBA)."""
    password = read_new_password()
    with psycopg.connect(_admin_url(settings), autocommit=True) as conn:
        try:
            user_id = conn.execute("SELECT * FROM api.create_admin_user(%s, %s, %s)",
                                   (args.username, args.role, password)).fetchone()[0]
        except psycopg.Error as err:
            raise CliError((err.diag.message_primary or str(err)).strip()) from None
    print(f"Created admin user {args.username!r} with role {args.role!r} (id {user_id}); sign in at "
          f"{admin_site_url(settings)}")
    return 0


# --------------------------------------------------------------------------- migrate


def cmd_migrate(args, settings: Settings) -> int:
    if settings.database_url:
        migrate(settings.database_url)
        print("Migrated (DATABASE_URL).")
        return 0
    pg = _cluster(settings)
    try:
        pg.acquire_lock()
    except ClusterLocked as err:
        # `festpay run` owns the cluster: migrate it in place if it is up.
        if not pg.is_running():
            raise CliError(f"{err}; and its server is not up yet, try again") from None
        migrate(pg.url())
        print(f"Migrated {pg.url()}")
        return 0
    started = False
    try:
        if not pg.is_running():
            pg.start()
            started = True
        migrate(pg.url())
        print(f"Migrated {pg.url()}")
    finally:
        try:
            if started:
                pg.stop()
        finally:
            pg.release_lock()
    return 0


# --------------------------------------------------------------------------- db


def cmd_db_start(args, settings: Settings) -> int:
    pg = _cluster(settings)
    try:
        with pg.locked():
            started = pg.start()
    except ClusterLocked:
        if not pg.is_running():
            raise
        started = False
    print(("Started" if started else "Already running") + f": {pg.psql_command()}")
    return 0


def cmd_db_stop(args, settings: Settings) -> int:
    pg = _cluster(settings)
    try:
        with pg.locked():
            stopped = pg.stop()
    except ClusterLocked as err:
        raise CliError(f"{err} — stop that run with Ctrl-C instead") from None
    print("Stopped." if stopped else "Not running.")
    return 0


def cmd_db_status(args, settings: Settings) -> int:
    pg = _cluster(settings)
    if settings.database_url:
        print(f"DATABASE_URL is set: festpay uses {_mask_password(libpq_url(settings.database_url))}")
        print("embedded cluster (not used while DATABASE_URL is set):")
    print(f"  root:        {pg.root}")
    print(f"  data dir:    {pg.data_dir}" + ("" if pg.is_initialized() else "  (not initialised)"))
    pid = pg.running_pid()
    holder = pg.lock_holder()
    print("  server:      " + (f"running (pid {pid})" if pid else "stopped"))
    print("  festpay run: " + (f"active (pid {holder})" if holder else "not active"))
    if pg.is_initialized():
        print(f"  psql:        {pg.psql_command()}")
    return 0 if pid else EXIT_NOT_RUNNING


def _target_url(args, settings: Settings) -> tuple[str, EmbeddedPostgres | None]:
    if settings.database_url and not args.embedded:
        if args.dbname or args.user:
            raise CliError("--dbname/--user only apply to the embedded cluster (or use --embedded)")
        return libpq_url(settings.database_url), None
    pg = _cluster(settings)
    if not pg.is_initialized():
        raise CliError(f"no cluster in {pg.root} yet; run `festpay run` or `festpay db start` first")
    if getattr(args, "tcp", False):
        return pg.tcp_url(args.dbname or "festpay", args.user or "postgres"), pg
    return pg.url(args.dbname or "festpay", args.user or "postgres"), pg


def cmd_db_url(args, settings: Settings) -> int:
    url, _ = _target_url(args, settings)
    print(url)
    return 0


def cmd_db_env(args, settings: Settings) -> int:
    """Shell lines setting libpq's PG* variables, for psql, pg_prove, pgbench: eval "$(festpay db env)"."""
    pg = _cluster(settings)
    if not pg.is_initialized():
        raise CliError(f"no cluster in {pg.root} yet; run `festpay run` or `festpay db start` first")
    values = {
        "PGHOST": str(pg.socket_dir),
        "PGPORT": str(pg.port),
        "PGUSER": args.user or "postgres",
        "PGDATABASE": args.dbname or "festpay",
    }
    for key, value in values.items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


def cmd_db_psql(args, settings: Settings) -> int:
    url, pg = _target_url(args, settings)
    if pg is not None and not pg.is_running():
        raise CliError("the embedded cluster is not running; `festpay db start` or `festpay run` first",
                       EXIT_NOT_RUNNING)
    psql = pg.psql_path if pg is not None else shutil.which("psql")
    if not psql:
        raise CliError("psql not found; install postgresql-client")
    extra = list(args.psql_args)
    if extra[:1] == ["--"]:
        extra = extra[1:]
    sys.stdout.flush()
    os.execv(psql, [psql, url, *extra])


def cmd_db_destroy(args, settings: Settings) -> int:
    pg = _cluster(settings)
    if not args.yes:
        raise CliError(f"this deletes the cluster in {pg.data_dir} with all data; add --yes")
    try:
        with pg.locked():
            pg.destroy()
    except ClusterLocked as err:
        raise CliError(f"{err} — stop it first") from None
    print(f"Deleted the cluster of {pg.root}.")
    return 0


# --------------------------------------------------------------------------- backup


def _backup_cluster(settings: Settings) -> EmbeddedPostgres:
    """The embedded cluster, which `festpay backup` serves; refused when DATABASE_URL points elsewhere."""
    if settings.database_url:
        raise CliError("DATABASE_URL is set: festpay backup handles the embedded cluster only; "
                       "configure pgBackRest on that server")
    pg = _cluster(settings)
    if not pg.is_initialized():
        raise CliError(f"no cluster in {pg.root} yet; run `festpay run` or `festpay db start` first")
    return pg


def cmd_backup_init(args, settings: Settings) -> int:
    """pgBackRest for the embedded cluster: its config, WAL archiving (a restart), stanza-create, check."""
    pg = _backup_cluster(settings)
    try:
        with pg.locked():
            output = backup.init(pg, settings.backup_directory)
    except ClusterLocked as err:
        raise CliError(f"{err} — WAL archiving needs a restart: stop it (Ctrl-C), run `festpay backup init`, "
                       "start it again") from None
    if output:
        print(output)
    print(f"Backups set up: repository {settings.backup_directory / 'repo'}, WAL archiving on. "
          "Take the first one: festpay backup run")
    return 0


def cmd_backup_run(args, settings: Settings) -> int:
    """A backup of the embedded cluster; online while `festpay run` serves it."""
    pg = _backup_cluster(settings)
    try:
        with pg.locked():
            output = backup.run(pg, settings.backup_directory, args.type)
    except ClusterLocked:
        if not pg.is_running():
            raise
        output = backup.run(pg, settings.backup_directory, args.type)
    if output:
        print(output)
    print(backup.info(pg, settings.backup_directory))
    return 0


def cmd_backup_info(args, settings: Settings) -> int:
    print(backup.info(_backup_cluster(settings), settings.backup_directory))
    return 0


def parse_restore_time(text: str) -> datetime:
    """``2026-12-06 04:30:00+00`` (ISO 8601 with a time zone) -> an aware datetime."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CliError(f"--to {text!r} is not a time like '2026-12-06 04:30:00+00'") from None
    if when.tzinfo is None:
        raise CliError(f"--to {text!r} needs a time zone, e.g. '2026-12-06 04:30:00+00'")
    return when


def cmd_backup_restore(args, settings: Settings) -> int:
    """Restore the embedded cluster from the repository (to --to, or to the end of the archived WAL)."""
    target = parse_restore_time(args.to) if args.to else None
    pg = _backup_cluster(settings)
    try:
        with pg.locked():
            was_running = pg.is_running()
            output = backup.restore(pg, settings.backup_directory, target)
            if not was_running:
                pg.stop()
    except ClusterLocked as err:
        raise CliError(f"{err} — a restore replaces the cluster's data: stop that run (Ctrl-C) first") from None
    if output:
        print(output)
    print(f"Restored {pg.data_dir}" + (f" to {target.isoformat(sep=' ')}" if target else
                                       " to the end of the archived WAL")
          + ".")
    return 0


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="festpay", description="Festpay: cashless festival payments.")
    parser.add_argument("-v", "--verbose", action="store_true", help="more log output")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="start the database, migrate, load demo data, serve until Ctrl-C")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("serve", help="the HTTP gateway only (127.0.0.1:FESTPAY_HTTP_PORT), until Ctrl-C")
    p.add_argument("--port", type=int, help="port (default FESTPAY_HTTP_PORT or 8080)")
    p.add_argument("--apps", default=",".join(APPS),
                   help="what to serve, comma-separated: terminal (the terminal API), admin (the admin site at "
                        "/admin/), portal (the customer portal at /portal/); default: terminal,admin,portal")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("registration-code", help="make a one-time terminal registration code (printed last)")
    p.add_argument("--position", required=True, help='position name, e.g. "Bar" or "Top-up"')
    p.add_argument("--event", help="event id or name (default: the first event)")
    p.set_defaults(func=cmd_registration_code)

    admin = sub.add_parser("admin", help="the admin site's users")
    adminsub = admin.add_subparsers(dest="admin_command", required=True, metavar="ACTION")
    p = adminsub.add_parser("create-user", help="create an admin user (password from a prompt, or stdin's first line)")
    p.add_argument("--username", required=True, help="lower-case user name")
    p.add_argument("--role", required=True, help="admin, finance, support or viewer (ledger.admin_role)")
    p.set_defaults(func=cmd_admin_create_user)

    p = sub.add_parser("migrate", help="apply pending migrations and (re)apply all procedures")
    p.set_defaults(func=cmd_migrate)

    db = sub.add_parser("db", help="the embedded PostgreSQL cluster")
    dbsub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    dbsub.add_parser("start", help="start it (creating it on first use)").set_defaults(func=cmd_db_start)
    dbsub.add_parser("stop", help="stop it").set_defaults(func=cmd_db_stop)
    dbsub.add_parser("status", help="show where it is and whether it runs (exit 3: stopped)").set_defaults(
        func=cmd_db_status
    )
    for name, func, helptext in (
        ("url", cmd_db_url, "print the connection URL (DATABASE_URL if set)"),
        ("psql", cmd_db_psql, "open psql on the database (DATABASE_URL if set); extra args after --"),
    ):
        p = dbsub.add_parser(name, help=helptext)
        p.add_argument("--dbname", "-d", help="database (default festpay)")
        p.add_argument("--user", "-U", help="role to connect as (default postgres; socket auth is trust)")
        p.add_argument("--embedded", action="store_true", help="use the embedded cluster even if DATABASE_URL is set")
        if name == "url":
            p.add_argument("--tcp", action="store_true", help="TCP URL with the superuser password instead")
        else:
            p.add_argument("psql_args", nargs=argparse.REMAINDER, help="passed on to psql")
        p.set_defaults(func=func)
    p = dbsub.add_parser("env", help='print PGHOST/PGPORT/PGUSER/PGDATABASE exports: eval "$(festpay db env)"')
    p.add_argument("--dbname", "-d", help="database (default festpay)")
    p.add_argument("--user", "-U", help="role (default postgres)")
    p.set_defaults(func=cmd_db_env)
    p = dbsub.add_parser("destroy", help="stop and delete the cluster with all its data")
    p.add_argument("--yes", action="store_true", help="really delete")
    p.set_defaults(func=cmd_db_destroy)

    bk = sub.add_parser("backup", help="backups and point-in-time restore of the embedded cluster (pgBackRest)")
    bksub = bk.add_subparsers(dest="backup_command", required=True, metavar="ACTION")
    bksub.add_parser("init", help="configure pgBackRest, turn on WAL archiving (restarts the cluster), check").set_defaults(
        func=cmd_backup_init)
    p = bksub.add_parser("run", help="take a backup (online while festpay run serves the cluster)")
    p.add_argument("--type", choices=backup.BACKUP_TYPES,
                   help="full, incr or diff (default: incr, a full one when there is none yet)")
    p.set_defaults(func=cmd_backup_run)
    bksub.add_parser("info", help="list the backups and the archived WAL").set_defaults(func=cmd_backup_info)
    p = bksub.add_parser("restore", help="restore the cluster from the backups (festpay run must be stopped)")
    p.add_argument("--to", metavar="TIME", help="point in time with a time zone, e.g. '2026-12-06 04:30:00+00' "
                                                "(default: the end of the archived WAL)")
    p.set_defaults(func=cmd_backup_restore)

    p = sub.add_parser("relay", help="the outbox relay: sign committed receipts with the TSE, check and refund online "
                                     "top-ups with the payment provider, until Ctrl-C")
    p.add_argument("--tse-url", help="TSE service URL (default FESTPAY_TSE_URL or the local 127.0.0.1:FESTPAY_TSE_PORT)")
    p.add_argument("--tse-dir", help="sign with a software TSE opened in this directory instead of a service")
    p.add_argument("--provider-url", help="payment provider URL (default FESTPAY_PROVIDER_URL or the simulated "
                                          "provider of `festpay run` on 127.0.0.1:FESTPAY_PROVIDER_PORT)")
    p.add_argument("--poll", type=float, default=2.0, help="seconds between polls when no NOTIFY comes (default 2)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="tills signed for at the same time, each worker with its own database connection "
                        "(default FESTPAY_RELAY_WORKERS or 4)")
    p.set_defaults(func=cmd_relay)

    tse = sub.add_parser("tse", help="the TSE: serve the software TSE, verify stored signatures")
    tsesub = tse.add_subparsers(dest="tse_command", required=True, metavar="ACTION")
    p = tsesub.add_parser("serve", help="the software TSE as an HTTP service on 127.0.0.1 (prints READY <url>)")
    p.add_argument("--dir", help="the TSE's directory (default FESTPAY_TSE_DIR or data/tse)")
    p.add_argument("--port", type=int, help="port (default FESTPAY_TSE_PORT or 8081; 0: a free one)")
    p.add_argument("--stop-on-stdin-eof", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_tse_serve)
    p = tsesub.add_parser("verify", help="re-check every stored signature against the ledger (exit 1 on failure)")
    p.add_argument("--event", help="only this event (id or name)")
    p.add_argument("--database-url", help="read from this database (owner or superuser; default: festpay's)")
    p.add_argument("--show", type=int, default=20, help="print at most this many failures (default 20)")
    p.set_defaults(func=cmd_tse_verify)

    p = sub.add_parser("provider-sim", help="the simulated payment provider on 127.0.0.1, a test double "
                                            "(prints READY <url>)")
    p.add_argument("--port", type=int, help="port (default FESTPAY_PROVIDER_PORT or 8082; 0: a free one)")
    p.add_argument("--stop-on-stdin-eof", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_provider_sim)

    # `festpay terminal ...`: the reference terminal; all of it lives in python_gateway/terminal/cli.py.
    from .terminal.cli import add_parser as add_terminal_parser

    add_terminal_parser(sub)

    # `festpay receipt ...`: lives in python_gateway/receipts.py.
    from .receipts import add_parser as add_receipt_parser

    add_receipt_parser(sub, admin_url=_admin_url)

    # `festpay export dsfinvk ...`: lives in python_gateway/dsfinvk.py.
    from .dsfinvk import add_parser as add_export_parser

    add_export_parser(sub, admin_url=_admin_url, event_id=_event_id)

    # `festpay ha ...`: lives in python_gateway/ha.py.
    from .ha import add_parser as add_ha_parser

    add_ha_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s", stream=sys.stderr
    )
    if not args.verbose:
        logging.getLogger("yoyo").setLevel(logging.WARNING)
    try:
        settings = load_settings()
        return args.func(args, settings)
    except (CliError, ClusterLocked) as err:
        print(f"festpay: {err}", file=sys.stderr)
        return getattr(err, "exit_code", EXIT_ERROR)
    except (EmbeddedPostgresError, MigrationError, ConfigError, GatewayError) as err:
        print(f"festpay: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except psycopg.OperationalError as err:
        print(f"festpay: cannot reach the database: {str(err).strip()}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("festpay: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
