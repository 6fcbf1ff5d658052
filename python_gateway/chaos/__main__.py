"""``python -m python_gateway.chaos run|till``."""

from __future__ import annotations

import argparse
import sys

from . import run, till


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m python_gateway.chaos", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run.add_arguments(sub.add_parser("run", help="the chaos run: start, kill, drain, check"))
    till.add_arguments(sub.add_parser("till", help="one till process (started by the run)"))
    args = parser.parse_args(argv)
    return run.main(args) if args.command == "run" else till.main(args)


if __name__ == "__main__":
    sys.exit(main())
