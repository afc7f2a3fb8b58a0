"""Redelivery of a failed event through tenacity, inline on the worker.

Each redelivery is a copy of the event with ``attempt`` incremented and its own
deadline. A timed-out attempt is not retried; a stop during the backoff ends the
retry and the event fails with its last exception, and so does the event's own
``expires_at`` passing (no attempt is delivered after it; each attempt's
``ctx.deadline`` is never later than it).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional, Tuple

import attrs
import tenacity  # type: ignore[import-untyped, unused-ignore]  # 6.1 has no py.typed

from .._context import DispatchContext
from .core import _RUNNING, _monotonic
from .expiry import EventDeadlineContext, deadline_of
from .ledger import _is_instance

if TYPE_CHECKING:  # pragma: no cover
    from .handle import ServiceHandle


class RetryCutShort(Exception):
    """A retry may not deliver its next attempt: the service stops, or (raised by a
    dispatcher's single attempt) the attempt was skipped before it began."""


class _AttemptTimedOut(Exception):
    """An attempt was timed out by the watchdog; it is not retried."""


class Redelivery:
    """One retry of the event in flight: ``run()`` returns ``(ok, value)``."""

    __slots__ = ("_service", "_life", "_first", "_first_pending", "_last", "_handle",
                 "_timeout")

    def __init__(self, service: "ServiceHandle", life: int, first: BaseException,
                 handle: Callable[..., Any], timeout: Optional[float]) -> None:
        self._service = service
        self._life = life
        self._first = first
        self._first_pending = True
        self._last = first  # the exception the event fails with if no attempt succeeds
        self._handle = handle
        self._timeout = timeout

    def run(self) -> Tuple[bool, Any]:
        policy = self._service._config.retry
        assert policy is not None
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(policy.max_attempts),
            wait=tenacity.wait_exponential(multiplier=policy.backoff, max=policy.max_backoff),
            retry=tenacity.retry_if_exception(
                lambda exc: _is_instance(exc, policy.retry_on)
                and not issubclass(type(exc), (_AttemptTimedOut, RetryCutShort))),
            sleep=self._backoff,
            reraise=True,
        )
        try:
            return True, retrying(self._attempt)
        except (RetryCutShort, _AttemptTimedOut):
            # Cut short by stop, or decided by the watchdog (then _settle ignores it).
            return False, self._last
        except BaseException as exc:
            return False, exc

    def _attempt(self) -> Any:
        if self._first_pending:
            self._first_pending = False
            raise self._first  # the first delivery, already made
        service = self._service
        with service._lock:
            self._check()
            previous = service._current_event
        # The copy is made off the lock: an event subclass's __init__ is plugin code.
        event = attrs.evolve(previous, attempt=previous.attempt + 1)
        with service._lock:
            self._check()
            service._current_event = event
            service._retried += 1
            deadline = None
            if self._timeout is not None:
                deadline = service._deadline = _monotonic() + self._timeout
                service._arm(deadline)
            own = self._own_deadline()
            ctx = service._current_ctx = DispatchContext(event, deadline) if own is None \
                else EventDeadlineContext(event, own)
            ctx.deadline = deadline
        try:
            result = self._handle(event, ctx)
        except RetryCutShort:
            raise  # a remote attempt skipped by a stop: the last exception stands
        except BaseException as exc:
            if service._timed_out_current:
                raise _AttemptTimedOut() from exc
            self._last = exc
            raise
        if service._timed_out_current:
            raise _AttemptTimedOut()
        return result

    def _backoff(self, seconds: float) -> None:
        service, life = self._service, self._life
        with service._lock:
            if service._timed_out_current:
                raise _AttemptTimedOut()
            service._deadline = None
            service._current_ctx = None
            own = self._own_deadline()
            if own is not None:  # wake at expires_at, to give up then
                seconds = max(0.0, min(seconds, own - _monotonic()))
            if service._state_changed.wait_for(
                    lambda: service._life != life or service._state is not _RUNNING, seconds):
                raise RetryCutShort()

    def _check(self) -> None:
        """Raise unless the next attempt may be delivered now (lock held)."""
        service = self._service
        if service._timed_out_current:
            raise _AttemptTimedOut()  # decided between raise and retry
        if service._life != self._life or service._state is not _RUNNING:
            raise RetryCutShort()
        own = self._own_deadline()
        if own is not None and _monotonic() >= own:
            raise RetryCutShort()  # its expires_at passed: nobody wants it any more

    def _own_deadline(self) -> Optional[float]:
        """The event's own ``expires_at`` on the monotonic clock, if any (lock held)."""
        record = deadline_of(self._service._current)
        return None if record is None else record.own
