"""``festpay terminal ...``: the reference terminal as a person at a till would use it.

    festpay terminal register --code C [--url URL] [--home DIR | --name NAME]
    festpay terminal config                         fetch and show the config (products, limits)
    festpay terminal new-tag --uid U [--dir DIR]    a fresh virtual tag (balance 0, next number 0, empty log)
    festpay terminal show-tag --tag FILE            read and verify a tag
    festpay terminal buy --tag FILE --item PRODUCT:QTY [--item ...] [--offline]
                         [--crash-after-write | --crash-before-write]
    festpay terminal topup --tag FILE --amount CENTS [--payment cash|card]
    festpay terminal refund --tag FILE --amount CENTS
    festpay terminal sync --tag FILE                first tap only
    festpay terminal replicate
    festpay terminal status

Human-readable lines first; the LAST line of stdout is a machine-readable summary of ``key=value`` pairs
(e.g. ``state=Committed transaction_id=17 terminal_tx_number=3 ...``).  ``transaction_id`` is the ledger's id of
the transaction, the one ``festpay receipt TRANSACTION_ID`` prints; ``terminal_tx_number`` is the terminal's own
number.

Exit codes: 0 done, 1 error or refused before a transaction existed, 2 declined (transaction Aborted),
3 outcome unknown (TerminalConfirmUnknown), 70 simulated crash.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

from .client import ClientError, Problem
from .flows import ItemRequest, SimulatedCrash, TapResult, Terminal, TerminalError
from .home import NotRegistered, TerminalBusy, TerminalSettings, default_home, default_tag_dir
from .machine import State
from .store import Store
from .tag import TagError, VirtualTag, new_tag, normalize_uid, parse

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_DECLINED = 2
EXIT_UNKNOWN = 3
EXIT_CRASH = 70


def _default_url() -> str:
    url = os.environ.get("FESTPAY_URL", "").strip()
    if url:
        return url
    port = os.environ.get("FESTPAY_HTTP_PORT", "").strip() or "8080"
    return f"http://127.0.0.1:{port}"


def _home(args) -> Path:
    if getattr(args, "home", None):
        return Path(args.home).expanduser()
    return default_home(getattr(args, "name", None) or "default")


def _out(line: str = "") -> None:
    print(line, flush=True)


def _err(line: str) -> None:
    print(f"festpay terminal: {line}", file=sys.stderr, flush=True)


def _money(cents: int | None, currency: str = "") -> str:
    if cents is None:
        return "?"
    sign = "-" if cents < 0 else ""
    text = f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"
    return f"{text} {currency}".strip()


def _refused(slug: str, message: str) -> int:
    _err(message)
    _out(f"state=Refused problem={slug}")
    return EXIT_ERROR


def _festpay() -> str:
    """How this command was started (``.venv/bin/festpay``, ``festpay``), so a printed hint runs as printed."""
    argv0 = sys.argv[0] if sys.argv else ""
    return argv0 if Path(argv0).name == "festpay" else "festpay"


def _which(args: argparse.Namespace) -> str:
    """The ``--name``/``--home`` option this command was given, for a hint that runs as printed."""
    if getattr(args, "home", None):
        return f" --home {args.home}"
    if getattr(args, "name", None):
        return f" --name {args.name}"
    return ""


def _print_ledger_transaction(terminal: Terminal, terminal_tx_number: int, args: argparse.Namespace) -> None:
    """The ledger's transaction id of a committed receipt and how to print it, or why it has none yet."""
    stored = terminal.store.get(terminal.assignment_id, terminal_tx_number)
    if stored.transaction_id is None:
        _out(f"Not in the ledger yet: `{_festpay()} terminal replicate{_which(args)}` sends it; "
             f"`{_festpay()} terminal status{_which(args)}` then shows its transaction id")
    elif stored.backend_state == "Committed":
        _out(f"Transaction {stored.transaction_id} — its receipt: {_festpay()} receipt {stored.transaction_id}")
    else:
        _out(f"Transaction {stored.transaction_id} ({stored.backend_state or 'state unknown'} in the ledger); its "
             f"receipt once replicated: {_festpay()} receipt {stored.transaction_id}")


