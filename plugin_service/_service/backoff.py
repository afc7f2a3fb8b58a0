"""The restart backoff and the give-up: how long each automatic restart of a
service waits (``RestartPolicy.multiplier``, ``max_backoff``, ``reset_after``),
and the call of ``on_give_up`` once the restart intensity is exceeded.

``RestartBackoff`` is part of lifecycle control: its methods run with the
service's lock held. ``GiveUp`` runs after the lock, on a thread of its own.
"""
from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Optional

from .._guarded import failure_log

if TYPE_CHECKING:  # pragma: no cover
    from .._config import RestartPolicy
    from .._diagnostics import Diagnostic

#: When the service began RUNNING and failed, for ``reset_after`` only; looked up
#: at each call, so a test can replace it with a manual clock without touching
#: the watchdog's deadlines.
_clock = time.monotonic

#: The longest wait a timer can have: the watchdog sleeps on a ``Condition``,
#: which refuses a longer timeout (an uncapped ``multiplier`` reaches it).
_LONGEST_WAIT = threading.TIMEOUT_MAX / 2


def restart_wait(policy: "RestartPolicy", n: int) -> float:
    """``backoff * multiplier ** n`` seconds, capped at ``max_backoff``."""
    wait = policy.backoff
    if wait and policy.multiplier != 1.0:
        try:
            wait = wait * policy.multiplier ** n
        except OverflowError:  # float ** int raises where float * float gives inf
            wait = _LONGEST_WAIT
    if policy.max_backoff is not None and wait > policy.max_backoff:
        wait = policy.max_backoff
    return min(wait, _LONGEST_WAIT)


class RestartBackoff:
    """The waits of one service's automatic restarts (lock held).

    ``_streak`` is *n*: the automatic restarts since the service last ran
    ``reset_after`` seconds without failing, or since the host last restarted it
    by hand. ``wait`` is the latest automatic restart's, for ``status()``.
    """

    __slots__ = ("policy", "_streak", "_running_since", "wait")

    def __init__(self, policy: "RestartPolicy") -> None:
        self.policy = policy
        self._streak = 0
        self._running_since = 0.0
        self.wait: Optional[float] = None

    def running(self) -> None:
        """The service went RUNNING just now."""
        if self.policy.reset_after is not None:
            self._running_since = _clock()

    def next_wait(self, was_running: bool) -> float:
        """The wait of the automatic restart that follows a failure now, from
        RUNNING when ``was_running``; it counts in the streak."""
        reset_after = self.policy.reset_after
        if was_running and reset_after is not None \
                and _clock() - self._running_since >= reset_after:
            self._streak = 0  # it ran long enough without failing: start over
        wait = self.wait = restart_wait(self.policy, self._streak)
        self._streak += 1
        return wait

    def reset(self) -> None:
        """The host restarted the service by hand: the next wait is ``backoff``."""
        self._streak = 0
        self.wait = None


class GiveUp:
    """One call of ``on_give_up(name, diagnostic)``, on a daemon thread of its
    own: it may block, or call the host's lifecycle methods (``restart()``),
    without holding up a worker or the watchdog. What it raises is logged."""

    __slots__ = ("_callback", "_name", "_diagnostic", "_log")

    def __init__(self, callback: Any, name: str, diagnostic: "Optional[Diagnostic]",
                 log: Any) -> None:
        self._callback = callback
        self._name = name
        self._diagnostic = diagnostic
        self._log = log

    def start(self, _: Any = None) -> None:
        """Start the call (a ``Deferred`` call: after the service's lock)."""
        try:
            threading.Thread(target=self._run, name="%s-give-up" % self._name,
                             daemon=True).start()
        except BaseException as exc:  # no thread to be had: say so, never raise
            self._log.error("on_give_up could not be called: {}", failure_log(exc))

    def _run(self) -> None:
        try:
            self._callback(self._name, self._diagnostic)
        except BaseException as exc:
            self._log.error("on_give_up raised {}", failure_log(exc))
