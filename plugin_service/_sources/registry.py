"""A host's sources: attaching them (with every check), looking them up, their
statuses, and stopping them all first when the host closes."""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional

from .. import errors
from .._events import Ingress
from .._lifecycle import LifecycleState
from .base import IngressSource
from .handle import OVERFLOW_POLICIES, RECEIVE_SLICE, SOURCE_STOP_BOUND, SourceHandle, _monotonic
from .reconnect import ReconnectPolicy
from .status import SourceStatus

if TYPE_CHECKING:  # pragma: no cover
    from .._service import ServiceHandle

__all__ = ["SourceRegistry", "declared_ingresses"]

_RUNNING = LifecycleState.RUNNING


def _ingress_map(declared: Any) -> Optional[Dict[str, Ingress]]:
    """``{name: Ingress}`` of a plugin's ``ingresses``, or None if it is not a
    plain sequence of ``Ingress`` (a property on a class, say)."""
    try:
        found = list(declared)
    except Exception:
        return None
    if not all(type(item) is Ingress for item in found):
        return None
    return {item.name: item for item in found}


def declared_ingresses(service: "ServiceHandle[Any]") -> Optional[Dict[str, Ingress]]:
    """The ingresses ``service`` declares, as far as they can be known now: the
    running plugin's; else those of the plugin instance or class it was added
    with (a factory function says nothing before it runs: None)."""
    if service.state is _RUNNING:
        return dict(service._ingresses)  # replaced whole, never mutated
    session = service._session
    for attribute in ("_plugin", "_factory", "_target"):  # thread and Ray sessions
        candidate = getattr(session, attribute, None)
        if candidate is None:
            continue
        try:
            if not hasattr(candidate, "handle_ingress"):  # a factory function
                continue
            return _ingress_map(getattr(candidate, "ingresses", ()))
        except Exception:  # a plugin's property raising
            return None
    return None


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not name.strip():
        raise ValueError("a source name must be a non-blank string, got %r" % (name,))


def _check_options(source: Any, ingress: Any, overflow: Any, reconnect: Any) -> None:
    if not isinstance(source, IngressSource):
        raise TypeError("add_source takes an IngressSource, got %r" % (type(source).__name__,))
    if source._declared is not None:  # set by add_source only: a class may name itself
        raise ValueError("this %s is attached already, as source %r: a source instance "
                         "belongs to one host, once" % (type(source).__name__, source.name))
    if not isinstance(ingress, str) or not ingress.strip():
        raise ValueError("ingress must be a non-blank string, got %r" % (ingress,))
    if overflow not in OVERFLOW_POLICIES:
        raise ValueError("overflow must be one of %s, got %r"
                         % (", ".join(OVERFLOW_POLICIES), overflow))
    if reconnect is not None and not isinstance(reconnect, ReconnectPolicy):
        raise TypeError("reconnect must be a ReconnectPolicy or None, got %r" % (reconnect,))


def _check_ingress(service: "ServiceHandle[Any]", ingress: str) -> None:
    declared = declared_ingresses(service)
    if declared is not None and ingress not in declared:
        raise errors.InvalidEvent(
            "undeclared ingress %r: the service declares %s; a source feeds one of them"
            % (ingress, ", ".join(repr(name) for name in sorted(declared)) or "none"),
            service=service.name)


class SourceRegistry:
    """The sources of one host, in the order they were attached."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sources: Dict[str, SourceHandle] = {}
        self._closed = False

    def add(self, name: str, source: IngressSource, service: "ServiceHandle[Any]",
            ingress: str, overflow: str, reconnect: Optional[ReconnectPolicy]) -> SourceHandle:
        """Check, attach and start a source (see ``PluginHost.add_source``)."""
        _check_name(name)
        _check_options(source, ingress, overflow, reconnect)
        if name in self._sources:  # before the ingress check; again under the lock
            raise ValueError("a source named %r is attached already" % name)
        _check_ingress(service, ingress)
        handle = SourceHandle(name, source, service, ingress, overflow,
                              reconnect if reconnect is not None else ReconnectPolicy())
        with self._lock:
            if self._closed:
                raise errors.HostClosed("host is closed; cannot add source %r" % name)
            if name in self._sources:
                raise ValueError("a source named %r is attached already" % name)
            if source._declared is not None:  # attached meanwhile by another thread
                raise ValueError("this source is attached already, as %r" % source.name)
            source.name, source.service, source.ingress = name, service.name, ingress
            source._declared = lambda: service._ingresses.get(ingress) \
                if service.state is _RUNNING else None
            self._sources[name] = handle
            handle._start()  # under the lock: a close() beginning now joins it
        return handle

    def get(self, name: str) -> SourceHandle:
        try:
            return self._sources[name]
        except (KeyError, TypeError):
            raise errors.SourceNotFound(name) from None

    def handles(self) -> List[SourceHandle]:
        with self._lock:
            return list(self._sources.values())

    def statuses(self) -> Mapping[str, SourceStatus]:
        return {handle.name: handle.status() for handle in self.handles()}

    def mark_forked(self, created_pid: int) -> None:
        """In a child right after ``os.fork()`` (no lock may be taken)."""
        for handle in self._sources.values():
            handle._forked_from = created_pid

    def forked_statuses(self, created_pid: int) -> Mapping[str, SourceStatus]:
        """In a forked child, without any lock: every source failed, nothing counted."""
        return {handle.name: handle._forked_status(created_pid)
                for handle in list(self._sources.values())}

    def close(self, deadline: Optional[float]) -> None:
        """Stop every source and join its thread, within ``SOURCE_STOP_BOUND`` and
        ``deadline`` (monotonic, or None): an item a source holds may wait for
        room until a slice before that, so the thread can end in time. Idempotent."""
        with self._lock:
            self._closed = True
            handles = list(self._sources.values())
        now = _monotonic()
        until = now + SOURCE_STOP_BOUND
        if deadline is not None:
            until = min(until, deadline)
        self.stop(handles, max(now, until - RECEIVE_SLICE))
        for handle in handles:
            handle._join(until)

    def stop(self, handles: Optional[List[SourceHandle]] = None,
             deadline: Optional[float] = None) -> None:
        """Ask each source to stop by ``deadline`` (now by default)."""
        when = _monotonic() if deadline is None else deadline
        for handle in self.handles() if handles is None else handles:
            handle._stop(when)
