"""Bad input at the database's edge: every ``api`` function, called with random and hostile arguments by each
login role, answers with a result or a named error, never an internal one, and a refused call changes nothing.

The functions and their argument types come from pg_catalog; the roles and what each may execute from
``ledger.api_grants()``.  Arguments mix realistic values of two events (assignment ids, tag UIDs, admin and portal
session tokens, product ids in item lists, replication and tag log entries), so calls reach past the first check,
with hostile ones: NULL, 0, -1, the integer limits, numbers too big for the type, the empty string, 100,000
characters, RTL marks and zero-width joiners, SQL-looking text, malformed JSON, deep or huge JSON, values of the
wrong JSON type, arrays holding NULLs, and the other event's ids.  Every argument is cast explicitly to its
declared type, so a cast a value does not fit fails with a data exception (class 22) like any other bad input.

Every call runs in a transaction of its own with ``statement_timeout`` 5 s.  An accepted answer: success, or an
error of class FP (``ledger.problem``), 22 (data exception), 23 (integrity) or 42501 (not granted); anything else
(an internal error, a timeout, an unnamed P0001) fails the test, naming the function, its arguments and the error.
After a refused call the ledger, read by the superuser on a second connection, equals what it was before.  A
function a role may not execute is refused with 42501.  At the end ``api.check_invariants()`` is empty.

``FESTPAY_FUZZ_CALLS`` sets the calls per function (default 60); the seed is fixed, so a run is repeatable.
The totals are printed as ``fuzz_calls=N fuzz_refused=N fuzz_succeeded=N`` (with ``-s``), with the data and
integrity errors raised inside functions (accepted, but not named); ``FESTPAY_FUZZ_VERBOSE=1`` adds the answers of
each function by SQLSTATE, to see how deep the calls reach.
"""

from __future__ import annotations

import json
import os
import random
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from psycopg import sql

from python_gateway.embedded import EmbeddedPostgres
from python_gateway.migrate import load_sql_file
from tests.conftest import PGTAP_SETUP, migrated_database

SEED = 20261206
CALLS = int(os.environ.get("FESTPAY_FUZZ_CALLS", "60"))
# bcrypt at cost 12 (admin passwords) takes ~0.25 s a call: these get a tenth of the calls (at least 3)
SLOW = {"admin_sign_in", "admin_change_password", "admin_user_save", "create_admin_user", "ensure_first_admin"}
ROLES = {"terminal": "festpay_terminal", "relay": "festpay_relay", "web": "festpay_web", "report": "festpay_report"}
# a success of these is rolled back, not committed: it would end the sessions or revoke the terminals the later calls
# use (a refusal is rolled back anyway)
ROLLBACK_SUCCESS = ("sign_out", "change_password", "user_save", "terminal_revoke", "erase_personal_data", "block",
                    "customer_move", "event_update", "payout_run")
ACCEPTED_CLASSES = ("FP", "22", "23")
TIMEOUT = "5s"
SHOW = 200  # characters of an argument shown in a failure

FINGERPRINT = """
SELECT jsonb_build_object(
    'transactions', (SELECT count(*) || '/' || coalesce(sum(amount), 0) || '/' || string_agg(DISTINCT state::text, ',')
                       FROM ledger.transaction),
    'bookings',     (SELECT count(*) || '/' || coalesce(sum(amount), 0) FROM ledger.booking),
    'accounts',     (SELECT count(*) || '/' || coalesce(sum(balance), 0) || '/' || coalesce(sum(held), 0)
                       FROM ledger.account),
    'outbox',       (SELECT count(*) || '/' || coalesce(sum(id), 0) FROM ledger.outbox),
    'tags',         (SELECT count(*) || '/' || count(*) FILTER (WHERE pin_hash IS NOT NULL) || '/'
                            || string_agg(DISTINCT status::text, ',') FROM ledger.tag),
    'audit',        (SELECT count(*) FROM ledger.admin_audit),
    'violations',   (SELECT count(*) FROM ledger.violation),
    'sessions',     (SELECT count(*) FROM ledger.admin_session),
    'assignments',  (SELECT count(*) || '/' || count(*) FILTER (WHERE revoked_at IS NULL) FROM ledger.assignment))
"""

