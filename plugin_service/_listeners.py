"""Lifecycle listeners: callbacks told of every transition, on one thread of the host's.

A transition runs under its service's lock, so it only appends a record to a
bounded FIFO here (``post``: no call out, no wait; nothing at all while no
listener is registered). One listener thread per host, started with the first
listener, takes the records in the order they were posted and calls each
listener off every lock of ours. What waits is bounded: past ``BACKLOG``
notifications the newest are dropped and counted, so a slow listener costs only
the notifications it misses, never a service's progress. The lock here is a
leaf: nothing is acquired while it is held.
"""
from __future__ import annotations

import collections
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple, TypeVar

from loguru import logger

from . import errors
from ._diagnostics import Diagnostic
from ._fork import forked_error
from ._guarded import failure_log, text_of
from ._lifecycle import LifecycleState

__all__ = ["Listeners", "HostListeners", "Listener", "BACKLOG", "JOIN_BOUND"]

#: ``callback(name, from_state, to_state, diagnostic)``.
Listener = Callable[[str, LifecycleState, LifecycleState, Diagnostic], Any]
ListenerT = TypeVar("ListenerT", bound=Listener)
_Callbacks = Tuple[Listener, ...]
#: One transition waiting for the listener thread: the service's name, the two
#: states, its LIFECYCLE diagnostic, and whom to tell (the host's listeners and
#: the service's, as registered when it happened).
_Record = Tuple[str, LifecycleState, LifecycleState, Diagnostic, _Callbacks, _Callbacks]

#: How many notifications wait at most for the listener thread (besides the one
#: it is delivering); past it the newest are dropped.
BACKLOG = 1000
#: How long ``close()`` without a timeout waits for the listener thread to
#: deliver what is pending (a slow listener of the application's).
JOIN_BOUND = 5.0


def _index(callbacks: _Callbacks, callback: Any) -> int:
    """Where ``callback`` is in ``callbacks``, compared as ``list.remove`` does
    (a bound method equals another of the same object); -1 if absent."""
    for index, registered in enumerate(callbacks):
        if registered is callback or registered == callback:
            return index
    return -1


def _still_registered(callback: Listener, callbacks: _Callbacks) -> bool:
    return any(registered is callback for registered in callbacks)