def _print_refused(tap: TapResult) -> None:
    for r in tap.refused:
        _out(f"  refused by the backend and dropped from the tag: assignment {r.assignment_id} "
             f"#{r.terminal_tx_number}" + (f" tag #{r.tag_tx_number} amount {r.amount}" if r.amount is not None
                                           else "") + f": {r.problem}")


def _print_cleanup(terminal: Terminal) -> None:
    for tx in terminal.cleaned_up:
        _out(f"cleanup: transaction {tx.terminal_tx_number} was left unfinished -> {tx.status.value}")


async def _replicate_and_report(terminal: Terminal, deadline_s: float) -> None:
    res = await terminal.replicate(deadline_s=deadline_s)
    if res.sent or res.remaining:
        _out(f"replication: {res.acknowledged} acknowledged (booked {res.booked}, duplicate {res.duplicate}, "
             f"rejected {res.rejected}), {res.remaining} waiting"
             + (f"; last error: {res.errors[-1]}" if res.errors and res.remaining else ""))


def _run(coro) -> int:
    try:
        return asyncio.run(coro)
    except (NotRegistered, TerminalBusy) as err:
        _err(str(err))
        _out(f"error={'not-registered' if isinstance(err, NotRegistered) else 'terminal-busy'}")
        return EXIT_ERROR


# ------------------------------------------------------------------------------------------ commands


def cmd_register(args, settings=None) -> int:
    async def run() -> int:
        try:
            terminal = await Terminal.register(_home(args), args.url, args.code, device=args.device,
                                               force=args.force)
        except TerminalError as err:
            _err(str(err))
            _out(f"error={err.slug}")
            return EXIT_ERROR
        except Problem as err:
            _err(f"registration refused: {err}")
            _out(f"error={err.slug}")
            return EXIT_ERROR
        except ClientError as err:
            _err(f"registration failed: {err}")
            _out("error=unreachable")
            return EXIT_ERROR
        s = terminal.settings
        _out(f"Registered {terminal.home} at {s.url}: assignment {s.assignment_id}, event {s.event_id}")
        if s.config:
            _out(f"Position {s.position.get('name')} ({s.position.get('kind')}), {len(s.products)} products, "
                 f"offline limit {_money(s.offline_limit, s.currency)}, log size {s.offline_log_size}")
        await terminal.close()
        _out(f"assignment_id={s.assignment_id} event_id={s.event_id} home={terminal.home}")
        return EXIT_OK

    return _run(run())


def cmd_config(args, settings=None) -> int:
    async def run() -> int:
        terminal = Terminal.open(_home(args))
        try:
            _print_cleanup(terminal)
            try:
                await terminal.fetch_config()
                fetched = "fetched now"
            except ClientError as err:
                _err(f"could not fetch the config ({err}); showing the snapshot")
                fetched = f"snapshot of {terminal.settings.config_fetched_at}"
            s = terminal.settings
            if args.json:
                _out(json.dumps(s.config, indent=2))
            else:
                _out(f"Event {s.event.get('name')} ({s.event.get('id')}), {s.currency}; {fetched}")
                _out(f"Position {s.position.get('name')} ({s.position.get('kind')})")
                _out(f"Offline limit {_money(s.offline_limit, s.currency)}, log size {s.offline_log_size}, "
                     f"reserve timeout {s.event.get('reserve_timeout_s')} s, max balance "
                     f"{_money(s.event.get('max_balance'), s.currency)}")
                for p in s.products:
                    price = "open price" if p.get("price") is None else _money(p["price"], s.currency)
                    _out(f"  {p['id']:>4}  {p['name']:<24} {price:>12}  VAT {p.get('vat_rate')}%"
                         + ("  returnable" if p.get("returnable") else ""))
            _out(f"products={len(s.products)} position={s.position.get('name')!s} kind={s.position.get('kind')!s}")
        finally:
            await terminal.close()
        return EXIT_OK

    return _run(run())


