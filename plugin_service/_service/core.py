"""The core of one service: its one lock, the conditions that share it, and the
fields the lock guards.

The design is ``Lib/queue.py``'s: one mutex, and conditions named for what their
waiters wait on (``not_empty`` for the worker, ``not_full`` for blocked
producers, ``state_changed`` for lifecycle callers). Every counter change, every
queue change and every transition happens under that lock, so a ``status()``
snapshot is always consistent. Futures and plugin hooks are never called under
it: what must run after the lock is collected in a ``Deferred`` and run once the
lock is released.

Each concept of a service lives in a module of its own (``mailbox``, ``ledger``,
``inflight``, ``control``, ``stopping``, ``worker``, ``cleanup``), as a part of
the one ``ServiceHandle`` object: the parts share this state under the one lock,
so they share one ``self`` instead of paying an attribute hop per field on the
hot path. ``ServiceCore.__slots__`` below is the one list of that state.
"""
from __future__ import annotations

import collections
import datetime as _dt
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

from loguru import logger

from .._breaker import Breaker
from .._config import ServiceConfig
from .._diagnostics import REJECTION_REASONS, Diagnostic, DiagnosticKind
from .._guarded import failure_log
from .._latency import LatencyRecorder
from .._lifecycle import LifecycleState
from .backoff import RestartBackoff

if TYPE_CHECKING:  # pragma: no cover
    from .._context import DispatchContext
    from .._diagnostics import ServiceStatus
    from .._future import DispatchFuture
    from .dispatch import Dispatcher, PluginSession
    from .status import StatusCall

_K = DiagnosticKind
_READY = LifecycleState.READY
_STARTING = LifecycleState.STARTING
_RUNNING = LifecycleState.RUNNING
_STOPPING = LifecycleState.STOPPING
_STOPPED = LifecycleState.STOPPED
_FAILED = LifecycleState.FAILED
_monotonic = time.monotonic
_UTC = _dt.timezone.utc

#: How many recent diagnostics a service keeps for ``status().diagnostics``.
DIAGNOSTICS_KEPT = 50

# What the worker is doing (``_phase``), for the bounds that the watchdog enforces.
_IN_START, _IN_DISPATCH, _IN_STOP, _IDLE = "start()", "handle_ingress()", "stop()", None
_IN_CLEANUP = "on_failure()"  # or stop(), when the plugin has no on_failure



def _named(record: Any) -> None:
    """Every record of a service: one logger name, whichever part logs it (what
    they were named before the split), and the service's name at the head of the
    message, which loguru's default format shows (``extra`` it does not). A
    patcher runs only for a record some sink takes, after its message is made,
    so a record nobody takes costs nothing more."""
    record["name"] = __package__
    service = record["extra"].get("service")
    if isinstance(service, str):  # str's own repr: a subclass's cannot run here
        record["message"] = "service %s: %s" % (str.__repr__(service), record["message"])


_logger = logger.patch(_named)


class _Condition(threading.Condition):
    """A ``threading.Condition`` on a plain ``Lock``, made the way
    ``Condition.__init__`` makes one, less its three probes for an ``RLock``'s
    methods: a plain ``Lock`` has none, so each probe raises and catches an
    AttributeError, which made the three conditions a third of what creating a
    service cost. The probed methods fall back to ``Condition``'s own, as they
    do for a plain lock (a test holds the attributes equal to a real one's)."""

    def __init__(self, lock: Any) -> None:  # no super().__init__(): see above
        self._lock = lock
        self.acquire = lock.acquire  # type: ignore[method-assign]
        self.release = lock.release  # type: ignore[method-assign]
        self._waiters: "collections.deque[Any]" = collections.deque()

    # Every notify of ours is made with the lock held (``Condition`` checks that
    # first): with nobody waiting there is nothing more to do, and lifecycle
    # changes notify conditions that mostly have no waiter.
    def notify(self, n: int = 1) -> None:
        if self._waiters:
            super().notify(n)

    def notify_all(self) -> None:
        if self._waiters:
            super().notify_all()


class Runtime:
    """What a service needs from its host: the watchdog, the dead-letter box and
    the lifecycle listeners (``_listeners.Listeners``)."""

    __slots__ = ("watchdog", "dead_letters", "listeners")

    def __init__(self, watchdog: Any, dead_letters: Any, listeners: Any) -> None:
        self.watchdog = watchdog
        self.dead_letters = dead_letters
        self.listeners = listeners


