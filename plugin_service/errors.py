"""Typed errors of plugin_service.

Every error subclasses :class:`PluginServiceError` and carries ``kind``, a
:class:`~plugin_service.DiagnosticKind` member, so a host can route on it, plus the
data a person needs to act (``QueueFull.capacity``, ``ServiceStopped.state``...).
Where the standard library has an exception for the same failure, the error is
that one too: the timeouts are ``TimeoutError``s, ``QueueFull`` a ``queue.Full``,
the lookups ``LookupError``s, ``InvalidEvent`` a ``ValueError`` (README: Errors).
"""
from __future__ import annotations

import concurrent.futures
import queue
import sys
from typing import Any, Optional, Sequence

from ._diagnostics import DiagnosticKind as _K

__all__ = [
    "PluginServiceError",
    "LifecycleError",
    "ServiceNotFound",
    "QueueFull",
    "InvalidEvent",
    "BatchRejected",
    "ServiceUnavailable",
    "ServiceStopped",
    "ServiceFailed",
    "DispatchError",
    "DispatchTimeout",
    "DispatchFailed",
    "EventExpired",
    "PluginCrashed",
    "ToolError",
    "ToolNotFound",
    "ToolFailed",
    "ToolTimeout",
    "ToolBusy",
    "ToolUnavailable",
    "HostClosed",
    "PluginLoadError",
    "HostForked",
    "SourceUnavailable",
    "SourceNotFound",
    "BackendUnavailable",
    "RedriveRefused",
]


class PluginServiceError(Exception):
    """Base of every error this library raises on purpose.

    ``service`` names the service (or tool) concerned, where there is one.
    """

    kind: _K = _K.SERVICE_FAILED

    def __init__(self, message: str = "", *, service: Optional[str] = None) -> None:
        super().__init__(message)
        self.service = service

    def __reduce__(self) -> Any:
        # Rebuilt from its args and data, never through __init__ (copy, pickle):
        # the args hold the message, not the constructor's arguments (a
        # capacity, a reason), so Exception's own reduce would lose or reject them.
        return (_rebuilt, (type(self), self.args), self.__dict__)


def _rebuilt(cls: Any, args: Any) -> Any:
    error = cls.__new__(cls, *args)
    error.args = args
    return error


class LifecycleError(PluginServiceError):
    """A lifecycle call that the service's current state does not allow."""

    kind = _K.LIFECYCLE

    def __init__(self, message: str = "", *, service: Optional[str] = None,
                 state: Any = None) -> None:
        super().__init__(message, service=service)
        self.state = state


class ServiceNotFound(PluginServiceError, LookupError):
    """No service of that name is registered with the host."""

    kind = _K.SERVICE_NOT_FOUND

    def __init__(self, name: str) -> None:
        super().__init__("no service named %r" % (name,), service=name)
        self.name = name


class QueueFull(PluginServiceError, queue.Full):
    """The service's ingress queue holds ``capacity`` events already (also a
    ``queue.Full``, what ``queue.Queue.put`` raises)."""

    kind = _K.QUEUE_FULL

    def __init__(self, capacity: int, *, service: Optional[str] = None) -> None:
        super().__init__(
            "ingress queue of %r is full (capacity %d)" % (service, capacity), service=service
        )
        self.capacity = capacity


class InvalidEvent(PluginServiceError, ValueError):
    """The event was refused at submit; ``reason`` says why. It was never enqueued."""

    kind = _K.INVALID_EVENT

    def __init__(self, reason: str, *, service: Optional[str] = None) -> None:
        super().__init__("invalid event for %r: %s" % (service, reason), service=service)
        self.reason = reason


class BatchRejected(PluginServiceError):
    """Some events of a ``submit_many``/``post_many`` batch were not accepted; every
    other one was, and is queued as if submitted alone.

    ``results`` has one entry per event of the batch, in its order: what the call
    would have returned for an accepted event (its ``DispatchFuture``, or its
    correlation id for ``post_many``), or, in its place, the typed error that event
    alone would have raised (``InvalidEvent``, ``QueueFull``, ``ServiceStopped``...).
    ``accepted`` lists the accepted entries, ``rejected`` the ``(index, error)``
    pairs. Each rejection was counted and recorded like a single one.
    """

    kind = _K.BATCH_REJECTED

    def __init__(self, results: Sequence[Any], *, service: Optional[str] = None) -> None:
        self.results = list(results)
        self.rejected = [(index, result) for index, result in enumerate(self.results)
                         if isinstance(result, PluginServiceError)]
        self.accepted = [result for result in self.results
                         if not isinstance(result, PluginServiceError)]
        kinds = sorted({error.kind.value for _, error in self.rejected})
        super().__init__("%d of %d events rejected by %r (%s); the other %d were accepted"
                         % (len(self.rejected), len(self.results), service,
                            ", ".join(kinds), len(self.accepted)), service=service)


