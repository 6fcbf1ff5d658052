"""The Festpay reference terminal: a library and the ``festpay terminal`` commands.

    from python_gateway.terminal import Terminal, new_tag
    terminal = await Terminal.register(home, url, code)
    async with Terminal.open(home) as t:
        result = await t.buy("data/tags/04A1B2C3.json", ["Beer:2"])

Modules: tag (virtual tags and their MAC), store (SQLite), machine (terminal states), client (HTTP),
flows (the Terminal), home (terminal.json, lock), cli (``festpay terminal``).
"""

from .client import Credentials, GatewayClient, Problem, Unreachable
from .flows import (
    BookingResult,
    ItemRequest,
    PurchaseResult,
    RefusedEntry,
    ReplicationResult,
    SimulatedCrash,
    TapResult,
    Terminal,
    TerminalError,
)
from .home import NotRegistered, TerminalBusy, TerminalSettings
from .machine import State, SyncStatus
from .store import Item, Store, StoredTransaction
from .tag import LogEntry, TagCorrupt, TagData, TagError, TagRefused, TagTampered, VirtualTag, new_tag, normalize_uid

__all__ = [
    "BookingResult", "Credentials", "GatewayClient", "Item", "ItemRequest", "LogEntry", "NotRegistered", "Problem",
    "PurchaseResult", "RefusedEntry", "ReplicationResult", "SimulatedCrash", "State", "Store", "StoredTransaction",
    "SyncStatus", "TagCorrupt", "TagData", "TagError", "TagRefused", "TagTampered", "TapResult", "Terminal",
    "TerminalBusy", "TerminalError", "TerminalSettings", "Unreachable", "VirtualTag", "new_tag", "normalize_uid",
]