def cmd_new_tag(args, settings=None) -> int:
    try:
        uid = normalize_uid(args.uid)
    except ValueError as err:
        return _refused("validation", str(err))
    path = Path(args.out) if args.out else Path(args.dir or default_tag_dir()) / f"{uid}.json"
    key: str | None = None
    if not args.blank:
        try:
            key = TerminalSettings.load(_home(args)).tag_key
        except NotRegistered:
            key = None
    try:
        new_tag(path, uid, key, overwrite=args.force)
    except FileExistsError as err:
        _err(f"{err}; add --force to replace it")
        _out("error=tag-exists")
        return EXIT_ERROR
    _out(f"New tag {uid} at {path}: balance 0, next number 0, empty log, "
         + ("signed with the event's tag key" if key else "blank (signed by the first terminal that writes it)"))
    _out(f"tag={path} uid={uid}")
    return EXIT_OK


def cmd_show_tag(args, settings=None) -> int:
    path = Path(args.tag)
    try:
        raw = path.read_bytes()
        data, mac = parse(raw)
    except (OSError, TagError) as err:
        return _refused(getattr(err, "slug", "tag-missing"), str(err))
    verdict = "unchecked (no registered terminal)"
    try:
        key = TerminalSettings.load(_home(args)).tag_key
        VirtualTag(path).read(key)
        verdict = "MAC ok" if mac else "blank"
    except NotRegistered:
        pass
    except TagError as err:
        _err(str(err))
        verdict = err.slug
    _out(f"Tag {data.uid}: balance {data.balance}, next number {data.next_tag_tx_number}, "
         f"{len(data.log)} unacknowledged charges ({data.unacknowledged_total}); {verdict}")
    for e in data.log:
        _out(f"  assignment {e.assignment_id} #{e.terminal_tx_number} tag #{e.tag_tx_number} {e.amount} at {e.time}"
             + ("" if e.mac else "  (no entry MAC: the backend will refuse it)"))
    _out(f"uid={data.uid} balance={data.balance} next_tag_tx_number={data.next_tag_tx_number} "
         f"log={len(data.log)} mac={'ok' if verdict in ('MAC ok', 'blank') else verdict.replace(' ', '-')}")
    return EXIT_OK if verdict != "tag-tampered" else EXIT_ERROR


def cmd_buy(args, settings=None) -> int:
    try:
        items = [ItemRequest.parse(spec) for spec in args.item]
    except ValueError as err:
        return _refused("validation", str(err))
    crash = "after-write" if args.crash_after_write else "before-write" if args.crash_before_write else None

    async def run() -> int:
        terminal = Terminal.open(_home(args), timeout_s=args.timeout)
        try:
            _print_cleanup(terminal)
            cur = terminal.settings.currency
            try:
                result = await terminal.buy(args.tag, items, offline=args.offline, crash=crash,
                                            operator_id=args.operator)
            except SimulatedCrash as c:
                _out(f"CRASH (simulated) {c.where.replace('-', ' ')}: transaction {c.terminal_tx_number} stays "
                     f"{c.state.value}; nothing replicated; the next start-up's cleanup makes it "
                     "TerminalConfirmUnknown")
                _out(f"state={c.state.value} terminal_tx_number={c.terminal_tx_number} crashed={c.where}")
                return EXIT_CRASH
            except (TerminalError, TagError) as err:
                return _refused(err.slug, str(err))
            except ClientError as err:
                return _refused(getattr(err, 'slug', 'unreachable'), str(err))
            tap = result.tap
            if tap is not None:
                _out(f"First tap: tag {tap.uid} " + (
                    f"online: status {tap.status}, available {_money(tap.available, cur)}, "
                    f"{tap.acknowledged} log entries acknowledged"
                    + (f", {len(tap.refused)} refused" if tap.refused else "")
                    if tap.online else
                    f"OFFLINE ({tap.offline_reason}): last known status {tap.status}"
                    + (f" at {tap.snapshot_time}" if tap.snapshot_time else "")
                ) + f"; tag balance {_money(tap.tag_balance, cur)}")
                _print_refused(tap)
            stored = terminal.store.get(terminal.assignment_id, result.terminal_tx_number)
            for i in stored.items:
                _out(f"  {i.quantity} x {i.product_name} @ {_money(i.unit_price, cur)} = {_money(i.total, cur)}"
                     f"  (VAT {i.vat_rate}%)")
            _out(f"Total {_money(result.amount, cur)}: {result.state.value}"
                 + (f" — {result.problem}: {result.detail}" if result.problem else "")
                 + f"  (terminal's own number {result.terminal_tx_number}, tag number {result.tag_tx_number})")
            if result.ok:
                _out(f"Tag charged: balance now {_money(result.tag_balance, cur)}")
            elif result.available is not None:
                _out(f"Available: {_money(result.available, cur)}")
            if not args.offline and not args.no_replicate:
                await _replicate_and_report(terminal, args.replicate_deadline)
            stored = terminal.store.get(terminal.assignment_id, result.terminal_tx_number)
            result = dataclasses.replace(result, transaction_id=stored.transaction_id)
            if result.ok:
                _print_ledger_transaction(terminal, result.terminal_tx_number, args)
            await terminal.close()
            _out(result.summary())
            return EXIT_OK if result.ok else EXIT_DECLINED
        finally:
            await terminal.close()

    return _run(run())


