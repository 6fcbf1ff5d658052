"""The chaos run at CI size (``make chaos`` runs the full one): PostgreSQL, two gateways, the relay, the TSE and six
tills as processes on 127.0.0.1, ten SIGKILLs in 45 s (each kind of part at least once) plus tills crashing at their
tag writes, then the drain and the checker (python_gateway/chaos/checker.py): nothing lost, doubled, unproven or
left unresolved, every receipt signed exactly once, TSE counters without a gap, invariants empty."""

from __future__ import annotations

import math
import re
import subprocess
import sys

from python_gateway.chaos.run import FAILING, KINDS
from python_gateway.config import PROJECT_ROOT

VALUE = re.compile(r"([a-z][a-z0-9_]*)=(\S+)")


def test_chaos_run_loses_doubles_and_leaves_nothing_unsigned():
    proc = subprocess.run(
        [sys.executable, "-m", "python_gateway.chaos", "run", "--duration", "45", "--kills", "10", "--seed", "17",
         "--crash-share", "0.02"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    values = dict(m.groups() for line in proc.stdout.splitlines() if (m := VALUE.fullmatch(line.strip())))
    assert proc.returncode == 0, out[-6000:]
    for name in FAILING:
        assert values[name] == "0", (name, out[-6000:])
    assert int(values["kills"]) == 10
    assert all(int(values[f"kills_{kind}"]) >= 1 for kind in KINDS), values
    assert values["unexpected_exits"] == "0", out[-6000:]
    assert int(values["purchases"]) > 200 and int(values["purchases_offline"]) > 0
    assert int(values["topups"]) > 0 and int(values["refunds"]) > 0
    assert int(values["till_crashes"]) > 0 and int(values["confirm_unknown"]) > 0
    assert int(values["signatures"]) >= int(values["purchases"])
    assert math.isfinite(float(values["recovery_p99_s"]))
    print("\n" + "\n".join(f"{k}={v}" for k, v in values.items()))