# every row of every ledger table, hashed: compared before and after each function's calls
FULL_FINGERPRINT = """
SELECT string_agg(format('SELECT %L || md5(coalesce(string_agg(t::text, ''|'' ORDER BY t::text), '''')) FROM %s t',
                         c.relname, c.oid::regclass), ' UNION ALL ')
  FROM pg_class c WHERE c.relnamespace = 'ledger'::regnamespace AND c.relkind = 'r'
"""


# ----------------------------------------------------------------------------- the functions


@dataclass(frozen=True)
class Arg:
    name: str
    type: str  # format_type: bigint, text, jsonb, bigint[], ledger.tx_state, ...
    element: str | None  # the element type of an array
    labels: tuple[str, ...]  # an enum's labels (of the element for an array)


@dataclass(frozen=True)
class Function:
    name: str
    signature: str
    args: tuple[Arg, ...]
    defaults: int
    variadic: bool
    audiences: tuple[str, ...]


FUNCTIONS = """
SELECT p.proname, p.oid::regprocedure::text, p.pronargdefaults, p.provariadic <> 0,
       coalesce(g.audiences, '{}'),
       coalesce((SELECT jsonb_agg(jsonb_build_object(
                    'name', coalesce(p.proargnames[a.n], 'arg' || a.n),
                    'type', format_type(a.t, NULL),
                    'element', CASE WHEN ty.typelem <> 0 AND ty.typlen = -1 THEN format_type(ty.typelem, NULL) END,
                    'labels', (SELECT coalesce(jsonb_agg(e.enumlabel ORDER BY e.enumsortorder), '[]')
                                 FROM pg_enum e WHERE e.enumtypid = CASE WHEN ty.typelem <> 0 AND ty.typlen = -1
                                                                        THEN ty.typelem ELSE a.t END))
                    ORDER BY a.n)
                   FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY a(t, n) JOIN pg_type ty ON ty.oid = a.t), '[]')
  FROM pg_proc p LEFT JOIN ledger.api_grants() g ON g.function_name = p.proname
 WHERE p.pronamespace = 'api'::regnamespace
 ORDER BY 2
"""


def discover(conn: psycopg.Connection) -> list[Function]:
    """Every function of schema api with its input arguments and grant audiences."""
    out = []
    for name, signature, defaults, variadic, audiences, args in conn.execute(FUNCTIONS).fetchall():
        out.append(Function(name, signature, tuple(Arg(a["name"], a["type"], a["element"], tuple(a["labels"]))
                                                   for a in args), defaults, variadic, tuple(audiences)))
    return out


# ----------------------------------------------------------------------------- the fixture: two events


@dataclass
class World:
    """Realistic values of two events, by kind; the fuzzer mixes them with hostile ones."""

    ids: dict[str, list[int]] = field(default_factory=dict)
    texts: dict[str, list[str]] = field(default_factory=dict)
    products: dict[int, list[int]] = field(default_factory=dict)

    def id_pool(self, hint: str) -> list[int]:
        if self.ids.get(hint.removeprefix("p_")):
            return self.ids[hint.removeprefix("p_")]
        for key, pool in self.ids.items():
            if key in hint and pool:
                return pool
        return self.ids["any"]

    def text_pool(self, hint: str) -> list[str]:
        if self.texts.get(hint.removeprefix("p_")):
            return self.texts[hint.removeprefix("p_")]
        for key, pool in self.texts.items():
            if key in hint and pool:
                return pool
        return self.texts["any"]