class Listeners:
    """The listeners of one host's services, and the thread that calls them.

    Everything is guarded by ``_lock``. Deliberate lock-free reads: ``listening``
    by every transition (a stale False only misses a transition racing with the
    first ``add``); ``_host`` and ``_services``' tuples by the listener thread
    before each call (each tuple is replaced whole, never changed, which is also
    why a record can hold the ones it was posted for).
    """

    def __init__(self, thread_name: str) -> None:
        self.listening = False  # some callback is registered (read lock-free)
        self._thread_name = thread_name
        self._lock = threading.Lock()
        self._has_records = threading.Condition(self._lock)  # the listener thread waits
        self._records: "collections.deque[_Record]" = collections.deque()
        self._backlog = BACKLOG
        self._host: _Callbacks = ()  # told of every service's transitions
        self._services: Dict[str, _Callbacks] = {}  # by service name
        self._thread: Optional[threading.Thread] = None
        self._closing = False  # no more records are taken; the thread drains and ends
        self._overflowing = False  # dropped since the thread last caught up
        self._dropped = 0

    @property
    def dropped(self) -> int:
        """Notifications dropped because the backlog was full, since the host began."""
        with self._lock:
            return self._dropped

    def add(self, service: Optional[str], callback: ListenerT) -> ListenerT:
        """Register ``callback`` for ``service`` (None: every service); returns it."""
        if not callable(callback):
            raise TypeError("a lifecycle listener must be callable, got %s"
                            % text_of(callback, 200))
        with self._lock:
            if self._closing:
                raise errors.HostClosed("host is closed; add_listener() refused",
                                        service=service)
            self._set(service, self._of(service) + (callback,))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._thread_name,
                                                daemon=True)
                self._thread.start()
        return callback

    def remove(self, service: Optional[str], callback: Any) -> None:
        """Unregister the first registration of ``callback`` for ``service``;
        ``ValueError`` if there is none."""
        while True:
            with self._lock:
                current = self._of(service)
            index = _index(current, callback)  # outside the lock: __eq__ is the caller's
            if index < 0:
                raise ValueError("%s is not a lifecycle listener of %s" % (
                    text_of(callback, 200),
                    "the host" if service is None else "service %r" % service))
            with self._lock:
                if self._of(service) is current:  # else changed meanwhile: look again
                    self._set(service, current[:index] + current[index + 1:])
                    return

    def _of(self, service: Optional[str]) -> _Callbacks:
        return self._host if service is None else self._services.get(service, ())

    def _set(self, service: Optional[str], callbacks: _Callbacks) -> None:
        if service is None:
            self._host = callbacks
        elif callbacks:
            self._services[service] = callbacks
        else:
            self._services.pop(service, None)
        self.listening = bool(self._host or self._services)

    def post(self, name: str, from_state: LifecycleState, to_state: LifecycleState,
             diagnostic: Diagnostic) -> None:
        """Queue the transition for its listeners; called under the service's
        lock, so it never waits and never calls out (but to log an overflow)."""
        with self._lock:
            host, own = self._host, self._services.get(name, ())
            if self._closing or not (host or own):
                return
            if len(self._records) < self._backlog:
                self._records.append((name, from_state, to_state, diagnostic, host, own))
                self._has_records.notify()
                return
            self._dropped += 1
            first = not self._overflowing
            self._overflowing = True
        if first:
            logger.warning(
                "lifecycle listeners are {} notifications behind: newer ones are dropped "
                "(counted in HostStatus.listener_backlog_dropped) until they catch up",
                self._backlog)

    def _run(self) -> None:
        """The listener thread: deliver records in order until closed and drained."""
        while True:
            record = self._next()
            if record is None:
                return
            self._deliver(record)

    def _next(self) -> Optional[_Record]:
        with self._lock:
            records = self._records
            while not records:
                if self._closing:
                    return None
                self._has_records.wait()
            record = records.popleft()
            if not records:
                self._overflowing = False  # caught up: the next overflow warns again
            return record

    def _deliver(self, record: _Record) -> None:
        """Call each listener the record was posted for that is still registered
        (checked just before its call): the host's first, then the service's,
        each in the order added."""
        name, host, own = record[0], record[4], record[5]
        for callback in host:
            if _still_registered(callback, self._host):
                self._call(callback, record)
        for callback in own:
            if _still_registered(callback, self._services.get(name, ())):
                self._call(callback, record)

    @staticmethod
    def _call(callback: Listener, record: _Record) -> None:
        name, from_state, to_state, diagnostic = record[:4]
        try:
            callback(name, from_state, to_state, diagnostic)
        except BaseException as exc:  # one listener's bug must not silence the others
            logger.error("lifecycle listener {} failed on service {} ({} -> {}): {}",
                         text_of(callback, 200), str.__repr__(name), from_state.value,
                         to_state.value, failure_log(exc))

    def close(self, deadline: Optional[float]) -> None:
        """Take no more records, and wait until the thread has delivered those
        pending, at most until the monotonic ``deadline`` (``JOIN_BOUND`` from now
        without one). Not waited for on the listener thread itself."""
        with self._lock:
            self._closing = True
            self._has_records.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(JOIN_BOUND if deadline is None
                        else max(0.0, deadline - time.monotonic()))


class HostListeners:
    """The host's listener calls (a part of ``PluginHost``)."""

    if TYPE_CHECKING:  # pragma: no cover - set by PluginHost.__init__
        _listeners: Listeners
        _forked: bool
        _closed: bool
        _pid: int

    def add_listener(self, callback: ListenerT) -> ListenerT:
        """Call ``callback(name, from_state, to_state, diagnostic)`` for every later
        transition of every service of this host, those added later included;
        returns ``callback``, so it also serves as a decorator.

        ``name`` is the service's, the states are ``LifecycleState`` values and
        ``diagnostic`` is the LIFECYCLE ``Diagnostic`` recorded for the transition.
        Every listener of the host runs on one thread of its own (started by the
        first ``add_listener``), in the order the transitions happened, never on
        a worker and never under a service's lock, so it may call any host or
        handle method. One that raises is logged and the others are still called.
        Notifications wait for a slow listener in a backlog of at most 1,000;
        past it the newest are dropped and counted (``HostStatus.
        listener_backlog_dropped``). A callback added twice is called twice.

        Raises ``TypeError`` if ``callback`` is not callable, ``HostClosed`` once
        :meth:`close` has begun, ``HostForked`` in a process forked from the host's.
        """
        if self._forked:
            raise forked_error(self._pid)
        if self._closed:
            raise errors.HostClosed("host is closed; add_listener() refused")
        return self._listeners.add(None, callback)

    def remove_listener(self, callback: Listener) -> None:
        """Stop calling ``callback`` (its first registration by :meth:`add_listener`):
        once this returns it is not called again, except by a call already running
        on the listener thread. Raises ``ValueError`` if it is not registered,
        like ``list.remove``; ``HostForked`` in a process forked from the host's."""
        if self._forked:
            raise forked_error(self._pid)
        self._listeners.remove(None, callback)
