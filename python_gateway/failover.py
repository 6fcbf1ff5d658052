"""``make failover``: the HA cluster (:mod:`python_gateway.ha`) loses its leader under terminal load, three ways.

Everything on 127.0.0.1, in a temporary folder, bounded in time:

1. ``festpay ha up`` there (etcd, three Patroni nodes, the festpay database migrated on the leader); an event with
   a top-up position and registration codes, made with the api as the superuser;
2. one gateway process (``python -m python_gateway.loadgen serve``, the real app) with the multi-host URL, logged
   in as festpay_terminal;
3. terminals (the reference terminal's :class:`~python_gateway.terminal.client.GatewayClient`, signed requests)
   booking cash top-ups back to back; a call that fails (no answer, or a transient problem such as 503) is sent
   again with the same ``terminal_tx_number`` until it is answered, as a till does.  Every 2xx is recorded with
   its time and ledger transaction id;
4. the faults, each while the load runs: ``kill`` (SIGKILL the leader's postmaster; its Patroni stays),
   ``switchover`` (``patronictl switchover``), ``machine_loss`` (SIGKILL the leader's Patroni and postmaster
   together; the node stays down until the end).  After each: the downtime (the longest gap between acknowledged
   bookings from the fault until the cluster is whole again), every acknowledged booking present and Committed on
   the new leader, no (terminal, terminal_tx_number) booked twice, ``api.check_invariants()`` empty, and the old
   leader streaming again as a standby (the lost machine: once started again at the end).

Prints ``failover_kill_downtime_s=``, ``switchover_downtime_s=``, ``failover_machine_loss_downtime_s=``,
``acknowledged=``, ``lost=`` (and per-fault figures, and ``landed_despite_error=``: calls whose first attempt failed
although its booking was made, answered on retry with that booking); exit status 1 when a booking was lost or doubled, an
invariant broke, a node did not rejoin, or a downtime missed its goal (:data:`DOWNTIME_GOALS_S`).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psycopg

from .processes import start_logged, stop_process
from .cli import TERMINAL_ROLE, acting_as
from .embedded import pick_free_port
from .ha import NODES, HaCluster
from .terminal.client import Credentials, GatewayClient, Problem, Unreachable

DOWNTIME_GOALS_S = {"kill": 10.0, "switchover": 10.0, "machine_loss": 15.0}
OUTPUT_NAMES = {"kill": "failover_kill_downtime_s", "switchover": "switchover_downtime_s",
                "machine_loss": "failover_machine_loss_downtime_s"}
TOPUP_CENTS = 100
RETRY_PAUSE_S = 0.2
REQUEST_TIMEOUT_S = 15.0
RECOVERY_TIMEOUT_S = 60.0
SETTLE_S = 3.0          # load kept running after the cluster is whole again, inside the measured window
GIVE_UP_S = 60.0        # a call still unanswered this long after the load was asked to stop is abandoned


@dataclass(frozen=True)
class Ack:
    """A booking a terminal got a 2xx for."""

    at: float                 # time.monotonic()
    assignment_id: int
    terminal_tx_number: int
    transaction_id: int
    failed_at: float | None   # time.time() of the first failed attempt, None when the first one was answered


@dataclass
class Load:
    """Terminals booking top-ups until :attr:`stop` is set; every acknowledgement in :attr:`acks`."""

    base_url: str
    codes: list[str]
    tags_per_terminal: int = 4
    acks: list[Ack] = field(default_factory=list)
    retries: int = 0
    refusals: list[str] = field(default_factory=list)
    abandoned: int = 0
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, session: aiohttp.ClientSession) -> None:
        clients = []
        for i, code in enumerate(self.codes):
            unregistered = GatewayClient(self.base_url, session=session, timeout_s=REQUEST_TIMEOUT_S)
            answer = await unregistered.register(code, f"failover terminal {i}")
            clients.append(GatewayClient(self.base_url, Credentials(int(answer["assignment_id"]), answer["secret"]),
                                         session=session, timeout_s=REQUEST_TIMEOUT_S))
        await asyncio.gather(*(self._terminal(i, c) for i, c in enumerate(clients)))

    async def _terminal(self, index: int, client: GatewayClient) -> None:
        assert client.credentials is not None
        uids = [f"{0xFE0000000000 + index * 16 + k:012X}" for k in range(self.tags_per_terminal)]
        number = 0
        while not self.stop.is_set():
            number += 1
            failed_at: list[float] = []
            answer = await self._until_answered(client, number, uids[number % len(uids)], failed_at)
            if answer is None:
                return
            self.acks.append(Ack(time.monotonic(), client.credentials.assignment_id, number,
                                 int(answer["transaction_id"]), failed_at[0] if failed_at else None))

    async def _until_answered(self, client: GatewayClient, number: int, uid: str,
                              failed_at: list[float]) -> dict | None:
        """One top-up, sent again with the same number after a failure until it is answered (the time of each
        failure appended to ``failed_at``); None when refused or abandoned."""
        stopping_since: float | None = None
        while True:
            try:
                return await client.topup(number, uid, TOPUP_CENTS, "cash")
            except Problem as err:
                if not err.transient:
                    self.refusals.append(f"top-up {number} of {uid}: {err}")
                    return None
            except Unreachable:
                pass
            failed_at.append(time.time())
            self.retries += 1
            if self.stop.is_set():
                stopping_since = stopping_since or time.monotonic()
                if time.monotonic() - stopping_since > GIVE_UP_S:
                    self.abandoned += 1
                    return None
            await asyncio.sleep(RETRY_PAUSE_S)


@dataclass
class Outcome:
    """What one fault did."""

    name: str
    old_leader: str
    new_leader: str = ""
    downtime_s: float = 0.0
    acknowledged: int = 0
    problems: list[str] = field(default_factory=list)


def longest_gap(times: list[float], start: float, end: float) -> float:
    """The longest time without an acknowledgement between ``start`` and ``end`` (the first gap runs from the last
    acknowledgement before ``start``)."""
    before = [t for t in times if t < start]
    inside = sorted(t for t in times if start <= t <= end)
    points = ([max(before)] if before else [start]) + inside + [end]
    return max(b - a for a, b in zip(points, points[1:]))


def check_ledger(ha: HaCluster, acks: list[Ack]) -> list[str]:
    """Every acknowledged booking on the leader, Committed, under its terminal's number; no number booked twice;
    the ledger's invariants hold.  Returns what is wrong ([] when nothing is)."""
    problems = []
    by_id = {a.transaction_id: a for a in acks}
    with psycopg.connect(ha.database_url(), autocommit=True) as conn:
        rows = conn.execute("SELECT id, state::text, assignment_id, terminal_tx_number FROM ledger.transaction"
                            " WHERE id = ANY(%s)", (list(by_id),)).fetchall()
        found = {r[0]: r for r in rows}
        lost = [a for a in acks if a.transaction_id not in found or found[a.transaction_id][1] != "Committed"
                or found[a.transaction_id][2:] != (a.assignment_id, a.terminal_tx_number)]
        if lost:
            problems.append(f"lost={len(lost)}: e.g. {lost[:3]}")
        doubled = conn.execute("SELECT assignment_id, terminal_tx_number, count(*) FROM ledger.transaction"
                               " WHERE terminal_tx_number IS NOT NULL GROUP BY 1, 2 HAVING count(*) > 1").fetchall()
        keys: dict[tuple[int, int], int] = {}
        for a in acks:
            if keys.setdefault((a.assignment_id, a.terminal_tx_number), a.transaction_id) != a.transaction_id:
                doubled.append((a.assignment_id, a.terminal_tx_number, "two transaction ids acknowledged"))
        if doubled:
            problems.append(f"booked twice: {doubled[:5]}")
        broken = conn.execute("SELECT * FROM api.check_invariants()").fetchall()
        if broken:
            problems.append(f"invariants broken: {broken[:5]}")
    return problems