SETUP = """
INSERT INTO test.ctx SELECT 'e1', test.event('Fuzz A');
INSERT INTO test.ctx SELECT 'e2', test.event('Fuzz B');
INSERT INTO test.ctx SELECT 'bar1', test.terminal(test.v('e1'), 'Bar');
INSERT INTO test.ctx SELECT 'top1', test.terminal(test.v('e1'), 'Top-up');
INSERT INTO test.ctx SELECT 'bar2', test.terminal(test.v('e2'), 'Bar');
INSERT INTO test.ctx SELECT 'top2', test.terminal(test.v('e2'), 'Top-up');
SELECT test.funded_tag(test.v('e1'), 'FA00FA01'), test.funded_tag(test.v('e1'), 'FA00FA02', 3000),
       test.funded_tag(test.v('e2'), 'FB00FB01'), test.funded_tag(test.v('e2'), 'FB00FB02', 3000);
SELECT api.create_tag(test.v('e2'), 'FB00FB03', '2222'), api.create_tag(test.v('e1'), 'FA00FA03');
UPDATE ledger.tag SET pin_hash = extensions.crypt('1111', extensions.gen_salt('bf', 4)) WHERE uid = 'FB00FB01';
SELECT * FROM test.admin_sessions('fz-');
INSERT INTO test.res SELECT 'portal', to_jsonb(s) FROM api.portal_sign_in('FB00FB01', '1111', 'fuzz') s;
SELECT api.external_topup_create(test.v('e2'), 'FB00FB01', 2000), api.external_topup_create(test.v('e1'), 'FA00FA01', 700);
SELECT * FROM api.portal_topup_start((SELECT j->>'token' FROM test.res WHERE k = 'portal'), 2500);
INSERT INTO test.res SELECT 'codes', jsonb_build_array(api.create_registration_code(test.v('e1'), 'Bar'),
                                                       api.create_registration_code(test.v('e2'), 'Top-up'));
"""


def build_world(conn: psycopg.Connection) -> World:
    for statement in SETUP.strip().split(";\n"):
        conn.execute(statement)
    w = World()

    def col(query: str) -> list[Any]:
        return [r[0] for r in conn.execute(query).fetchall()]

    w.ids = {
        "event": col("SELECT id FROM ledger.event"),
        "assignment": col("SELECT id FROM ledger.assignment"),
        "position": col("SELECT id FROM ledger.position"),
        "merchant": col("SELECT id FROM ledger.merchant"),
        "outbox": col("SELECT id FROM ledger.outbox ORDER BY id DESC LIMIT 40"),
        "tx_id": col("SELECT transaction_id FROM ledger.external_checkout")
                 + col("SELECT id FROM ledger.transaction WHERE type::text LIKE 'external%' OR payment::text = 'online'"),
        "tag_tx_number": [0, 1, 2, 3],
        "amount": [450, 800, 500, 2000, 25000],
        "balance": [10000, 3000, 0],
        "price": [450, 350],
        "donation": [100, 500],
        "limit": [1, 10, 100],
        "purchase": col("SELECT id FROM ledger.transaction"),
        "tx": col("SELECT id FROM ledger.transaction"),
        "transaction": col("SELECT id FROM ledger.transaction"),
        "user": col("SELECT id FROM ledger.admin_user"),
        "terminal_tx_number": [1, 2, 3, 4],
        "any": sorted(set(col("SELECT id FROM ledger.transaction") + col("SELECT id FROM ledger.assignment")
                          + col("SELECT id FROM ledger.event") + col("SELECT id FROM ledger.tag")
                          + col("SELECT id FROM ledger.product"))),
    }
    tokens = col("SELECT value FROM test.res, jsonb_each_text(j) WHERE k = 'tok'")
    portal = conn.execute("SELECT j->>'token', j->>'csrf_token' FROM test.res WHERE k = 'portal'").fetchone()
    w.texts = {
        "token": tokens + [portal[0], portal[1]],
        "admin_token": tokens,
        "portal_token": [portal[0]],
        "uid": ["FA00FA01", "FA00FA02", "FA00FA03", "FB00FB01", "FB00FB02", "FB00FB03", "fb:00:fb:01", "00000000"],
        "pin": ["1111", "2222", "0000"],
        "code": col("SELECT jsonb_array_elements_text(j) FROM test.res WHERE k = 'codes'"),
        "reference": col("SELECT reference FROM ledger.external_checkout"),
        "result": ["paid", "declined", "success", "failure", "unknown"],
        "scope": ["terminal:1", "portal", "admin"],
        "key": ["k-1", "k-2"],
        "request_hash": ["h1", "h2"],
        "iban": ["DE89370400440532013000", "DE89 3704 0044 0532 0130 00", "DE00"],
        "holder": ["Erika Mustermann"],
        "email": ["erika@example.org", "not an email"],
        "donate": ["none", "part", "all"],
        "checkout_id": ["chk_1", "chk_2"],
        "username": ["fz-admin", "fz-finance", "fz-support", "fz-viewer", "nobody"],
        "password": ["pw-fz-admin", "pw-fz-viewer", "wrong"],
        "position": ["Bar", "Food", "Top-up"],
        "payment": ["cash", "card", "online"],
        "role": ["admin", "finance", "support", "viewer"],
        "topic": col("SELECT DISTINCT topic FROM ledger.outbox") + ["tse", "provider"],
        "any": ["x", "Fuzz A", "Bar", "FA00FA01", "ok", "cash"],
    }
    for event in w.ids["event"]:
        w.products[event] = col(f"SELECT id FROM ledger.product WHERE event_id = {event}")
    return w


