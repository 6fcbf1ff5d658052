"""High availability (python_gateway/ha.py): ``festpay ha up``, the leader's postmaster killed under a little
terminal load, nothing lost, ``festpay ha down``.

Real processes on 127.0.0.1 (etcd, three Patroni nodes with their PostgreSQL, one gateway), in a temporary folder;
about half a minute.  ``make failover`` runs all three faults with more load (python_gateway/failover.py).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys

import pytest

from python_gateway.processes import stop_process
from python_gateway.config import PROJECT_ROOT
from python_gateway.failover import (Driver, Outcome, check_ledger, count_lost, run_under_load,
                                     server_reachable_tempdir, setup_event, start_gateway)
from python_gateway.ha import NODES, HaCluster

pytestmark = pytest.mark.skipif(not all(shutil.which(tool) for tool in ("patroni", "patronictl", "etcd")),
                                reason="Patroni and etcd are not installed (apt-get install patroni etcd-server "
                                       "python3-etcd)")


def festpay_ha(action: str, directory: str) -> str:
    """``festpay ha ACTION --dir DIRECTORY``; its output (it must succeed)."""
    result = subprocess.run([sys.executable, "-m", "python_gateway.cli", "ha", action, "--dir", directory],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_a_killed_leader_loses_no_acknowledged_booking() -> None:
    workdir = server_reachable_tempdir("festpay-test-ha-")
    ha = HaCluster(workdir / "ha")
    gateway = None
    try:
        up = festpay_ha("up", str(ha.root))
        assert "target_session_attrs=read-write" in up and "DATABASE_URL=" in up
        codes = setup_event(ha, terminals=3)
        gateway, base_url = start_gateway(ha, workdir)
        outcomes: list[Outcome] = []
        load = asyncio.run(run_under_load(ha, base_url, codes, 2.0,
                                          lambda running: outcomes.append(Driver(ha, running).kill())))
        [kill] = outcomes
        assert kill.problems == []             # a new leader, the old one streaming again, downtime within the goal
        assert kill.new_leader not in ("", kill.old_leader)
        assert kill.acknowledged > 0 and load.refusals == [] and load.abandoned == 0
        assert count_lost(ha, load.acks) == 0
        assert check_ledger(ha, load.acks) == []
    finally:
        if gateway is not None:
            stop_process(gateway, "gateway")
        down = festpay_ha("down", str(ha.root))
        left = [name for name in (*NODES, "etcd") if ha.pid(name)] + [n for n in NODES if ha.postmaster_pid(n)]
        shutil.rmtree(workdir, ignore_errors=True)
    assert all(name in down for name in (*NODES, "etcd"))
    assert left == []
