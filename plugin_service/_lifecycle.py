"""Lifecycle states of a service and the table of transitions between them."""
from __future__ import annotations

import enum

__all__ = ["LifecycleState", "can_transition"]


class LifecycleState(str, enum.Enum):
    """Where a service is in its life; the value is the lower-case name."""

    READY = "ready"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


_S = LifecycleState

# The only transitions a service may make.  Everything that assigns a state goes
# through ``can_transition`` first, so an impossible move is a bug caught at once.
_ALLOWED = {
    _S.READY: frozenset({_S.STARTING, _S.STOPPED}),
    _S.STARTING: frozenset({_S.RUNNING, _S.STOPPING, _S.FAILED}),
    _S.RUNNING: frozenset({_S.STOPPING, _S.FAILED}),
    _S.STOPPING: frozenset({_S.STOPPED, _S.FAILED}),
    _S.STOPPED: frozenset({_S.STARTING}),
    _S.FAILED: frozenset({_S.STARTING}),
}


def can_transition(current: LifecycleState, target: LifecycleState) -> bool:
    """True when ``current -> target`` is in the transition table."""
    return target in _ALLOWED[current]