def _booking(kind: str):
    def cmd(args, settings=None) -> int:
        async def run() -> int:
            terminal = Terminal.open(_home(args), timeout_s=args.timeout)
            try:
                _print_cleanup(terminal)
                cur = terminal.settings.currency
                try:
                    if kind == "topup":
                        result = await terminal.topup(args.tag, args.amount, args.payment, operator_id=args.operator)
                    else:
                        result = await terminal.refund(args.tag, args.amount, operator_id=args.operator)
                except (TerminalError, TagError) as err:
                    return _refused(err.slug, str(err))
                except ClientError as err:
                    return _refused(getattr(err, 'slug', 'unreachable'), str(err))
                _out(f"{'Top-up' if kind == 'topup' else 'Refund'} of {_money(result.amount, cur)} for tag "
                     f"{result.uid}: {result.state.value}"
                     + (f" — {result.problem}: {result.detail}" if result.problem else "")
                     + f"  (terminal's own number {result.terminal_tx_number})")
                if result.ok:
                    _out(f"Balance {_money(result.balance, cur)}; tag balance {_money(result.tag_balance, cur)}")
                if not args.no_replicate:
                    await _replicate_and_report(terminal, args.replicate_deadline)
                if result.ok or result.state is State.CONFIRM_UNKNOWN:
                    _print_ledger_transaction(terminal, result.terminal_tx_number, args)
                    stored = terminal.store.get(terminal.assignment_id, result.terminal_tx_number)
                    result = dataclasses.replace(result, transaction_id=stored.transaction_id)
                await terminal.close()
                _out(result.summary())
                if result.ok:
                    return EXIT_OK
                return EXIT_UNKNOWN if result.state is State.CONFIRM_UNKNOWN else EXIT_DECLINED
            finally:
                await terminal.close()

        return _run(run())

    return cmd


def cmd_sync(args, settings=None) -> int:
    async def run() -> int:
        terminal = Terminal.open(_home(args), timeout_s=args.timeout)
        try:
            _print_cleanup(terminal)
            cur = terminal.settings.currency
            try:
                tap = await terminal.sync_tag(args.tag)
            except (TerminalError, TagError) as err:
                return _refused(err.slug, str(err))
            except ClientError as err:
                return _refused(getattr(err, 'slug', 'unreachable'), str(err))
            _out(f"Tag {tap.uid}: status {tap.status}, balance {_money(tap.balance, cur)}, held "
                 f"{_money(tap.held, cur)}, available {_money(tap.available, cur)}; {tap.acknowledged} log entries "
                 f"acknowledged, {len(tap.refused)} refused, {tap.unacknowledged} left; tag balance "
                 f"{_money(tap.tag_balance, cur)}, next number {tap.next_tag_tx_number}")
            _print_refused(tap)
            await terminal.close()
            _out(tap.summary())
            return EXIT_OK
        finally:
            await terminal.close()

    return _run(run())


