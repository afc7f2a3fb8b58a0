"""Test-side helpers for the contract and Ray tests: the session's Ray instance, gates
for either backend, and a host that checks its accounts when it closes.

The plugins these drive are in :mod:`support.contract`; the ``ray_session``,
``ray_gates`` and ``ray_host`` fixtures in ``conftest.py`` are built on these.
"""
from __future__ import annotations

import contextlib
import os
import select
from typing import Any, Iterator, List, Optional

from plugin_service import PluginHost, ServiceConfig, ServiceHandle
from support.checks import assert_invariants
from support.contract import LocalGate, OpScripted, RayGate
from support.timing import PROCESS_HANG

#: Dispatch timeouts and stop bounds the tests expire on purpose; Ray calls take
#: about a millisecond, so half a second leaves room on a loaded machine.
TIMEOUT = 0.5


class RaySession:
    """The test session's Ray instance: the ``ray`` module and a gate keeper."""

    def __init__(self, ray: Any, keeper: Any) -> None:
        self.ray = ray
        self.keeper = keeper


class BackendGates:
    """Makes gates for the backend's plugins and opens them all at teardown: a
    :class:`LocalGate` without a Ray session, a :class:`RayGate` with one."""

    def __init__(self, session: Optional[RaySession]) -> None:
        self._session = session
        self._made: List[Any] = []

    def new(self) -> Any:
        gate = LocalGate() if self._session is None else RayGate(self._session.keeper)
        self._made.append(gate)
        return gate

    def open_all(self) -> None:
        for gate in self._made:
            gate.open()


def check_accounts(host: PluginHost) -> None:
    """The accounting invariants on every service of ``host``."""
    for handle in host.services():
        assert_invariants(handle.status())


@contextlib.contextmanager
def checked_host(backend: Any, gates: BackendGates) -> Iterator[PluginHost]:
    """A host on ``backend``; on exit: gates opened, invariants checked, closed."""
    plugin_host = PluginHost(backend=backend)
    try:
        yield plugin_host
    finally:
        gates.open_all()
        try:
            check_accounts(plugin_host)
        finally:
            plugin_host.close(timeout=PROCESS_HANG)
        check_accounts(plugin_host)


def failure_of(future: Any) -> BaseException:
    """The exception ``future`` resolved with; fails the test if it succeeded."""
    error = future.exception(timeout=PROCESS_HANG)
    assert error is not None, "expected a failure, got %r" % (future.result(),)
    return error


def started(host: PluginHost, plugin: Any = OpScripted, **config: Any) -> ServiceHandle:
    """Service "svc" of ``plugin`` with ``config``, added to ``host`` and started."""
    handle = host.add_service("svc", plugin, ServiceConfig(**config))
    handle.start(timeout=PROCESS_HANG)
    return handle


def exits_within(pid: int, seconds: float) -> bool:
    """Whether process ``pid`` ends within ``seconds`` (waits on a pidfd, no polling)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], seconds)
        return bool(readable)
    finally:
        os.close(fd)
