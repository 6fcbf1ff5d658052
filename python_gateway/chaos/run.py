"""The chaos run: every part of Festpay as its own process on 127.0.0.1, killed with SIGKILL at random moments
while tills serve visitors, then drained and checked (:mod:`python_gateway.chaos.checker`).

Parts: PostgreSQL (an embedded cluster in a temporary folder; with ``--ha`` three nodes under Patroni, see
:mod:`python_gateway.ha`, reached through the multi-host URL, a kill being the leader's postmaster), two gateways
(``festpay serve --apps terminal``, each serving half of the tills), the relay (``festpay relay``), the software
TSE (``festpay tse serve``) and the tills (:mod:`python_gateway.chaos.till`: sale tills and top-up tills, each a
reference terminal in its own process).

The driver kills ``--kills`` times at random moments of ``--duration`` seconds, taking turns over the kinds of part
(gateway, relay, TSE, PostgreSQL's postmaster, a till) in a shuffled order, the victim of a kind at random; a part is
started again after 0.5-3 s (PostgreSQL at once: crash recovery). A part that dies by itself is started again and
counted (``unexpected_exits``). Then the drain: every till gets SIGTERM, finishes its visitor and replicates until
everything is acknowledged; one till syncs every tag online (the complete tag log settles every unknown outcome);
the relay signs what is left; the services stop; the checker compares.

Recovery of a kill is the time from the kill until that part served again: the next purchase or top-up the backend
served online (ending Committed) through the killed gateway, by the killed till, or anywhere after PostgreSQL was
killed; the next receipt signed after the relay or the TSE was killed.

Prints ``name=value`` lines, the last ones ``kills=`` ``purchases=`` ``lost=`` ``doubled=`` ``unsigned=``
``signed_twice=`` ``invariants_broken=`` ``recovery_p99_s=``; exits 1 when lost, doubled, unproven, unresolved,
unsigned, signed_twice, tse_counter or invariants_broken is not 0.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import psycopg
from psycopg.rows import dict_row

from ..cli import acting_as
from ..embedded import EmbeddedPostgres, EmbeddedPostgresError, pick_free_port
from ..ha import HaCluster
from ..migrate import migrate
from ..processes import ProcessFailure, start_logged, stop_process, tool_env
from ..terminal import Store, Terminal, new_tag
from . import checker
from .till import EXIT_CRASH

KINDS = ("gateway", "relay", "tse", "postgres", "till")
FAILING = ("lost", "doubled", "unproven", "unresolved", "unsigned", "signed_twice", "tse_counter",
           "invariants_broken")
PRODUCTS = (("Beer", 450, 19), ("Water", 250, 19), ("Pretzel", 350, 7))
FUNDING = 5000


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


@dataclass
class Part:
    """One process of the run, started again after a kill with the same command (its log appended to)."""

    name: str
    kind: str
    cmd: list[str]
    logfile: Path
    marker: str
    env: dict[str, str] = field(default_factory=tool_env)
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc, _ = start_logged(self.cmd, self.logfile, self.marker, self.name, env=self.env, append=True,
                                    timeout=120)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def kill(self) -> None:
        if self.alive():
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout: float = 30) -> int | None:
        if self.proc is not None:
            stop_process(self.proc, self.name, timeout)
            return self.proc.returncode
        return None


class Postgres:
    """The embedded cluster as a part: killed at its postmaster, started again (crash recovery)."""

    name = kind = "postgres"
    dbname = "festpay_chaos"

    def __init__(self, root: Path):
        self.cluster = EmbeddedPostgres(root, server_settings={"shared_buffers": "64MB"})

    def setup(self) -> None:
        """Started, the database created and migrated."""
        self.cluster.acquire_lock()
        self.start()
        self.cluster.create_database(self.dbname)
        migrate(self.url())

    def url(self, role: str | None = None) -> str:
        """The database as the superuser, or logged in as ``role``."""
        return self.cluster.url(self.dbname, user=role or "postgres")

    def start(self) -> None:
        deadline = time.monotonic() + 120
        while True:      # until the killed postmaster's backends have noticed and left the shared memory
            try:
                self.cluster.start()
                return
            except EmbeddedPostgresError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    def alive(self) -> bool:
        return self.cluster.is_running()

    def kill(self) -> None:
        pid = self.cluster.running_pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while self.cluster.is_running() and time.monotonic() < deadline:
                time.sleep(0.05)

    @property
    def exit_code(self) -> int | None:
        return None

    def teardown(self, logs: Path) -> None:
        try:
            if self.cluster.log_file.exists():
                shutil.copy(self.cluster.log_file, logs / "postgresql.log")
            self.cluster.destroy()
        finally:
            self.cluster.release_lock()


class Patroni:
    """Three PostgreSQL nodes under Patroni (:mod:`python_gateway.ha`) as a part: a kill is the leader's postmaster
    (Patroni fails over to the synchronous standby); it is whole again when a leader streams to two standbys (the old
    leader rejoined). Everything connects with the multi-host URL."""

    name = kind = "postgres"

    def __init__(self, root: Path):
        self.ha = HaCluster(root)

    def setup(self) -> None:
        """etcd and three nodes up, the database created and migrated on the leader."""
        self.ha.up()

    def url(self, role: str | None = None) -> str:
        url = self.ha.database_url()
        return acting_as(url, role) if role else url

    def start(self) -> None:
        self.ha.wait_healthy(120)

    def alive(self) -> bool:
        return self.ha.healthy() is not None

    def kill(self) -> None:
        leader = self.ha.leader()
        if leader is not None:
            self.ha.kill_postmaster(leader)

    @property
    def exit_code(self) -> int | None:
        return None

    def teardown(self, logs: Path) -> None:
        self.ha.down()


@dataclass
class Kill:
    kind: str
    name: str
    at: float                  # wall clock
    back: float | None = None  # when it was started again


class ChaosRun:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.rng = random.Random(args.seed)
        self.root = Path(tempfile.mkdtemp(prefix="festpay-chaos-"))
        self.root.chmod(0o755)             # the server's OS user reaches its folder in it
        self.tags_dir = self.root / "tags"
        (self.root / "logs").mkdir()
        self.pg = Patroni(self.root / "ha") if args.ha else Postgres(self.root / "pg")
        self.parts: list[Part] = []
        self.tills: list[Part] = []
        self.gateway_of: dict[str, str] = {}      # till name -> gateway name
        self.homes: dict[str, Path] = {}
        self.kills: list[Kill] = []
        self.unexpected = 0
        self.till_crashes = 0
        self.tag_key = ""

    # ------------------------------------------------------------------ set-up

    def url(self, role: str | None = None) -> str:
        return self.pg.url(role)

    def setup_database(self) -> list[str]:
        """Cluster, database, migrations, an event with a bar and a top-up desk; returns the registration codes."""
        self.pg.setup()
        with psycopg.connect(self.url()) as conn:
            event = conn.execute(
                "SELECT api.create_event('Chaos Festival', 'EUR', 200000, 500, 20000, "
                "p_offline_limit => 3000, p_offline_log_size => 8)").fetchone()[0]
            for name, price, vat in PRODUCTS:
                conn.execute("SELECT api.create_product(%s, %s, %s, %s)", (event, name, price, vat))
            conn.execute("SELECT api.create_position(%s, 'Bar', 'sale', api.create_merchant(%s, 'Bar'))",
                         (event, event))
            conn.execute("SELECT api.create_position(%s, 'Top-up', 'topup')", (event,))
            codes = [conn.execute("SELECT api.create_registration_code(%s, %s)",
                                  (event, "Bar" if kind == "sale" else "Top-up")).fetchone()[0]
                     for kind in self.till_kinds()]
        return codes

    def till_kinds(self) -> list[str]:
        return ["topup"] * self.args.topup_tills + ["sale"] * self.args.sale_tills

    def festpay(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "python_gateway.cli", *args]

    def setup_services(self) -> list[str]:
        """TSE, relay and two gateways, started; returns the gateways' URLs."""
        logs = self.root / "logs"
        tse_port = pick_free_port()
        env = tool_env() | {"DATABASE_URL": self.url(),
                            "FESTPAY_RELAY_DATABASE_URL": self.url("festpay_relay"),
                            "FESTPAY_GATEWAY_DATABASE_URL": self.url("festpay_terminal")}
        self.parts.append(Part("tse", "tse", self.festpay("tse", "serve", "--dir", str(self.root / "tse"),
                                                          "--port", str(tse_port)), logs / "tse.log", "READY ", env))
        self.parts.append(Part("relay", "relay", self.festpay("relay", "--tse-url", f"http://127.0.0.1:{tse_port}",
                                                              "--poll", "1"),
                               logs / "relay.log", "Relay signing receipts", env))
        urls = []
        for i in range(2):
            port = pick_free_port()
            self.parts.append(Part(f"gateway-{i}", "gateway", self.festpay("serve", "--apps", "terminal", "--port",
                                                                           str(port)),
                                   logs / f"gateway-{i}.log", "Gateway listening on", env))
            urls.append(f"http://127.0.0.1:{port}")
        for part in self.parts:
            part.start()
        return urls

    async def setup_tills(self, codes: list[str], urls: list[str]) -> None:
        """Registers every till, makes the tags and funds each with FUNDING cents at the first top-up till."""
        self.tags_dir.mkdir()
        tags = [self.tags_dir / f"{0x7C000000 + i:08X}.json" for i in range(self.args.tags)]
        for i, (kind, code) in enumerate(zip(self.till_kinds(), codes)):
            name = f"{kind}-till-{i}"
            home = self.root / "tills" / name
            terminal = await Terminal.register(home, urls[i % 2], code)
            if i == 0:
                self.tag_key = terminal.settings.tag_key
                for path in tags:
                    new_tag(path, path.stem, self.tag_key)
                for path in tags:
                    result = await terminal.topup(path, FUNDING)
                    if result.state.value != "Committed":
                        raise RuntimeError(f"funding {path.stem} failed: {result}")
                await terminal.replicate(deadline_s=30)
            await terminal.close()
            self.homes[name] = home
            self.gateway_of[name] = f"gateway-{i % 2}"
            part = Part(name, "till", [sys.executable, "-m", "python_gateway.chaos", "till", "--home", str(home),
                                       "--tags", str(self.tags_dir), "--kind", kind, "--seed", str(self.args.seed + i),
                                       "--pause", str(self.args.pause), "--crash-share", str(self.args.crash_share)],
                        self.root / "logs" / f"{name}.log", "TILL READY")
            self.tills.append(part)
        for part in self.tills:
            part.start()

    # ------------------------------------------------------------------ chaos

    def victims(self, kind: str) -> list:
        if kind == "postgres":
            return [self.pg]
        if kind == "till":
            return self.tills
        return [p for p in self.parts if p.kind == kind]

    def schedule(self) -> list[tuple[float, str]]:
        """Kill moments (seconds from the start) and kinds: each kind in turn, the turns shuffled."""
        a = self.args
        quiet = min(10.0, a.duration / 6)
        moments = sorted(self.rng.uniform(quiet, a.duration - quiet) for _ in range(a.kills))
        kinds: list[str] = []
        while len(kinds) < a.kills:
            kinds += self.rng.sample(KINDS, len(KINDS))
        return list(zip(moments, kinds))

    def chaos(self) -> None:
        start = time.monotonic()
        plan = self.schedule()
        restarts: list[tuple[float, object, Kill]] = []
        next_scan = 0.0                          # parts that died by themselves are looked for twice a second
        while time.monotonic() - start < self.args.duration or restarts:
            now = time.monotonic()
            if plan and now - start >= plan[0][0]:
                _, kind = plan.pop(0)
                # A part that is up and was not killed in the last 10 s (so that each kill's recovery is seen).
                recent = {k.name for k in self.kills if k.at > time.time() - 10}
                candidates = [v for v in self.victims(kind) if v.alive()]
                victim = self.rng.choice([v for v in candidates if v.name not in recent] or candidates
                                         or self.victims(kind))
                kill = Kill(kind, victim.name, time.time())
                victim.kill()
                self.kills.append(kill)
                delay = 0.0 if kind == "postgres" else self.rng.uniform(0.5, 3.0)
                restarts.append((now + delay, victim, kill))
                _say(f"killed {victim.name} (kill {len(self.kills)} of {self.args.kills})")
            # PostgreSQL first: the other parts need it to get ready.
            for entry in sorted(restarts, key=lambda r: (r[1] is not self.pg, r[0])):
                due, victim, kill = entry
                if time.monotonic() >= due:
                    restarts.remove(entry)
                    if not victim.alive():
                        victim.start()
                    kill.back = time.time()
                    _say(f"{victim.name} is back after {kill.back - kill.at:.1f} s")
            if time.monotonic() >= next_scan:
                next_scan = time.monotonic() + 0.5
                self.revive(waiting={id(v) for _, v, _ in restarts})
            time.sleep(0.05)

    def revive(self, waiting: Collection[int] = ()) -> None:
        """Starts again every part that ended without being killed (a till that crashed at a tag write on purpose
        counts as a till crash, anything else as an unexpected exit); ``waiting``: ids of parts killed and due for a
        restart."""
        for part in [self.pg, *self.parts, *self.tills]:
            if id(part) not in waiting and not part.alive():
                if part.kind == "till" and part.exit_code == EXIT_CRASH:
                    self.till_crashes += 1
                else:
                    self.unexpected += 1
                    _say(f"{part.name} died by itself (exit {part.exit_code}); starting it again")
                part.start()

    # ------------------------------------------------------------------ drain

    async def final_sync(self) -> None:
        """One till taps every tag online: the complete logs settle what is left (SPEC 7)."""
        name = next(n for n, k in zip(self.homes, self.till_kinds()) if k == "sale")
        terminal = Terminal.open(self.homes[name])
        try:
            for path in sorted(self.tags_dir.glob("*.json")):
                await terminal.sync_tag(path)
            result = await terminal.replicate(deadline_s=60)
            if result.remaining:
                raise RuntimeError(f"{name}: {result.remaining} transactions not acknowledged after the final sync")
        finally:
            await terminal.close()

    def wait_signed(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        with psycopg.connect(self.url(), autocommit=True) as conn:
            while conn.execute("SELECT count(*) FROM ledger.outbox WHERE done_at IS NULL").fetchone()[0]:
                if time.monotonic() > deadline:
                    raise RuntimeError("the relay did not empty the outbox in time")
                time.sleep(0.2)

    def drain(self) -> None:
        _say("draining: tills finish and replicate")
        self.revive()              # a till that crashed a moment ago runs its start-up cleanup first
        for part in self.tills:
            part.proc.send_signal(signal.SIGTERM)
        for part in self.tills:
            while True:
                try:
                    code = part.proc.wait(timeout=self.args.drain_s + 30)
                except subprocess.TimeoutExpired:
                    code = part.stop(timeout=1)
                if code != EXIT_CRASH:
                    break
                self.till_crashes += 1          # crashed at a tag write as the SIGTERM came: clean up, then stop
                part.start()
                part.proc.send_signal(signal.SIGTERM)
            last = part.logfile.read_text(errors="replace").strip().splitlines()[-1:]
            _say(f"{part.name}: exit {code}, {last[0] if last else ''}")
        asyncio.run(self.final_sync())
        self.wait_signed()
        for part in self.parts:
            part.stop()

    # ------------------------------------------------------------------ report

    def recoveries(self) -> list[float]:
        """Seconds from each kill until the killed part served again (see the module docstring)."""
        online: list[tuple[float, str]] = []         # (served at, till name) of online operations ending Committed
        by_assignment = {}
        for name, home in self.homes.items():
            store = Store(home / "terminal.sqlite3")
            try:
                for tx in store.transactions():
                    by_assignment[(tx.assignment_id, tx.terminal_tx_number)] = (name, tx)
            finally:
                store.close()
        with psycopg.connect(self.url(), row_factory=dict_row) as conn:
            rows = conn.execute("SELECT assignment_id, terminal_tx_number, created_at FROM ledger.transaction "
                                "WHERE state = 'Committed' AND assignment_id IS NOT NULL").fetchall()
            signed = sorted(r["signed_at"].timestamp() for r in conn.execute(
                "SELECT signed_at FROM ledger.tse_signature").fetchall())
        for r in rows:
            name, tx = by_assignment.get((r["assignment_id"], r["terminal_tx_number"]), (None, None))
            if tx is not None and not tx.offline:
                online.append((r["created_at"].timestamp(), name))
        online.sort()
        out = []
        for kill in self.kills:
            if kill.kind in ("relay", "tse"):
                later = [t for t in signed if t > kill.at]
            else:
                later = [t for t, name in online if t > kill.at and (
                    kill.kind == "postgres" or name == kill.name
                    or (kill.kind == "gateway" and self.gateway_of.get(name) == kill.name))]
            out.append(later[0] - kill.at if later else math.inf)
        return out

    def report(self, verdict: checker.Verdict, recoveries: list[float]) -> int:
        for n, (kill, seconds) in enumerate(zip(self.kills, recoveries), start=1):
            back = f"{kill.back - kill.at:.1f}" if kill.back else "?"
            print(f"  kill {n}: {kill.name} at {time.strftime('%H:%M:%S', time.localtime(kill.at))}, running again "
                  f"after {back} s, serving again after {seconds:.2f} s")
        for kind in FAILING:
            for text in verdict.findings.get(kind, [])[:20]:
                print(f"  {kind}: {text}")
        ordered = sorted(recoveries)
        p99 = ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)] if ordered else math.nan
        per_kind = {k: sum(1 for x in self.kills if x.kind == k) for k in KINDS}
        lines = {
            "duration_s": self.args.duration,
            **{f"kills_{k}": n for k, n in per_kind.items()},
            "unexpected_exits": self.unexpected,
            "till_crashes": self.till_crashes,
            **verdict.counts,
            "unproven": verdict.value("unproven"),
            "unresolved": verdict.value("unresolved"),
            "tse_counter": verdict.value("tse_counter"),
            "recovery_p50_s": f"{ordered[len(ordered) // 2]:.2f}" if ordered else "nan",
            "kills": len(self.kills),
            "purchases": verdict.counts.get("purchases", 0),
            "lost": verdict.value("lost"),
            "doubled": verdict.value("doubled"),
            "unsigned": verdict.value("unsigned"),
            "signed_twice": verdict.value("signed_twice"),
            "invariants_broken": verdict.value("invariants_broken"),
            "recovery_p99_s": f"{p99:.2f}",
        }
        for name, value in lines.items():
            print(f"{name}={value}", flush=True)
        return 1 if any(verdict.value(k) for k in FAILING) else 0

    def run(self) -> int:
        try:
            codes = self.setup_database()
            urls = self.setup_services()
            asyncio.run(self.setup_tills(codes, urls))
            _say(f"{len(self.tills)} tills, {self.args.tags} tags, 2 gateways, relay, TSE, PostgreSQL running; "
                 f"{self.args.kills} kills in {self.args.duration:.0f} s")
            self.chaos()
            self.drain()
            verdict = checker.check(self.url(), [h / "terminal.sqlite3" for h in self.homes.values()],
                                    sorted(self.tags_dir.glob("*.json")), self.tag_key, self.root / "tse")
            return self.report(verdict, self.recoveries())
        finally:
            for part in [*self.tills, *self.parts]:
                if part.proc is not None and part.alive():
                    part.stop(timeout=10)
            try:
                self.pg.teardown(self.root / "logs")
            finally:
                if self.args.keep:
                    print(f"kept {self.root}")
                else:
                    shutil.rmtree(self.root, ignore_errors=True)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--duration", type=float, default=300, help="seconds of load and kills (default 300)")
    p.add_argument("--kills", type=int, default=20, help="kills in that time (default 20)")
    p.add_argument("--sale-tills", type=int, default=4)
    p.add_argument("--topup-tills", type=int, default=2)
    p.add_argument("--tags", type=int, default=24)
    p.add_argument("--pause", type=float, default=0.1, help="mean seconds between two visitors at a till")
    p.add_argument("--crash-share", type=float, default=0.01,
                   help="sales that crash their till at the tag write (default 0.01; see till.py)")
    p.add_argument("--drain-s", type=float, default=120, help="a till's replication deadline at the drain")
    p.add_argument("--seed", type=int, default=int(datetime.now().timestamp()) % 100000)
    p.add_argument("--ha", action="store_true",
                   help="PostgreSQL as three nodes under Patroni (festpay ha); a kill is the leader's postmaster")
    p.add_argument("--keep", action="store_true", help="keep the run's folder (logs, tills, tags)")


def main(args: argparse.Namespace) -> int:
    print(f"seed={args.seed}", flush=True)
    try:
        return ChaosRun(args).run()
    except (ProcessFailure, EmbeddedPostgresError, RuntimeError, ValueError) as err:
        print(f"chaos run failed: {err}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print("chaos run interrupted; everything it started is stopped", file=sys.stderr, flush=True)
        return 130
