"""What a source reports: its state and its counters, as frozen values."""
from __future__ import annotations

import datetime as _dt
import enum
from typing import Any, Dict, Optional

import attrs

from .._diagnostics import Diagnostic
from .._export import _export

__all__ = ["SourceState", "SourceStatus", "can_move"]


class SourceState(str, enum.Enum):
    """Where a source is; the value is the lower-case name.

    ``connecting``: waiting for its service to run, or in ``connect()``;
    ``open``: connected, reading while its service is RUNNING; ``backoff``:
    waiting to reconnect after a failure; ``paused``: connected, not reading
    (``SourceHandle.pause()``); ``stopped``: ended (exhausted, or the host
    closed); ``failed``: its ``ReconnectPolicy`` gave up.
    """

    CONNECTING = "connecting"
    OPEN = "open"
    BACKOFF = "backoff"
    PAUSED = "paused"
    STOPPED = "stopped"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


_S = SourceState
_ENDED = frozenset({_S.STOPPED, _S.FAILED})
# The only moves a source makes; its one writer checks each against this table.
_ALLOWED = {
    _S.CONNECTING: frozenset({_S.OPEN, _S.PAUSED, _S.BACKOFF}) | _ENDED,
    _S.OPEN: frozenset({_S.PAUSED, _S.BACKOFF}) | _ENDED,
    _S.PAUSED: frozenset({_S.OPEN, _S.BACKOFF}) | _ENDED,
    _S.BACKOFF: frozenset({_S.CONNECTING}) | _ENDED,
    _S.STOPPED: frozenset(),
    _S.FAILED: frozenset(),
}


def can_move(current: SourceState, target: SourceState) -> bool:
    """True when ``current -> target`` is in the transition table."""
    return target in _ALLOWED[current]


@attrs.frozen
class SourceStatus:
    """One consistent snapshot of a source, as ``SourceHandle.status()`` returns it.

    At every snapshot ``received == submitted + rejected + dropped`` plus 0 or 1
    (an item between ``receive`` and its submit). ``submitted`` events have their
    outcome in the service's counters (an event withdrawn by ``drop_oldest``
    counts as submitted here and dropped there); ``rejected`` items were refused
    (``to_event`` raised, or the service found the event invalid); ``dropped``
    items were never submitted (a full queue under a drop policy, a service that
    was not running, or ``close()``). ``reconnects`` counts connects after a
    failure. ``last_error`` is already redacted; ``last_received_at`` is when
    the last item arrived (UTC), or None.
    """

    name: str
    service: str
    state: SourceState
    received: int = 0
    submitted: int = 0
    rejected: int = 0
    dropped: int = 0
    reconnects: int = 0
    last_error: Optional[Diagnostic] = None
    last_received_at: Optional[_dt.datetime] = None

    def to_dict(self) -> Dict[str, Any]:
        """A dict of plain JSON types; never raises."""
        return _export(self)
