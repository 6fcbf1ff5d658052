"""Benchmarks: ``make bench`` (``python -m python_gateway.bench``).

One run builds its own throwaway PostgreSQL cluster (EmbeddedPostgres in a temporary
folder, destroyed at the end, also on errors and Ctrl-C) and runs named sections in order:

``tpcb``      the yardstick: ``pgbench -i -s 10`` then the built-in tpcb-like script.
``purchase``  the Festpay purchase flow through the api functions, as the gateway role:
              one pgbench transaction = one purchase = two database transactions
              (``api.reserve`` then ``api.replicate`` with state Committed), in two
              scenarios: ``spread`` (20 merchants) and ``hot`` (all sales at one merchant).
``gateway``   the terminal HTTP API end to end, in its own fresh database of the cluster: the real gateway
              (2 processes side by side on one 127.0.0.1 port, SO_REUSEPORT) and one asyncio load generator
              process (:mod:`python_gateway.loadgen`) acting as 32 terminals, every request signed.  A purchase
              = tag sync + reserve + replication (Committed).  Reports purchases/s at full load (closed loop),
              reserve p50/p99 at a fixed offered load of 100 purchases/s (open loop), errors, and GET /health/s
              from the same client at the same concurrency as the yardstick; ledger invariants checked after.
``signing``   fiscal signing, in a fresh gateway database: the software TSE as its own process
              (``festpay tse serve``, its directory in the bench's temp dir) and ONE relay process (``festpay relay``,
              the production relay), both on 127.0.0.1.  ``signatures_per_s``: 2000 committed top-ups pre-booked
              through ``api.topup`` over 8 tills (+ the 512 funding top-ups of a 9th), then the relay drains the
              outbox to empty: (signatures - 1) / (last - first ``signed_at``).  ``sign_lag_p50/p99_ms``: the
              gateway section's open-loop run (100 purchases/s, FESTPAY_BENCH_SECONDS, no warm-up) with the relay
              signing along; per purchase ``tse_signature.signed_at - transaction.committed_at`` in SQL, both now()
              = start of their database transaction (the committing ``api.replicate``, the relay's
              ``api.tse_store``).  Also the outbox lag when the run ends (``api.outbox_lag``) and that every receipt
              is signed exactly once (outbox, signatures and the TSE's transaction counter agree).

``admin``     the admin site over HTTP, in its own fresh database holding a festival of 1,000,000 transactions
              (FESTPAY_BENCH_ADMIN_TRANSACTIONS): event, merchants, terminals and an admin user through the api, the
              ledger rows (top-ups, purchases, items, booking lines, signing requests, running balances) written as the
              owner in one statement each, then checked with ``api.check_invariants()`` and continued by real api
              calls.  ``festpay serve --apps terminal,admin`` as its own process; one client signed in as an admin
              times each page FESTPAY_BENCH_ADMIN_REQUESTS times (default 100, after 5 warm-up rounds, pages taking
              turns): ``/admin/transactions`` unfiltered, by merchant and hour, by UID and state;
              ``/admin/customers/{uid}``; ``/admin/reports/sales-per-hour``; and GET /health as the yardstick.
              Prints p95 per page (``admin_transactions_p95_ms`` is the worst filter), goal < 200 ms.
``payout``    payouts after the festival, in its own fresh database: 10,000 customers
              (FESTPAY_BENCH_PAYOUT_CUSTOMERS) topped up through ``api.topup``, signed in to the portal and their payout
              requests saved through ``api.portal_payout_set`` (German IBANs; donating nothing, a part or everything),
              all eligible.  The portal (``festpay serve --apps terminal,portal``, its own process): GET /portal/ and
              /portal/payout of a signed-in visitor against GET /health on the same connection.  Then
              FESTPAY_BENCH_PAYOUT_ROUNDS rounds (default 3), as finance through the api: a yardstick (one single-row
              UPDATE and INSERT per customer in one PL/pgSQL loop and transaction), ``api.admin_payouts``,
              ``api.admin_payout_run_create`` of everybody, ``api.admin_payout_export`` with the SEPA file built and
              validated (:mod:`python_gateway.sepa`), then revoke, and done in the last round.  Run totals, the SEPA
              file's count and sum, balances after done and ``api.check_invariants()`` are checked; costs per customer
              and as yardstick rows.

Durability settings are never touched (synchronous_commit and fsync stay on): the
numbers are what a festival would get from this machine.  Each section returns
``name=value`` results; the run ends with all of them, one per line, and exits non-zero
when a section failed (pgbench errors, wrong purchase counts, broken ledger invariants).

Environment: FESTPAY_BENCH_SECONDS (duration of every pgbench run, and of the gateway's full-load and 100/s
runs; its health run takes half; default 20), FESTPAY_BENCH_TERMINALS (gateway section, default 32),
FESTPAY_BENCH_GATEWAYS (gateway processes, default 2; also for signing), PG_BIN (server binaries, as for ``festpay run``).
``python -m python_gateway.bench gateway`` (or ``signing``, ``admin``, ``payout``) runs only the named section(s).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import html.parser
import itertools
import json
import logging
import math
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Callable
from urllib.parse import quote
from zoneinfo import ZoneInfo

import psycopg

from .embedded import EmbeddedPostgres
from .migrate import migrate
from .processes import ProcessFailure, start_logged, stop_process, tool_env

log = logging.getLogger("festpay.bench")

DEFAULT_SECONDS = 20
CLIENTS = 16
THREADS = 2
TPCB_SCALE = 10

MERCHANTS = 20
CUSTOMERS = 10_000
PRICE = 450                       # cents: one product, one unit per purchase
FUNDING = 1_000_000               # cents per customer: ~2200 purchases each, far more than a run makes
UID_BASE = 10 ** 15               # UID of customer c = 16 decimal digits (valid hex): str(UID_BASE + c)
ROUND_NUMBER_OFFSET = 10 ** 13    # terminal numbers of round r start at r * 10^13 (spread), + 10^12 (hot)
HOT_NUMBER_OFFSET = 10 ** 12
WARMUP_NUMBER_OFFSET = 2 * 10 ** 12
DEFAULT_ROUNDS = 6                # tpcb, spread and hot interleaved this many times (each order twice); medians
WARMUP_SECONDS = 5                # the first purchase run on a fresh database is ~30% slower, whichever scenario

SAMPLE_INTERVAL_S = 0.2           # pg_stat_activity samples: 5 per second
GOAL_PURCHASE_VS_TPCB = 0.8
GOAL_HOT_VS_SPREAD = 0.9


class BenchFailure(RuntimeError):
    """A benchmark ran but its result cannot be trusted (errors, wrong counts, broken invariants)."""


# --------------------------------------------------------------------------- context


@dataclass
class Bench:
    """What every section gets: the cluster, the settings and the results so far."""

    cluster: EmbeddedPostgres
    seconds: int
    clients: int = CLIENTS
    threads: int = THREADS
    rounds: int = DEFAULT_ROUNDS
    workdir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))
    results: dict[str, str] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    unvacuumed: set[str] = field(default_factory=set)   # databases a pgbench run wrote to since their last VACUUM

    @property
    def pgbench(self) -> str:
        candidate = self.cluster.bindir / "pgbench"
        if os.access(candidate, os.X_OK):
            return str(candidate)
        found = shutil.which("pgbench")
        if not found:
            raise BenchFailure("pgbench not found (install postgresql-contrib / the postgresql server package)")
        return found

    def conn_args(self, dbname: str, user: str = "postgres") -> list[str]:
        return ["-h", str(self.cluster.socket_dir), "-p", str(self.cluster.port), "-U", user, dbname]

    def connect(self, dbname: str, **kwargs) -> psycopg.Connection:
        return self.cluster.connect(dbname, **kwargs)

    def record(self, name: str, value) -> None:
        if isinstance(value, float):
            value = f"{value:.3f}"
        self.results[name] = str(value)


Section = Callable[[Bench], None]


# --------------------------------------------------------------------------- pgbench


@dataclass
class PgbenchResult:
    tps: float
    processed: int
    failed: int
    aborted_clients: int
    latency_ms: float | None
    statements: list[tuple[float, int, str]]   # (latency ms, failures, command)
    returncode: int
    output: str
    cpu_ms: float = 0.0                          # machine CPU (all processes) per transaction


def run_tool(args: list[str], *, timeout: float) -> subprocess.CompletedProcess:
    """Runs a client tool; kills it when we are interrupted."""
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          stdin=subprocess.DEVNULL, env=tool_env()) as proc:
        try:
            out, _ = proc.communicate(timeout=timeout)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        return subprocess.CompletedProcess(args, proc.returncode, out, None)


def parse_pgbench(out: str, returncode: int) -> PgbenchResult:
    def number(pattern: str, cast=float, default=None):
        m = re.search(pattern, out, re.MULTILINE)
        return cast(m.group(1)) if m else default

    statements = []
    in_statements = False
    for line in out.splitlines():
        if line.startswith("statement latencies"):
            in_statements = True
            continue
        if in_statements:
            m = re.match(r"^\s+([\d.]+)\s+(\d+)\s+(.*)$", line)
            if m:
                statements.append((float(m.group(1)), int(m.group(2)), m.group(3).strip()))
            elif line.strip():
                in_statements = False
    return PgbenchResult(
        tps=number(r"^tps = ([\d.]+) \(without initial connection time\)", default=0.0),
        processed=number(r"^number of transactions actually processed: (\d+)", int, 0),
        failed=number(r"^number of failed transactions: (\d+)", int, 0),
        aborted_clients=len(re.findall(r"client \d+ (?:script \d+ )?aborted", out)),
        latency_ms=number(r"^latency average = ([\d.]+) ms"),
        statements=statements,
        returncode=returncode,
        output=out,
    )


class WaitSampler:
    """Samples pg_stat_activity of one database a few times per second, in a thread.

    Every client backend counts once per sample: ``CPU`` when active without a wait
    event, else ``type:event`` (``Client:ClientRead`` = waiting for pgbench's next command).
    """

    def __init__(self, bench: Bench, dbname: str):
        self.bench, self.dbname = bench, dbname
        self.counts: collections.Counter[str] = collections.Counter()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"wait-sampler-{dbname}", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            with self.bench.connect("postgres", autocommit=True) as conn:
                while not self._stop.is_set():
                    rows = conn.execute(
                        """SELECT state, wait_event_type, wait_event FROM pg_stat_activity
                            WHERE datname = %s AND backend_type = 'client backend' AND pid <> pg_backend_pid()""",
                        (self.dbname,),
                    ).fetchall()
                    for state, wtype, wevent in rows:
                        if wtype is None:
                            key = "CPU" if state == "active" else f"(no wait, {state})"
                        else:
                            key = f"{wtype}:{wevent}"
                        self.counts[key] += 1
                    self.samples += 1
                    self._stop.wait(SAMPLE_INTERVAL_S)
        except BaseException as err:  # reported, never fatal: the benchmark itself goes on
            self.error = err

    def __enter__(self) -> "WaitSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def top(self, n: int = 8) -> list[tuple[str, int, float]]:
        total = sum(self.counts.values()) or 1
        return [(key, count, 100.0 * count / total) for key, count in self.counts.most_common(n)]


def wal_snapshot(bench: Bench) -> dict[str, int]:
    with bench.connect("postgres", autocommit=True) as conn:
        row = conn.execute("SELECT wal_records, wal_fpi, wal_bytes::bigint, wal_sync FROM pg_stat_wal").fetchone()
        mx = conn.execute(
            "SELECT coalesce(sum(blks_zeroed), 0)::bigint FROM pg_stat_slru WHERE name LIKE 'Multi%'"
        ).fetchone()[0]
    return {"wal_records": row[0], "wal_fpi": row[1], "wal_bytes": row[2], "wal_sync": row[3],
            "multixact_pages": mx}


def cpu_snapshot() -> tuple[list[int], float]:
    """Machine-wide jiffies (user, nice, system, idle, iowait, irq, softirq, steal) and CPU seconds of waited children."""
    try:
        with open("/proc/stat") as f:
            jiffies = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        jiffies = []
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return jiffies, children.ru_utime + children.ru_stime


def cpu_report(before: tuple[list[int], float], after: tuple[list[int], float], seconds: float) -> tuple[str, float]:
    """('machine CPU busy 97% (user 70%, ...), pgbench itself 0.05 cores', busy cores) for the interval."""
    (j0, c0), (j1, c1) = before, after
    text = f"pgbench itself {(c1 - c0) / max(seconds, 0.001):.2f} cores"
    busy_cores = 0.0
    if j0 and j1:
        d = [b - a for a, b in zip(j0, j1)]
        total = sum(d) or 1
        user, nice, system, idle, iowait, irq, softirq, steal = (100.0 * x / total for x in d)
        busy_cores = (100 - idle - iowait) / 100 * (os.cpu_count() or 1)
        text = (f"machine CPU busy {100 - idle - iowait:.0f}% = {busy_cores:.2f} cores (user {user + nice:.0f}%, "
                f"system {system + irq + softirq:.0f}%, steal {steal:.0f}%), iowait {iowait:.0f}%; " + text)
    return text, busy_cores


def vacuum_previous_runs(bench: Bench) -> None:
    """VACUUM (ANALYZE) the databases earlier runs wrote to, so that every run starts clean: otherwise autovacuum
    cleans up after one run during the next (the yardstick's or a purchase run's, whichever comes next), and the
    planner keeps the statistics of before it (the ledger's item table starts empty: its lookups would stay
    sequential scans until autovacuum comes by). pgbench does the same for its own tables before every tpcb run."""
    for dbname in sorted(bench.unvacuumed):
        started = time.monotonic()
        with bench.connect(dbname, autocommit=True) as conn:
            conn.execute("VACUUM (ANALYZE)")
        print(f"VACUUM (ANALYZE) {dbname} after the previous run: {time.monotonic() - started:.1f}s")
    bench.unvacuumed.clear()


def run_pgbench(bench: Bench, label: str, dbname: str, args: list[str], *, user: str = "postgres",
                seconds: int | None = None) -> PgbenchResult:
    """One timed pgbench run with wait-event sampling; prints what it saw."""
    seconds = seconds or bench.seconds
    vacuum_previous_runs(bench)
    with bench.connect(dbname, autocommit=True) as conn:
        conn.execute("CHECKPOINT")        # same starting point for every run: no checkpoint mid-run
    bench.unvacuumed.add(dbname)
    cmd = [bench.pgbench, "-c", str(bench.clients), "-j", str(bench.threads), "-T", str(seconds), "-r",
           *args, *bench.conn_args(dbname, user)]
    print(f"\n== {label}: {bench.clients} clients, {bench.threads} threads, {seconds}s", flush=True)
    before = wal_snapshot(bench)
    cpu_before, t0 = cpu_snapshot(), time.monotonic()
    with WaitSampler(bench, dbname) as sampler:
        proc = run_tool(cmd, timeout=seconds + 300)
    cpu_after, elapsed = cpu_snapshot(), time.monotonic() - t0
    after = wal_snapshot(bench)
    result = parse_pgbench(proc.stdout, proc.returncode)
    if result.returncode != 0 or result.tps <= 0:
        print(textwrap.indent(result.output.strip()[-4000:], "   | "))
    print(f"   tps={result.tps:.1f}  processed={result.processed}  failed={result.failed}"
          f"  aborted_clients={result.aborted_clients}  latency_avg={result.latency_ms} ms")
    n = max(result.processed, 1)
    print(f"   per pgbench transaction: WAL {(after['wal_bytes'] - before['wal_bytes']) / n:.0f} bytes, "
          f"{(after['wal_records'] - before['wal_records']) / n:.1f} records, "
          f"{(after['wal_fpi'] - before['wal_fpi']) / n:.2f} full-page images; "
          f"WAL fsyncs {(after['wal_sync'] - before['wal_sync']) / max(elapsed, 0.001):.0f}/s; "
          f"multixact SLRU pages zeroed {after['multixact_pages'] - before['multixact_pages']}")
    cpu_text, busy_cores = cpu_report(cpu_before, cpu_after, elapsed)
    result.cpu_ms = 1000.0 * busy_cores * elapsed / n
    print(f"   {cpu_text}; {result.cpu_ms:.2f} ms of machine CPU per pgbench transaction")
    print("   statement latencies (ms, failures):")
    for latency, failures, command in result.statements:
        if not command.startswith("\\"):
            print(f"     {latency:8.3f} {failures:4d}  {command[:110]}")
    print(f"   top wait events ({sampler.samples} samples of {bench.clients} backends; "
          "Client:ClientRead = waiting for pgbench):")
    for key, count, pct in sampler.top():
        print(f"     {pct:5.1f}%  {key}")
    if sampler.error:
        print(f"   (wait sampler stopped early: {sampler.error})")
    return result


def check_pgbench(bench: Bench, label: str, result: PgbenchResult) -> None:
    problems = []
    if result.returncode != 0:
        problems.append(f"pgbench exit status {result.returncode}")
    if result.failed:
        problems.append(f"{result.failed} failed transactions")
    if result.aborted_clients:
        problems.append(f"{result.aborted_clients} clients aborted")
    if result.tps <= 0 or result.processed <= 0:
        problems.append("no tps reported")
    if problems:
        bench.failures.append(f"{label}: " + ", ".join(problems))


# --------------------------------------------------------------------------- section: tpcb


def setup_tpcb(bench: Bench) -> None:
    """The yardstick's database: pgbench's own TPC-B-like tables at scale 10."""
    bench.cluster.create_database("pgbench")
    started = time.monotonic()
    init = run_tool([bench.pgbench, "-i", "-q", "-s", str(TPCB_SCALE), *bench.conn_args("pgbench")], timeout=600)
    if init.returncode != 0:
        raise BenchFailure(f"pgbench -i failed:\n{init.stdout.strip()[-2000:]}")
    print(f"pgbench -i -s {TPCB_SCALE}: {time.monotonic() - started:.1f}s")


def run_tpcb(bench: Bench, round_no: int) -> PgbenchResult:
    """One timed run of the yardstick: pgbench's TPC-B-like transaction on this machine and cluster."""
    result = run_pgbench(bench, f"round {round_no}: tpcb-like (yardstick)", "pgbench", ["-b", "tpcb-like"])
    check_pgbench(bench, "tpcb", result)
    return result


# --------------------------------------------------------------------------- section: purchase

# One pgbench transaction = one purchase at a terminal = two database transactions.
# Terminal numbers: every pgbench client is one till person with a terminal at each merchant
# (assignment a0 + client_id * MERCHANTS + merchant); the client counts its own terminal numbers
# (n, kept per client across transactions, started by -D n=...), so (assignment, number) is unique
# without any chance of collision, like on real terminals.  The hot run starts at another offset.
PURCHASE_SCRIPT = """\
\\set c random(1, {customers})
\\set m {merchant}
\\set a :a0 + :client_id * {merchants} + :m
\\set n :n + 1
\\set uid {uid_base} + :c
SELECT transaction_id FROM api.reserve(:a, :n, ':uid', 1, {price}, '[{{"product_id": :p, "quantity": 1}}]');
SELECT outcome FROM api.replicate(:a, '[{{"terminal_tx_number": :n, "type": "purchase", "state": "Committed", "uid": ":uid", "tag_tx_number": 1, "amount": {price}, "items": [{{"product_id": :p, "quantity": 1}}]}}]');
"""


@dataclass
class FestpaySetup:
    event_id: int
    product_id: int
    first_assignment: int


def fund_customers(conn: psycopg.Connection, event_id: int, customers: int) -> None:
    """Tops up tags UID_BASE + 1 .. UID_BASE + customers with FUNDING cents each, in one statement through the api
    (cash at a new top-up terminal of the event, which must have a 'Top-up' position); commits."""
    topup_terminal = conn.execute(
        "SELECT assignment_id FROM api.register_terminal(api.create_registration_code(%s, 'Top-up'), 'bench top-up')",
        (event_id,),
    ).fetchone()[0]
    conn.commit()
    funded = conn.execute(
        """SELECT count(*) FROM generate_series(1, %s) c,
                  LATERAL api.topup(%s, c, (%s + c)::text, %s, 'cash') t
            WHERE t.state = 'Committed' AND t.balance = %s""",
        (customers, topup_terminal, UID_BASE, FUNDING, FUNDING),
    ).fetchone()[0]
    conn.commit()
    if funded != customers:
        raise BenchFailure(f"only {funded} of {customers} customers were funded")


def setup_festpay(bench: Bench) -> FestpaySetup:
    """Event, 20 merchants with a sale position each, a terminal per (client, merchant), funded customers."""
    started = time.monotonic()
    migrate(bench.cluster.url("festpay"))
    with bench.connect("festpay") as conn:
        event_id = conn.execute(
            "SELECT api.create_event('Bench Festival', 'EUR', %s, 500, %s)", (FUNDING * 10, FUNDING)
        ).fetchone()[0]
        product_id = conn.execute("SELECT api.create_product(%s, 'Beer', %s, 19)", (event_id, PRICE)).fetchone()[0]
        for m in range(1, MERCHANTS + 1):
            conn.execute("SELECT api.create_position(%s, %s, 'sale', api.create_merchant(%s, %s))",
                         (event_id, f"Bar {m:02d}", event_id, f"Merchant {m:02d}"))
        conn.execute("SELECT api.create_position(%s, 'Top-up', 'topup')", (event_id,))
        assignments = [
            row[0]
            for row in conn.execute(
                """SELECT (api.register_terminal(api.create_registration_code(%(e)s, format('Bar %%s', lpad(m::text, 2, '0'))),
                                                 format('bench client %%s merchant %%s', c, m))).assignment_id
                     FROM generate_series(0, %(clients)s - 1) c, generate_series(1, %(merchants)s) m
                    ORDER BY c, m""",
                {"e": event_id, "clients": bench.clients, "merchants": MERCHANTS},
            ).fetchall()
        ]
        first = min(assignments)
        if sorted(assignments) != list(range(first, first + len(assignments))):
            raise BenchFailure("terminal assignments did not get consecutive ids")
        # The script addresses a terminal as a0 + client * MERCHANTS + (merchant - 1): check that layout.
        layout = conn.execute(
            """SELECT bool_and(a.id = %s + (split_part(a.device, ' ', 3)::int * %s) + split_part(a.device, ' ', 5)::int - 1
                               AND p.name = format('Bar %%s', lpad(split_part(a.device, ' ', 5), 2, '0')))
                 FROM ledger.assignment a JOIN ledger.position p ON p.id = a.position_id
                WHERE a.event_id = %s AND a.device LIKE 'bench client %%'""",
            (first, MERCHANTS, event_id),
        ).fetchone()[0]
        if not layout:
            raise BenchFailure("terminal assignments are not laid out as the purchase script expects")
        fund_customers(conn, event_id, CUSTOMERS)
    with bench.connect("festpay", autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    print(f"festpay setup: event {event_id}, {MERCHANTS} merchants, {len(assignments)} sale terminals "
          f"(assignments {first}..{first + len(assignments) - 1}), {CUSTOMERS} customers funded with {FUNDING} cents "
          f"in {time.monotonic() - started:.1f}s")
    return FestpaySetup(event_id, product_id, first)


def purchase_counts(bench: Bench, event_id: int) -> tuple[int, int]:
    """(committed purchases, purchases in any other state) of the event."""
    with bench.connect("festpay", autocommit=True) as conn:
        return conn.execute(
            """SELECT count(*) FILTER (WHERE state = 'Committed'), count(*) FILTER (WHERE state <> 'Committed')
                 FROM ledger.transaction WHERE event_id = %s AND type = 'purchase'""",
            (event_id,),
        ).fetchone()


def run_purchase_scenario(bench: Bench, setup: FestpaySetup, name: str, merchant: str, first_number: int,
                          *, seconds: int | None = None) -> PgbenchResult:
    script = bench.workdir / f"purchase_{re.sub(r'[^a-z0-9]+', '_', name.lower())}.sql"
    script.write_text(PURCHASE_SCRIPT.format(customers=CUSTOMERS, merchant=merchant, merchants=MERCHANTS,
                                             uid_base=UID_BASE, price=PRICE))
    script.chmod(0o644)
    committed_before, other_before = purchase_counts(bench, setup.event_id)
    result = run_pgbench(
        bench, f"purchase {name}", "festpay",
        ["-n", "-f", str(script), "-D", f"a0={setup.first_assignment}", "-D", f"n={first_number}",
         "-D", f"p={setup.product_id}"],
        user="festpay_terminal", seconds=seconds,
    )
    check_pgbench(bench, f"purchase_{name}", result)
    committed_after, other_after = purchase_counts(bench, setup.event_id)
    committed = committed_after - committed_before
    # pgbench counts a transaction when its last command completed; one cut off by the time limit
    # mid-way is neither counted nor committed (it stays ReservePending), so allow that many.
    print(f"   committed purchases in the ledger: {committed} (pgbench: {result.processed}); "
          f"purchases left in another state: {other_after - other_before}")
    if committed != result.processed or other_after - other_before > bench.clients:
        bench.failures.append(
            f"purchase_{name}: ledger has {committed} committed purchases (+{other_after - other_before} not "
            f"committed), pgbench reported {result.processed}")
    bench.record("purchases_committed", int(bench.results.get("purchases_committed", "0")) + committed)
    return result


def section_ledger(bench: Bench) -> None:
    """The purchase flow through the api as the gateway role, spread over 20 merchants and at one hot merchant,
    against pgbench's tpcb-like run on the same cluster at the same concurrency.

    The three runs are interleaved in rounds (BENCH_ROUNDS times, the order rotating) and each ratio is taken within
    a round, so that drift over the minutes of a run (autovacuum, WAL recycling, caches, a neighbour on the
    machine) touches yardstick and subject alike; the reported figures are the medians over the rounds.
    """
    setup_tpcb(bench)
    setup = setup_festpay(bench)
    # Warm-up (not reported): the first purchase run on the new database is markedly slower than the
    # following ones, whichever scenario goes first; without it the order would decide hot_vs_spread.
    run_purchase_scenario(bench, setup, "warmup", f"random(0, {MERCHANTS - 1})", WARMUP_NUMBER_OFFSET,
                          seconds=WARMUP_SECONDS)
    rounds: list[dict[str, PgbenchResult]] = []
    for r in range(1, bench.rounds + 1):
        offset = r * ROUND_NUMBER_OFFSET
        runs = {
            "tpcb": lambda: run_tpcb(bench, r),
            # spread: each purchase at a random merchant (0-based offset of the client's terminal there)
            "spread": lambda: run_purchase_scenario(bench, setup, f"round {r}: spread", f"random(0, {MERCHANTS - 1})",
                                                    offset),
            # hot: every client sells at merchant 1 (16 terminals of one bar)
            "hot": lambda: run_purchase_scenario(bench, setup, f"round {r}: hot", "0", offset + HOT_NUMBER_OFFSET),
        }
        # Each round starts with the next run (tpcb-spread-hot, spread-hot-tpcb, hot-tpcb-spread): whatever
        # builds up during a round (autovacuum after a purchase run, dirty buffers) does not always fall on one run.
        order = list(runs)[(r - 1) % 3:] + list(runs)[:(r - 1) % 3]
        rounds.append({name: runs[name]() for name in order})

    def median_of(values: list[float]) -> float:
        return statistics.median(values) if values else 0.0

    for key, name in (("tpcb", "tpcb"), ("spread", "purchase_spread"), ("hot", "purchase_hot")):
        unit = "tps" if key == "tpcb" else "per_s"
        bench.record(f"{name}_{unit}", median_of([rd[key].tps for rd in rounds]))
        bench.record(f"{name}_{unit}_rounds", ",".join(f"{rd[key].tps:.0f}" for rd in rounds))
        bench.record(f"{name}_latency_ms", median_of([rd[key].latency_ms or 0.0 for rd in rounds]))
        bench.record(f"{name}_cpu_ms", median_of([rd[key].cpu_ms for rd in rounds]))

    with bench.connect("festpay", autocommit=True) as conn:
        broken = conn.execute("SELECT invariant, subject, detail FROM api.check_invariants()").fetchall()
        open_reserves = conn.execute(
            "SELECT count(*) FROM ledger.transaction WHERE event_id = %s AND state = 'ReservePending'",
            (setup.event_id,),
        ).fetchone()[0]
    for invariant, subject, detail in broken[:20]:
        print(f"   BROKEN {invariant}: {subject}: {detail}")
    bench.record("invariants_broken", len(broken))
    bench.record("open_reserves_after", open_reserves)
    if broken:
        bench.failures.append(f"{len(broken)} ledger invariants broken")

    vs_tpcb = [2 * rd["spread"].tps / rd["tpcb"].tps for rd in rounds if rd["tpcb"].tps > 0]
    hot_vs = [rd["hot"].tps / rd["spread"].tps for rd in rounds if rd["spread"].tps > 0]
    bench.record("purchase_vs_tpcb_rounds", ",".join(f"{v:.3f}" for v in vs_tpcb))
    bench.record("hot_vs_spread_rounds", ",".join(f"{v:.3f}" for v in hot_vs))
    bench.record("purchase_vs_tpcb", median_of(vs_tpcb))
    bench.record("hot_vs_spread", median_of(hot_vs))


# --------------------------------------------------------------------------- section: gateway

GATEWAY_DBNAME = "festpay_gateway_bench"
GATEWAY_TERMINALS = 32            # concurrent terminals (closed loop) and health clients
GATEWAY_TAGS_PER_TERMINAL = 16    # each terminal has its own tags: a tag is never at two tills at once
GATEWAY_PROCESSES = 2             # gateway processes side by side on one port (SO_REUSEPORT)
GATEWAY_RATE = 100.0              # purchases/s offered in the open-loop run
GATEWAY_WARMUP_S = 3
GOAL_GATEWAY_PURCHASES = 300.0
GOAL_GATEWAY_RESERVE_P99_MS = 50.0


def _env_int(name: str, default: int, minimum: int = 1) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit() or int(value) < minimum:
        raise BenchFailure(f"{name}={value!r} must be a whole number of at least {minimum}")
    return int(value)


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _db_counters(bench: Bench) -> dict[str, int]:
    with bench.connect("postgres", autocommit=True) as conn:
        commits, rollbacks = conn.execute(
            "SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = %s", (GATEWAY_DBNAME,)
        ).fetchone()
        wal_syncs = conn.execute("SELECT wal_sync FROM pg_stat_wal").fetchone()[0]
    return {"commits": commits, "rollbacks": rollbacks, "wal_syncs": wal_syncs}


def fresh_database(bench: Bench, name: str) -> None:
    """Database ``name`` on the bench's cluster, dropped if an earlier run left it, created and migrated."""
    bench.cluster.drop_database(name)
    bench.cluster.create_database(name)
    migrate(bench.cluster.url(name))


def setup_gateway_db(bench: Bench, terminals: int, tags_per_terminal: int) -> dict:
    """A fresh database: event, one sale position, N one-time registration codes, funded tags (via the api)."""
    started = time.monotonic()
    fresh_database(bench, GATEWAY_DBNAME)
    customers = terminals * tags_per_terminal
    with bench.connect(GATEWAY_DBNAME) as conn:
        event_id = conn.execute(
            "SELECT api.create_event('Gateway Bench', 'EUR', %s, 500, %s)", (FUNDING * 10, FUNDING)
        ).fetchone()[0]
        product_id = conn.execute("SELECT api.create_product(%s, 'Beer', %s, 19)", (event_id, PRICE)).fetchone()[0]
        conn.execute("SELECT api.create_position(%s, 'Bar', 'sale', api.create_merchant(%s, 'Bar'))",
                     (event_id, event_id))
        conn.execute("SELECT api.create_position(%s, 'Top-up', 'topup')", (event_id,))
        codes = [row[0] for row in conn.execute(
            "SELECT api.create_registration_code(%s, 'Bar') FROM generate_series(1, %s)", (event_id, terminals)
        ).fetchall()]
        fund_customers(conn, event_id, customers)
    with bench.connect(GATEWAY_DBNAME, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")
    print(f"gateway setup: event {event_id}, {terminals} registration codes for 'Bar', {customers} tags funded "
          f"with {FUNDING} cents, in {time.monotonic() - started:.1f}s")
    return {
        "event_id": event_id, "product_id": product_id, "price": PRICE, "funding": FUNDING,
        "terminals": [
            {"code": code, "uids": [str(UID_BASE + 1 + t * tags_per_terminal + k) for k in range(tags_per_terminal)]}
            for t, code in enumerate(codes)
        ],
    }


def start_gateways(bench: Bench, count: int, port: int, extra_args: list[str] | None = None,
                   ) -> list[tuple[subprocess.Popen, Path]]:
    """``count`` gateway processes on 127.0.0.1:port (SO_REUSEPORT when more than one), ready when they return."""
    database_url = bench.cluster.url(GATEWAY_DBNAME, user="festpay_terminal")
    procs: list[tuple[subprocess.Popen, Path]] = []
    try:
        for i in range(count):
            logfile = bench.workdir / f"gateway-{i}.log"
            cmd = [sys.executable, "-m", "python_gateway.loadgen", "serve", "--database-url", database_url,
                   "--port", str(port), *(["--reuse-port"] if count > 1 else []), *(extra_args or [])]
            proc, _ = start_logged(cmd, logfile, "READY", f"gateway {i}")
            procs.append((proc, logfile))
    except BaseException:
        for proc, _ in procs:
            stop_process(proc, "gateway")
        raise
    return procs


def section_gateway(bench: Bench) -> None:
    """Terminals through the real gateway over HTTP: purchases/s at full load (closed loop, N terminals), reserve
    latency at a fixed offered load of 100 purchases/s (open loop), and GET /health at the same concurrency from
    the same client as the yardstick.

    Gateway: ``python -m python_gateway.loadgen serve`` = the real app (create_app, default options), in
    FESTPAY_BENCH_GATEWAYS processes side by side on one 127.0.0.1 port (SO_REUSEPORT).  Load: one asyncio process
    (``python -m python_gateway.loadgen run``), aiohttp, every request signed like a terminal signs it.
    """
    terminals = _env_int("FESTPAY_BENCH_TERMINALS", GATEWAY_TERMINALS)
    processes = _env_int("FESTPAY_BENCH_GATEWAYS", GATEWAY_PROCESSES)
    setup = setup_gateway_db(bench, terminals, GATEWAY_TAGS_PER_TERMINAL)
    setup_file = bench.workdir / "gateway-setup.json"
    setup_file.write_text(json.dumps(setup))
    report_file = bench.workdir / "gateway-report.json"
    full_s, rate_s, health_s = bench.seconds, bench.seconds, max(1, bench.seconds // 2)
    port = _free_port()
    gateways = []
    try:
        gateways = start_gateways(bench, processes, port)
        pids = [proc.pid for proc, _ in gateways]
        print(f"\n== gateway: {processes} gateway process(es) (pids {', '.join(map(str, pids))}) on "
              f"http://127.0.0.1:{port}{' with SO_REUSEPORT' if processes > 1 else ''}; {terminals} terminals, "
              f"warm-up {GATEWAY_WARMUP_S}s, full load {full_s}s, {GATEWAY_RATE:.0f}/s for {rate_s}s, "
              f"health {health_s}s", flush=True)
        cmd = [sys.executable, "-m", "python_gateway.loadgen", "run", "--url", f"http://127.0.0.1:{port}",
               "--setup", str(setup_file), "--out", str(report_file), "--warmup-s", str(GATEWAY_WARMUP_S),
               "--full-s", str(full_s), "--rate", str(GATEWAY_RATE), "--rate-s", str(rate_s),
               "--health-s", str(health_s)]
        for pid in pids:
            cmd += ["--gateway-pid", str(pid)]
        postmaster = bench.cluster.running_pid()
        if postmaster:
            cmd += ["--postgres-pid", str(postmaster)]
        db_before = _db_counters(bench)
        timeout = GATEWAY_WARMUP_S + full_s + rate_s + health_s + 180
        with subprocess.Popen(cmd, stdin=subprocess.DEVNULL, env=tool_env(),
                              cwd=Path(__file__).resolve().parent.parent) as loadgen:
            try:
                returncode = loadgen.wait(timeout=timeout)
            except BaseException:
                stop_process(loadgen, "load generator", timeout=5)
                raise
        for proc, logfile in gateways:
            if proc.poll() is not None:
                bench.failures.append(f"gateway: gateway pid {proc.pid} died during the run")
        if returncode != 0 or not report_file.exists():
            raise BenchFailure(f"the load generator failed (exit status {returncode})")
        db_after = _db_counters(bench)
    finally:
        for proc, logfile in gateways:
            stop_process(proc, "gateway")
            tail = [line for line in logfile.read_text(errors="replace").splitlines()
                    if line.strip() and not line.startswith("READY")]
            if tail:
                print(f"   gateway pid {proc.pid} log (last lines):")
                print(textwrap.indent("\n".join(tail[-15:]), "   | "))

    report = json.loads(report_file.read_text())
    phases = report["phases"]
    full, rate, health = phases["full"], phases["rate"], phases["health"]
    errors = sum(p["errors"] for p in phases.values())
    for p in phases.values():
        for sample in p["error_samples"]:
            print(f"   ERROR [{p['name']}] {sample}")

    with bench.connect(GATEWAY_DBNAME, autocommit=True) as conn:
        broken = conn.execute("SELECT invariant, subject, detail FROM api.check_invariants()").fetchall()
        committed, other = conn.execute(
            """SELECT count(*) FILTER (WHERE state = 'Committed'), count(*) FILTER (WHERE state <> 'Committed')
                 FROM ledger.transaction WHERE event_id = %s AND type = 'purchase'""", (setup["event_id"],)
        ).fetchone()
    completed = sum(p["completed"] for name, p in phases.items() if name != "health")
    for invariant, subject, detail in broken[:20]:
        print(f"   BROKEN {invariant}: {subject}: {detail}")
    print(f"   committed purchases in the ledger: {committed} (load generator: {completed}); "
          f"in another state: {other}")
    if committed != completed or other:
        bench.failures.append(f"gateway: ledger has {committed} committed purchases (+{other} not committed), "
                              f"the load generator completed {completed}")

    per_purchase = {k: (db_after[k] - db_before[k]) / max(completed, 1) for k in db_before}
    print(f"   per purchase (all phases, from pg_stat_database/pg_stat_wal): {per_purchase['commits']:.2f} commits, "
          f"{per_purchase['rollbacks']:.2f} rollbacks, {per_purchase['wal_syncs']:.2f} WAL syncs")

    purchases_per_s = full["per_s"]
    health_rps = health["per_s"]
    bench.record("gateway_processes", processes)
    bench.record("gateway_terminals", terminals)
    bench.record("purchases_per_s", float(purchases_per_s))
    bench.record("reserve_p50_ms", float(rate["reserve_p50_ms"]))
    bench.record("reserve_p99_ms", float(rate["reserve_p99_ms"]))
    bench.record("errors", errors)
    bench.record("health_rps", float(health_rps))
    bench.record("purchase_calls_vs_health", 3 * purchases_per_s / health_rps if health_rps else 0.0)
    bench.record("full_load_reserve_p50_ms", float(full["reserve_p50_ms"]))
    bench.record("full_load_reserve_p99_ms", float(full["reserve_p99_ms"]))
    bench.record("full_load_purchase_p99_ms", float(full["purchase_p99_ms"]))
    bench.record("rate_achieved_per_s", float(rate["per_s"]))
    bench.record("rate_purchase_p99_ms", float(rate["purchase_p99_ms"]))
    bench.record("rate_late_starts", rate["started_late"])
    for name in ("full", "rate", "health"):
        cpu = phases[name]["cpu_cores"]
        bench.record(f"{name}_cpu_cores", ",".join(f"{k}:{v}" for k, v in cpu.items()))
    if full["per_s"]:
        bench.record("full_cpu_ms_per_purchase", ",".join(
            f"{k}:{1000 * v / full['per_s']:.2f}" for k, v in full["cpu_cores"].items()))
    if health_rps:
        bench.record("health_cpu_us_per_request", ",".join(
            f"{k}:{1e6 * v / health_rps:.0f}" for k, v in health["cpu_cores"].items()))
    bench.record("db_commits_per_purchase", per_purchase["commits"])
    bench.record("gateway_invariants_broken", len(broken))
    if broken:
        bench.failures.append(f"gateway: {len(broken)} ledger invariants broken")
    if errors:
        bench.failures.append(f"gateway: {errors} errors")


# --------------------------------------------------------------------------- section: signing

SIGNING_RECEIPTS = 2000           # receipts pre-booked before the relay starts (top-ups of fresh tags)
SIGNING_TILLS = 8                 # spread over this many top-up terminals = TSE clients = outbox ordering keys
SIGNING_TOPUP = 1000              # cents per pre-booked top-up
SIGNING_UID_BASE = UID_BASE + 10 ** 9   # the pre-booked tags: far from the load generator's tags
SIGNING_DRAIN_TIMEOUT_S = 120     # the backlog must be signed within this (else the section fails)
SIGNING_SETTLE_TIMEOUT_S = 60     # after the 100/s run: time for the relay to sign what is left


def start_tse_service(bench: Bench, directory: Path) -> tuple[subprocess.Popen, Path, str]:
    """``festpay tse serve --dir DIR --port 0`` (the software TSE in the bench's temp dir) on 127.0.0.1; its URL.

    Its stdin is a pipe we hold (--stop-on-stdin-eof): it stops by itself should the bench die."""
    logfile = bench.workdir / "tse.log"
    cmd = [sys.executable, "-m", "python_gateway.cli", "tse", "serve", "--dir", str(directory), "--port", "0",
           "--stop-on-stdin-eof"]
    proc, line = start_logged(cmd, logfile, "READY ", "the TSE service", stdin=subprocess.PIPE)
    url = line.split()[1]
    if not url.startswith("http://127.0.0.1:"):
        stop_process(proc, "TSE service")
        raise BenchFailure(f"the TSE service is not on the loopback interface: {url}")
    return proc, logfile, url


def start_relay(bench: Bench, tse_url: str) -> tuple[subprocess.Popen, Path]:
    """``festpay relay --tse-url URL`` (the production relay: one process, topic tse, default poll interval) against
    the bench database as festpay_relay; returns once it says it is signing."""
    logfile = bench.workdir / "relay.log"
    database_url = bench.cluster.url(GATEWAY_DBNAME, user="festpay_relay")
    env = tool_env() | {"DATABASE_URL": database_url, "FESTPAY_RELAY_DATABASE_URL": database_url}
    cmd = [sys.executable, "-m", "python_gateway.cli", "relay", "--tse-url", tse_url]
    proc, _ = start_logged(cmd, logfile, "Relay signing receipts", "the relay", env=env)
    return proc, logfile


def _stop_with_log(proc: subprocess.Popen | None, logfile: Path | None, name: str) -> None:
    if proc is None:
        return
    if proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()
    stop_process(proc, name)
    if logfile is not None and logfile.exists():
        tail = [line for line in logfile.read_text(errors="replace").splitlines()
                if line.strip() and not line.startswith("READY")]
        problems = [line for line in tail if re.search(r"WARNING|ERROR|Traceback|failed", line)]
        if problems:
            print(f"   {name} pid {proc.pid} log (warnings, last lines):")
            print(textwrap.indent("\n".join(problems[-15:]), "   | "))


def _wait_outbox_empty(bench: Bench, timeout: float) -> tuple[int, float | None]:
    """Polls api.outbox_lag('tse') every 50 ms until nothing is pending; (pending, seconds waited or None)."""
    started = time.monotonic()
    with bench.connect(GATEWAY_DBNAME, autocommit=True) as conn:
        while True:
            pending = conn.execute("SELECT pending FROM api.outbox_lag('tse')").fetchone()[0]
            if pending == 0:
                return 0, time.monotonic() - started
            if time.monotonic() - started > timeout:
                return pending, None
            time.sleep(0.05)


def _cpu_of(pids: dict[str, int], postmaster: int | None) -> tuple[float, ...]:
    """(monotonic, machine busy s, CPU s of each named pid..., PostgreSQL's postmaster and backends) now."""
    from .loadgen import _machine_busy_s, _proc_cpu_s, _tree_cpu_s

    return (time.monotonic(), _machine_busy_s(), *(_proc_cpu_s(pid) for pid in pids.values()),
            _tree_cpu_s(postmaster) if postmaster else 0.0)


def _cores(names: list[str], before: tuple[float, ...], after: tuple[float, ...]) -> str:
    """'machine:1.9,relay:0.6,...': cores used between two :func:`_cpu_of` snapshots."""
    wall = max(after[0] - before[0], 1e-6)
    labels = ["machine", *names, "postgres"]
    return ",".join(f"{label}:{(after[i + 1] - before[i + 1]) / wall:.2f}" for i, label in enumerate(labels))


def _signing_check(bench: Bench, label: str) -> dict[str, int]:
    """Every receipt signed exactly once: outbox done, one signature per outbox row, no committed receipt without
    a request, no signature without a request."""
    with bench.connect(GATEWAY_DBNAME, autocommit=True) as conn:
        row = conn.execute(
            """SELECT (SELECT count(*) FROM ledger.tse_signature) AS signatures,
                      (SELECT count(DISTINCT transaction_id) FROM ledger.tse_signature) AS signed_transactions,
                      (SELECT count(*) FROM ledger.outbox WHERE topic = 'tse') AS requests,
                      (SELECT count(*) FROM ledger.outbox WHERE topic = 'tse' AND done_at IS NULL) AS pending,
                      (SELECT count(*) FROM ledger.outbox o WHERE o.topic = 'tse' AND NOT EXISTS
                              (SELECT FROM ledger.tse_signature s WHERE s.transaction_id = o.transaction_id))
                          AS requests_unsigned,
                      (SELECT count(*) FROM ledger.tse_signature s WHERE NOT EXISTS
                              (SELECT FROM ledger.outbox o WHERE o.topic = 'tse' AND o.transaction_id = s.transaction_id))
                          AS signatures_without_request,
                      (SELECT count(*) FROM ledger.transaction t WHERE t.state = 'Committed' AND t.type <> 'transfer'
                          AND NOT EXISTS (SELECT FROM ledger.outbox o WHERE o.topic = 'tse' AND o.transaction_id = t.id))
                          AS receipts_without_request,
                      (SELECT count(*) FROM ledger.tse_signature WHERE late) AS late,
                      (SELECT count(*) FROM ledger.tse_outage) AS outages""",
        ).fetchone()
    names = ("signatures", "signed_transactions", "requests", "pending", "requests_unsigned",
             "signatures_without_request", "receipts_without_request", "late", "outages")
    result = dict(zip(names, row))
    problems = [f"{k}={result[k]}" for k in ("pending", "requests_unsigned", "signatures_without_request",
                                             "receipts_without_request", "outages") if result[k]]
    if result["signatures"] != result["signed_transactions"] or result["signatures"] != result["requests"]:
        problems.append(f"{result['signatures']} signatures for {result['signed_transactions']} transactions "
                        f"and {result['requests']} requests")
    print(f"   [{label}] {result['signatures']} signatures, {result['requests']} signing requests, "
          f"{result['pending']} pending, {result['requests_unsigned']} unsigned, "
          f"{result['receipts_without_request']} committed receipts without a request, "
          f"{result['late']} late, {result['outages']} outages")
    if problems:
        bench.failures.append(f"signing ({label}): " + ", ".join(problems))
    return result


def section_signing(bench: Bench) -> None:
    """Fiscal signing: the production relay (``festpay relay``, ONE process) with the software TSE as its own
    process (``festpay tse serve``, its directory in the bench's temp dir), both on 127.0.0.1, against a fresh
    gateway database of the bench cluster.

    1. ``signatures_per_s``: SIGNING_RECEIPTS committed top-ups pre-booked through ``api.topup`` (one SQL statement,
       spread round-robin over SIGNING_TILLS top-up terminals, i.e. as many TSE clients and outbox ordering keys),
       plus the funding top-ups of the load generator's tags (one more till); then the relay starts and drains the
       outbox to empty.  Rate = (signatures - 1) / (last signed_at - first signed_at), from the stored signatures
       (the relay's start-up is not counted; signed_at = now() of the api.tse_store call).
    2. ``sign_lag_*``: with the TSE and the relay still running, the gateway section's open-loop run (2 gateway
       processes, the loadgen at 100 purchases/s for FESTPAY_BENCH_SECONDS; no warm-up, no full-load or health
       phase, so every purchase of the event is from this run).  Lag per purchase = tse_signature.signed_at -
       transaction.committed_at, p50/p99/max in SQL.  Both are now() = the START of their database transaction:
       committed_at of the api.replicate transaction that committed the purchase, signed_at of the relay's
       api.tse_store call, so the lag spans the commit, NOTIFY, claim, TSE start, api.tse_started and TSE finish.
       The outbox lag (api.outbox_lag) is taken the moment the run ends; then the relay may finish, and every
       receipt must be signed exactly once (one signature per outbox request, none without one, the TSE's
       transaction counter grown by the number of signatures).
    """
    from .tse.remote import RemoteTSE

    terminals = _env_int("FESTPAY_BENCH_TERMINALS", GATEWAY_TERMINALS)
    processes = _env_int("FESTPAY_BENCH_GATEWAYS", GATEWAY_PROCESSES)
    setup = setup_gateway_db(bench, terminals, GATEWAY_TAGS_PER_TERMINAL)
    setup_file = bench.workdir / "signing-setup.json"
    setup_file.write_text(json.dumps(setup))
    report_file = bench.workdir / "signing-report.json"

    started = time.monotonic()
    with bench.connect(GATEWAY_DBNAME) as conn:
        tills = [row[0] for row in conn.execute(
            """SELECT (api.register_terminal(api.create_registration_code(%s, 'Top-up'), format('signing till %%s', i)))
                      .assignment_id FROM generate_series(1, %s) i ORDER BY 1""",
            (setup["event_id"], SIGNING_TILLS)).fetchall()]
        conn.commit()
        booked = conn.execute(
            """SELECT count(*) FROM generate_series(0, %(n)s - 1) i,
                      LATERAL api.topup((%(tills)s::bigint[])[1 + i %% %(k)s], 1 + i / %(k)s, (%(uid)s + i)::text,
                                        %(amount)s, 'cash') t
                WHERE t.state = 'Committed'""",
            {"n": SIGNING_RECEIPTS, "tills": tills, "k": len(tills), "uid": SIGNING_UID_BASE,
             "amount": SIGNING_TOPUP}).fetchone()[0]
        conn.commit()
    if booked != SIGNING_RECEIPTS:
        raise BenchFailure(f"only {booked} of {SIGNING_RECEIPTS} receipts were pre-booked")
    with bench.connect(GATEWAY_DBNAME, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")
        pending, _ = conn.execute("SELECT * FROM api.outbox_lag('tse')").fetchone()
        keys = conn.execute("SELECT count(DISTINCT ordering_key) FROM ledger.outbox WHERE topic = 'tse' "
                            "AND done_at IS NULL").fetchone()[0]
        signatures_before = conn.execute("SELECT count(*) FROM ledger.tse_signature").fetchone()[0]
    print(f"signing setup: {booked} top-ups pre-booked over {len(tills)} tills in {time.monotonic() - started:.1f}s; "
          f"outbox: {pending} requests of {keys} tills waiting (incl. the {len(setup['terminals']) * GATEWAY_TAGS_PER_TERMINAL}"
          f" funding top-ups), {signatures_before} signatures")

    tse = relay = None
    tse_log = relay_log = None
    gateways: list[tuple[subprocess.Popen, Path]] = []
    try:
        tse, tse_log, tse_url = start_tse_service(bench, bench.workdir / "tse")
        client = RemoteTSE(tse_url, timeout=10)
        tse_before = client.health()
        print(f"\n== signing: TSE service pid {tse.pid} at {tse_url}; relay (festpay relay, one process) draining "
              f"{pending} requests", flush=True)
        postmaster = bench.cluster.running_pid()
        t0 = time.monotonic()
        relay, relay_log = start_relay(bench, tse_url)
        cpu_pids = {"relay": relay.pid, "tse": tse.pid}
        cpu0 = _cpu_of(cpu_pids, postmaster)
        left, _ = _wait_outbox_empty(bench, SIGNING_DRAIN_TIMEOUT_S)
        drain_cores = _cores(list(cpu_pids), cpu0, _cpu_of(cpu_pids, postmaster))
        wall_s = time.monotonic() - t0
        if left:
            raise BenchFailure(f"the relay left {left} of {pending} requests after {SIGNING_DRAIN_TIMEOUT_S} s")
        tse_after_drain = client.health()
        with bench.connect(GATEWAY_DBNAME, autocommit=True) as conn:
            count, first, last = conn.execute(
                "SELECT count(*), min(signed_at), max(signed_at) FROM ledger.tse_signature").fetchone()
        span_s = (last - first).total_seconds() if count else 0.0
        per_s = (count - 1) / span_s if span_s > 0 else 0.0
        tse_txs = tse_after_drain["transaction_number"] - tse_before["transaction_number"]
        print(f"   {count - signatures_before} signatures stored; first to last signature {span_s:.2f}s = {per_s:.1f}/s; "
              f"relay process start to outbox empty {wall_s:.2f}s; TSE transactions +{tse_txs}, signature counter "
              f"+{tse_after_drain['signature_counter'] - tse_before['signature_counter']}; CPU cores from relay READY "
              f"to empty: {drain_cores}")
        _signing_check(bench, "after the drain")
        if count - signatures_before != pending:
            bench.failures.append(f"signing: {count - signatures_before} signatures stored for {pending} requests")
        if tse_txs != count - signatures_before:
            bench.failures.append(f"signing: the TSE made {tse_txs} transactions for {count - signatures_before} "
                                  "signatures")
        bench.record("signing_receipts", pending)
        bench.record("signing_tills", keys)
        bench.record("signatures_per_s", per_s)
        bench.record("signing_drain_wall_s", wall_s)
        bench.record("signing_drain_cpu_cores", drain_cores)

        # ---- the issue-3 load at 100 purchases/s (open loop) with the relay signing along
        port = _free_port()
        gateways = start_gateways(bench, processes, port)
        pids = [proc.pid for proc, _ in gateways]
        rate_s = bench.seconds
        print(f"\n== signing under load: {processes} gateway process(es) (pids {', '.join(map(str, pids))}), "
              f"{terminals} terminals at {GATEWAY_RATE:.0f} purchases/s for {rate_s}s (open loop, no warm-up), "
              f"relay pid {relay.pid}, TSE pid {tse.pid}", flush=True)
        cmd = [sys.executable, "-m", "python_gateway.loadgen", "run", "--url", f"http://127.0.0.1:{port}",
               "--setup", str(setup_file), "--out", str(report_file), "--warmup-s", "0", "--full-s", "0",
               "--rate", str(GATEWAY_RATE), "--rate-s", str(rate_s), "--health-s", "0"]
        for pid in pids:
            cmd += ["--gateway-pid", str(pid)]
        if postmaster:
            cmd += ["--postgres-pid", str(postmaster)]
        cpu0 = _cpu_of(cpu_pids, postmaster)
        run_started = time.time()
        with subprocess.Popen(cmd, stdin=subprocess.DEVNULL, env=tool_env(),
                              cwd=Path(__file__).resolve().parent.parent) as loadgen:
            try:
                returncode = loadgen.wait(timeout=rate_s + 180)
            except BaseException:
                stop_process(loadgen, "load generator", timeout=5)
                raise
        load_cores = _cores(list(cpu_pids), cpu0, _cpu_of(cpu_pids, postmaster))
        run_ended = time.time()
        with bench.connect(GATEWAY_DBNAME, autocommit=True) as conn:
            end_pending, end_oldest_ms = conn.execute("SELECT * FROM api.outbox_lag('tse')").fetchone()
        if returncode != 0 or not report_file.exists():
            raise BenchFailure(f"the load generator failed (exit status {returncode})")
        for proc, _ in gateways:
            if proc.poll() is not None:
                bench.failures.append(f"signing: gateway pid {proc.pid} died during the run")
        if relay.poll() is not None:
            bench.failures.append(f"signing: the relay (pid {relay.pid}) died during the run")
        left, settle_s = _wait_outbox_empty(bench, SIGNING_SETTLE_TIMEOUT_S)
        tse_after = client.health()
    finally:
        for proc, logfile in gateways:
            _stop_with_log(proc, logfile, "gateway")
        _stop_with_log(relay, relay_log, "relay")          # the relay before the TSE, like festpay run
        _stop_with_log(tse, tse_log, "TSE service")

    report = json.loads(report_file.read_text())
    rate = report["phases"]["rate"]
    errors = sum(p["errors"] for p in report["phases"].values())
    for p in report["phases"].values():
        for sample in p["error_samples"]:
            print(f"   ERROR [{p['name']}] {sample}")
    print(f"   outbox when the run ended: {end_pending} pending, oldest {end_oldest_ms} ms; "
          + (f"empty {settle_s:.2f}s later" if not left else f"{left} STILL pending after {SIGNING_SETTLE_TIMEOUT_S}s"))
    with bench.connect(GATEWAY_DBNAME, autocommit=True) as conn:
        purchases, signed, p50, p99, worst = conn.execute(
            """SELECT count(*), count(s.transaction_id),
                      percentile_disc(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM s.signed_at - t.committed_at)),
                      percentile_disc(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM s.signed_at - t.committed_at)),
                      max(extract(epoch FROM s.signed_at - t.committed_at))
                 FROM ledger.transaction t LEFT JOIN ledger.tse_signature s ON s.transaction_id = t.id
                WHERE t.event_id = %s AND t.type = 'purchase' AND t.state = 'Committed'""",
            (setup["event_id"],)).fetchone()
        slices = conn.execute(
            """WITH lag AS (SELECT t.committed_at, extract(epoch FROM s.signed_at - t.committed_at) AS lag_s
                              FROM ledger.transaction t JOIN ledger.tse_signature s ON s.transaction_id = t.id
                             WHERE t.event_id = %s AND t.type = 'purchase' AND t.state = 'Committed')
               SELECT floor(extract(epoch FROM committed_at - (SELECT min(committed_at) FROM lag)) / 5)::int AS slice,
                      count(*), percentile_disc(0.5) WITHIN GROUP (ORDER BY lag_s),
                      percentile_disc(0.99) WITHIN GROUP (ORDER BY lag_s)
                 FROM lag GROUP BY 1 ORDER BY 1""",
            (setup["event_id"],)).fetchall()
        signed_per_slice = conn.execute(
            """SELECT floor(extract(epoch FROM signed_at - to_timestamp(%s)) / 5)::int, count(*)
                 FROM ledger.tse_signature WHERE signed_at BETWEEN to_timestamp(%s) AND to_timestamp(%s)
                GROUP BY 1 ORDER BY 1""", (run_started, run_started, run_ended)).fetchall()
    signed_during = sum(n for _, n in signed_per_slice)
    relay_per_s = signed_during / max(run_ended - run_started, 1e-6)
    print(f"   the relay signed {signed_during} receipts during the run = {relay_per_s:.1f}/s; per 5 s: "
          + ", ".join(f"{n / 5:.0f}/s" for _, n in signed_per_slice))
    print("   commit-to-signature lag by 5 s of the run (committed in; purchases, p50/p99 ms): " + "; ".join(
        f"{5 * k}-{5 * k + 5}s: {n}, {1000 * float(a):.0f}/{1000 * float(b):.0f}" for k, n, a, b in slices))
    print(f"   CPU cores during the run: {load_cores}")
    check = _signing_check(bench, "after the 100/s run")
    signatures = check["signatures"]
    tse_txs = tse_after["transaction_number"] - tse_before["transaction_number"]
    if tse_txs != signatures - signatures_before:
        bench.failures.append(f"signing: the TSE made {tse_txs} transactions for {signatures - signatures_before} "
                              "signatures")
    if purchases != rate["completed"] or signed != purchases:
        bench.failures.append(f"signing: {purchases} committed purchases in the ledger, {signed} signed, the load "
                              f"generator completed {rate['completed']}")
    if errors:
        bench.failures.append(f"signing: {errors} load generator errors")
    ms = (lambda v: 1000.0 * float(v) if v is not None else 0.0)
    print(f"   {purchases} purchases ({rate['per_s']}/s achieved), {signed} signed; commit to signature "
          f"p50 {ms(p50):.1f} ms, p99 {ms(p99):.1f} ms, max {ms(worst):.1f} ms; reserve p99 {rate['reserve_p99_ms']} ms; "
          f"TSE transactions in all +{tse_txs}")
    bench.record("sign_lag_purchases", purchases)
    bench.record("sign_lag_signed", signed)
    bench.record("sign_lag_p50_ms", ms(p50))
    bench.record("sign_lag_p99_ms", ms(p99))
    bench.record("sign_lag_max_ms", ms(worst))
    bench.record("sign_outbox_pending_at_end", end_pending)
    bench.record("sign_outbox_oldest_ms_at_end", end_oldest_ms if end_oldest_ms is not None else 0)
    bench.record("sign_relay_per_s_under_load", relay_per_s)
    bench.record("sign_lag_p99_ms_by_5s", ",".join(f"{1000 * float(b):.0f}" for _, _, _, b in slices))
    bench.record("sign_load_cpu_cores", load_cores)
    bench.record("sign_rate_achieved_per_s", float(rate["per_s"]))
    bench.record("sign_rate_reserve_p99_ms", float(rate["reserve_p99_ms"]))
    bench.record("sign_errors", errors)
    bench.record("sign_signed_once", "yes" if check["signatures"] == check["requests"] == check["signed_transactions"]
                 and not check["pending"] and not check["receipts_without_request"] and tse_txs == signatures - signatures_before
                 else "NO")


# --------------------------------------------------------------------------- section: admin

ADMIN_DBNAME = "festpay_admin_bench"
ADMIN_TRANSACTIONS = 1_000_000    # transactions in the ledger (top-ups + purchases); FESTPAY_BENCH_ADMIN_TRANSACTIONS
ADMIN_CUSTOMERS = 20_000          # tags, each topped up once before its first purchase
ADMIN_MERCHANTS = 20              # one sale position each, with ADMIN_TILLS_PER_MERCHANT terminals
ADMIN_TILLS_PER_MERCHANT = 2
ADMIN_TOPUP_TILLS = 4
ADMIN_HOURS = 72                  # the festival so far: every transaction lies within the last 72 hours
# How busy each hour of the day is (local time; relative): quiet in the early morning, busiest in the evening.
ADMIN_HOUR_WEIGHTS = (6, 4, 2, 1, 0.5, 0.3, 0.3, 0.5, 1, 1.5, 2, 3, 5, 6, 6, 6, 7, 8, 9, 10, 10, 10, 9, 8)
ADMIN_CARD_FEE = 50               # cents per card top-up (every third tag pays by card)
ADMIN_PRODUCTS = (("Beer 0.5 l", 450, 19), ("Cola 0.3 l", 300, 19), ("Water 0.5 l", 250, 19),
                  ("Wine 0.2 l", 550, 19), ("Coffee", 250, 19), ("Pretzel", 350, 7), ("Bratwurst", 550, 7),
                  ("Fries", 400, 7))
ADMIN_REQUESTS = 100              # timed requests per page (FESTPAY_BENCH_ADMIN_REQUESTS), after ADMIN_WARMUP
ADMIN_WARMUP = 5
ADMIN_USER, ADMIN_PASSWORD = "bench-admin", "bench-admin-password"
GOAL_ADMIN_P95_MS = 200.0
ADMIN_UID_PREFIX = "04"           # tag c has UID 04 + c as 12 hex digits


def admin_uid(c: int) -> str:
    return f"{ADMIN_UID_PREFIX}{c:012X}"


# The ledger of a festival 72 hours in, written as the owner in one database transaction, row for row as the api
# writes it (ledger.find_tag, ledger.new_transaction, ledger.add_items, ledger.book, ledger.enqueue): the event, its
# accounts and terminals dated to the day before the festival; customer accounts and tags imported then; per tag one top-up (cash into a top-up till's drawer, or card less the card fee) shortly before
# its first purchase, of what it spends plus a rest; purchases of one or two item lines at a random sale terminal and
# time, committed two seconds after their reserve; booking lines, items as sold, one pending signing request per
# receipt (the bench runs no TSE); running balances from the lines. Transaction ids ascend with time; terminal and tag
# numbers count per terminal and per tag. api.check_invariants() checks the result.
ADMIN_FILL_SQL = (
    """SELECT setseed(0.42)""",
    # the event was set up (through the api, just now) the day before the festival began
    """UPDATE ledger.event SET created_at = %(setup_at)s WHERE id = %(event)s""",
    """UPDATE ledger.account SET created_at = %(setup_at)s WHERE event_id = %(event)s""",
    """UPDATE ledger.assignment SET registered_at = %(setup_at)s WHERE event_id = %(event)s""",
    """UPDATE ledger.registration_code SET created_at = %(setup_at)s, used_at = %(setup_at)s
        WHERE event_id = %(event)s""",
    """CREATE TEMP TABLE bench_customer (c int PRIMARY KEY, uid text, account_id bigint, tag_id bigint)
       ON COMMIT DROP""",
    # the wristbands, imported at set-up
    """WITH a AS (INSERT INTO ledger.account (event_id, kind, name, created_at)
                  SELECT %(event)s, 'customer', %(prefix)s || lpad(upper(to_hex(c)), 12, '0'), %(setup_at)s
                    FROM generate_series(1, %(customers)s) c ORDER BY c
                  RETURNING id, name),
            g AS (INSERT INTO ledger.tag (event_id, uid, account_id, created_at)
                  SELECT %(event)s, a.name, a.id, %(setup_at)s FROM a ORDER BY a.id
                  RETURNING id, uid, account_id)
       INSERT INTO bench_customer SELECT ('x' || substr(uid, 3))::bit(48)::bigint::int, uid, account_id, id
         FROM g""",
    """CREATE TEMP TABLE bench_till (idx int, assignment_id bigint, merchant_account_id bigint, cash_account_id bigint,
                                     kind ledger.position_kind) ON COMMIT DROP""",
    """INSERT INTO bench_till
       SELECT row_number() OVER (PARTITION BY p.kind ORDER BY a.id), a.id, m.account_id, a.cash_account_id, p.kind
         FROM ledger.assignment a JOIN ledger.position p ON p.id = a.position_id
         LEFT JOIN ledger.merchant m ON m.id = p.merchant_id
        WHERE a.event_id = %(event)s""",
    """CREATE TEMP TABLE bench_plan (k bigserial, type ledger.tx_type, c int, till int, at timestamptz,
                                     p1 int, q1 int, p2 int, q2 int, amount bigint, fee bigint,
                                     payment ledger.payment_method) ON COMMIT DROP""",
    # purchases: a random tag and sale terminal, an hour of the festival by how busy it is (hour_thresholds: where
    # each hour ends on the cumulative distribution), a random time within it; one or two item lines (the second
    # another product)
    """INSERT INTO bench_plan (type, c, till, at, p1, q1, p2, q2)
       SELECT 'purchase', 1 + floor(random() * %(customers)s)::int, 1 + floor(random() * %(sale_tills)s)::int,
              %(start)s::timestamptz
                + (width_bucket(random(), %(hour_thresholds)s::float8[]) + random()) * interval '1 hour',
              p1, 1 + floor(random() * 3)::int,
              CASE WHEN random() < 0.4 THEN 1 + (p1 + floor(random() * (%(products)s - 1))::int) %% %(products)s END,
              1 + floor(random() * 2)::int
         FROM (SELECT g, 1 + floor(random() * %(products)s)::int AS p1
                 FROM generate_series(1, %(purchases)s) g) x""",
    """UPDATE bench_plan SET amount = q1 * (%(prices)s::bigint[])[p1] + coalesce(q2 * (%(prices)s::bigint[])[p2], 0),
                            q2 = CASE WHEN p2 IS NULL THEN NULL ELSE q2 END""",
    # one top-up per tag with purchases, 1 s to 30 min before its first one: what it spends and a rest, whole euros
    """INSERT INTO bench_plan (type, c, till, at, amount, fee, payment)
       SELECT 'topup', c, 1 + c %% %(topup_tills)s, min(at) - (1 + random() * 1799) * interval '1 second',
              (ceil((sum(amount) + 500 + random() * 5000) / 100) * 100)::bigint,
              CASE WHEN c %% 3 = 0 THEN %(card_fee)s ELSE 0 END,
              CASE WHEN c %% 3 = 0 THEN 'card' ELSE 'cash' END::ledger.payment_method
         FROM bench_plan WHERE type = 'purchase' GROUP BY c""",
    """CREATE TEMP TABLE bench_tx ON COMMIT DROP AS
       SELECT %(base)s + row_number() OVER (ORDER BY p.at, p.k) AS id, p.*, bc.account_id, bc.tag_id,
              t.assignment_id,
              CASE WHEN p.type = 'purchase' THEN t.merchant_account_id
                   WHEN p.payment = 'cash' THEN t.cash_account_id ELSE %(card_account)s END AS other_account_id,
              row_number() OVER (PARTITION BY t.assignment_id ORDER BY p.at, p.k) AS terminal_tx_number,
              CASE WHEN p.type = 'purchase' THEN row_number() OVER (PARTITION BY p.c, p.type ORDER BY p.at, p.k) - 1
                   END AS tag_tx_number,
              p.at + CASE WHEN p.type = 'purchase' THEN interval '2 seconds' ELSE interval '0' END AS committed
         FROM bench_plan p
         JOIN bench_customer bc ON bc.c = p.c
         JOIN bench_till t ON t.idx = p.till
                          AND t.kind = CASE WHEN p.type = 'purchase' THEN 'sale' ELSE 'topup' END::ledger.position_kind""",
    """INSERT INTO ledger.transaction (id, event_id, type, state, account_id, other_account_id, tag_id, tag_tx_number,
                                      assignment_id, terminal_tx_number, amount, fee, held, payment, terminal_time,
                                      created_at, updated_at, expires_at, committed_at)
       OVERRIDING SYSTEM VALUE
       SELECT id, %(event)s, type, 'Committed', account_id, other_account_id, tag_id, tag_tx_number, assignment_id,
              terminal_tx_number, amount, coalesce(fee, 0), 0, payment, CASE WHEN type = 'purchase' THEN at END,
              at, committed, CASE WHEN type = 'purchase' THEN at + %(reserve_timeout)s::interval END, committed
         FROM bench_tx ORDER BY id""",
    """SELECT setval(pg_get_serial_sequence('ledger.transaction', 'id'), (SELECT max(id) FROM ledger.transaction))""",
    """INSERT INTO ledger.item (transaction_id, line_no, product_id, name, quantity, unit_price, vat_rate, returnable)
       SELECT x.id, x.line_no, p.id, p.name, x.quantity, p.price, p.vat_rate, p.returnable
         FROM (SELECT id, 1 AS line_no, p1 AS product, q1 AS quantity FROM bench_tx WHERE type = 'purchase'
               UNION ALL
               SELECT id, 2, p2, q2 FROM bench_tx WHERE type = 'purchase' AND p2 IS NOT NULL) x
         JOIN ledger.product p ON p.id = (%(product_ids)s::bigint[])[x.product]
        ORDER BY x.id, x.line_no""",
    """INSERT INTO ledger.booking (transaction_id, line_no, debit_account_id, credit_account_id, amount, booked_at)
       SELECT t.id, i.line_no, t.other_account_id, t.account_id, i.quantity * i.unit_price, t.committed
         FROM bench_tx t JOIN ledger.item i ON i.transaction_id = t.id
        WHERE t.type = 'purchase'
       UNION ALL
       SELECT id, 1, account_id, other_account_id, amount, committed FROM bench_tx WHERE type = 'topup'
       UNION ALL
       SELECT id, 2, %(fee_account)s, account_id, fee, committed FROM bench_tx WHERE type = 'topup' AND fee > 0
        ORDER BY 1, 2""",
    """INSERT INTO ledger.outbox (topic, ordering_key, transaction_id, created_at)
       SELECT 'tse', 'festpay-' || assignment_id::text, id, committed FROM bench_tx ORDER BY id""",
    """UPDATE ledger.account a SET balance = s.balance
         FROM (SELECT account_id, sum(CASE WHEN type = 'topup' THEN amount - fee ELSE -amount END)::bigint AS balance
                 FROM bench_tx GROUP BY account_id) s
        WHERE a.id = s.account_id""",
    """UPDATE ledger.tag SET status = 'active'
        WHERE id IN (SELECT tag_id FROM bench_tx WHERE type = 'topup')""",
)


def setup_admin_db(bench: Bench, transactions: int) -> dict:
    """A fresh database holding a festival of ``transactions`` transactions (see ADMIN_FILL_SQL): the event, merchants,
    positions, products, terminals and the admin user through the api, the ledger rows as the owner. Checks
    api.check_invariants() and that real api calls carry on from the filled ledger (a top-up of a new tag, a purchase
    reserved and committed at a sale terminal)."""
    customers = min(ADMIN_CUSTOMERS, max(1, transactions // 10))
    purchases = transactions - customers
    fresh_database(bench, ADMIN_DBNAME)
    started = time.monotonic()
    with bench.connect(ADMIN_DBNAME) as conn:
        event_id = conn.execute(
            "SELECT api.create_event('Admin Bench Festival', 'EUR', 200000, 500, 200000, p_topup_fee_card => %s)",
            (ADMIN_CARD_FEE,)).fetchone()[0]
        product_ids = [conn.execute("SELECT api.create_product(%s, %s, %s, %s)", (event_id, *p)).fetchone()[0]
                       for p in ADMIN_PRODUCTS]
        merchants = []
        for m in range(1, ADMIN_MERCHANTS + 1):
            merchant_id = conn.execute("SELECT api.create_merchant(%s, %s)", (event_id, f"Merchant {m:02d}")).fetchone()[0]
            position_id = conn.execute("SELECT api.create_position(%s, %s, 'sale', %s)",
                                       (event_id, f"Bar {m:02d}", merchant_id)).fetchone()[0]
            merchants.append({"id": merchant_id, "position_id": position_id})
        conn.execute("SELECT api.create_position(%s, 'Top-up', 'topup')", (event_id,))
        conn.execute(
            """SELECT api.register_terminal(api.create_registration_code(%(e)s, format('Bar %%s', lpad(m::text, 2, '0'))),
                                            format('bench bar %%s till %%s', m, t))
                 FROM generate_series(1, %(merchants)s) m, generate_series(1, %(tills)s) t ORDER BY m, t""",
            {"e": event_id, "merchants": ADMIN_MERCHANTS, "tills": ADMIN_TILLS_PER_MERCHANT})
        conn.execute(
            """SELECT api.register_terminal(api.create_registration_code(%s, 'Top-up'), format('bench top-up %%s', t))
                 FROM generate_series(1, %s) t ORDER BY t""", (event_id, ADMIN_TOPUP_TILLS))
        card_account, fee_account, reserve_timeout = conn.execute(
            """SELECT ledger.system_account(e.id, 'topup', 'card'), ledger.system_account(e.id, 'fee', 'fees'),
                      e.reserve_timeout FROM ledger.event e WHERE e.id = %s""", (event_id,)).fetchone()
        base = conn.execute("SELECT coalesce(max(id), 0) FROM ledger.transaction").fetchone()[0]
        end, time_zone = conn.execute("SELECT date_trunc('second', now()) - interval '1 minute', time_zone"
                                      " FROM ledger.event WHERE id = %s", (event_id,)).fetchone()
        start = end - timedelta(hours=ADMIN_HOURS)
        weights = list(itertools.accumulate(
            ADMIN_HOUR_WEIGHTS[(start + timedelta(hours=h, minutes=30)).astimezone(ZoneInfo(time_zone)).hour]
            for h in range(ADMIN_HOURS)))
        params = {
            "event": event_id, "customers": customers, "purchases": purchases, "prefix": ADMIN_UID_PREFIX,
            "sale_tills": ADMIN_MERCHANTS * ADMIN_TILLS_PER_MERCHANT, "topup_tills": ADMIN_TOPUP_TILLS,
            "start": start, "end": end, "products": len(ADMIN_PRODUCTS),
            "hour_thresholds": [w / weights[-1] for w in weights[:-1]],
            "setup_at": end - timedelta(hours=ADMIN_HOURS + 24),
            "prices": [p[1] for p in ADMIN_PRODUCTS], "product_ids": product_ids, "card_fee": ADMIN_CARD_FEE,
            "card_account": card_account, "fee_account": fee_account, "base": base,
            "reserve_timeout": reserve_timeout,
        }
        for statement in ADMIN_FILL_SQL:
            conn.execute(statement, params)
        conn.commit()
        filled_s = time.monotonic() - started
        with bench.connect(ADMIN_DBNAME, autocommit=True) as vac:
            vac.execute("VACUUM ANALYZE")
        count, topups, max_topup = conn.execute(
            """SELECT count(*), count(*) FILTER (WHERE type = 'topup'), max(amount) FILTER (WHERE type = 'topup')
                 FROM ledger.transaction WHERE event_id = %s""", (event_id,)).fetchone()
        conn.commit()
        if max_topup is not None and max_topup > 200000:
            raise BenchFailure(f"admin: a top-up of {max_topup} cents exceeds the event's maximum top-up")
        # real api calls on top of the filled ledger: a new tag topped up, and a purchase of customer 1
        topup_till, sale_till = conn.execute(
            """SELECT min(a.id) FILTER (WHERE p.kind = 'topup'), min(a.id) FILTER (WHERE p.kind = 'sale')
                 FROM ledger.assignment a JOIN ledger.position p ON p.id = a.position_id WHERE a.event_id = %s""",
            (event_id,)).fetchone()
        next_number = ("SELECT coalesce(max(terminal_tx_number), 0) + 1 FROM ledger.transaction"
                       " WHERE assignment_id = %s")
        n = conn.execute(next_number, (topup_till,)).fetchone()[0]
        new_uid = admin_uid(customers + 1)
        state = conn.execute("SELECT state FROM api.topup(%s, %s, %s, 5000, 'cash')",
                             (topup_till, n, new_uid)).fetchone()[0]
        conn.commit()
        n = conn.execute(next_number, (sale_till,)).fetchone()[0]
        items = json.dumps([{"product_id": product_ids[0], "quantity": 1}])
        reserved = conn.execute("SELECT state FROM api.reserve(%s, %s, %s, 1000, %s, %s)",
                                (sale_till, n, admin_uid(1), ADMIN_PRODUCTS[0][1], items)).fetchone()[0]
        conn.commit()
        replicated = conn.execute(
            "SELECT outcome, state FROM api.replicate(%s, %s)",
            (sale_till, json.dumps([{"terminal_tx_number": n, "type": "purchase", "state": "Committed",
                                     "uid": admin_uid(1), "tag_tx_number": 1000, "amount": ADMIN_PRODUCTS[0][1],
                                     "items": json.loads(items)}]))).fetchone()
        conn.commit()
        if (state, reserved, tuple(replicated)) != ("Committed", "ReservePending", ("booked", "Committed")):
            raise BenchFailure(f"admin: api calls on the filled ledger: top-up {state}, reserve {reserved}, "
                               f"replication {replicated}")
        checked = time.monotonic()
        broken = conn.execute("SELECT invariant, subject, detail FROM api.check_invariants()").fetchall()
        check_s = time.monotonic() - checked
    for invariant, subject, detail in broken[:20]:
        print(f"   BROKEN {invariant}: {subject}: {detail}")
    if broken:
        raise BenchFailure(f"admin: {len(broken)} ledger invariants broken after the fill")
    with bench.connect(ADMIN_DBNAME, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")
        size = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()[0]
    print(f"admin setup: event {event_id}, {count} transactions ({topups} top-ups, {count - topups} purchases) of "
          f"{customers} tags at {ADMIN_MERCHANTS} merchants over {ADMIN_HOURS} h, filled in {filled_s:.1f}s; "
          f"api calls on top booked; invariants clean ({check_s:.1f}s); database {size}, "
          f"{time.monotonic() - started:.1f}s in all")
    return {"event_id": event_id, "customers": customers, "merchants": merchants, "start": params["start"],
            "end": end, "transactions": count + 2}


class _FormFields(html.parser.HTMLParser):
    """The fields of the first form of a page whose action ends with ``action``: {name: value} of its inputs."""

    def __init__(self, action: str):
        super().__init__()
        self.action, self.fields, self._inside, self._done = action, {}, False, False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form" and not self._done and (a.get("action") or "").split("?")[0].endswith(self.action):
            self._inside = True
        elif tag == "input" and self._inside and a.get("name"):
            self.fields[a["name"]] = a.get("value") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self._inside:
            self._inside, self._done = False, True


class SiteHttp:
    """One keep-alive HTTP connection to a web site of the gateway (admin site, portal) with its cookies: signs in like
    a browser (the sign-in form's hidden fields, Origin header), then times GETs: from sending the request to the
    last byte of the page. ``label`` names the section in its errors."""

    def __init__(self, port: int, label: str = "admin"):
        import http.client

        self.port, self.origin, self.label = port, f"http://127.0.0.1:{port}", label
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.cookies: dict[str, str] = {}

    def close(self) -> None:
        self.conn.close()

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes, float]:
        """(status, headers, body, milliseconds)."""
        from http.cookies import SimpleCookie

        hdrs = dict(headers or {})
        if self.cookies:
            hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        started = time.perf_counter()
        self.conn.request(method, path, body=body, headers=hdrs)
        resp = self.conn.getresponse()
        raw = resp.read()
        ms = 1000.0 * (time.perf_counter() - started)
        for header in resp.msg.get_all("Set-Cookie") or []:
            jar = SimpleCookie()
            jar.load(header)
            for name, morsel in jar.items():
                if morsel["max-age"] == "0" or "1970" in (morsel["expires"] or ""):
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, raw, ms

    def submit_login(self, path: str, fields: dict[str, str]) -> None:
        """GET the sign-in page at ``path``, POST its form back with ``fields`` filled in; a redirect = signed in."""
        from urllib.parse import urlencode

        status, _, page, _ = self.request("GET", path)
        if status != 200:
            raise BenchFailure(f"{self.label}: GET {path} answered {status}")
        form = _FormFields(path)
        form.feed(page.decode("utf-8", "replace"))
        status, headers, page, _ = self.request(
            "POST", path, urlencode({**form.fields, **fields}).encode(),
            {"Content-Type": "application/x-www-form-urlencoded", "Origin": self.origin})
        if status not in (302, 303):
            raise BenchFailure(f"{self.label}: signing in answered {status}: {page[:300]!r}")

    def sign_in(self, username: str, password: str) -> None:
        """Signs in to the admin site."""
        self.submit_login("/admin/login", {"username": username, "password": password})

    def timed_get(self, path: str, expect: str) -> float:
        """Milliseconds for GET path; its answer must be 200 and hold ``expect``."""
        status, headers, page, ms = self.request("GET", path)
        if status != 200 or expect.encode() not in page:
            raise BenchFailure(f"{self.label}: GET {path} answered {status}"
                               + (f" without {expect!r}" if status == 200 else f": {page[:300]!r}"))
        return ms


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)] if ordered else 0.0


def start_web_server(bench: Bench, port: int, dbname: str = ADMIN_DBNAME,
                     apps: str = "terminal,admin") -> tuple[subprocess.Popen, Path]:
    """``festpay serve --apps APPS`` against the bench database ``dbname`` (terminal API as festpay_terminal, admin
    site and portal as festpay_web) on 127.0.0.1:port; returns once it listens."""
    logfile = bench.workdir / f"{dbname}-server.log"
    env = tool_env() | {
        "DATABASE_URL": bench.cluster.url(dbname),
        "FESTPAY_GATEWAY_DATABASE_URL": bench.cluster.url(dbname, user="festpay_terminal"),
        "FESTPAY_WEB_DATABASE_URL": bench.cluster.url(dbname, user="festpay_web"),
        "FESTPAY_DATA_DIR": str(bench.workdir / f"{dbname}-data"),
    }
    env.pop("FESTPAY_PUBLIC_URL", None)
    cmd = [sys.executable, "-m", "python_gateway.cli", "serve", "--apps", apps, "--port", str(port)]
    proc, _ = start_logged(cmd, logfile, "listening on", f"the {apps} server", env=env)
    return proc, logfile


def section_admin(bench: Bench) -> None:
    """The admin site over HTTP with 1,000,000 transactions in the ledger (FESTPAY_BENCH_ADMIN_TRANSACTIONS): p95
    render time of /admin/transactions with three filter combinations, /admin/customers/{uid} and
    /admin/reports/sales-per-hour, signed in as an admin, one request at a time from one keep-alive connection
    (FESTPAY_BENCH_ADMIN_REQUESTS per page, after a warm-up; filters, tags and hours vary per request). Yardstick in
    the same run: GET /health from the same connection. Server: ``festpay serve --apps terminal,admin`` as its own
    process."""
    import random

    transactions = _env_int("FESTPAY_BENCH_ADMIN_TRANSACTIONS", ADMIN_TRANSACTIONS, minimum=1000)
    requests = _env_int("FESTPAY_BENCH_ADMIN_REQUESTS", ADMIN_REQUESTS, minimum=20)
    setup = setup_admin_db(bench, transactions)
    with bench.connect(ADMIN_DBNAME) as conn:
        conn.execute("SELECT api.create_admin_user(%s, 'admin', %s)", (ADMIN_USER, ADMIN_PASSWORD))
        tz = ZoneInfo(conn.execute("SELECT time_zone FROM ledger.event WHERE id = %s",
                                   (setup["event_id"],)).fetchone()[0])
        conn.commit()
    rng = random.Random(42)
    hours = ADMIN_HOURS - 1

    def local(moment) -> str:
        return moment.astimezone(tz).strftime("%Y-%m-%dT%H:%M")

    row = 'href="/admin/transactions/'          # a row of a transaction list links to its page

    def merchant_hour() -> tuple[str, str]:
        m = rng.choice(setup["merchants"])
        start = setup["start"] + timedelta(hours=rng.randrange(hours))
        return (f"/admin/transactions?merchant_id={m['id']}&from={quote(local(start))}"
                f"&to={quote(local(start + timedelta(hours=1)))}", "<table")   # a quiet hour may have none

    def uid_state() -> tuple[str, str]:
        return f"/admin/transactions?uid={admin_uid(rng.randrange(1, setup['customers'] + 1))}&state=Committed", row

    def customer() -> tuple[str, str]:
        uid = admin_uid(rng.randrange(1, setup["customers"] + 1))
        return f"/admin/customers/{uid}", uid

    # (name, the next request: path and a text its answer must hold)
    pages: list[tuple[str, Callable[[], tuple[str, str]]]] = [
        ("health", lambda: ("/health", '"ok"')),
        ("transactions_plain", lambda: ("/admin/transactions", row)),
        ("transactions_merchant_hour", merchant_hour),
        ("transactions_uid_state", uid_state),
        ("customer", customer),
        ("sales_per_hour", lambda: ("/admin/reports/sales-per-hour", "<td")),
    ]
    port = _free_port()
    server, logfile = start_web_server(bench, port)
    timings: dict[str, list[float]] = {name: [] for name, _ in pages}
    first: dict[str, float] = {}
    try:
        client = SiteHttp(port)
        try:
            client.sign_in(ADMIN_USER, ADMIN_PASSWORD)
            print(f"\n== admin: festpay serve --apps terminal,admin (pid {server.pid}) on http://127.0.0.1:{port}; "
                  f"{requests} requests per page after {ADMIN_WARMUP} warm-up, one at a time", flush=True)
            # Rounds: each page once per round, so that drift touches every page alike.
            for round_no in range(ADMIN_WARMUP + requests):
                for name, request in pages:
                    ms = client.timed_get(*request())
                    first.setdefault(name, ms)
                    if round_no >= ADMIN_WARMUP:
                        timings[name].append(ms)
            # The VAT report over the whole festival reads every receipt's lines: a few requests, the median.
            vat_full = sorted(client.timed_get("/admin/reports/vat", "<td") for _ in range(3))[1]
        finally:
            client.close()
        if server.poll() is not None:
            bench.failures.append(f"admin: the server (pid {server.pid}) died during the run")
    finally:
        _stop_with_log(server, logfile, "admin server")

    p95 = {name: percentile(values, 95) for name, values in timings.items()}
    for name, values in timings.items():
        print(f"   {name:28s} p50 {percentile(values, 50):7.2f} ms  p95 {p95[name]:7.2f} ms  "
              f"max {max(values):7.2f} ms")
    filters = ("transactions_plain", "transactions_merchant_hour", "transactions_uid_state")
    bench.record("admin_ledger_transactions", setup["transactions"])
    bench.record("admin_requests_per_page", requests)
    for name in filters:
        bench.record(f"admin_{name}_p95_ms", p95[name])
    bench.record("admin_transactions_p95_ms", max(p95[name] for name in filters))
    bench.record("admin_customer_p95_ms", p95["customer"])
    bench.record("admin_sales_per_hour_p95_ms", p95["sales_per_hour"])
    bench.record("admin_health_p95_ms", p95["health"])
    # the very first sales-per-hour request stores the finished hours (ledger.sales_hour) that later ones read
    bench.record("admin_sales_per_hour_first_ms", first["sales_per_hour"])
    bench.record("admin_vat_report_all_ms", vat_full)
    for name in ("transactions", "customer", "sales_per_hour"):
        value = float(bench.results[f"admin_{name}_p95_ms"])
        bench.record(f"admin_{name}_vs_health", value / p95["health"] if p95["health"] else 0.0)


# --------------------------------------------------------------------------- section: payout

PAYOUT_DBNAME = "festpay_payout_bench"
PAYOUT_CUSTOMERS = 10_000         # customers asking for a payout, all eligible (FESTPAY_BENCH_PAYOUT_CUSTOMERS)
PAYOUT_ROUNDS = 3                 # rounds of yardstick, run creation and SEPA file (FESTPAY_BENCH_PAYOUT_ROUNDS); the
                                  # run of every round but the last is revoked, the last one's is marked done
PAYOUT_FEE = 150                  # cents: the event's payout fee
PAYOUT_DEBTOR = ("Festwiese GmbH", "DE02120300000000202051", "BYLADEM1001")   # the festival's account
PAYOUT_BANK_CODE = "37040044"     # the customers' banks: German IBANs of this bank code
PAYOUT_PIN = "2580"
PAYOUT_SIGN_IN_BATCH = 500        # portal sign-ins per database transaction (each holds an advisory lock till commit)
PAYOUT_ADMIN, PAYOUT_ADMIN_PASSWORD = "bench-finance", "bench-finance-password"
PORTAL_REQUESTS = 100             # timed requests per portal page (FESTPAY_BENCH_PORTAL_REQUESTS), after ADMIN_WARMUP
PAYOUT_FIRST_NAMES = ("Anna", "Jürgen", "Zoë", "Lukas", "Sophie", "Björn", "Mia", "Élodie", "Noah")
PAYOUT_LAST_NAMES = ("Müller", "Schmidt", "Weiß", "Öztürk", "Nowak", "García", "Fischer", "Ødegård")

# The yardstick of the payout section: the same number of rows as the run has customers, each one single-row UPDATE
# of an account-like row and one INSERT of a line-like row, row at a time in one PL/pgSQL loop, in one transaction
# committed once, by one backend: the shape of a run's per-customer work (api.admin_payout_run_create,
# api.admin_payout_run_done and revoke are one database transaction that loops over the customers) at its
# barest. payout_*_vs_yardstick says how many such elementary rows one customer costs, and so stays comparable
# from machine to machine and from a quiet to a busy hour. Not pgbench's tpcb-like rate of the ledger section: that
# is 16 concurrent clients committing a short transaction each, bound by commits and contention, which one long
# transaction in one backend never meets (and ``bench payout`` alone has no tpcb run). The rounds alternate yardstick
# and subject (the yardstick is taken before the run creation, right after it and after the revoke or done; the
# median of the three counts, so one disturbed yardstick does not move the round), so that drift during the section
# touches both alike.
PAYOUT_FLOOR_SQL = (
    "CREATE SCHEMA bench_floor",
    "CREATE TABLE bench_floor.account (id bigint PRIMARY KEY, held bigint NOT NULL DEFAULT 0)",
    """CREATE TABLE bench_floor.line (round integer, line_no integer, account_id bigint NOT NULL,
                                     amount bigint NOT NULL, PRIMARY KEY (round, line_no))""",
    "INSERT INTO bench_floor.account (id) SELECT g FROM generate_series(1, %(n)s) g",
    """CREATE FUNCTION bench_floor.rows(p_round integer, p_n integer) RETURNS void LANGUAGE plpgsql AS $$
       -- The yardstick: p_n times one single-row UPDATE and one INSERT. Returns nothing.
       BEGIN
           FOR i IN 1 .. p_n LOOP
               UPDATE bench_floor.account SET held = held + 1 WHERE id = i;
               INSERT INTO bench_floor.line (round, line_no, account_id, amount) VALUES (p_round, i, i, 1);
           END LOOP;
       END
       $$""",
)


def german_iban(account: int, bank_code: str = PAYOUT_BANK_CODE) -> str:
    """A German IBAN: DE, the ISO 7064 mod 97-10 check digits, the bank code (8 digits), the account number (10)."""
    bban = f"{bank_code}{account:010d}"
    return f"DE{98 - int(bban + '131400') % 97:02d}{bban}"      # D = 13, E = 14, check digits 00 while computing


@dataclass(frozen=True)
class PayoutCustomer:
    """A bench customer: its tag, its balance and the payout request it makes in the portal."""

    c: int
    uid: str
    balance: int
    iban: str | None
    holder: str | None
    email: str
    donate: str
    donation: int | None

    def split(self, fee: int) -> tuple[int, int, int]:
        """(transfer, fee, donation) in cents by the rule of ledger.payout_candidates."""
        d = {"all": self.balance, "part": min(self.donation or 0, self.balance)}.get(self.donate, 0)
        rest = self.balance - d - fee
        return max(rest, 0), fee if rest > 0 else 0, d


def payout_customers(n: int) -> list[PayoutCustomer]:
    """n customers, balances 10.00 to 100.00: 60 % donate nothing, 30 % a part (1, 2 or 5 euros, or 200 euros, which
    a run caps at the balance: nothing transferred), 10 % everything (half of them without bank data); account
    holders with letters outside the SEPA character set (transliterated in the SEPA file)."""
    customers = []
    for c in range(1, n + 1):
        kind = c % 20
        donate = "none" if kind < 12 else "part" if kind < 18 else "all"
        bank = kind != 18
        customers.append(PayoutCustomer(
            c=c, uid=str(UID_BASE + c), balance=1000 + (c * 7919) % 9001,
            iban=german_iban(c * 104_729 % 10 ** 10) if bank else None,
            holder=(f"{PAYOUT_FIRST_NAMES[c % len(PAYOUT_FIRST_NAMES)]} "
                    f"{PAYOUT_LAST_NAMES[c // len(PAYOUT_FIRST_NAMES) % len(PAYOUT_LAST_NAMES)]}") if bank else None,
            email=f"guest{c}@example.org", donate=donate,
            donation=(100, 200, 500, 20_000)[c % 4] if donate == "part" else None))
    return customers


def _timed(conn: psycopg.Connection, query: str, params: tuple = ()) -> tuple[float, object]:
    """(milliseconds, first column of the first row) of one statement and its commit."""
    started = time.perf_counter()
    row = conn.execute(query, params).fetchone()
    conn.commit()
    return 1000.0 * (time.perf_counter() - started), (row[0] if row else None)


def setup_payout_db(bench: Bench, customers: list[PayoutCustomer]) -> dict:
    """A fresh database after the festival: the event with a payout fee and the festival's account, the customers
    topped up through api.topup, each signed in to the portal (api.portal_sign_in) and its payout request saved
    through api.portal_payout_set (timed); an admin user of role finance signed in; the yardstick's tables."""
    n = len(customers)
    fresh_database(bench, PAYOUT_DBNAME)
    started = time.monotonic()
    with bench.connect(PAYOUT_DBNAME) as conn:
        event_id = conn.execute(
            "SELECT api.create_event('Payout Bench Festival', 'EUR', 20000, 500, 20000, p_payout_fee => %s)",
            (PAYOUT_FEE,)).fetchone()[0]
        # The festival's account, as the DBA (on the admin site it is an event setting).
        conn.execute("UPDATE ledger.event SET payout_debtor_name = %s, payout_debtor_iban = %s, payout_debtor_bic = %s"
                     " WHERE id = %s", (*PAYOUT_DEBTOR, event_id))
        conn.execute("SELECT api.create_position(%s, 'Top-up', 'topup')", (event_id,))
        till = conn.execute(
            "SELECT assignment_id FROM api.register_terminal(api.create_registration_code(%s, 'Top-up'), "
            "'bench top-up')", (event_id,)).fetchone()[0]
        conn.execute("SELECT api.create_admin_user(%s, 'finance', %s)", (PAYOUT_ADMIN, PAYOUT_ADMIN_PASSWORD))
        conn.commit()
        funded, total = conn.execute(
            """SELECT count(*), coalesce(sum(t.balance), 0) FROM unnest(%s::text[], %s::bigint[]) WITH ORDINALITY
                      x(uid, amount, n), LATERAL api.topup(%s, x.n, x.uid, x.amount, 'cash') t
                WHERE t.state = 'Committed' AND t.balance = x.amount""",
            ([p.uid for p in customers], [p.balance for p in customers], till)).fetchone()
        conn.commit()
        if funded != n or total != sum(p.balance for p in customers):
            raise BenchFailure(f"payout: {funded} of {n} customers funded with {total} cents")
        # The PINs, as the DBA: one bcrypt hash of cost 4 for every tag (the tag import hashes each PIN with cost 8,
        # ~20 ms apiece; the sign-ins below check it like any other).
        conn.execute("UPDATE ledger.tag SET pin_hash = (SELECT extensions.crypt(%s, extensions.gen_salt('bf', 4)))"
                     " WHERE event_id = %s", (PAYOUT_PIN, event_id))
        for statement in PAYOUT_FLOOR_SQL:
            conn.execute(statement, {"n": n} if "%(n)s" in statement else None)
        conn.commit()
        funded_s = time.monotonic() - started
    with bench.connect(PAYOUT_DBNAME, user="festpay_web") as web:
        tokens: list[str] = []
        for i in range(0, n, PAYOUT_SIGN_IN_BATCH):
            rows = web.execute(
                """SELECT s.outcome, s.token FROM unnest(%s::text[]) WITH ORDINALITY x(uid, n),
                          LATERAL api.portal_sign_in(x.uid, %s, 'bench') s ORDER BY x.n""",
                ([p.uid for p in customers[i:i + PAYOUT_SIGN_IN_BATCH]], PAYOUT_PIN)).fetchall()
            web.commit()
            if any(outcome != "ok" for outcome, _ in rows):
                raise BenchFailure(f"payout: portal sign-in refused for {sum(o != 'ok' for o, _ in rows)} customers")
            tokens += [token for _, token in rows]
        signed_in_s = time.monotonic() - started - funded_s
        set_ms, saved = _timed(
            web,
            """SELECT count(*) FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::bigint[])
                      x(token, iban, holder, email, donate, donation),
                      LATERAL api.portal_payout_set(x.token, x.iban, x.holder, x.email, x.donate, x.donation)""",
            (tokens, [p.iban for p in customers], [p.holder for p in customers], [p.email for p in customers],
             [p.donate for p in customers], [p.donation for p in customers]))
        if saved != n:
            raise BenchFailure(f"payout: {saved} of {n} payout requests saved")
        outcome, admin_token = web.execute("SELECT outcome, token FROM api.admin_sign_in(%s, %s, 'bench')",
                                           (PAYOUT_ADMIN, PAYOUT_ADMIN_PASSWORD)).fetchone()
        web.commit()
        if outcome != "ok":
            raise BenchFailure(f"payout: the finance admin's sign-in was {outcome}")
    with bench.connect(PAYOUT_DBNAME, autocommit=True) as conn:
        broken = conn.execute("SELECT count(*) FROM api.check_invariants()").fetchone()[0]
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")
        event_name, time_zone = conn.execute("SELECT name, time_zone FROM ledger.event WHERE id = %s",
                                             (event_id,)).fetchone()
    if broken:
        raise BenchFailure(f"payout: {broken} ledger invariants broken after the set-up")
    print(f"payout setup: event {event_id} (payout fee {PAYOUT_FEE} cents), {n} customers topped up with "
          f"{total} cents in {funded_s:.1f}s, signed in to the portal in {signed_in_s:.1f}s, payout requests "
          f"saved through api.portal_payout_set in {set_ms / 1000:.1f}s; invariants clean")
    return {"event_id": event_id, "event_name": event_name, "time_zone": time_zone, "admin_token": admin_token,
            "set_ms": set_ms}


def measure_portal(bench: Bench, visitor: PayoutCustomer, requests: int) -> dict[str, list[float]]:
    """``festpay serve --apps terminal,portal`` as its own process; one client signs in to the portal with the
    visitor's UID and PIN and times GET /portal/ (balance), /portal/payout (its payout request) and GET /health (the
    yardstick) ``requests`` times each, after ADMIN_WARMUP rounds, the pages taking turns."""
    pages = (("health", "/health", '"ok"'), ("balance", "/portal/", 'data-money="balance"'),
             ("payout", "/portal/payout", visitor.iban or 'name="iban"'))
    timings: dict[str, list[float]] = {name: [] for name, _, _ in pages}
    port = _free_port()
    server, logfile = start_web_server(bench, port, PAYOUT_DBNAME, "terminal,portal")
    try:
        client = SiteHttp(port, "payout")
        try:
            client.submit_login("/portal/login", {"uid": visitor.uid, "pin": PAYOUT_PIN})
            print(f"\n== payout: festpay serve --apps terminal,portal (pid {server.pid}) on http://127.0.0.1:{port}; "
                  f"{requests} requests per page after {ADMIN_WARMUP} warm-up, one at a time", flush=True)
            for round_no in range(ADMIN_WARMUP + requests):
                for name, path, expect in pages:
                    ms = client.timed_get(path, expect)
                    if round_no >= ADMIN_WARMUP:
                        timings[name].append(ms)
        finally:
            client.close()
        if server.poll() is not None:
            bench.failures.append(f"payout: the portal server (pid {server.pid}) died during the run")
    finally:
        _stop_with_log(server, logfile, "portal server")
    for name, values in timings.items():
        print(f"   {name:10s} p50 {percentile(values, 50):7.2f} ms  p95 {percentile(values, 95):7.2f} ms  "
              f"max {max(values):7.2f} ms")
    return timings


def section_payout(bench: Bench) -> None:
    """Payouts after the festival with FESTPAY_BENCH_PAYOUT_CUSTOMERS customers (default 10,000) asking for one, all
    eligible, as finance does it through the api (as festpay_web, signed in with role finance): per round
    (FESTPAY_BENCH_PAYOUT_ROUNDS, default 3) the yardstick (PAYOUT_FLOOR_SQL), api.admin_payouts (the payouts page's
    summary), api.admin_payout_run_create of everybody in one run, the yardstick again, api.admin_payout_export with
    the SEPA file made and validated against the XSD (python_gateway.sepa, as the download does), then
    api.admin_payout_run_revoke (the customers are eligible again) or, in the last round, api.admin_payout_run_done.
    Every run's totals, the SEPA file's count and sum, the customers' balances after done and api.check_invariants()
    are checked. Before the runs: the portal's balance and payout pages of a signed-in visitor against GET /health on
    the same connection (FESTPAY_BENCH_PORTAL_REQUESTS each, default 100)."""
    from . import sepa

    n = _env_int("FESTPAY_BENCH_PAYOUT_CUSTOMERS", PAYOUT_CUSTOMERS, minimum=20)
    rounds = _env_int("FESTPAY_BENCH_PAYOUT_ROUNDS", PAYOUT_ROUNDS)
    requests = _env_int("FESTPAY_BENCH_PORTAL_REQUESTS", PORTAL_REQUESTS, minimum=20)
    customers = payout_customers(n)
    splits = [p.split(PAYOUT_FEE) for p in customers]
    if any(transfer == 0 and donation < p.balance for p, (transfer, _, donation) in zip(customers, splits)):
        raise BenchFailure("payout: the bench's customers are not all eligible")
    expected = (n, sum(s[0] for s in splits), sum(s[1] for s in splits), sum(s[2] for s in splits))
    sepa_count = sum(1 for s in splits if s[0] > 0)
    setup = setup_payout_db(bench, customers)
    token = setup["admin_token"]

    portal = measure_portal(bench, customers[0], requests)

    timings: dict[str, list[float]] = collections.defaultdict(list)
    started = time.perf_counter()
    sepa._schema()                    # a server compiles the XSD once, at its first download
    xsd_ms = 1000.0 * (time.perf_counter() - started)
    print(f"\n== payout: {rounds} rounds of yardstick ({n} rows), payouts summary, run of {n} customers, SEPA file "
          f"({sepa_count} transfers), then revoke (done in the last round); XSD compiled in {xsd_ms:.0f} ms",
          flush=True)
    with bench.connect(PAYOUT_DBNAME, user="festpay_web") as web, bench.connect(PAYOUT_DBNAME) as dba:
        execution_date = dba.execute("SELECT (now() AT TIME ZONE %s)::date + 1", (setup["time_zone"],)).fetchone()[0]
        dba.commit()
        for r in range(1, rounds + 1):
            with bench.connect(PAYOUT_DBNAME, autocommit=True) as vac:
                vac.execute("VACUUM ANALYZE")          # every round starts clean (as the ledger section's runs)
            yardstick = [_timed(dba, "SELECT bench_floor.rows(%s, %s)", (3 * r - 2, n))[0]]
            ms, summary = _timed(web, "SELECT api.admin_payouts(%s)", (token,))
            timings["summary"].append(ms)
            if summary["eligible"]["count"] != n:
                raise BenchFailure(f"payout: round {r}: {summary['eligible']['count']} of {n} customers eligible "
                                   f"(waiting: {summary['waiting']})")
            ms, run_id = _timed(web, "SELECT api.admin_payout_run_create(%s, %s, %s, %s)",
                                (token, n, 10 ** 12, execution_date))
            timings["create"].append(ms)
            yardstick.append(_timed(dba, "SELECT bench_floor.rows(%s, %s)", (3 * r - 1, n))[0])
            totals = dba.execute("SELECT count, transfers, fees, donations FROM ledger.payout_run WHERE id = %s",
                                 (run_id,)).fetchone()
            dba.commit()
            if tuple(totals) != expected:
                raise BenchFailure(f"payout: round {r}: run {run_id} has (count, transfers, fees, donations) "
                                   f"{tuple(totals)}, expected {expected}")
            t0 = time.perf_counter()
            document = web.execute("SELECT api.admin_payout_export(%s, %s)", (token, run_id)).fetchone()[0]
            web.commit()
            t1 = time.perf_counter()
            xml = sepa.sepa_xml(sepa.run_from_document(document, setup["event_name"]))
            t2 = time.perf_counter()
            timings["export"].append(1000.0 * (t1 - t0))
            timings["sepa"].append(1000.0 * (t2 - t0))
            file = sepa.sepa_summary(xml)
            if (file["count"], file["sum"]) != (sepa_count, expected[1]):
                raise BenchFailure(f"payout: round {r}: the SEPA file has {file['count']} transfers of {file['sum']} "
                                   f"cents, expected {sepa_count} of {expected[1]}")
            if r < rounds:
                ms, _ = _timed(web, "SELECT api.admin_payout_run_revoke(%s, %s, 'bench: the next round')",
                               (token, run_id))
                timings["revoke"].append(ms)
            else:
                ms, done = _timed(web, "SELECT api.admin_payout_run_done(%s, %s)", (token, run_id))
                timings["done"].append(ms)
                if (done["count"], done["transfers"], done["fees"], done["donations"]) != expected:
                    raise BenchFailure(f"payout: run {run_id} done with {done}, expected {expected}")
            yardstick.append(_timed(dba, "SELECT bench_floor.rows(%s, %s)", (3 * r, n))[0])
            timings["yardstick"].append(statistics.median(yardstick))
            last = {name: values[-1] for name, values in timings.items()}
            print(f"   round {r}: yardstick {last['yardstick']:6.1f} ms ({'/'.join(f'{v:.0f}' for v in yardstick)}), "
                  f"summary {last['summary']:7.1f} ms, run {run_id} created {last['create']:8.1f} ms, "
                  f"export {last['export']:7.1f} ms + SEPA file {last['sepa'] - last['export']:7.1f} ms "
                  f"({len(xml) // 1024} KiB), "
                  + (f"revoked {last['revoke']:8.1f} ms" if r < rounds else f"done {last['done']:8.1f} ms"),
                  flush=True)

    # Where the SEPA file's time goes: the last file validated once more on its own (the XSD check, pure Python).
    started = time.perf_counter()
    sepa.validate_pain001(xml)
    validate_ms = 1000.0 * (time.perf_counter() - started)
    print(f"   the last SEPA file's XSD validation alone: {validate_ms:.1f} ms", flush=True)

    with bench.connect(PAYOUT_DBNAME, autocommit=True) as conn:
        broken = conn.execute("SELECT invariant, subject, detail FROM api.check_invariants()").fetchall()
        left, held, blocked = conn.execute(
            """SELECT count(*) FILTER (WHERE a.balance <> 0), count(*) FILTER (WHERE a.held <> 0),
                      count(*) FILTER (WHERE g.status = 'blocked')
                 FROM ledger.tag g JOIN ledger.account a ON a.id = g.account_id WHERE g.event_id = %s""",
            (setup["event_id"],)).fetchone()
    for invariant, subject, detail in broken[:20]:
        print(f"   BROKEN {invariant}: {subject}: {detail}")
    print(f"   after done: {left} customers with a balance, {held} holding money, {blocked} of {n} tags blocked; "
          f"{len(broken)} invariants broken")
    bench.record("payout_invariants_broken", len(broken))
    if broken:
        bench.failures.append(f"payout: {len(broken)} ledger invariants broken")
    if left or held or blocked != n:
        bench.failures.append(f"payout: after done {left} customers keep a balance, {held} hold money, "
                              f"{blocked} of {n} tags blocked")

    median = statistics.median
    floor_us = 1000.0 * median(timings["yardstick"]) / n
    per_customer = {name: 1000.0 * median(values) / n for name, values in timings.items()}
    p95 = {name: percentile(values, 95) for name, values in portal.items()}
    bench.record("payout_customers", n)
    bench.record("payout_rounds", rounds)
    bench.record("payout_sepa_transfers", sepa_count)
    bench.record("payout_set_us_per_customer", 1000.0 * setup["set_ms"] / n)
    bench.record("payout_summary_ms", median(timings["summary"]))
    bench.record("payout_summary_ms_rounds", ",".join(f"{v:.0f}" for v in timings["summary"]))
    bench.record("payout_run_create_ms", median(timings["create"]))
    bench.record("payout_run_create_ms_rounds", ",".join(f"{v:.0f}" for v in timings["create"]))
    bench.record("payout_export_ms", median(timings["export"]))
    bench.record("payout_sepa_ms", median(timings["sepa"]))
    if timings["revoke"]:
        bench.record("payout_revoke_ms", median(timings["revoke"]))
    bench.record("payout_done_ms", timings["done"][0])
    bench.record("payout_xsd_load_ms", xsd_ms)
    bench.record("payout_xsd_validate_ms", validate_ms)
    bench.record("payout_run_us_per_customer", per_customer["create"])
    bench.record("payout_sepa_us_per_customer", per_customer["sepa"])
    bench.record("payout_done_us_per_customer", per_customer["done"])
    bench.record("payout_yardstick_us_per_row", floor_us)
    bench.record("payout_yardstick_ms_rounds", ",".join(f"{v:.0f}" for v in timings["yardstick"]))
    # within each round: the run against that round's yardstick; the rest against the median yardstick
    run_vs = [c / y for c, y in zip(timings["create"], timings["yardstick"]) if y > 0]
    bench.record("payout_run_vs_yardstick", median(run_vs))
    bench.record("payout_run_vs_yardstick_rounds", ",".join(f"{v:.2f}" for v in run_vs))
    bench.record("payout_sepa_vs_yardstick", per_customer["sepa"] / floor_us)
    bench.record("payout_done_vs_yardstick", per_customer["done"] / floor_us)
    bench.record("payout_set_vs_yardstick", 1000.0 * setup["set_ms"] / n / floor_us)
    # one customer's whole payout: run creation, SEPA file and done
    bench.record("payout_vs_yardstick",
                 (per_customer["create"] + per_customer["sepa"] + per_customer["done"]) / floor_us)
    bench.record("portal_requests_per_page", requests)
    bench.record("portal_balance_p95_ms", p95["balance"])
    bench.record("portal_payout_p95_ms", p95["payout"])
    bench.record("portal_health_p95_ms", p95["health"])
    for name in ("balance", "payout"):
        bench.record(f"portal_{name}_vs_health", p95[name] / p95["health"] if p95["health"] else 0.0)


# --------------------------------------------------------------------------- main

SECTIONS: dict[str, Section] = {
    "ledger": section_ledger,
    "gateway": section_gateway,
    "signing": section_signing,
    "admin": section_admin,
    "payout": section_payout,
}


def bench_rounds() -> int:
    value = os.environ.get("FESTPAY_BENCH_ROUNDS", "").strip() or str(DEFAULT_ROUNDS)
    if not value.isdigit() or int(value) < 1:
        raise SystemExit(f"FESTPAY_BENCH_ROUNDS={value!r} must be a whole number of at least 1")
    return int(value)


def bench_seconds() -> int:
    value = os.environ.get("FESTPAY_BENCH_SECONDS", "").strip()
    if not value:
        return DEFAULT_SECONDS
    try:
        seconds = int(value)
    except ValueError:
        raise SystemExit(f"FESTPAY_BENCH_SECONDS={value!r} is not a whole number of seconds") from None
    if seconds < 1:
        raise SystemExit("FESTPAY_BENCH_SECONDS must be at least 1")
    return seconds


def _raise_on_sigterm(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def run_sections(bench: Bench, names: list[str]) -> None:
    for name in names:
        started = time.monotonic()
        print(f"\n######## section {name}", flush=True)
        try:
            SECTIONS[name](bench)
        except (BenchFailure, ProcessFailure) as err:
            bench.failures.append(f"{name}: {err}")
            print(f"section {name} FAILED: {err}")
        print(f"(section {name}: {time.monotonic() - started:.0f}s)", flush=True)


def print_summary(bench: Bench) -> None:
    r = bench.results
    print("\n######## summary")
    if "tpcb_tps" in r:
        print(f"yardstick pgbench tpcb-like: {float(r['tpcb_tps']):.0f} tps")
    if "purchase_spread_per_s" in r:
        print(f"purchases spread over {MERCHANTS} merchants: {float(r['purchase_spread_per_s']):.0f}/s "
              f"({2 * float(r['purchase_spread_per_s']):.0f} database transactions/s)")
    if "purchase_hot_per_s" in r:
        print(f"purchases at one hot merchant: {float(r['purchase_hot_per_s']):.0f}/s")
    if "purchase_vs_tpcb" in r:
        ok = float(r["purchase_vs_tpcb"]) >= GOAL_PURCHASE_VS_TPCB
        print(f"purchase_vs_tpcb {float(r['purchase_vs_tpcb']):.2f} (goal >= {GOAL_PURCHASE_VS_TPCB}: "
              f"{'met' if ok else 'NOT met'})")
    if "hot_vs_spread" in r:
        ok = float(r["hot_vs_spread"]) >= GOAL_HOT_VS_SPREAD
        print(f"hot_vs_spread {float(r['hot_vs_spread']):.2f} (goal >= {GOAL_HOT_VS_SPREAD}: "
              f"{'met' if ok else 'NOT met'})")
    if "purchases_per_s" in r:
        goals = (
            ("purchases_per_s", float(r["purchases_per_s"]) >= GOAL_GATEWAY_PURCHASES,
             f">= {GOAL_GATEWAY_PURCHASES:.0f} at full load"),
            ("reserve_p99_ms", float(r["reserve_p99_ms"]) < GOAL_GATEWAY_RESERVE_P99_MS,
             f"< {GOAL_GATEWAY_RESERVE_P99_MS:.0f} at {GATEWAY_RATE:.0f} purchases/s"),
            ("errors", r["errors"] == "0", "= 0"),
        )
        for name, ok, goal in goals:
            print(f"gateway {name} {r[name]} (goal {goal}: {'met' if ok else 'NOT met'})")
        print(f"gateway health_rps {float(r['health_rps']):.0f} (yardstick), purchase_calls_vs_health "
              f"{float(r['purchase_calls_vs_health']):.3f}")
    if "admin_transactions_p95_ms" in r:
        for name in ("admin_transactions_p95_ms", "admin_customer_p95_ms", "admin_sales_per_hour_p95_ms"):
            ok = float(r[name]) < GOAL_ADMIN_P95_MS
            print(f"{name} {float(r[name]):.1f} (goal < {GOAL_ADMIN_P95_MS:.0f} with "
                  f"{int(r['admin_ledger_transactions']):,} transactions: {'met' if ok else 'NOT met'})")
        print(f"admin_health_p95_ms {float(r['admin_health_p95_ms']):.2f} (yardstick: GET /health, same connection)")
    if "payout_run_create_ms" in r:
        print(f"payout run of {int(r['payout_customers']):,} customers: created "
              f"{float(r['payout_run_create_ms']):.0f} ms, export + SEPA file {float(r['payout_sepa_ms']):.0f} ms, "
              f"done {float(r['payout_done_ms']):.0f} ms; payout_vs_yardstick {float(r['payout_vs_yardstick']):.1f} "
              f"(one customer's payout in yardstick rows of {float(r['payout_yardstick_us_per_row']):.1f} us)")
        print(f"portal_balance_p95_ms {float(r['portal_balance_p95_ms']):.2f}, portal_payout_p95_ms "
              f"{float(r['portal_payout_p95_ms']):.2f} (yardstick: GET /health p95 "
              f"{float(r['portal_health_p95_ms']):.2f}, same connection)")
    for failure in bench.failures:
        print(f"FAILED: {failure}")
    print()
    for name, value in r.items():
        print(f"{name}={value}")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m python_gateway.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("sections", nargs="*", metavar="SECTION",
                        help=f"sections to run, in order (default: all: {', '.join(SECTIONS)})")
    args = parser.parse_args(argv)
    names = args.sections or list(SECTIONS)
    unknown = [name for name in names if name not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    seconds = bench_seconds()
    previous_sigterm = signal.signal(signal.SIGTERM, _raise_on_sigterm)

    root = Path(tempfile.mkdtemp(prefix="festpay-bench-"))
    cluster = EmbeddedPostgres(root)
    bench = Bench(cluster=cluster, seconds=seconds, rounds=bench_rounds(), workdir=root)
    bench.record("clients", bench.clients)
    bench.record("rounds", bench.rounds)
    bench.record("threads", bench.threads)
    bench.record("duration_s", seconds)
    started = time.monotonic()
    interrupted = False
    try:
        cluster.acquire_lock()
        cluster.start()
        with cluster.connect("postgres", autocommit=True) as conn:
            settings = dict(conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('server_version', 'synchronous_commit', 'fsync', 'shared_buffers', 'wal_level', 'max_wal_size')"
            ).fetchall())
        print(f"throwaway cluster in {cluster.data_dir} (PostgreSQL {settings.get('server_version')}, "
              f"fsync={settings.get('fsync')}, synchronous_commit={settings.get('synchronous_commit')}, "
              f"shared_buffers={settings.get('shared_buffers')}x8kB); {os.cpu_count()} CPUs")
        bench.record("synchronous_commit", settings.get("synchronous_commit"))
        bench.record("cpus", os.cpu_count())
        run_sections(bench, names)
    except KeyboardInterrupt:
        print("\ninterrupted; removing the benchmark cluster", file=sys.stderr)
        bench.failures.append("interrupted")
        interrupted = True
    except Exception as err:
        bench.failures.append(f"{type(err).__name__}: {err}")
        print(f"benchmark failed: {type(err).__name__}: {err}", file=sys.stderr)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)   # let the clean-up finish
        try:
            cluster.destroy()
        except Exception as err:  # noqa: BLE001 - report and go on removing files
            print(f"could not stop the benchmark cluster: {err}", file=sys.stderr)
        cluster.release_lock()
        shutil.rmtree(root, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous_sigterm)
    bench.record("total_s", round(time.monotonic() - started))
    print_summary(bench)
    if interrupted:
        return 130
    return 1 if bench.failures else 0


if __name__ == "__main__":
    sys.exit(main())
