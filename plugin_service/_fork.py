"""A host belongs to the process that created it.

``os.fork()`` copies a process with one thread, the forking one: a child inherits
every host object of its parent, their queues and their locks, but none of the
worker, watchdog or tool threads that would run them, and a lock one of those
threads held at the fork stays held forever. Such a host would accept events and
never run them, so every host is registered here and, right after a fork, each
is marked in the child (plain attribute writes: the child has one thread then).
A marked host and its services check that mark before touching any lock and
refuse every call with ``HostForked``; their ``status()`` says so.
"""
from __future__ import annotations

import datetime as _dt
import os
import weakref
from typing import Optional, Protocol

from . import errors
from ._diagnostics import (
    Diagnostic,
    DiagnosticKind,
    DispatchCounters,
    ServiceStatus,
    ToolCounters,
    ToolStatus,
)
from ._lifecycle import LifecycleState

__all__ = ["track", "forked_error", "forked_service_status", "forked_tool_status"]


class _Inheritable(Protocol):
    def _mark_forked(self) -> None: ...


# Every live host of this process. Weak, so a host that is let go is not kept.
_hosts: "weakref.WeakSet[_Inheritable]" = weakref.WeakSet()


def track(host: _Inheritable) -> None:
    """Have ``host._mark_forked()`` called in every child forked from now on."""
    _hosts.add(host)


# When this process was forked (None in a process that was not): the time of the
# HOST_FORKED diagnostics, so repeated snapshots in the child agree.
_forked_at: Optional[_dt.datetime] = None


def _mark_inherited_hosts() -> None:
    global _forked_at
    _forked_at = _dt.datetime.now(_dt.timezone.utc)
    for host in list(_hosts):
        host._mark_forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_mark_inherited_hosts)


def forked_error(created_pid: int, service: Optional[str] = None) -> errors.HostForked:
    """The error an inherited host (or one of its services) raises in this process."""
    return errors.HostForked(created_pid, os.getpid(), service=service)


def _diagnostic(created_pid: int, service: Optional[str]) -> Diagnostic:
    at = _forked_at or _dt.datetime.now(_dt.timezone.utc)
    return Diagnostic(DiagnosticKind.HOST_FORKED, LifecycleState.FAILED,
                      str(forked_error(created_pid, service)), at)


def forked_service_status(name: str, capacity: int, created_pid: int) -> ServiceStatus:
    """An inherited service, built without its lock: FAILED, with a HOST_FORKED
    failure, and nothing counted (the child accepted nothing; the events the
    parent accepted are the parent's), so both counter invariants hold."""
    diagnostic = _diagnostic(created_pid, name)
    return ServiceStatus(name=name, state=LifecycleState.FAILED, queue_depth=0,
                         queue_capacity=capacity, in_flight=0, overdue=False,
                         last_error=diagnostic, failure=diagnostic,
                         counters=DispatchCounters(), diagnostics=(diagnostic,))


def forked_tool_status(name: str, max_concurrency: Optional[int],
                       created_pid: int) -> ToolStatus:
    """An inherited tool, built without its lock: nothing in flight or counted."""
    return ToolStatus(name=name, in_flight=0, max_concurrency=max_concurrency,
                      counters=ToolCounters(), last_error=_diagnostic(created_pid, None))
