"""The fixtures the plugin_service tests share; the doubles and helpers they use
are in the ``support`` package (``tests/support``), one concept per module.

Every double that blocks waits on a gate the test's fixtures made: ``gates`` and
``make_gate`` open theirs, ``make_stuck`` releases its tools, before any host
closes, so no test leaves a thread behind. Hosts are closed with a bound.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, List

import pytest
from loguru import logger
from support.backends import BackendGates, RaySession, checked_host
from support.cli import Child, write_workdir
from support.contract import GateKeeper
from support.timing import HANG
from support.tools import Gate, Stuck

from plugin_service import PluginHost, RayBackend, ServiceConfig

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


@pytest.fixture(autouse=True)
def _library_logging_disabled_again() -> Iterator[None]:
    """Each test starts as a host does: the library's logging disabled (its import
    does that). A test that enables it cannot leak that into the next one, in
    any order the tests run."""
    yield
    logger.disable("plugin_service")


# --------------------------------------------------------- a host on threads
class Gates:
    """Makes gates (``threading.Event``) and opens them all at teardown."""

    def __init__(self) -> None:
        self._made: List[threading.Event] = []

    def new(self) -> threading.Event:
        gate = threading.Event()
        self._made.append(gate)
        return gate

    def open_all(self) -> None:
        for gate in self._made:
            gate.set()


@pytest.fixture
def gates():
    made = Gates()
    try:
        yield made
    finally:
        made.open_all()


@pytest.fixture
def host(gates):
    """A PluginHost closed (with a bound) after every blocked double is released."""
    plugin_host = PluginHost()
    try:
        yield plugin_host
    finally:
        gates.open_all()
        plugin_host.close(timeout=HANG)


@pytest.fixture
def background(gates):
    """``background(fn, *args, **kwargs)`` runs ``fn`` on a thread; returns a Future.

    At teardown every gate is opened first, then the threads are joined."""
    pool = ThreadPoolExecutor(8, thread_name_prefix="test-background")
    try:
        yield pool.submit
    finally:
        gates.open_all()
        pool.shutdown(wait=True)


@pytest.fixture
def start_service(host):
    """``start_service(name, plugin_or_factory, **config)``: added and RUNNING."""

    def start(name: str, plugin: Any, **config: Any):
        handle = host.add_service(name, plugin, ServiceConfig(**config))
        handle.start(timeout=HANG)
        return handle

    return start


# ------------------------------------------------- hosts, gates and stuck tools
@pytest.fixture
def make_host():
    """``make_host(**kwargs)``: a PluginHost closed (with a bound) at teardown."""
    hosts: List[PluginHost] = []

    def make(**kwargs: Any) -> PluginHost:
        host = PluginHost(**kwargs)
        hosts.append(host)
        return host

    yield make
    for host in hosts:
        host.close(timeout=HANG)


def _released_at_teardown(kind: Any) -> Iterator[Callable[[], Any]]:
    """A factory of ``kind()`` objects, each ``release()``d at teardown."""
    made: List[Any] = []

    def make() -> Any:
        thing = kind()
        made.append(thing)
        return thing

    yield make
    for thing in made:
        thing.release()


@pytest.fixture
def make_gate(make_host):
    """``make_gate()``: a Gate released at teardown, before any host is closed
    (it depends on ``make_host``, so it is torn down first)."""
    yield from _released_at_teardown(Gate)


@pytest.fixture
def make_stuck(make_host):
    """``make_stuck()``: a Stuck tool released at teardown, before hosts close."""
    yield from _released_at_teardown(Stuck)


# ------------------------------------------------------ the command line, in a child
@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """tmp_path with the plugin module and a distribution declaring entry points."""
    return write_workdir(tmp_path)


@pytest.fixture
def spawn(workdir: Path) -> Iterator[Callable[..., Child]]:
    """``spawn(*args)``: a running ``plugin-service *args`` in ``workdir``, killed
    at teardown."""
    children: List[Child] = []

    def start(*args: str) -> Child:
        child = Child(args, workdir)
        children.append(child)
        return child

    yield start
    for child in children:
        child.kill()


# ------------------------------------------------------------------------- Ray
@pytest.fixture(scope="session")
def ray_session() -> Iterator[RaySession]:
    """One local Ray instance for the session, bound to loopback, shut down at the end.

    Workers find ``support.contract`` and ``plugin_service`` through PYTHONPATH
    (Ray adds only the driver's current directory to their ``sys.path``). Skips
    the test without Ray; a Ray this process had already started is used, and
    left running.
    """
    # Read by Ray at import: off, a local instance uses 127.0.0.1, never the
    # machine's network address. Must precede the first ``import ray``.
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray = pytest.importorskip(
        "ray", reason="the Ray backend tests need the ray extra: "
                      "pip install 'plugin_service[ray]'")
    constants = getattr(getattr(ray, "_private", None), "ray_constants", None)
    if getattr(constants, "ENABLE_RAY_CLUSTER", False):
        pytest.fail("ray was imported before RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 was set: "
                    "a local instance would listen on the machine's network address")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 namespace="plugin_service_tests",
                 runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(
                     [str(TESTS), str(REPO)])}})
    try:
        address = ray.util.get_node_ip_address()
        if address != "127.0.0.1":
            pytest.fail("the test Ray instance listens on %s, not on loopback" % address)
        keeper = ray.remote(GateKeeper).options(num_cpus=0).remote()
        yield RaySession(ray, keeper)
    finally:
        if started:
            ray.shutdown()


@pytest.fixture
def ray_gates(ray_session: RaySession) -> Iterator[BackendGates]:
    """Gates across processes; all are opened at teardown."""
    made = BackendGates(ray_session)
    try:
        yield made
    finally:
        made.open_all()


@pytest.fixture
def ray_host(ray_session: RaySession, ray_gates: BackendGates) -> Iterator[PluginHost]:
    """A host on Ray (see :func:`support.backends.checked_host`)."""
    with checked_host(RayBackend(), ray_gates) as plugin_host:
        yield plugin_host
