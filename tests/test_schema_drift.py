"""schema/ is the readable current shape; a database built by the migrations must match it exactly.

Two databases in the session cluster: one migrated by yoyo (migrations/ + procedures/), one built from
schema/*.sql in name order plus procedures/. Their schema-only dumps and their reference data (the
transition table and the named problems) must be identical, so a migration without the matching schema/
edit, or the other way round, fails here.
"""

from __future__ import annotations

import re
import subprocess

import psycopg
import pytest

from python_gateway.config import PROCEDURES_DIR, SCHEMA_DIR
from python_gateway.migrate import migrate

REFERENCE_DATA = [
    "SELECT from_state, to_state, trigger FROM ledger.transition ORDER BY 1 NULLS FIRST, 2",
    "SELECT slug, sqlstate, http_status, title FROM ledger.problem ORDER BY sqlstate",
]


def _build_from_schema(url: str) -> None:
    with psycopg.connect(url) as conn:
        with conn.transaction():
            for path in sorted(SCHEMA_DIR.glob("*.sql")) + sorted(PROCEDURES_DIR.glob("*.sql")):
                conn.execute(path.read_text())


def _dump(cluster, dbname: str) -> str:
    out = subprocess.run(
        [str(cluster.bindir / "pg_dump"), "--schema-only", "--exclude-table=public.*yoyo*",
         "--host", str(cluster.socket_dir), "--port", str(cluster.port), "--username", "postgres", dbname],
        check=True, capture_output=True, text=True,
    ).stdout
    # pg_dump names the database and (since 15.14) a random \restrict key; nothing else may differ.
    out = re.sub(r"^(-- Dumped (from|by) .*|\\(un)?restrict .*)$", "", out, flags=re.M)
    return out.replace(dbname, "<db>")


def _reference_data(url: str) -> list[list[tuple]]:
    with psycopg.connect(url) as conn:
        return [conn.execute(q).fetchall() for q in REFERENCE_DATA]


@pytest.fixture(scope="module")
def two_builds(pg_cluster):
    names = ("drift_migrations", "drift_schema")
    for name in names:
        pg_cluster.drop_database(name)
        pg_cluster.create_database(name)
    migrate(pg_cluster.url(names[0]))
    _build_from_schema(pg_cluster.url(names[1]))
    yield names
    for name in names:
        pg_cluster.drop_database(name)


def test_migrations_match_schema_folder(pg_cluster, two_builds):
    from_migrations, from_schema = (_dump(pg_cluster, n) for n in two_builds)
    assert "CREATE TABLE ledger.booking" in from_schema
    if from_migrations != from_schema:
        import difflib

        diff = "\n".join(difflib.unified_diff(from_schema.splitlines(), from_migrations.splitlines(),
                                              "schema/", "migrations/", lineterm="", n=2))
        pytest.fail(f"schema/ and migrations/ disagree:\n{diff[:6000]}", pytrace=False)


def test_reference_data_matches(pg_cluster, two_builds):
    a, b = (_reference_data(pg_cluster.url(n)) for n in two_builds)
    assert len(a[0]) == 22, "SPEC section 5 has 22 allowed transitions"
    assert a == b


def test_migrating_again_changes_nothing(pg_cluster, two_builds):
    before = _dump(pg_cluster, two_builds[0])
    migrate(pg_cluster.url(two_builds[0]))
    assert _dump(pg_cluster, two_builds[0]) == before
