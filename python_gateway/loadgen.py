"""Load generator for the gateway section of ``make bench`` (see :mod:`python_gateway.bench`).

Two subcommands, each run as its own process by the bench:

``serve``  the real gateway app (:func:`python_gateway.gateway.create_app`, default options, as ``festpay serve``
           runs it) on 127.0.0.1:PORT, optionally with SO_REUSEPORT so that several gateway processes share one
           port (the kernel spreads connections over them).  Prints ``READY <url>`` once listening; SIGTERM or
           SIGINT stops it cleanly.  ``--profile FILE`` writes a cProfile dump at exit (for findings only).

``run``    one asyncio process with one aiohttp session acting as N terminals: registers them through
           ``POST /terminal/v1/register`` (codes from the setup file), then runs phases and writes a JSON report:

           warmup  closed loop, not reported (secret cache, pool growth, plan caches);
           full    closed loop: every terminal runs purchases back to back for a fixed time;
           rate    open loop: purchases START on a fixed schedule (``--rate`` per second) on whichever terminal is
                   idle, whatever the answers; reserve latency measured per call;
           health  closed loop ``GET /health`` at the same concurrency: the yardstick.

           A purchase is what a terminal does at the till, each request signed with :mod:`python_gateway.signing`:
           ``POST tags/{uid}/sync`` (empty log, with an Idempotency-Key like the reference terminal), ``POST reserve``,
           ``POST transactions`` (the purchase Committed).  Any non-2xx answer, exception, or an answer that is not
           the expected one (sync not active, reserve not ReservePending, replication not booked) is an error.
           Each terminal has its own tags, so a tag is never at two tills at once, and keeps each tag's counter
           and balance like the tag itself would.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

from . import signing

API = "/terminal/v1"


# --------------------------------------------------------------------------- serve


async def _serve(database_url: str, host: str, port: int, reuse_port: bool) -> None:
    """The real gateway (as ``festpay serve`` runs it), until SIGINT or SIGTERM."""
    from .gateway.app import gateway_service

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with gateway_service(database_url, port, host, reuse_port=reuse_port) as url:
        print(f"READY {url} pid {os.getpid()}", flush=True)
        await stop.wait()


def cmd_serve(args: argparse.Namespace) -> int:
    if args.host != "127.0.0.1":
        raise SystemExit("the bench gateway listens on 127.0.0.1 only")
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    try:
        asyncio.run(_serve(args.database_url, args.host, args.port, args.reuse_port))
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)
    return 0


# --------------------------------------------------------------------------- CPU accounting


def _proc_cpu_s(pid: int) -> float:
    """utime + stime of one process in seconds (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _machine_busy_s() -> float:
    """Busy CPU seconds of the whole machine (all but idle and iowait) since boot."""
    try:
        with open("/proc/stat") as f:
            j = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0.0
    return (sum(j) - j[3] - j[4]) / os.sysconf("SC_CLK_TCK")


def _tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its direct children (PostgreSQL: the postmaster and its backends)."""
    total = _proc_cpu_s(pid)
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = [int(c) for c in f.read().split()]
    except (OSError, ValueError):
        children = []
    return total + sum(_proc_cpu_s(c) for c in children)


class CpuMeter:
    """Cores used over one phase by the load generator, the gateway processes, PostgreSQL and the rest
    (the kernel's loopback networking in softirq, other processes)."""

    def __init__(self, gateway_pids: list[int], postgres_pid: int | None):
        self.gateway_pids = gateway_pids
        self.postgres_pid = postgres_pid

    def snapshot(self) -> tuple[float, ...]:
        return (time.monotonic(), _machine_busy_s(), _proc_cpu_s(os.getpid()),
                sum(_proc_cpu_s(p) for p in self.gateway_pids),
                _tree_cpu_s(self.postgres_pid) if self.postgres_pid else 0.0)

    @staticmethod
    def cores(before, after) -> dict[str, float]:
        wall = max(after[0] - before[0], 1e-6)
        machine, loadgen, gateways, postgres = ((after[i] - before[i]) / wall for i in (1, 2, 3, 4))
        return {"machine": round(machine, 2), "loadgen": round(loadgen, 2), "gateways": round(gateways, 2),
                "postgres": round(postgres, 2), "rest": round(max(machine - loadgen - gateways - postgres, 0.0), 2)}


# --------------------------------------------------------------------------- the terminals


class CallFailed(Exception):
    pass


@dataclass
class Tag:
    uid: str
    balance: int
    counter: int = 0          # the tag's transaction counter: the next charge writes counter + 1
    sync_url: URL | None = None
    sync_path: str = ""


@dataclass
class Terminal:
    assignment_id: int
    secret: str
    tags: list[Tag]
    number: int = 0           # the terminal's own transaction counter
    next_tag: int = 0


@dataclass
class Phase:
    name: str
    purchases: int = 0
    requests: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    reserve_ms: list[float] = field(default_factory=list)
    purchase_ms: list[float] = field(default_factory=list)
    started_late: int = 0
    elapsed_s: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)

    def error(self, text: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 10:
            self.error_samples.append(text[:300])


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class LoadGenerator:
    def __init__(self, base_url: str, setup: dict[str, Any], session: aiohttp.ClientSession,
                 sync_key: bool = True):
        self.base = base_url.rstrip("/")
        self.sync_key = sync_key
        self.setup = setup
        self.session = session
        self.price = int(setup["price"])
        self.product_id = int(setup["product_id"])
        self.terminals: list[Terminal] = []
        self.reserve_url = URL(self.base + API + "/reserve", encoded=True)
        self.replicate_url = URL(self.base + API + "/transactions", encoded=True)
        self.health_url = URL(self.base + "/health", encoded=True)

    # ---------------------------------------------------------------- plumbing

    async def _send(self, phase: Phase, term: Terminal | None, method: str, url: URL, path: str, body: Any,
                    expect: int, extra_headers: dict[str, str] | None = None) -> dict[str, Any] | None:
        """One request; returns the JSON answer, or None after counting an error."""
        raw = b"" if body is None else _dumps(body)
        headers: dict[str, str] = {}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if term is not None:
            ts = int(time.time())
            headers[signing.HEADER_ASSIGNMENT] = str(term.assignment_id)
            headers[signing.HEADER_TIMESTAMP] = str(ts)
            headers[signing.HEADER_SIGNATURE] = signing.sign(term.secret, method, path, ts, raw)
        if extra_headers:
            headers.update(extra_headers)
        phase.requests += 1
        try:
            async with self.session.request(method, url, data=raw if body is not None else None,
                                            headers=headers) as resp:
                status = resp.status
                text = await resp.read()
        except Exception as err:  # noqa: BLE001 - every failure counts
            phase.error(f"{method} {path}: {type(err).__name__}: {err}")
            return None
        if status != expect:
            phase.error(f"{method} {path}: HTTP {status}: {text[:200]!r}")
            return None
        try:
            return json.loads(text)
        except ValueError:
            phase.error(f"{method} {path}: HTTP {status} without JSON")
            return None

    # ---------------------------------------------------------------- registration

    async def register_all(self) -> None:
        terminals = self.setup["terminals"]
        phase = Phase("register")
        url = URL(self.base + API + "/register", encoded=True)

        async def register(i: int, spec: dict[str, Any]) -> Terminal | None:
            answer = await self._send(phase, None, "POST", url, API + "/register",
                                      {"registration_code": spec["code"], "device": f"bench terminal {i}"}, 201,
                                      {"Idempotency-Key": str(uuid.uuid4())})
            if answer is None:
                return None
            tags = []
            for uid in spec["uids"]:
                path = f"{API}/tags/{uid}/sync"
                tags.append(Tag(uid, int(self.setup["funding"]), sync_url=URL(self.base + path, encoded=True),
                                sync_path=path))
            return Terminal(int(answer["assignment_id"]), answer["secret"], tags)

        results = await asyncio.gather(*(register(i, spec) for i, spec in enumerate(terminals)))
        if phase.errors or any(r is None for r in results):
            raise SystemExit(f"registration failed: {phase.error_samples}")
        self.terminals = [r for r in results if r is not None]

    # ---------------------------------------------------------------- one purchase

    async def purchase(self, phase: Phase, term: Terminal, scheduled: float | None = None) -> bool:
        started = time.perf_counter()
        tag = term.tags[term.next_tag]
        term.next_tag = (term.next_tag + 1) % len(term.tags)
        # 1. first tap: sync the tag (empty log: nothing unacknowledged), with an Idempotency-Key.
        synced = await self._send(phase, term, "POST", tag.sync_url, tag.sync_path,
                                  {"tag_tx_number": tag.counter, "balance": tag.balance, "log": []}, 200,
                                  {"Idempotency-Key": str(uuid.uuid4())} if self.sync_key else None)
        if synced is None:
            return False
        if synced.get("status") != "active" or synced.get("available", 0) < self.price:
            phase.error(f"sync {tag.uid}: unexpected answer {synced}")
            return False
        # 2. reserve online.
        term.number += 1
        number, tag_number = term.number, tag.counter + 1
        items = [{"product_id": self.product_id, "quantity": 1, "unit_price": self.price}]
        t0 = time.perf_counter()
        reserved = await self._send(phase, term, "POST", self.reserve_url, API + "/reserve",
                                    {"terminal_tx_number": number, "uid": tag.uid, "tag_tx_number": tag_number,
                                     "amount": self.price, "items": items}, 201)
        reserve_ms = (time.perf_counter() - t0) * 1000
        if reserved is None:
            return False
        phase.reserve_ms.append(reserve_ms)
        if reserved.get("state") != "ReservePending":
            phase.error(f"reserve {tag.uid}: unexpected answer {reserved}")
            return False
        # (the tag is written here: counter and balance)
        tag.counter, tag.balance = tag_number, tag.balance - self.price
        # 3. replicate the purchase as Committed.
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        replicated = await self._send(phase, term, "POST", self.replicate_url, API + "/transactions",
                                      {"transactions": [{"terminal_tx_number": number, "type": "purchase",
                                                         "state": "Committed", "uid": tag.uid,
                                                         "tag_tx_number": tag_number, "time": now,
                                                         "amount": self.price, "items": items}]}, 200)
        if replicated is None:
            return False
        results = replicated.get("results") or [{}]
        if results[0].get("outcome") != "booked" or results[0].get("state") != "Committed":
            phase.error(f"replicate {number}: unexpected answer {replicated}")
            return False
        phase.purchases += 1
        phase.purchase_ms.append((time.perf_counter() - (scheduled if scheduled is not None else started)) * 1000)
        return True

    # ---------------------------------------------------------------- phases

    async def closed_loop(self, phase: Phase, seconds: float, meter: CpuMeter) -> Phase:
        before = meter.snapshot()
        t0 = time.perf_counter()
        deadline = t0 + seconds

        async def worker(term: Terminal) -> None:
            while time.perf_counter() < deadline:
                await self.purchase(phase, term)

        await asyncio.gather(*(worker(t) for t in self.terminals))
        phase.elapsed_s = time.perf_counter() - t0
        phase.cpu = CpuMeter.cores(before, meter.snapshot())
        return phase

    async def open_loop(self, phase: Phase, rate: float, seconds: float, meter: CpuMeter) -> Phase:
        idle: asyncio.Queue[Terminal] = asyncio.Queue()
        for term in self.terminals:
            idle.put_nowait(term)
        tasks: set[asyncio.Task] = set()
        count = int(rate * seconds)
        before = meter.snapshot()
        t0 = time.perf_counter()

        async def one(scheduled: float) -> None:
            term = await idle.get()
            if time.perf_counter() - scheduled > 0.010:
                phase.started_late += 1          # no idle terminal in time (or the loop was busy)
            try:
                await self.purchase(phase, term, scheduled)
            finally:
                idle.put_nowait(term)

        for i in range(count):
            scheduled = t0 + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(scheduled))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)
        phase.elapsed_s = time.perf_counter() - t0
        phase.cpu = CpuMeter.cores(before, meter.snapshot())
        return phase

    async def health_loop(self, phase: Phase, seconds: float, meter: CpuMeter) -> Phase:
        before = meter.snapshot()
        t0 = time.perf_counter()
        deadline = t0 + seconds

        async def worker() -> None:
            while time.perf_counter() < deadline:
                answer = await self._send(phase, None, "GET", self.health_url, "/health", None, 200)
                if answer is not None:
                    phase.purchases += 1         # here: health answers

        await asyncio.gather(*(worker() for _ in self.terminals))
        phase.elapsed_s = time.perf_counter() - t0
        phase.cpu = CpuMeter.cores(before, meter.snapshot())
        return phase


