"""The circuit breaker: its policy, its states, its snapshot, and the state
machine a service and a tool share.

``closed`` (everything passes) -> ``open`` once ``failures`` outcomes failed
within ``window`` seconds (nothing passes) -> ``half_open`` once ``open_for``
has passed and one probe is let through -> ``closed`` if the probe succeeds,
or ``open`` again for twice as long (at most ``max_open_for``) if it fails.

``Breaker`` keeps no lock of its own: its owner calls it under the lock that
guards the rest of its state (a service's, a tool's), and learns of each
transition through ``on_change`` (called under that lock, with a message built
from state names and numbers alone). Time is read from ``_clock`` (monotonic),
looked up at each call so a test can replace it.
"""
from __future__ import annotations

import collections
import datetime as _dt
import enum
import math
import time
from typing import Any, Callable, Dict, Optional

import attrs

from ._checks import positive_int
from ._export import _export

__all__ = ["BreakerPolicy", "BreakerState", "BreakerStatus", "Breaker"]

_clock = time.monotonic  # read through the module: a test may replace it
_UTC = _dt.timezone.utc


def _seconds(instance: Any, attribute: Any, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or math.isnan(value) or math.isinf(value) or value <= 0:
        raise ValueError("%s must be a finite number of seconds > 0, got %r"
                         % (attribute.name, value))


def _failures(instance: Any, attribute: Any, value: Any) -> None:
    positive_int(attribute.name, value)


def _max_open_for(instance: Any, attribute: Any, value: Any) -> None:
    _seconds(instance, attribute, value)
    open_for = instance.open_for
    if value < open_for:
        raise ValueError("max_open_for must be >= open_for (%r), got %r" % (open_for, value))


@attrs.frozen
class BreakerPolicy:
    """Open the breaker when ``failures`` outcomes failed (or timed out) within
    ``window`` seconds; after ``open_for`` seconds let one probe through; a
    failed probe opens it again for twice as long, at most ``max_open_for``.

    ``ValueError`` for a count that is not an int >= 1, a time that is not a
    finite number > 0, or ``max_open_for < open_for``.
    """

    failures: int = attrs.field(default=5, validator=_failures)
    window: float = attrs.field(default=30.0, validator=_seconds)
    open_for: float = attrs.field(default=1.0, validator=_seconds)
    max_open_for: float = attrs.field(default=60.0, validator=_max_open_for)


class BreakerState(str, enum.Enum):
    """Where a breaker stands; values are lower snake-case."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"

    def __str__(self) -> str:
        return self.value


@attrs.frozen
class BreakerStatus:
    """A breaker's snapshot: its ``state`` and ``since`` when (UTC), when the next
    probe may go while it is open (``next_probe_at``, UTC; else None), and how
    many times it opened (``trips``, re-openings after a failed probe included)."""

    state: BreakerState
    since: _dt.datetime
    next_probe_at: Optional[_dt.datetime] = None
    trips: int = 0

    def to_dict(self) -> Dict[str, Any]:
        """A dict of plain JSON types; never raises."""
        return _export(self)


_CLOSED, _OPEN, _HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


class Breaker:
    """The state machine (see the module); every method is called under the
    owner's lock."""

    __slots__ = ("policy", "state", "trips", "probing", "_on_change", "_failed_at",
                 "_open_for", "_probe_at", "_since", "_next_probe_at")

    def __init__(self, policy: BreakerPolicy,
                 on_change: Optional[Callable[[str], Any]] = None) -> None:
        self.policy = policy
        self.state = _CLOSED
        self.trips = 0
        self.probing = False  # the probe let through is still out (half_open)
        self._on_change = on_change
        # When the latest failures happened (monotonic), as many as open it.
        self._failed_at: "collections.deque[float]" = collections.deque(
            maxlen=policy.failures)
        self._open_for = policy.open_for  # how long the current or next opening lasts
        self._probe_at = 0.0  # monotonic: when an open breaker lets a probe through
        self._since = _dt.datetime.now(_UTC)
        self._next_probe_at: Optional[_dt.datetime] = None

    def status(self) -> BreakerStatus:
        return BreakerStatus(self.state, self._since, self._next_probe_at, self.trips)

    def wait(self) -> float:
        """Seconds until a call may pass (0.0: now). An open breaker whose
        ``open_for`` has passed goes half-open: the caller's next call is the
        probe. A half-open one answers 0.0 whatever is out: for callers that
        hand over one call at a time (a service), whatever they hand is the probe."""
        if self.state is _OPEN:
            left = self._probe_at - _clock()
            if left > 0:
                return left
            self.probing = True
            self._move(_HALF_OPEN, "open_for %gs passed; one probe goes" % self._open_for)
        return 0.0

    def admit(self) -> Optional[bool]:
        """For concurrent callers (a tool): None if the call may not pass now; else
        whether it is the probe (True) or an ordinary call (False, closed)."""
        if self.state is _CLOSED:
            return False
        if self.state is _HALF_OPEN:
            if self.probing:
                return None
            self.probing = True  # the previous probe ended without a verdict
            return True
        if self.wait() > 0:
            return None
        return True

    def succeeded(self, probe: bool = True) -> None:
        """An outcome succeeded; a probe's closes the breaker."""
        if self.state is _HALF_OPEN and probe:
            self.probing = False
            self._open_for = self.policy.open_for
            self._failed_at.clear()
            self._move(_CLOSED, "the probe succeeded")

    def failed(self, probe: bool = True) -> None:
        """An outcome failed or timed out: closed, it may open the breaker; a
        probe's opens it again for twice as long (at most ``max_open_for``)."""
        state = self.state
        if state is _CLOSED:
            now = _clock()
            failed_at = self._failed_at
            failed_at.append(now)
            policy = self.policy
            if len(failed_at) == policy.failures and now - failed_at[0] <= policy.window:
                failed_at.clear()
                self._open_for = policy.open_for
                self._open(now, "%d failures within %gs" % (policy.failures, policy.window))
        elif state is _HALF_OPEN and probe:
            self.probing = False
            self._open_for = min(self._open_for * 2, self.policy.max_open_for)
            self._open(_clock(), "the probe failed")

    def unjudged(self, probe: bool) -> None:
        """A call ended without a verdict (withdrawn, never run): if it was the
        probe, the next call may be one."""
        if probe and self.state is _HALF_OPEN:
            self.probing = False

    def _open(self, now: float, why: str) -> None:
        self.trips += 1
        self._probe_at = now + self._open_for
        self._move(_OPEN, "%s; next probe in %gs" % (why, self._open_for))

    def _move(self, target: BreakerState, why: str) -> None:
        previous = self.state
        self.state = target
        self._since = since = _dt.datetime.now(_UTC)
        self._next_probe_at = since + _dt.timedelta(seconds=self._open_for) \
            if target is _OPEN else None
        if self._on_change is not None:
            self._on_change("breaker %s -> %s (%s)" % (previous.value, target.value, why))
