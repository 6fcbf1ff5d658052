"""One till of the chaos run: a reference terminal (:class:`python_gateway.terminal.Terminal`) in its own process,
serving visitors at a steady pace until SIGTERM.

A visitor is a virtual tag file in the run's shared tag folder; a till takes one by an exclusive ``flock`` on the
tag's lock file (a wristband is at one till at a time; a killed till's lock goes with it), so a tag charged
offline at one till is synced later at another.  A sale till sells online (and completes offline when the backend
cannot be reached) and, one time in ``--offline-share``, offline by choice; one sale in ``--crash-share`` crashes
the till just before or just after its tag write (the process ends at once with exit code 70, leaving the sale in
TerminalConfirmStarted for the next start-up's cleanup); a top-up till tops up a tag that runs
low and otherwise refunds a little or tops up again.  The terminal's own SQLite database and its background
replicator are the ones a real till uses; the start-up cleanup runs every time the process starts.

On SIGTERM the till finishes its visitor, replicates until everything is acknowledged (at most
``--drain-s`` seconds) and prints ``TILL DONE remaining=<not acknowledged> ...`` with its counts.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import fcntl
import logging
import os
import random
import signal
from collections.abc import Iterator
from pathlib import Path

from ..terminal import SimulatedCrash, TagError, Terminal, TerminalError
from ..terminal.client import ClientError

log = logging.getLogger("festpay.chaos.till")

LOW_BALANCE = 3000            # a top-up till tops up a tag below this (cents)
TOPUPS = (2000, 5000, 10000)
EXIT_CRASH = 70               # a sale that crashed at its tag write on purpose (--crash-share)


@contextlib.contextmanager
def visitor(tags: list[Path], rng: random.Random) -> Iterator[Path | None]:
    """A tag no other till holds, locked while the block runs; None when every tag is at another till."""
    for path in rng.sample(tags, len(tags)):
        fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            yield path
        finally:
            os.close(fd)            # releases the lock
        return
    yield None


async def sale(terminal: Terminal, tag: Path, rng: random.Random, args: argparse.Namespace,
               counts: collections.Counter, stopping: bool) -> None:
    products = [p["name"] for p in terminal.settings.products if p.get("price")]
    items = [f"{name}:{rng.randint(1, 2)}" for name in rng.sample(products, rng.randint(1, min(2, len(products))))]
    offline = rng.random() < args.offline_share
    # No crash once the drain has begun: the till is to finish and replicate.
    crash = (rng.choice(("before-write", "after-write"))
             if rng.random() < args.crash_share and not stopping else None)
    try:
        result = await terminal.buy(tag, items, offline=offline, crash=crash)
    except SimulatedCrash as err:
        print(f"TILL CRASH {err}", flush=True)
        os._exit(EXIT_CRASH)          # dies here: no cleanup, no replication, the tag lock goes with the process
    counts[f"purchase_{result.state.value}{'_offline' if not result.online else ''}"] += 1


async def cashier(terminal: Terminal, tag: Path, rng: random.Random, counts: collections.Counter) -> None:
    balance = terminal.read_tag(tag).balance
    if balance < LOW_BALANCE or rng.random() < 0.6:
        result = await terminal.topup(tag, rng.choice(TOPUPS))
        counts[f"topup_{result.state.value}"] += 1
    else:
        result = await terminal.refund(tag, rng.randint(1, max(1, balance // 500)) * 100)
        counts[f"refund_{result.state.value}"] += 1


async def serve(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    tags = sorted(Path(args.tags).glob("*.json"))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    counts: collections.Counter = collections.Counter()
    terminal = Terminal.open(args.home, timeout_s=args.timeout)
    remaining = -1
    try:
        # Ready at once, with the config of its registration: a till opens while the backend may be away.
        terminal.start_replicator(interval_s=1.0)
        print(f"TILL READY assignment {terminal.assignment_id} pid {os.getpid()}", flush=True)
        while not stop.is_set():
            with visitor(tags, rng) as tag:
                if tag is not None:
                    try:
                        if args.kind == "sale":
                            await sale(terminal, tag, rng, args, counts, stop.is_set())
                        else:
                            await cashier(terminal, tag, rng, counts)
                    except (TerminalError, TagError, ClientError) as err:
                        counts["refused"] += 1
                        log.info("%s: %s", tag.name, err)
            await asyncio.sleep(rng.uniform(args.pause / 2, args.pause * 1.5))
        await terminal.stop_replicator()
        remaining = (await terminal.replicate(deadline_s=args.drain_s)).remaining
    finally:
        await terminal.close()
    print(f"TILL DONE remaining={remaining} " + " ".join(f"{k}={v}" for k, v in sorted(counts.items())), flush=True)
    return 0 if remaining == 0 else 1


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--home", required=True, help="the registered terminal's home folder")
    p.add_argument("--tags", required=True, help="the shared folder of virtual tags")
    p.add_argument("--kind", choices=("sale", "topup"), required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--offline-share", type=float, default=0.2, help="sales made offline by choice (default 0.2)")
    p.add_argument("--crash-share", type=float, default=0.0,
                   help="sales that crash the till just before or just after the tag write (exit 70; default 0)")
    p.add_argument("--pause", type=float, default=0.1, help="mean seconds between two visitors (default 0.1)")
    p.add_argument("--timeout", type=float, default=5.0, help="HTTP timeout in seconds (default 5)")
    p.add_argument("--drain-s", type=float, default=120.0, help="replication deadline after SIGTERM (default 120)")


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return asyncio.run(serve(args))