@pytest.fixture(scope="module")
def fuzz_db(pg_cluster: EmbeddedPostgres) -> Iterator[tuple[str, World]]:
    with migrated_database(pg_cluster, "festpay_fuzz") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pgtap")
        load_sql_file(url, PGTAP_SETUP, psql=pg_cluster.psql_path)
        with psycopg.connect(url, autocommit=True) as conn:
            world = build_world(conn)
        yield url, world


# ----------------------------------------------------------------------------- the values

INT_HOSTILE = ["0", "-1", "1", "2147483647", "2147483648", "-2147483648", "9223372036854775807",
               "-9223372036854775808", "9223372036854775808", "99999999999999999999999999999"]
TEXT_HOSTILE = ["", " ", "x" * 100_000, "\u202eFA00FA01\u202c", "FA\u200d00FA01", "\u200b", "Ä\u0308ß🎪" * 50,
                "'; DROP TABLE ledger.transaction; --", "$$ || pg_sleep(10) || $$", "%s %1$s %I", "\\x00",
                "\ud800".encode("utf-8", "surrogatepass").decode("utf-8", "replace"), "NaN", "-1", "null", "{}",
                "\t\n\r", "a" * 300]
JSON_MALFORMED = ["", "{", "[1,]", "{'a': 1}", "NaN", "[" * 100, '{"a": 1e999999}', "\ufeff{}", "nul", '"\\u00"']
DATE_VALUES = ["2025-07-04", "2025-07-04T21:30:00+02:00", "infinity", "-infinity", "4713-01-01 BC", "294276-12-31",
               "0001-01-01", "2025-02-30", "garbage", ""]


def deep(depth: int) -> str:
    return "[" * depth + "]" * depth