def cmd_replicate(args, settings=None) -> int:
    async def run() -> int:
        terminal = Terminal.open(_home(args), timeout_s=args.timeout)
        try:
            _print_cleanup(terminal)
            res = await terminal.replicate(deadline_s=args.deadline)
            for r in res.results:
                _out(f"  #{r.get('terminal_tx_number')}: {r.get('outcome')} -> backend {r.get('state')} "
                     f"(transaction {r.get('transaction_id')})" + (f" problem {r['problem']}" if r.get("problem") else ""))
            if res.errors and res.remaining:
                _err(f"last error: {res.errors[-1]}")
            await terminal.close()
            _out(res.summary())
            return EXIT_OK if res.remaining == 0 else EXIT_ERROR
        finally:
            await terminal.close()

    return _run(run())


def cmd_status(args, settings=None) -> int:
    home = _home(args)
    try:
        s = TerminalSettings.load(home)
    except NotRegistered as err:
        _err(str(err))
        _out("error=not-registered")
        return EXIT_ERROR
    # Read-only: no lock, no cleanup (a running terminal may own TerminalConfirmStarted transactions).
    store = Store(home / "terminal.sqlite3")
    try:
        txs = store.transactions(args.limit)
        counts: dict[str, int] = {}
        for tx in store.transactions():
            counts[tx.status.value] = counts.get(tx.status.value, 0) + 1
        pending = store.count_pending(s.assignment_id)
    finally:
        store.close()
    if args.json:
        _out(json.dumps([_tx_json(t) for t in txs], indent=2))
    else:
        _out(f"Terminal {home}: assignment {s.assignment_id}, event {s.event_id}, {s.url}")
        _out(f"{'#':>5} {'time':<20} {'type':<8} {'uid':<16} {'amount':>8} {'tag#':>5} {'state':<23} "
             f"{'sync':<8} {'backend':<22} problem")
        for t in txs:
            backend = f"{t.transaction_id or '-'} {t.backend_state or ''}".strip()
            _out(f"{t.terminal_tx_number:>5} {t.transaction_time[:19]:<20} {t.transaction_type:<8} {t.rfid_uid:<16} "
                 f"{t.amount:>8} {t.tag_tx_number if t.tag_tx_number is not None else '-':>5} {t.status.value:<23} "
                 f"{t.sync_status.value:<8} {backend:<22} {t.problem or ''}"
                 + (f" (replication rejected: {t.sync_problem})" if t.sync_problem else "")
                 + ("  (offline)" if t.offline else ""))
    summary = " ".join(f"{k}={v}" for k, v in sorted(counts.items()))
    _out(f"assignment_id={s.assignment_id} transactions={sum(counts.values())} pending={pending}"
         + (f" {summary}" if summary else ""))
    return EXIT_OK


def _tx_json(t) -> dict[str, Any]:
    d = dataclasses.asdict(t)
    d["status"] = t.status.value
    d["sync_status"] = t.sync_status.value
    d["items"] = [{**dataclasses.asdict(i), "vat_rate": str(i.vat_rate)} for i in t.items]
    return d


