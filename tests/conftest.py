"""Shared fixtures: one throwaway PostgreSQL cluster per test session.

The cluster lives in a pytest temporary folder (or in its private /tmp
fallback when the server user cannot reach that folder), never in the
`festpay run` cluster and never in DATABASE_URL.  Database ``festpay_test``
is migrated, has the pgtap extension and the helpers of ``tests/pgtap_setup.sql``
(when that file exists).

A module that needs a database of its own (exact counts, the newest event, no other module's rows) takes it from
:func:`migrated_database` (its URL) or :func:`own_database` (a superuser connection) in a module fixture.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import psycopg
import pytest

from python_gateway.config import TESTS_DIR
from python_gateway.embedded import EmbeddedPostgres
from python_gateway.migrate import load_sql_file, migrate

TEST_DBNAME = "festpay_test"
PGTAP_SETUP = TESTS_DIR / "pgtap_setup.sql"


@pytest.fixture(scope="session")
def pg_cluster(tmp_path_factory: pytest.TempPathFactory):
    """A running EmbeddedPostgres with a migrated ``festpay_test`` database (superuser ``postgres``)."""
    root = tmp_path_factory.mktemp("pg")
    cluster = EmbeddedPostgres(root, server_settings={"shared_buffers": "128MB"})
    cluster.acquire_lock()
    try:
        cluster.start()
        cluster.create_database(TEST_DBNAME)
        url = cluster.url(TEST_DBNAME)
        migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pgtap")
        if PGTAP_SETUP.exists():
            load_sql_file(url, PGTAP_SETUP, psql=cluster.psql_path)
        yield cluster
    finally:
        try:
            cluster.destroy()  # stops it and removes the data (and the /tmp fallback folder)
        finally:
            cluster.release_lock()


@pytest.fixture(scope="session")
def db_url(pg_cluster: EmbeddedPostgres) -> str:
    """Superuser URL (Unix socket, trust) of the migrated ``festpay_test`` database."""
    return pg_cluster.url(TEST_DBNAME)


@pytest.fixture(scope="session")
def pgtap_connection(pg_cluster: EmbeddedPostgres):
    """pytest-pgtap's connection, to ``festpay_test`` (overrides the plugin's fixture).

    The plugin's own fixture yields None when it cannot connect, and then every
    pgTAP file is skipped silently.  This one fails instead.
    """
    try:
        conn = psycopg.connect(pg_cluster.url(TEST_DBNAME), autocommit=False)
    except psycopg.Error as err:
        pytest.fail(f"pgTAP: cannot connect to {TEST_DBNAME}: {err}", pytrace=False)
    with conn:
        yield conn


@contextlib.contextmanager
def migrated_database(pg_cluster: EmbeddedPostgres, name: str) -> Iterator[str]:
    """Database ``name`` of its own on the test cluster, created afresh (a leftover of an earlier run dropped first)
    and migrated; yields its superuser URL and drops it afterwards."""
    pg_cluster.drop_database(name)
    pg_cluster.create_database(name)
    try:
        url = pg_cluster.url(name)
        migrate(url)
        yield url
    finally:
        pg_cluster.drop_database(name)


@contextlib.contextmanager
def own_database(pg_cluster: EmbeddedPostgres, name: str) -> Iterator[psycopg.Connection]:
    """:func:`migrated_database` ``name``, with a superuser connection (autocommit) to it while the block runs."""
    with migrated_database(pg_cluster, name) as url, psycopg.connect(url, autocommit=True) as conn:
        yield conn