def count_lost(ha: HaCluster, acks: list[Ack]) -> int:
    """Acknowledged bookings that are not Committed on the leader."""
    with psycopg.connect(ha.database_url(), autocommit=True) as conn:
        committed = conn.execute("SELECT count(*) FROM ledger.transaction WHERE id = ANY(%s) AND state = 'Committed'",
                                 ([a.transaction_id for a in acks],)).fetchone()[0]
    return len({a.transaction_id for a in acks}) - committed


def count_landed_despite_error(ha: HaCluster, acks: list[Ack]) -> int:
    """Bookings whose first attempt failed (the terminal saw an error) but were made by that attempt all the same:
    created before the failure; the retry with the same terminal_tx_number got the first booking back."""
    retried = [a for a in acks if a.failed_at is not None]
    with psycopg.connect(ha.database_url(), autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM ledger.transaction t"
                            " JOIN unnest(%s::bigint[], %s::float8[]) AS a(id, failed_at) ON t.id = a.id"
                            " WHERE t.created_at < to_timestamp(a.failed_at)",
                            ([a.transaction_id for a in retried], [a.failed_at for a in retried])).fetchone()[0]


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


class Driver:
    """The faults, one after the other, against a running cluster and load (runs in a thread beside the load)."""

    def __init__(self, ha: HaCluster, load: Load):
        self.ha = ha
        self.load = load
        self.outcomes: list[Outcome] = []

    def _fault(self, name: str, act: Callable[[str], None], whole: Callable[[str], tuple[str, ...]]) -> Outcome:
        """With all three nodes healthy, does ``act(leader)``; waits until the nodes ``whole(leader)`` have a new
        leader streaming to the rest (the old leader among them: it rejoined); measures and checks."""
        old = self.ha.wait_healthy(RECOVERY_TIMEOUT_S)
        outcome = Outcome(name, old)
        first = len(self.load.acks)
        say(f"{name}: leader {old}")
        start = time.monotonic()
        act(old)
        nodes = whole(old)
        try:
            outcome.new_leader = self.ha.wait_until(lambda: (leader := self.ha.healthy(nodes)) != old and leader,
                                               RECOVERY_TIMEOUT_S, f"after {name}: no new leader streaming to "
                                               f"{', '.join(n for n in nodes)}")
        except Exception as err:  # noqa: BLE001 - reported as this fault's problem
            outcome.problems.append(str(err))
        time.sleep(SETTLE_S)
        end = time.monotonic()
        outcome.downtime_s = longest_gap([a.at for a in self.load.acks], start, end)
        outcome.acknowledged = len(self.load.acks) - first
        outcome.problems += check_ledger(self.ha, list(self.load.acks))
        if outcome.downtime_s > DOWNTIME_GOALS_S[name]:
            outcome.problems.append(f"downtime {outcome.downtime_s:.1f} s over the goal of {DOWNTIME_GOALS_S[name]} s")
        say(f"{name}: new leader {outcome.new_leader or '?'}, downtime {outcome.downtime_s:.2f} s, "
            f"{outcome.acknowledged} acknowledged meanwhile" + (f"; PROBLEMS: {outcome.problems}"
                                                               if outcome.problems else ""))
        print(self.ha.patronictl_list(), flush=True)
        self.outcomes.append(outcome)
        return outcome

    def kill(self) -> Outcome:
        """SIGKILL the leader's postmaster; its Patroni fails over and brings it back as a standby."""
        return self._fault("kill", self.ha.kill_postmaster, lambda old: NODES)

    def switchover(self) -> Outcome:
        """``patronictl switchover`` to the synchronous standby; the old leader follows it."""
        return self._fault("switchover", lambda leader: self.ha.switchover(leader, self._sync_standby()),
                           lambda old: NODES)

    def machine_loss(self) -> Outcome:
        """SIGKILL the leader's Patroni and postmaster; the two others go on; then the lost node is started again
        and must rejoin."""
        lost = self._fault("machine_loss", self.ha.kill_machine, lambda old: tuple(n for n in NODES if n != old))
        say(f"starting the lost machine {lost.old_leader} again")
        self.ha.start_node(lost.old_leader)
        try:
            self.ha.wait_healthy(RECOVERY_TIMEOUT_S)
        except Exception as err:  # noqa: BLE001 - reported
            lost.problems.append(f"{lost.old_leader} did not rejoin: {err}")
        print(self.ha.patronictl_list(), flush=True)
        return lost

    def run(self) -> None:
        """The three faults in turn."""
        self.kill()
        self.switchover()
        self.machine_loss()

    def _sync_standby(self) -> str:
        return next(m.name for m in self.ha.members() if m.role == "sync_standby")