def _phase_report(phase: Phase) -> dict[str, Any]:
    rate = phase.purchases / phase.elapsed_s if phase.elapsed_s else 0.0
    return {
        "name": phase.name, "completed": phase.purchases, "requests": phase.requests, "errors": phase.errors,
        "error_samples": phase.error_samples, "elapsed_s": round(phase.elapsed_s, 3), "per_s": round(rate, 1),
        "reserve_p50_ms": round(percentile(phase.reserve_ms, 50), 2),
        "reserve_p99_ms": round(percentile(phase.reserve_ms, 99), 2),
        "reserve_max_ms": round(max(phase.reserve_ms, default=0.0), 2),
        "purchase_p50_ms": round(percentile(phase.purchase_ms, 50), 2),
        "purchase_p99_ms": round(percentile(phase.purchase_ms, 99), 2),
        "started_late": phase.started_late, "cpu_cores": phase.cpu,
    }


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    setup = json.loads(Path(args.setup).read_text())
    meter = CpuMeter(args.gateway_pid or [], args.postgres_pid)
    connector = aiohttp.TCPConnector(limit=0, force_close=False, enable_cleanup_closed=False)
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False,
                                     skip_auto_headers=("User-Agent",)) as session:
        gen = LoadGenerator(args.url, setup, session, sync_key=not args.no_sync_key)
        await gen.register_all()
        report: dict[str, Any] = {"terminals": len(gen.terminals), "phases": {}}

        def log(p: dict[str, Any]) -> None:
            print(f"   [{p['name']}] {p['completed']} in {p['elapsed_s']:.1f}s = {p['per_s']}/s, "
                  f"{p['requests']} requests, errors {p['errors']}, reserve p50/p99 {p['reserve_p50_ms']}/"
                  f"{p['reserve_p99_ms']} ms, purchase p50/p99 {p['purchase_p50_ms']}/{p['purchase_p99_ms']} ms, "
                  f"late starts {p['started_late']}, CPU cores {p['cpu_cores']}", flush=True)

        plan = [("warmup", lambda ph: gen.closed_loop(ph, args.warmup_s, meter)),
                ("full", lambda ph: gen.closed_loop(ph, args.full_s, meter)),
                ("rate", lambda ph: gen.open_loop(ph, args.rate, args.rate_s, meter)),
                ("health", lambda ph: gen.health_loop(ph, args.health_s, meter))]
        for name, run in plan:
            if name == "warmup" and args.warmup_s <= 0:
                continue
            p = _phase_report(await run(Phase(name)))
            report["phases"][name] = p
            log(p)
        return report


