"""The ledger of a service: counters, the diagnostics ring, last_error, the
failure, dead letters, and the consistent snapshot that ``status()`` returns.

Everything here runs with the service's lock held.
"""
from __future__ import annotations

import datetime as _dt
from typing import TYPE_CHECKING, Any, List, Optional, Tuple

from .. import errors
from .._diagnostics import DeadLetter, Diagnostic, DiagnosticKind, DispatchCounters, ServiceStatus
from .._events import IngressEvent
from .._guarded import describe
from .._logs import LazyTraceback
from .._redact import sanitize
from .core import _K, _UTC, Deferred, ServiceCore, _logger

if TYPE_CHECKING:  # pragma: no cover
    from .._future import DispatchFuture


class Failure:
    """What the locked settle needs to know of a failed attempt, computed by the
    worker before it takes the lock (the plugin's exception is plugin code).

    ``counts``: it counts towards ``fail_after`` (the plugin saw the event);
    ``fatal``: the plugin cannot serve more events, whatever ``fail_after`` says
    (its process is gone, say), nor clean up. A dispatcher's ``classify`` builds it.
    """

    __slots__ = ("why", "cause", "counts", "fatal")

    def __init__(self, why: str, cause: BaseException, counts: bool = True,
                 fatal: bool = False) -> None:
        self.why = why
        self.cause = cause
        self.counts = counts
        self.fatal = fatal

    @classmethod
    def raised(cls, value: BaseException, fatal: bool = False) -> "Failure":
        """The handler raised ``value`` (``fatal``: its plugin cannot serve more)."""
        return cls("handler raised %s" % describe(value), value, fatal=fatal)


class _HandlerTraceback(LazyTraceback):
    """The traceback of a failed event's last exception, with the service and
    correlation id its other records carry (loguru's ``lazy`` calls each)."""

    __slots__ = ("_service", "_cid")

    def __init__(self, head: str, exc: BaseException, service: str,
                 cid: Optional[str]) -> None:
        self.head = head  # as LazyTraceback.__init__ does, one call fewer per failure
        self.exc = exc
        self._service = service
        self._cid = cid

    def service(self) -> str:
        return self._service

    def correlation_id(self) -> Optional[str]:
        return self._cid


# Made once: a failure storm with logging off pays one call that returns at
# loguru's first check, and no logger built per event (``bind`` costs ~1 us).
_lazy = _logger.opt(lazy=True)


def _log_handler_traceback(note: _HandlerTraceback) -> None:
    """A ``Deferred`` call, after the lock and before the event's future resolves:
    its redacted traceback at DEBUG, formatted only if a sink takes the record."""
    _lazy.debug("{}", note, service=note.service, correlation_id=note.correlation_id)


def _is_instance(value: Any, types: Any) -> bool:
    """``isinstance`` that a plugin's exception cannot make raise."""
    try:
        return isinstance(value, types)
    except BaseException:
        return False


class Ledger(ServiceCore):
    """Recording (lock held): diagnostics, rejections, dead letters, snapshots."""

    __slots__ = ()

    def _note(self, kind: DiagnosticKind, message: Any,
              correlation_id: Optional[str] = None) -> Diagnostic:
        """Record a diagnostic (and log it); every one but a transition (of the
        lifecycle, of the breaker) is last_error.

        Transition messages are built here from state names and numbers alone, so
        only the others, which can carry plugin text, go through ``sanitize``.
        """
        ours = kind is _K.LIFECYCLE or kind is _K.BREAKER  # built from names and numbers
        text = message if ours else sanitize(message)
        diagnostic = Diagnostic(kind, self._state, text, _dt.datetime.now(_UTC),
                                correlation_id)
        self._diagnostics.append(diagnostic)
        log = self._log if correlation_id is None else self._log.bind(
            correlation_id=diagnostic.correlation_id)
        if ours:
            log.info("{}", diagnostic.message)
        else:
            self._last_error = diagnostic
            log.warning("{}: {}", kind.value, diagnostic.message)
        return diagnostic

    def _breaker_changed(self, message: str) -> None:
        """The breaker moved (lock held): a BREAKER diagnostic, like a transition."""
        self._note(_K.BREAKER, message)

    def _reject(self, error: errors.PluginServiceError, event: Any) -> errors.PluginServiceError:
        """Count and record a rejected event (takes the lock); returns ``error``."""
        self._reject_all([(error, event)])
        return error

    def _reject_all(self, rejections: List[Tuple[errors.PluginServiceError, Any]]) -> None:
        """Count and record each ``(error, event)`` rejection, under one lock hold."""
        with self._lock:
            for error, event in rejections:
                try:
                    cid = event.correlation_id if type(event) is IngressEvent else None
                except Exception:  # pragma: no cover - IngressEvent slots always exist
                    cid = None
                kind = error.kind
                self._rejected += 1
                self._rejections[kind] = self._rejections.get(kind, 0) + 1
                self._note(kind, str(error), cid if type(cid) is str else None)

    def _dead_letter(self, event: Any, diagnostic: Diagnostic, later: Deferred) -> None:
        """Keep a dead letter (lock held); a dead-letter sink gets it in ``later``."""
        letter = DeadLetter(self.name, event, diagnostic)
        box = self._runtime.dead_letters
        box.add(letter)
        if box.sink is not None:
            later.add(box.sink.put, letter)

    def _dispatch_failed(self, future: DispatchFuture, event: Any, failure: Failure,
                         later: Deferred) -> Diagnostic:
        """Record a failed event (lock held): diagnostic, dead letter (``event``, the
        last attempt), and, in ``later``, once the lock is released: the DEBUG
        record of the exception's traceback, then the ``DispatchFailed`` its
        future gets."""
        why, cause = failure.why, failure.cause
        diagnostic = self._note(_K.DISPATCH_FAILED, why, future._cid)
        self._dead_letter(event, diagnostic, later)
        error = errors.DispatchFailed("service %r: %s" % (self.name, why),
                                      service=self.name)
        error.__cause__ = cause
        later.add(_log_handler_traceback,
                  _HandlerTraceback(why, cause, self.name, diagnostic.correlation_id))
        later.add(future.set_exception, error)
        return diagnostic

    def _snapshot(self) -> ServiceStatus:
        current = self._current
        in_flight = 1 if current is not None and not self._timed_out_current else 0
        return ServiceStatus(
            name=self.name,
            state=self._state,
            queue_depth=len(self._items) + self._capacity - self._room,
            queue_capacity=self._capacity,
            in_flight=in_flight,
            overdue=current is not None and self._timed_out_current,
            last_error=self._last_error,
            failure=self._failure,
            counters=DispatchCounters(
                enqueued=self._enqueued,
                dispatched=self._dispatched,
                succeeded=self._succeeded,
                failed=self._failed,
                timed_out=self._timed_out,
                rejected=self._rejected,
                dropped=self._dropped,
                retried=self._retried,
                expired=self._expired,
            ),
            diagnostics=tuple(self._diagnostics),
            plugin_status=None,
            restarts=self._restarts,
            replacements=self._replacements,
            restart_backoff=None if self._backoff is None else self._backoff.wait,
            breaker=None if self._breaker is None else self._breaker.status(),
            rejections=dict(self._rejections),
            queue_wait=self._queue_waits.snapshot() if self._timed else None,
            handler_time=self._handler_times.snapshot() if self._timed else None,
        )
