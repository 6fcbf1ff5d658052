"""The embedded cluster, the lock, migrate, and the `festpay` command around them."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
import pytest

from python_gateway.embedded import ClusterLocked, EmbeddedPostgres
from python_gateway.migrate import MigrationError, migrate, yoyo_url

from .conftest import TEST_DBNAME


@pytest.fixture(scope="module")
def scratch_cluster(tmp_path_factory):
    """A second, private cluster for the tests that stop and restart a server.

    Restarting the session cluster would break connections other tests hold
    (pytest-pgtap keeps one open for the whole session).
    """
    cluster = EmbeddedPostgres(tmp_path_factory.mktemp("scratch"), server_settings={"shared_buffers": "32MB"})
    with cluster.locked():
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.destroy()


def _scalar(url: str, query: str):
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchone()[0]


def test_cluster_answers(db_url):
    assert _scalar(db_url, "SELECT 1") == 1
    assert _scalar(db_url, "SELECT current_database()") == TEST_DBNAME
    assert _scalar(db_url, "SELECT current_setting('server_version_num')::int") >= 150000


def test_durability_settings_stay_on(db_url):
    assert _scalar(db_url, "SHOW synchronous_commit") == "on"
    assert _scalar(db_url, "SHOW fsync") == "on"
    assert _scalar(db_url, "SHOW full_page_writes") == "on"


def test_server_settings(pg_cluster, db_url):
    assert _scalar(db_url, "SHOW max_connections") == "200"
    assert _scalar(db_url, "SHOW listen_addresses") == "127.0.0.1"
    assert _scalar(db_url, "SHOW unix_socket_permissions") == "0700"
    assert _scalar(db_url, "SHOW server_encoding") == "UTF8"
    assert len(os.fsencode(str(pg_cluster.socket_dir / f".s.PGSQL.{pg_cluster.port}"))) < 107


def test_tcp_url_with_password(pg_cluster):
    url = pg_cluster.tcp_url(TEST_DBNAME)
    assert url.startswith("postgresql://postgres:") and "@127.0.0.1:" in url
    assert _scalar(url, "SELECT current_user") == "postgres"


def test_other_role_connects_through_the_socket(pg_cluster, db_url):
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS festpay_probe")
        conn.execute("CREATE ROLE festpay_probe LOGIN")
    try:
        assert _scalar(pg_cluster.url(TEST_DBNAME, user="festpay_probe"), "SELECT current_user") == "festpay_probe"
    finally:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("DROP ROLE festpay_probe")


def test_second_lock_on_same_root_is_refused(pg_cluster):
    assert pg_cluster.holds_lock
    other = EmbeddedPostgres(pg_cluster.root)
    with pytest.raises(ClusterLocked, match=r"in use by another festpay process \(pid \d+\)") as info:
        other.acquire_lock()
    assert info.value.holder_pid == os.getpid()
    assert not other.holds_lock
    assert other.lock_holder() == os.getpid()
    # and it found the same cluster (also through the /tmp fallback, if any)
    assert other.data_dir == pg_cluster.data_dir
    assert other.running_pid() == pg_cluster.running_pid()


def test_second_festpay_run_is_refused_without_touching_anything(pg_cluster):
    pid_before = pg_cluster.running_pid()
    env = {**os.environ, "FESTPAY_DATA_DIR": str(pg_cluster.root), "DATABASE_URL": "", "FESTPAY_PG_PORT": ""}
    result = subprocess.run(
        [sys.executable, "-m", "python_gateway.cli", "run"],
        env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1, result
    assert "already running" in result.stderr
    assert "Traceback" not in result.stderr
    assert pg_cluster.running_pid() == pid_before


def test_stop_and_start_keep_data(scratch_cluster):
    cluster, db_url = scratch_cluster, scratch_cluster.url()
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE keep_me (v text)")
        conn.execute("INSERT INTO keep_me VALUES ('still here')")
    try:
        assert cluster.stop() is True
        assert not cluster.is_running()
        assert cluster.stop() is False
        assert cluster.start() is True
        assert cluster.start() is False
        assert _scalar(db_url, "SELECT v FROM keep_me") == "still here"
    finally:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS keep_me")


def _restart_with_pid_file(cluster: EmbeddedPostgres, pid: int) -> None:
    pid_file = cluster.data_dir / "postmaster.pid"
    lines = pid_file.read_text().splitlines(keepends=True)
    cluster.stop()
    assert not pid_file.exists()
    pid_file.write_text(f"{pid}\n" + "".join(lines[1:]))
    st = os.stat(cluster.data_dir)
    os.chown(pid_file, st.st_uid, st.st_gid)
    assert not cluster.is_running()
    assert cluster.start() is True
    assert cluster.running_pid() not in (None, pid)


def test_stale_pid_file_of_dead_process_does_not_block_start(scratch_cluster):
    finished = subprocess.Popen(["true"])
    finished.wait()
    _restart_with_pid_file(scratch_cluster, finished.pid)
    assert _scalar(scratch_cluster.url(), "SELECT 1") == 1


def test_stale_pid_file_of_reused_pid_does_not_block_start(scratch_cluster):
    # The pid now belongs to a live, unrelated process (this one).
    _restart_with_pid_file(scratch_cluster, os.getpid())
    assert _scalar(scratch_cluster.url(), "SELECT 1") == 1


def _catalog_snapshot(url: str) -> tuple:
    with psycopg.connect(url) as conn:
        applied = conn.execute("SELECT count(*) FROM _yoyo_migration").fetchone()[0]
        functions = conn.execute(
            """
            SELECT md5(coalesce(string_agg(pg_get_functiondef(p.oid), E'\\n' ORDER BY p.oid::regprocedure::text), ''))
            FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname = 'api' AND p.prokind IN ('f', 'p')
            """
        ).fetchone()[0]
        columns = conn.execute(
            """
            SELECT md5(coalesce(string_agg(format('%s.%s.%s:%s', table_schema, table_name, column_name, data_type),
                                           ',' ORDER BY table_schema, table_name, ordinal_position), ''))
            FROM information_schema.columns
            WHERE table_schema NOT IN ('pg_catalog', 'information_schema')
            """
        ).fetchone()[0]
    return applied, functions, columns


def test_migrating_twice_is_a_no_op(db_url):
    before = _catalog_snapshot(db_url)
    migrate(db_url)
    migrate(db_url)
    assert _catalog_snapshot(db_url) == before


def test_migrate_applies_each_migration_once(pg_cluster, tmp_path):
    """With throwaway migrations and procedures, in a database of its own."""
    (tmp_path / "migrations").mkdir()
    (tmp_path / "procedures").mkdir()
    (tmp_path / "migrations" / "0001_start.sql").write_text(
        "CREATE SCHEMA api;\nCREATE TABLE public.counter (n int NOT NULL);\nINSERT INTO public.counter VALUES (0);\n"
    )
    (tmp_path / "migrations" / "0002_more.sql").write_text(
        "-- depends: 0001_start\nUPDATE public.counter SET n = n + 1;\n"
    )
    (tmp_path / "procedures" / "20_b.sql").write_text(
        "CREATE OR REPLACE FUNCTION api.b() RETURNS int LANGUAGE sql AS $$ SELECT api.a() + 1 $$;\n"
    )
    (tmp_path / "procedures" / "10_a.sql").write_text(
        "CREATE OR REPLACE FUNCTION api.a() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 41; END $$;\n"
    )
    dbname = "festpay_migrate_probe"
    pg_cluster.drop_database(dbname)
    pg_cluster.create_database(dbname)
    url = pg_cluster.url(dbname)
    dirs = {"migrations_dir": tmp_path / "migrations", "procedures_dir": tmp_path / "procedures"}
    try:
        migrate(url, **dirs)
        first = _catalog_snapshot(url)
        migrate(url, **dirs)
        assert _catalog_snapshot(url) == first
        assert first[0] == 2
        assert _scalar(url, "SELECT n FROM public.counter") == 1
        assert _scalar(url, "SELECT api.b()") == 42

        (tmp_path / "procedures" / "30_broken.sql").write_text(
            "CREATE OR REPLACE FUNCTION api.a() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;\n"
            "\nSELECT no_such_function();\n"
        )
        with pytest.raises(MigrationError, match=r"30_broken\.sql \(line 3\)"):
            migrate(url, **dirs)
        # procedures are applied all or nothing
        assert _scalar(url, "SELECT api.b()") == 42
    finally:
        pg_cluster.drop_database(dbname)


def test_empty_migrations_dir(pg_cluster, tmp_path):
    dbname = "festpay_migrate_empty"
    pg_cluster.drop_database(dbname)
    pg_cluster.create_database(dbname)
    try:
        url = pg_cluster.url(dbname)
        migrate(url, migrations_dir=tmp_path / "none", procedures_dir=tmp_path / "none")
        assert _scalar(url, "SELECT count(*) FROM _yoyo_migration") == 0
    finally:
        pg_cluster.drop_database(dbname)


def test_yoyo_url_keeps_socket_host_and_port():
    url = yoyo_url("postgresql://postgres@/festpay?host=/tmp/Some%20Dir/run&port=5999")
    assert url.startswith("postgresql+psycopg:///festpay?")
    from yoyo.connections import parse_uri

    parsed = parse_uri(url)
    assert parsed.database == "festpay"
    assert parsed.args == {"user": "postgres", "host": "/tmp/Some Dir/run", "port": "5999"}
    assert yoyo_url("postgresql+psycopg://u:p%40ss@db.example:5433/x").startswith("postgresql+psycopg:///x?")
    assert parse_uri(yoyo_url("postgresql://u:p%40ss@DB.example:5433/x")).args == {
        "user": "u", "password": "p@ss", "host": "DB.example", "port": "5433"
    }