def cmd_run(args: argparse.Namespace) -> int:
    report = asyncio.run(_run(args))
    text = json.dumps(report, indent=1)
    if args.out:
        Path(args.out).write_text(text)
    else:
        print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m python_gateway.loadgen", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run the gateway app on 127.0.0.1:PORT")
    p.add_argument("--database-url", required=True, help="as festpay_terminal")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--reuse-port", action="store_true", help="SO_REUSEPORT: several processes on one port")
    p.add_argument("--profile", help="write a cProfile dump here at exit")
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("run", help="register the terminals and run the load phases")
    p.add_argument("--url", required=True)
    p.add_argument("--setup", required=True, help="JSON: price, product_id, funding, terminals: [{code, uids}]")
    p.add_argument("--warmup-s", type=float, default=3.0)
    p.add_argument("--full-s", type=float, default=20.0)
    p.add_argument("--rate", type=float, default=100.0)
    p.add_argument("--rate-s", type=float, default=20.0)
    p.add_argument("--health-s", type=float, default=10.0)
    p.add_argument("--timeout", type=float, default=30.0, help="per request, seconds")
    p.add_argument("--gateway-pid", type=int, action="append", help="for CPU accounting (repeatable)")
    p.add_argument("--postgres-pid", type=int, help="the postmaster, for CPU accounting")
    p.add_argument("--no-sync-key", action="store_true",
                   help="send tag syncs without an Idempotency-Key (diagnosis: what the key costs)")
    p.add_argument("--out", help="write the JSON report here (default stdout)")
    p.set_defaults(func=cmd_run)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