# ------------------------------------------------------------------------------------------ parser


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Adds ``terminal`` with its commands to the ``festpay`` subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    where = common.add_mutually_exclusive_group()
    where.add_argument("--home", metavar="DIR", help="the terminal's directory (default data/terminals/NAME, "
                                                      "or $FESTPAY_TERMINAL_HOME)")
    where.add_argument("--name", metavar="NAME", help="data/terminals/NAME (default: default)")

    net = argparse.ArgumentParser(add_help=False)
    net.add_argument("--timeout", type=float, default=10.0, help="seconds per HTTP request (default 10)")
    net.add_argument("--replicate-deadline", type=float, default=15.0, metavar="S",
                     help="how long to keep retrying replication at the end (default 15 s)")
    net.add_argument("--no-replicate", action="store_true", help="do not replicate at the end")
    net.add_argument("--operator", type=int, help="operator id stored with the transaction")

    term = subparsers.add_parser("terminal", help="the reference terminal (register, buy, top up, ...)",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = term.add_subparsers(dest="terminal_command", required=True, metavar="ACTION")

    p = sub.add_parser("register", parents=[common], help="register with a one-time registration code")
    p.add_argument("--code", required=True)
    p.add_argument("--url", default=_default_url(), help="gateway URL (default $FESTPAY_URL or "
                                                         "http://127.0.0.1:$FESTPAY_HTTP_PORT|8080)")
    p.add_argument("--device", help="device name sent with the registration")
    p.add_argument("--force", action="store_true", help="register again (a new assignment) in the same home")
    p.set_defaults(func=cmd_register)

    p = sub.add_parser("config", parents=[common], help="fetch and show the config (products, limits)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("new-tag", parents=[common], help="create a fresh virtual tag file")
    p.add_argument("--uid", required=True, help="4 to 10 bytes of hex, e.g. 04A1B2C3D4E5F6")
    p.add_argument("--dir", help="folder for the tag file UID.json (default data/tags or $FESTPAY_TAG_DIR)")
    p.add_argument("--out", metavar="FILE", help="exact file to write instead")
    p.add_argument("--blank", action="store_true", help="unsigned factory-fresh tag (default: signed with the "
                                                        "tag key of the registered terminal, when there is one)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(func=cmd_new_tag)

    p = sub.add_parser("show-tag", parents=[common], help="read a tag and verify its MAC")
    p.add_argument("--tag", required=True, metavar="FILE")
    p.set_defaults(func=cmd_show_tag)

    p = sub.add_parser("buy", parents=[common, net], help="a purchase: first tap, reserve, second tap")
    p.add_argument("--tag", required=True, metavar="FILE")
    p.add_argument("--item", required=True, action="append", metavar="PRODUCT:QTY[@CENTS]",
                   help="product id or name (a unique prefix will do) and quantity; repeatable")
    p.add_argument("--offline", action="store_true", help="no network calls for the purchase; replicate later")
    crash = p.add_mutually_exclusive_group()
    crash.add_argument("--crash-after-write", action="store_true",
                       help="simulate a crash right after the tag write (exit 70, state stays TerminalConfirmStarted)")
    crash.add_argument("--crash-before-write", action="store_true",
                       help="simulate a crash just before the tag write (exit 70)")
    p.set_defaults(func=cmd_buy)

    p = sub.add_parser("topup", parents=[common, net], help="an online top-up, then the tag is written")
    p.add_argument("--tag", required=True, metavar="FILE")
    p.add_argument("--amount", required=True, type=int, metavar="CENTS")
    p.add_argument("--payment", choices=("cash", "card"), default="cash")
    p.set_defaults(func=_booking("topup"))

    p = sub.add_parser("refund", parents=[common, net], help="an online cash refund, then the tag is written")
    p.add_argument("--tag", required=True, metavar="FILE")
    p.add_argument("--amount", required=True, type=int, metavar="CENTS")
    p.set_defaults(func=_booking("refund"))

    p = sub.add_parser("sync", parents=[common, net], help="first tap only: upload the tag's log, learn its balance")
    p.add_argument("--tag", required=True, metavar="FILE")
    p.set_defaults(func=cmd_sync)

    p = sub.add_parser("replicate", parents=[common], help="replicate final transactions until acknowledged")
    p.add_argument("--deadline", type=float, default=30.0, metavar="S", help="give up after S seconds (default 30)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per HTTP request (default 10)")
    p.set_defaults(func=cmd_replicate)

    p = sub.add_parser("status", parents=[common], help="the terminal's transactions and their states")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)
    return term


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m python_gateway.terminal.cli ...``), same commands as ``festpay terminal``."""
    import logging

    parser = argparse.ArgumentParser(prog="festpay")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    return args.func(args, None)


if __name__ == "__main__":
    sys.exit(main())
