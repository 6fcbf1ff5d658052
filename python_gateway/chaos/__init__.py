"""The chaos run (``make chaos``): Festpay's parts as processes, killed at random under load, then checked.

``python -m python_gateway.chaos run [--duration S] [--kills N] ...``: the driver (:mod:`.run`);
``python -m python_gateway.chaos till ...``: one till process (:mod:`.till`), started by the driver;
:mod:`.checker`: the verdict, tills and tags against the ledger and the TSE's log.
"""