class _StateError(PluginServiceError):
    def __init__(self, message: str = "", *, service: Optional[str] = None,
                 state: Any = None) -> None:
        super().__init__(message, service=service)
        self.state = state


class ServiceUnavailable(_StateError):
    """The service is not running yet (READY or STARTING); ``state`` says which."""

    kind = _K.SERVICE_UNAVAILABLE


class ServiceStopped(_StateError):
    """The service is stopping or stopped; the event was refused or dropped."""

    kind = _K.SERVICE_STOPPED


class ServiceFailed(_StateError):
    """The service is FAILED, or failed to start or stop.

    ``services`` names every service concerned (several for ``start_all``).
    """

    kind = _K.SERVICE_FAILED

    def __init__(self, message: str = "", *, service: Optional[str] = None,
                 state: Any = None, services: Sequence[str] = ()) -> None:
        super().__init__(message, service=service, state=state)
        self.services = tuple(services) or ((service,) if service else ())


if sys.version_info >= (3, 11):
    _Timeout = TimeoutError  # which concurrent.futures.TimeoutError is, since 3.11
else:
    class _Timeout(TimeoutError, concurrent.futures.TimeoutError):
        """Before 3.11 ``future.result(timeout=...)`` raises
        ``concurrent.futures.TimeoutError``, a class of its own: a handler timeout
        is caught by whichever a caller names, as on later versions."""


class DispatchError(PluginServiceError):
    """An accepted event whose dispatch did not succeed."""

    kind = _K.DISPATCH_FAILED


class DispatchTimeout(DispatchError, _Timeout):
    """The handler did not return within ``timeout`` seconds; ``ctx.cancelled`` was set.

    Also a ``TimeoutError``: ``except TimeoutError`` around
    ``future.result(timeout=...)`` catches the handler's timeout and the wait's.
    """

    kind = _K.DISPATCH_TIMEOUT

    def __init__(self, message: str = "", *, service: Optional[str] = None,
                 timeout: Optional[float] = None) -> None:
        super().__init__(message, service=service)
        self.timeout = timeout


class DispatchFailed(DispatchError):
    """The handler raised; the plugin's exception is ``__cause__``."""

    kind = _K.DISPATCH_FAILED


class EventExpired(DispatchError):
    """The event's deadline passed while it waited in the queue: it was never
    handed to the plugin (a dead letter, counted in ``expired``).

    ``deadline`` is that deadline as a UTC datetime, ``late`` how many seconds
    past it the expiry was decided, ``expired_by`` which deadline it was:
    ``"expires_at"`` (the event's own) or ``"max_queue_age"`` (the service's).
    """

    kind = _K.EVENT_EXPIRED

    def __init__(self, message: str = "", *, service: Optional[str] = None,
                 correlation_id: Optional[str] = None, deadline: Any = None,
                 late: float = 0.0, expired_by: str = "expires_at") -> None:
        super().__init__(message, service=service)
        self.correlation_id = correlation_id
        self.deadline = deadline
        self.late = late
        self.expired_by = expired_by


class PluginCrashed(PluginServiceError):
    """The process running the plugin died (Ray backend): the service fails at
    once, whatever ``fail_after`` says, so a restart can bring up a fresh one."""

    kind = _K.DISPATCH_FAILED


class ToolError(PluginServiceError):
    """Base of the errors of tool calls."""

    kind = _K.TOOL_FAILED


class ToolNotFound(ToolError, LookupError):
    """No tool of that name is registered with the host."""

    kind = _K.TOOL_NOT_FOUND

    def __init__(self, name: str) -> None:
        super().__init__("no tool named %r" % (name,), service=name)
        self.name = name


class ToolFailed(ToolError):
    """The tool raised; its exception is ``__cause__``."""

    kind = _K.TOOL_FAILED


class ToolTimeout(ToolError, _Timeout):
    """The call did not finish within ``timeout`` seconds of its submission (also
    a ``TimeoutError``)."""

    kind = _K.TOOL_TIMEOUT

    def __init__(self, message: str = "", *, service: Optional[str] = None,
                 timeout: Optional[float] = None) -> None:
        super().__init__(message, service=service)
        self.timeout = timeout