class Fuzzer:
    """Seeded argument generator; realistic values about half the time, hostile ones else."""

    def __init__(self, world: World, seed: int):
        self.w = world
        self.r = random.Random(seed)
        self.odds = 0.5  # of a hostile value
        self.fn = ""  # the name of the function called

    def hostile(self) -> bool:
        return self.r.random() < self.odds

    def integer(self, hint: str) -> str | None:
        r = self.r
        if r.random() < 0.08:
            return None
        if self.hostile():
            return r.choice(INT_HOSTILE + [str(r.randint(-10**6, 10**6))])
        return str(r.choice(self.w.id_pool(hint) or [1]))

    def numeric(self) -> str | None:
        return self.r.choice([None, "0", "-0.5", "19", "7.5", "1e1000", "9" * 2000, "NaN", "Infinity", "-1",
                              "0.000000000000000000001", "100"])

    def text(self, hint: str) -> str | None:
        r = self.r
        if r.random() < 0.08:
            return None
        if self.hostile():
            return r.choice(TEXT_HOSTILE)
        if hint == "p_token":  # the session of the function's own site, mostly
            hint = ("portal_token" if self.fn.startswith("portal_") else "admin_token") if r.random() < 0.8 else "token"
        value = r.choice(self.w.text_pool(hint))
        if r.random() < 0.15:  # a realistic value, spoiled a little
            value = r.choice([value.lower(), " " + value + " ", value + "\u200d", value[:-1], value * 2])
        return value

    def json_value(self) -> Any:
        r = self.r
        return r.choice([None, 0, -1, 2**63, -(2**63) - 1, 1.5, 1e308, "", "x" * 1000, True, [], {}, [None],
                         {"a": None}, "FA00FA01", r.choice(self.w.ids["any"]), "\u202e", "2025-07-04T21:30:00Z"])

    def items(self) -> list[dict[str, Any]]:
        r = self.r
        event = r.choice(list(self.w.products))
        out = []
        for _ in range(r.randint(0, 3)):
            item: dict[str, Any] = {"product_id": r.choice(self.w.products[event]), "quantity": r.randint(-1, 3)}
            if r.random() < 0.3:
                item["unit_price"] = r.choice([0, 450, 350, -1, 2**62])
            out.append(item)
        return out

    def realistic_json(self) -> Any:
        r = self.r
        w = self.w
        uid = r.choice(w.texts["uid"])
        entry = {"terminal_tx_number": r.randint(1, 5), "type": r.choice(["purchase", "topup", "refund", "x"]),
                 "state": r.choice(["Done", "Aborted", "Reserved", "Unknown", "done"]), "uid": uid,
                 "tag_tx_number": r.randint(0, 5), "time": r.choice(["2025-07-04T21:30:00+02:00", "now", "0"]),
                 "amount": r.choice([450, 800, 0, -450]), "items": self.items()}
        log = {"assignment_id": r.choice(w.ids["assignment"]), "terminal_tx_number": r.randint(1, 5),
               "tag_tx_number": r.randint(0, 5), "amount": r.choice([450, -450, 0]),
               "time": "2025-07-04T21:30:00+02:00", "mac": r.choice(["", "AAAA", "x" * 44])}
        shape = r.choice(["items", "entries", "log", "object", "settings"])
        if shape == "items":
            value: Any = self.items()
        elif shape == "entries":
            value = [entry for _ in range(r.randint(0, 2))]
        elif shape == "log":
            value = [log]
        elif shape == "object":
            value = entry
        else:
            value = {"name": "Fuzz", "max_balance": r.choice([50000, -1, 2**63]), "currency": "EUR",
                     "topup_min": 500, "topup_max": 25000, "status": r.choice([200, 500]), "id": "chk_1"}
        if r.random() < 0.5:  # one member of the wrong type
            target = value[0] if isinstance(value, list) and value else value
            if isinstance(target, dict) and target:
                target[r.choice(list(target))] = self.json_value()
        return value

    def jsonb(self) -> str | None:
        r = self.r
        choice = r.random()
        if choice < 0.06:
            return None
        if choice < 0.2:
            return r.choice(JSON_MALFORMED)
        if choice < 0.35:
            return r.choice([deep(500), "[" + ",".join(["1"] * 100_000) + "]", json.dumps({"a": "x" * 100_000}),
                             json.dumps([{"product_id": None}] * 1000), '"\\u0000"', "null", "[]", "{}", "1",
                             json.dumps(self.json_value())])
        return json.dumps(self.realistic_json())

    def scalar(self, type_: str, hint: str, labels: tuple[str, ...]) -> Any:
        r = self.r
        if labels:
            return r.choice([None, "bogus", "", *labels, *labels])
        if type_ in ("bigint", "integer", "smallint"):
            return self.integer(hint)
        if type_ == "numeric":
            return self.numeric()
        if type_ in ("text", "character varying", "citext", "name"):
            return self.text(hint)
        if type_ in ("jsonb", "json"):
            return self.jsonb()
        if type_ == "boolean":
            return r.choice([None, "true", "false", "maybe", ""])
        if type_ in ("date", "timestamp with time zone", "timestamp without time zone"):
            return r.choice([None, *DATE_VALUES])
        if type_ == "interval":
            return r.choice([None, "1 second", "-1 day", "178000000 years", "x"])
        if type_ == "uuid":
            return r.choice([None, "00000000-0000-0000-0000-000000000000", "nope"])
        if type_ == "bytea":
            return r.choice([None, "\\x00ff", "\\x" + "ab" * 50_000, "\\xZZ"])
        return r.choice([None, "x"])

    def value(self, arg: Arg) -> Any:
        if arg.element is not None:
            r = self.r
            if r.random() < 0.1:
                return None
            elements = [self.scalar(arg.element, arg.name, arg.labels) for _ in range(r.choice([0, 1, 2, 5, 200]))]
            if r.random() < 0.3:
                elements.append(None)
            return elements
        return self.scalar(arg.type, arg.name, arg.labels)

    def call(self, fn: Function) -> tuple[sql.Composed, list[Any]]:
        """One call of fn: its statement (every argument cast to its declared type) and arguments."""
        self.fn = fn.name
        # some calls mostly realistic (they reach deep into the function), some mostly hostile
        base = self.r.choice([0.1, 0.25, 0.5, 0.7])
        given = len(fn.args) - self.r.randint(0, fn.defaults)
        parts = []
        values = []
        for i, arg in enumerate(fn.args[:given]):
            # the first argument names who calls (session token, assignment, event): mostly a valid one, so that
            # calls get past the first check
            self.odds = min(base, 0.15) if i == 0 else base
            prefix = sql.SQL("VARIADIC ") if fn.variadic and i == len(fn.args) - 1 else sql.SQL("")
            parts.append(prefix + sql.SQL("{}::").format(sql.Placeholder()) + sql.SQL(arg.type))
            values.append(self.value(arg))
        statement = sql.SQL("SELECT * FROM api.{}({})").format(sql.Identifier(fn.name), sql.SQL(", ").join(parts))
        return statement, values


