"""The pgTAP suites, run the way a DBA runs them: with pg_prove."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from python_gateway.config import TESTS_DIR

from .conftest import TEST_DBNAME


def test_pg_prove_runs_all_sql_suites(pg_cluster):
    suites = sorted(TESTS_DIR.glob("test_*.sql"))
    assert suites, f"no pgTAP suites (test_*.sql) in {TESTS_DIR} yet"
    pg_prove = shutil.which("pg_prove")
    if pg_prove is None:
        pytest.fail(
            "pg_prove not found on PATH; install libtap-parser-sourcehandler-pgtap-perl (`make test` does)",
            pytrace=False,
        )
    result = subprocess.run(
        [
            pg_prove,
            "--psql-bin", pg_cluster.psql_path,
            "--host", str(pg_cluster.socket_dir),
            "--port", str(pg_cluster.port),
            "--dbname", TEST_DBNAME,
            "--username", "postgres",
            *map(str, suites),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, f"pg_prove exit {result.returncode}:\n{result.stdout}\n{result.stderr}"
