"""The terminal transaction state machine (SPEC §5 "Terminal transaction states", seed 003).

    Open -> TerminalConfirmStarted -> Committed
    Open -> Aborted,  TerminalConfirmStarted -> Aborted
    TerminalConfirmStarted -> TerminalConfirmUnknown      (cleanup only: a crash left it there)

Committed, Aborted and TerminalConfirmUnknown are final on the terminal and are replicated.
"""

from __future__ import annotations

from enum import Enum


class State(str, Enum):
    OPEN = "Open"
    CONFIRM_STARTED = "TerminalConfirmStarted"
    CONFIRM_UNKNOWN = "TerminalConfirmUnknown"
    COMMITTED = "Committed"
    ABORTED = "Aborted"

    def __str__(self) -> str:  # pragma: no cover - cosmetic
        return self.value


class SyncStatus(str, Enum):
    """Replication status of a terminal transaction."""

    LOCAL = "local"            # not final yet: nothing to replicate
    PENDING = "pending"        # final, waiting for the backend's acknowledgement
    SYNCED = "synced"          # acknowledged (booked, duplicate or rejected)

    def __str__(self) -> str:  # pragma: no cover - cosmetic
        return self.value


TRANSITIONS: frozenset[tuple[State, State]] = frozenset(
    {
        (State.OPEN, State.CONFIRM_STARTED),
        (State.OPEN, State.ABORTED),
        (State.CONFIRM_STARTED, State.COMMITTED),
        (State.CONFIRM_STARTED, State.ABORTED),
        (State.CONFIRM_STARTED, State.CONFIRM_UNKNOWN),
    }
)

FINAL: frozenset[State] = frozenset({State.COMMITTED, State.ABORTED, State.CONFIRM_UNKNOWN})
REPLICABLE = FINAL


class InvalidTransition(Exception):
    def __init__(self, frm: State, to: State, terminal_tx_number: int | None = None):
        where = f"transaction {terminal_tx_number}: " if terminal_tx_number is not None else ""
        super().__init__(f"{where}{frm.value} -> {to.value} is not a terminal transition")
        self.frm, self.to = frm, to


def check(frm: State, to: State, terminal_tx_number: int | None = None) -> None:
    """Raises :class:`InvalidTransition` unless ``frm -> to`` is allowed."""
    if (State(frm), State(to)) not in TRANSITIONS:
        raise InvalidTransition(State(frm), State(to), terminal_tx_number)


def sync_status_for(state: State) -> SyncStatus:
    return SyncStatus.PENDING if State(state) in REPLICABLE else SyncStatus.LOCAL