class ToolBusy(ToolError):
    """The tool's bulkhead is full: ``max_concurrency`` calls hold a slot already."""

    kind = _K.TOOL_BUSY

    def __init__(self, max_concurrency: int, *, service: Optional[str] = None) -> None:
        super().__init__(
            "tool %r is busy (max_concurrency %d)" % (service, max_concurrency), service=service
        )
        self.max_concurrency = max_concurrency


class ToolUnavailable(ToolError):
    """The tool's circuit breaker is open (or half-open with its probe call out):
    the call was refused at once. ``next_probe_at`` (a UTC datetime, or None
    while a probe is out) is when a call may go through again."""

    kind = _K.TOOL_UNAVAILABLE

    def __init__(self, name: str, next_probe_at: Any = None) -> None:
        when = "" if next_probe_at is None else "; next probe at %s" % (
            next_probe_at.isoformat(),)
        super().__init__("tool %r is unavailable: its breaker is open%s" % (name, when),
                         service=name)
        self.name = name
        self.next_probe_at = next_probe_at


class HostClosed(PluginServiceError):
    """The host was closed; it takes no more calls."""

    kind = _K.HOST_CLOSED


class PluginLoadError(PluginServiceError):
    """An entry point could not be loaded or is not a plugin; ``name`` names it."""

    kind = _K.PLUGIN_LOAD

    def __init__(self, name: str, reason: str) -> None:
        super().__init__("cannot load plugin %r: %s" % (name, reason), service=name)
        self.name = name
        self.reason = reason


class HostForked(PluginServiceError, RuntimeError):
    """The host was created in process ``created_pid`` and used in ``pid``, a child
    forked from it (``os.fork()``, gunicorn's ``--preload``, ``multiprocessing``'s
    fork start method). No thread of the host survives a fork, so the inherited copy
    refuses everything rather than accept an event it could never run; the
    parent's host is unaffected. Create the host after the fork instead.
    """

    kind = _K.HOST_FORKED

    def __init__(self, created_pid: int, pid: int, *,
                 service: Optional[str] = None) -> None:
        what = "service %r of a plugin host" % (service,) if service else "a plugin host"
        super().__init__(
            "%s created in process %d was used in process %d, a fork of it: none of the "
            "host's threads survived the fork, so it runs nothing here. Create the "
            "PluginHost after the fork, in the process that uses it (under gunicorn, in "
            "the post_fork hook: see plugin_service.integrations.gunicorn)"
            % (what, created_pid, pid), service=service)
        self.created_pid = created_pid
        self.pid = pid


class SourceUnavailable(PluginServiceError):
    """``SourceHandle.send`` could not send through source ``source``: it cannot
    send at all (``state`` None: its class does not implement ``send()``), or it
    is not connected now (``state``: connecting, backoff, stopped, failed).
    Sending again once ``status().state`` is open may succeed."""

    kind = _K.SOURCE_UNAVAILABLE

    def __init__(self, message: str = "", *, source: Optional[str] = None,
                 state: Any = None, service: Optional[str] = None) -> None:
        super().__init__(message, service=service)
        self.source = source
        self.state = state


class SourceNotFound(PluginServiceError, LookupError):
    """No source of that name is attached to the host."""

    kind = _K.SOURCE_NOT_FOUND

    def __init__(self, name: str) -> None:
        super().__init__("no source named %r" % (name,))
        self.name = name


class BackendUnavailable(PluginServiceError, ConnectionError):
    """The backend could not reach where plugins run: a ``RayBackend`` could not
    join the cluster at ``address`` (None: a local instance). The message says
    what to set (for a cluster with token authentication, its token). Raised by
    the call that needed the backend first (``add_service``, ``add_tool(...,
    remote=True)``); nothing was registered, and a later call tries again."""

    kind = _K.BACKEND_UNAVAILABLE

    def __init__(self, message: str = "", *, address: Optional[str] = None,
                 service: Optional[str] = None) -> None:
        super().__init__(message, service=service)
        self.address = address


class RedriveRefused(PluginServiceError):
    """``PluginHost.redrive`` did not submit a dead letter again: ``reason`` says
    why (it was re-driven already, its raw payload was not stored, its event
    cannot be rebuilt); ``letter_id`` is its row in the sink, None for a letter
    of ``dead_letters()``. Never raised: it is the exception of that letter's
    already-failed future."""

    kind = _K.REDRIVE_REFUSED

    def __init__(self, reason: str, *, service: Optional[str] = None,
                 letter_id: Optional[int] = None) -> None:
        super().__init__("dead letter%s of %r not re-driven: %s" % (
            "" if letter_id is None else " %d" % letter_id, service, reason), service=service)
        self.reason = reason
        self.letter_id = letter_id