def server_reachable_tempdir(prefix: str) -> Path:
    """A new temporary folder (mode 0755) in which :class:`HaCluster` may put its folder: the server user must
    reach it."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def setup_event(ha: HaCluster, terminals: int) -> list[str]:
    """An event with a top-up position and one registration code per terminal (api calls, as the superuser)."""
    with psycopg.connect(ha.database_url(), autocommit=True) as conn:
        event_id = conn.execute("SELECT api.create_event('Failover', 'EUR', 100000000, 1, 1000000)").fetchone()[0]
        conn.execute("SELECT api.create_position(%s, 'Top-up', 'topup')", (event_id,))
        return [conn.execute("SELECT api.create_registration_code(%s, 'Top-up')", (event_id,)).fetchone()[0]
                for _ in range(terminals)]


def start_gateway(ha: HaCluster, workdir: Path) -> tuple[subprocess.Popen, str]:
    """The real gateway app on a free loopback port, logged in as festpay_terminal with the multi-host URL."""
    port = pick_free_port()
    proc, _ = start_logged([sys.executable, "-m", "python_gateway.loadgen", "serve", "--database-url",
                            acting_as(ha.database_url(), TERMINAL_ROLE), "--port", str(port)],
                           workdir / "gateway.log", "READY", "the gateway")
    return proc, f"http://127.0.0.1:{port}"


async def run_under_load(ha: HaCluster, base_url: str, codes: list[str], warmup_s: float,
                         faults: Callable[[Load], None]) -> Load:
    """The load runs while ``faults(load)`` runs in a thread; then the load stops (calls in hand are answered)."""
    load = Load(base_url, codes)
    async with aiohttp.ClientSession() as session:
        task = asyncio.create_task(load.run(session))
        try:
            await asyncio.sleep(warmup_s)
            if task.done():
                task.result()
            await asyncio.to_thread(faults, load)
        finally:
            load.stop.set()
            await task
    return load


def report(load: Load, outcomes: list[Outcome], lost: int, landed: int) -> bool:
    """Prints the figures; True when every goal was met."""
    for o in outcomes:
        print(f"{OUTPUT_NAMES[o.name]}={o.downtime_s:.2f}")
        print(f"{o.name}_acknowledged={o.acknowledged}")
        print(f"{o.name}_leader={o.old_leader}->{o.new_leader or '?'}")
    print(f"acknowledged={len(load.acks)}")
    print(f"lost={lost}")
    print(f"retried_calls={load.retries}")
    print(f"landed_despite_error={landed}")
    print(f"refused={len(load.refusals)}")
    print(f"abandoned={load.abandoned}")
    problems = [f"{o.name}: {p}" for o in outcomes for p in o.problems] + load.refusals[:5]
    if load.abandoned:
        problems.append(f"{load.abandoned} call(s) never answered")
    if lost:
        problems.append(f"{lost} acknowledged booking(s) lost")
    for p in problems:
        print(f"PROBLEM: {p}")
    print("failover=" + ("ok" if not problems else "FAILED"))
    return not problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m python_gateway.failover", description=__doc__.split("\n\n")[0])
    parser.add_argument("--terminals", type=int, default=8, help="terminals booking at once (default 8)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of load before the first fault")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, data)")
    args = parser.parse_args(argv)
    workdir = server_reachable_tempdir("festpay-failover-")
    ha = HaCluster(workdir / "ha")
    gateway: subprocess.Popen | None = None
    ok = False
    try:
        say(f"ha up in {ha.root}")
        ha.up()
        codes = setup_event(ha, args.terminals)
        gateway, base_url = start_gateway(ha, workdir)
        say(f"gateway at {base_url} (pid {gateway.pid}); {args.terminals} terminals booking top-ups")
        driver: Driver | None = None

        def faults(load: Load) -> None:
            nonlocal driver
            driver = Driver(ha, load)
            driver.run()

        load = asyncio.run(run_under_load(ha, base_url, codes, args.warmup, faults))
        assert driver is not None
        lost = count_lost(ha, load.acks)
        problems = check_ledger(ha, load.acks)
        if problems:
            driver.outcomes[-1].problems += [f"at the end: {p}" for p in problems]
        ok = report(load, driver.outcomes, lost, count_landed_despite_error(ha, load.acks))
    finally:
        if gateway is not None:
            stop_process(gateway, "gateway")
        say("ha down: " + ", ".join(ha.down()))
        if args.keep or not ok:
            print(f"logs and data kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