class Deferred:
    """What must run once the service's lock is released: futures to resolve and
    dispatcher hooks to call (``add`` under the lock, ``run`` after it).

    Every call is made whatever the ones before it met: a done-callback that
    raises even a BaseException is logged by the future itself, and anything else
    (a bug of ours) is logged, redacted, never fatal to the thread running them.
    """

    __slots__ = ("_calls",)

    def __init__(self) -> None:
        self._calls: List[Tuple[Callable[[Any], Any], Any]] = []

    def add(self, call: Callable[[Any], Any], arg: Any) -> None:
        self._calls.append((call, arg))

    def run(self) -> None:
        """Make the calls added so far, in order; the object can be used again."""
        calls = self._calls
        if not calls:
            return
        self._calls = []
        for call, arg in calls:
            try:
                call(arg)
            except BaseException as exc:
                _logger.error("settling a future failed: {}", failure_log(exc))


class ServiceCore:
    """The state of one service, every field of it guarded by ``_lock`` unless
    its comment says otherwise.

    Deliberate lock-free reads (each re-checked under the lock, or benign):
    ``_state`` by ``submit`` and ``state`` before the locked check; ``_ingresses``
    by ``submit``'s validation (replaced whole under the lock, never mutated);
    ``_forked_from`` (written in a forked child only, where no lock may be
    taken); ``_timed_out_current`` by the worker between plugin calls (only the
    watchdog sets it, under the lock; the worker re-reads it under the lock when
    it settles); ``_deadline`` written by the worker as the handler is invoked,
    paired with the watchdog's ``_timer_at`` (see ``_start_deadline``), and
    ``_started`` with it (only the worker writes it, and reads it when it settles);
    ``_closing`` by ``stop()``; ``_worker`` and ``_phase`` by ``close()`` and
    ``_on_runtime_thread``.
    """

    __slots__ = (
        # Immutable after __init__.
        "name", "_config", "_session", "_runtime", "_log", "_capacity",
        "_lock", "_not_empty", "_not_full", "_state_changed",
        # The mailbox: the bounded FIFO and its wake-ups.
        "_items", "_room", "_worker_waiting", "_producers_waiting",
        "_room_signalled",
        # Lifecycle control.
        "_state", "_life", "_auto_life", "_phase", "_plugin", "_dispatcher",
        "_ingresses", "_worker", "_drain", "_restart_timer", "_restart_when_idle",
        "_closing", "_clean_ups", "_clean_ups_on_return", "_status_call", "_forked_from",
        "_backoff",  # the restart policy's waits (None without a policy)
        "_breaker",  # ServiceConfig.breaker's state machine (None without one)
        # The event in flight and its timer.
        "_current", "_current_event", "_current_ctx", "_deadline",
        "_timed_out_current", "_timer_at", "_fail_pending", "_started",
        # The ledger.
        "_enqueued", "_dispatched", "_succeeded", "_failed", "_timed_out", "_rejected",
        "_dropped", "_retried", "_consecutive_failures", "_restarts", "_auto_restarts",
        "_last_error", "_failure", "_failure_life", "_diagnostics",
        "_rejections", "_timed", "_stamped", "_queue_waits", "_handler_times",
        # Event deadlines (``expiry``): the heap of queued events' deadlines and
        # the one expiry timer; ``_expiry_on`` once any event had one (sticky).
        "_max_queue_age", "_expiry_on", "_expiry_heap", "_expiry_timer", "_expired",
        # A handle still takes attributes of its user's, as it did before it had slots.
        "__dict__", "__weakref__",
    )

    def __init__(self, name: str, session: "PluginSession", config: ServiceConfig,
                 runtime: Runtime) -> None:
        self.name = name
        self._config = config
        self._session = session  # builds each life's plugin and its dispatcher
        self._runtime = runtime
        self._log = _logger.bind(service=name, correlation_id=None)
        self._capacity = config.queue_size
        self._lock = threading.Lock()
        self._not_empty = _Condition(self._lock)  # the worker waits for events
        self._not_full = _Condition(self._lock)  # blocked producers wait for room
        self._state_changed = _Condition(self._lock)  # lifecycle callers wait

        # The mailbox: a bounded FIFO of futures (``queue.Queue``'s design, with
        # its deque, lock and conditions held here directly).
        self._items: "collections.deque[DispatchFuture]" = collections.deque()
        # Room for the FIFO: the capacity less the events handed to a plugin ahead
        # of their turn, which still count against it (``_capacity - _room`` of
        # them; submit's fast path compares against ``_room`` alone).
        self._room = config.queue_size
        self._worker_waiting = False
        self._producers_waiting = 0
        self._room_signalled = False  # not_full was notified since a producer parked

        self._state = _READY
        self._life = 0  # incremented by every start; a worker serves one life
        self._auto_life = False  # this life was started by the restart policy
        self._phase: Optional[str] = _IDLE
        self._plugin: Any = None
        self._dispatcher: Optional["Dispatcher"] = None  # the current life's
        self._ingresses: Dict[str, Any] = {}
        self._worker: Optional[threading.Thread] = None
        self._drain = True
        self._restart_timer: Any = None
        self._restart_when_idle = False
        self._closing = False
        # Lives whose worker owes the plugin its cleanup, with the failure to hand it;
        # and lives whose abandoned handler is owed one if it ever returns.
        self._clean_ups: Dict[int, Diagnostic] = {}
        self._clean_ups_on_return: Dict[int, Diagnostic] = {}
        self._status_call: Optional["StatusCall"] = None  # a plugin status() running
        # Set in a forked child only (by the host): the pid this handle was
        # inherited from. Read before any lock, which a dead thread may hold.
        self._forked_from = 0

        # The event in flight: its future, the attempt's event and context, deadline.
        self._current: Optional["DispatchFuture"] = None
        self._current_event: Any = None
        self._current_ctx: Optional["DispatchContext"] = None
        self._deadline: Optional[float] = None
        self._timed_out_current = False  # its outcome was decided by the watchdog
        self._timer_at: Optional[float] = None  # when the armed dispatch timer fires
        self._fail_pending: Optional[Diagnostic] = None
        # When the one in flight was handed to its handler (written by the worker
        # as it invokes it, read by the same worker when it settles).
        self._started = 0.0

        self._enqueued = self._dispatched = self._succeeded = 0
        self._failed = self._timed_out = self._rejected = 0
        self._dropped = self._retried = 0
        self._consecutive_failures = 0
        self._restarts = 0
        self._auto_restarts: "collections.deque[float]" = collections.deque()
        self._last_error: Optional[Diagnostic] = None
        self._failure: Optional[Diagnostic] = None
        self._failure_life = 0  # the life whose failure ``_failure`` is
        self._diagnostics: "collections.deque[Diagnostic]" = collections.deque(
            maxlen=DIAGNOSTICS_KEPT)
        self._rejections = dict.fromkeys(REJECTION_REASONS, 0)  # by the error's kind
        # ServiceConfig.latency_histograms: of every event that succeeded or
        # failed, acceptance -> handler and handler -> outcome (retries included).
        self._timed = config.latency_histograms
        # The worker writes ``_started`` as it invokes a handler: for the
        # histograms, and for ``stack_after`` when no dispatch deadline (which
        # says when the handler began) is kept.
        self._stamped = self._timed or (config.stack_after is not None
                                        and config.dispatch_timeout is None)
        # Made only for a service that keeps them (two per service add up at
        # scale); every use is behind ``_timed``, so typed as always there.
        none: Any = None
        self._queue_waits: LatencyRecorder = LatencyRecorder() if self._timed else none
        self._handler_times: LatencyRecorder = LatencyRecorder() if self._timed else none
        self._init_policies(config)

    def _init_policies(self, config: ServiceConfig) -> None:
        """The fields of the optional policies: restart backoff (``backoff``), the
        circuit breaker (``breaker``) and event deadlines (``expiry``)."""
        self._backoff = None if config.restart is None else RestartBackoff(config.restart)
        self._breaker = None if config.breaker is None else Breaker(
            config.breaker, self._breaker_changed)
        self._max_queue_age = config.max_queue_age
        self._expiry_on = config.max_queue_age is not None
        self._expiry_heap: List[Tuple[float, int, Any]] = []
        self._expiry_timer: Any = None
        self._expired = 0

    if TYPE_CHECKING:  # pragma: no cover
        # A part calls down the stack freely; these four are the calls up it
        # (failing, the cleanup, the worker thread, the public snapshot),
        # declared here for the type checker only.
        def _fail(self, diagnostic: Diagnostic, later: Deferred, clean_up: bool = False,
                  on_return: bool = False) -> None: ...

        def _owe_clean_up(self, failure: Diagnostic) -> None: ...

        def _breaker_changed(self, message: str) -> None: ...

        def _work(self, life: int) -> None: ...

        def status(self) -> "ServiceStatus": ...