def shown(values: list[Any]) -> str:
    return ", ".join(repr(v)[:SHOW] for v in values)


# ----------------------------------------------------------------------------- the run


@dataclass
class Tally:
    calls: int = 0
    refused: int = 0
    succeeded: int = 0
    skipped: int = 0
    findings: list[str] = field(default_factory=list)
    codes: dict[str, int] = field(default_factory=dict)
    unnamed: dict[str, set[str]] = field(default_factory=dict)  # class 22/23 raised inside a function, not named
    per_function: dict[str, dict[str, int]] = field(default_factory=dict)


def accepted(err: psycopg.Error) -> bool:
    state = err.sqlstate or ""
    if state.startswith(ACCEPTED_CLASSES) or state == "42501":
        return True
    # an unnamed raise_exception is accepted only when it carries a named problem (a slug: message)
    return state == "P0001" and bool(err.diag.message_primary) and ":" in (err.diag.message_primary or "")


def fuzz_role(url: str, superuser: psycopg.Connection, role: str, functions: list[Function], world: World,
              tally: Tally) -> None:
    with psycopg.connect(url, autocommit=False) as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
        conn.execute(f"SET statement_timeout = '{TIMEOUT}'")
        conn.commit()
        for fn in functions:
            count = max(3, CALLS // 10) if fn.name in SLOW else CALLS
            fuzzer = Fuzzer(world, SEED ^ zlib.crc32(f"{role}:{fn.signature}".encode()))
            full_before = full_fingerprint(superuser)
            rolled_back_only = any(part in fn.name for part in ROLLBACK_SUCCESS)
            for _ in range(count):
                statement, values = fuzzer.call(fn)
                before = superuser.execute(FINGERPRINT).fetchone()[0]
                tally.calls += 1
                try:
                    conn.execute(statement, values).fetchall()
                except psycopg.DataError as err:
                    if err.sqlstate is None:  # psycopg itself refuses to send a NUL character
                        conn.rollback()
                        tally.skipped += 1
                        continue
                    error: psycopg.Error | None = err
                except psycopg.Error as err:
                    error = err
                else:
                    error = None
                if error is None:
                    tally.succeeded += 1
                    tally.per_function.setdefault(fn.name, {}).setdefault("ok", 0)
                    tally.per_function[fn.name]["ok"] += 1
                    if rolled_back_only:
                        conn.rollback()
                    else:
                        conn.commit()
                    continue
                conn.rollback()
                tally.refused += 1
                tally.codes[error.sqlstate or "?"] = tally.codes.get(error.sqlstate or "?", 0) + 1
                tally.per_function.setdefault(fn.name, {}).setdefault(error.sqlstate or "?", 0)
                tally.per_function[fn.name][error.sqlstate or "?"] += 1
                where = f"{role} {fn.signature}({shown(values)})"
                if (error.sqlstate or "").startswith(("22", "23")) and "function" in (error.diag.context or ""):
                    tally.unnamed.setdefault(error.sqlstate or "?", set()).add(fn.name)
                if not accepted(error):
                    tally.findings.append(f"{where}: {error.sqlstate} {str(error).splitlines()[0][:300]}")
                after = superuser.execute(FINGERPRINT).fetchone()[0]
                if after != before:
                    tally.findings.append(f"{where}: refused with {error.sqlstate}, yet the ledger changed: "
                                          f"{before} -> {after}")
            if rolled_back_only and full_fingerprint(superuser) != full_before:
                tally.findings.append(f"{role} {fn.signature}: rolled-back calls changed a ledger table")


def full_fingerprint(superuser: psycopg.Connection) -> list[str]:
    query = superuser.execute(FULL_FINGERPRINT).fetchone()[0]
    return [r[0] for r in superuser.execute(query).fetchall()]


def test_every_api_function_answers_hostile_arguments_with_a_named_error(fuzz_db: tuple[str, World]) -> None:
    url, world = fuzz_db
    tally = Tally()
    with psycopg.connect(url, autocommit=True) as superuser:
        functions = discover(superuser)
        assert len(functions) > 100, "schema api is discovered"
        for audience, role in ROLES.items():
            mine = [fn for fn in functions if audience in fn.audiences]
            assert mine, f"{role} may execute some api function"
            fuzz_role(url, superuser, role, mine, world, tally)
        problems = superuser.execute("SELECT * FROM api.check_invariants()").fetchall()
    print(f"\nfuzz_calls={tally.calls} fuzz_refused={tally.refused} fuzz_succeeded={tally.succeeded} "
          f"fuzz_skipped={tally.skipped} sqlstates={dict(sorted(tally.codes.items()))}")
    if os.environ.get("FESTPAY_FUZZ_VERBOSE"):
        for name, codes in sorted(tally.per_function.items()):
            print(name, dict(sorted(codes.items())))
    print("unnamed data/integrity errors raised inside functions:",
          {code: sorted(names) for code, names in sorted(tally.unnamed.items())})
    assert not tally.findings, f"{len(tally.findings)} calls failed:\n" + "\n".join(tally.findings[:40])
    assert problems == [], "api.check_invariants() is empty after the fuzz"


def test_a_function_a_role_may_not_execute_is_refused_with_42501(fuzz_db: tuple[str, World]) -> None:
    url, world = fuzz_db
    r = random.Random(SEED)
    with psycopg.connect(url, autocommit=True) as superuser:
        functions = discover(superuser)
    tried = 0
    with psycopg.connect(url, autocommit=False) as conn:
        for audience, role in ROLES.items():
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
            conn.commit()
            others = [fn for fn in functions if audience not in fn.audiences]
            for fn in r.sample(others, min(12, len(others))):
                # NULL arguments: a cast of a constant that does not fit would fail while planning, before the check
                statement, values = Fuzzer(world, r.randrange(2**32)).call(fn)
                values = [None] * len(values)
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(statement, values)
                conn.rollback()
                tried += 1
    assert tried >= 40
