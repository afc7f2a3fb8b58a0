"""The stress workload: 8 producers, a fault injector and a status sampler
against one host of 50 services.

The workload only drives the host and records what it saw; ``test_stress.py``
holds the assertions. Every thread here is paced by the producers' progress (a
``threading.Condition`` and ``wait_for``), never by sleeping; the one sleep is the
subject of the "ignore cancellation" handler, which outlives its deadline on
purpose.
"""
from __future__ import annotations

import collections
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional

from support.timing import HANG

from plugin_service import (
    Ingress,
    IngressEvent,
    LifecycleState,
    PluginHost,
    RestartPolicy,
    RetryPolicy,
    ServiceConfig,
    ServicePlugin,
    errors,
)

PRODUCERS = 8
SERVICES = 50
INGRESS = "stress"

#: The handler behaviours and their weights in the mix.
KINDS = ("ok", "raise", "coop", "ignore", "block")
WEIGHTS = (80, 8, 4, 4, 4)
#: How far past its deadline an "ignore" handler sleeps (well inside cancel_grace).
OVERSHOOT = 0.01
#: A "block" handler's gate is released after this many further submits of its producer.
BLOCK_RELEASE_AFTER = 8
#: The share of accepted events a producer tries to cancel at once.
CANCEL_SHARE = 0.03
#: The share of submits made with ``block=True`` (and a short timeout).
BLOCKING_SHARE = 0.1
#: The rejections a submit may raise under this workload.
SUBMIT_REJECTIONS = (errors.QueueFull, errors.ServiceStopped, errors.ServiceFailed,
                     errors.ServiceUnavailable)

_RUNNING = LifecycleState.RUNNING
_FAILED = LifecycleState.FAILED


# ----------------------------------------------------------------- services
class Group:
    """One kind of service configuration in the fleet."""

    def __init__(self, name: str, config: ServiceConfig, manual_restart: bool = False):
        self.name = name
        self.config = config
        self.manual_restart = manual_restart  # the fault injector restarts it when FAILED


_FOREVER = RestartPolicy(max_restarts=10 ** 9, window=None, backoff=0.005)

GROUPS = (
    # Failures are isolated per event; a generous grace.
    Group("sturdy", ServiceConfig(queue_size=16, dispatch_timeout=0.1, cancel_grace=2.0,
                                  fail_after=None)),
    # Two consecutive failures fail it; the restart policy brings it back.
    Group("fragile-auto", ServiceConfig(queue_size=16, dispatch_timeout=0.08, cancel_grace=1.0,
                                        fail_after=2, restart=_FOREVER)),
    # Two consecutive failures fail it; only a manual restart brings it back.
    Group("fragile-manual", ServiceConfig(queue_size=16, dispatch_timeout=0.08,
                                          cancel_grace=1.0, fail_after=2),
          manual_restart=True),
    # Failed events are redelivered once before they count as failed.
    Group("retrying", ServiceConfig(queue_size=16, dispatch_timeout=0.1, cancel_grace=1.0,
                                    fail_after=None,
                                    retry=RetryPolicy(max_attempts=2, backoff=0.001,
                                                      max_backoff=0.001))),
    # A small queue and a short grace: a blocked handler fails the service.
    Group("tight", ServiceConfig(queue_size=4, dispatch_timeout=0.06, cancel_grace=0.15,
                                 fail_after=None, restart=_FOREVER)),
)


class Tally:
    """What the plugins saw, written from the worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: correlation id -> number of first deliveries (attempt 1)
        self.first_deliveries: collections.Counter = collections.Counter()
        #: service -> number of redeliveries (attempt > 1)
        self.redeliveries: collections.Counter = collections.Counter()

    def saw(self, service: str, event: IngressEvent) -> None:
        with self._lock:
            if event.attempt == 1:
                self.first_deliveries[event.correlation_id] += 1
            else:
                self.redeliveries[service] += 1


def outcome_of(future: Any) -> str:
    """The one outcome a done future ended in."""
    if future.cancelled():
        return "cancelled"
    error = future.exception(timeout=0)
    if error is None:
        return "succeeded"
    for kind, name in ((errors.DispatchFailed, "failed"), (errors.DispatchTimeout, "timed_out"),
                       (errors.ServiceStopped, "stopped"),
                       (errors.ServiceFailed, "service_failed")):
        if type(error) is kind:
            return name
    return "unexpected %r" % (error,)


#: The outcome of a future -> the counter it belongs to.
COUNTER_OF = {
    "succeeded": "succeeded",
    "failed": "failed",
    "timed_out": "timed_out",
    "stopped": "dropped",
    "service_failed": "dropped",
    "cancelled": "dropped",
}


class Resolutions:
    """A done-callback on every accepted future: counts its calls, and checks that
    the outcome was already counted in ``status()`` when the future resolved."""

    def __init__(self, host: PluginHost) -> None:
        self._host = host
        #: one lock per service, so callbacks of different services never contend
        self._locks = {handle.name: threading.Lock() for handle in host.services()}
        #: correlation id -> how many times its done-callback ran
        self.calls: collections.Counter = collections.Counter()
        #: (service, counter) -> futures resolved so far
        self.resolved: collections.Counter = collections.Counter()
        self.early: List[str] = []

    def watch(self, service: str, future: Any) -> None:
        handle = self._host.service(service)
        lock = self._locks[service]

        def resolved(done: Any) -> None:
            field = COUNTER_OF.get(outcome_of(done))
            with lock:
                self.calls[done.event.correlation_id] += 1
                if field is None:
                    return
                self.resolved[service, field] += 1
                seen = self.resolved[service, field]
                counted = getattr(handle.status().counters, field)
            if counted < seen:
                self.early.append("%s: %d futures resolved as %s but status() counts %d"
                                  % (service, seen, field, counted))

        future.add_done_callback(resolved)


class StressPlugin(ServicePlugin):
    """Behaves as the event's payload ``(kind, argument)`` says."""

    ingresses = [Ingress(INGRESS)]

    def __init__(self, service: str, tally: Tally) -> None:
        self.service = service
        self.tally = tally

    def handle_ingress(self, event: IngressEvent, ctx: Any) -> Any:
        self.tally.saw(self.service, event)
        kind, argument = event.payload
        if kind == "ok":
            return ("ok", event.correlation_id)
        if kind == "raise":
            raise ValueError("injected failure")
        if kind == "coop":  # times out cooperatively: returns once cancelled
            ctx.wait(HANG)
            return "woke"
        if kind == "ignore":  # ignores cancellation, but returns within cancel_grace
            time.sleep(ctx.remaining() + OVERSHOOT)
            return "late"
        if kind == "block":  # blocks on a gate its producer releases later
            argument.wait(HANG)
            return "released"
        raise AssertionError("unknown kind %r" % (kind,))


def _factory(service: str, tally: Tally) -> Callable[[], StressPlugin]:
    return lambda: StressPlugin(service, tally)


# ----------------------------------------------------------------- records
class Accepted:
    """One accepted submit: where it went, what it asked for, and its future."""

    __slots__ = ("service", "kind", "event", "future", "cancel_tried", "cancel_returned")

    def __init__(self, service: str, kind: str, event: IngressEvent, future: Any) -> None:
        self.service = service
        self.kind = kind
        self.event = event
        self.future = future
        self.cancel_tried = False
        self.cancel_returned = False


class Progress:
    """How many submits the producers have made; others wait on milestones."""

    def __init__(self, notify_every: int) -> None:
        self._changed = threading.Condition()
        self._notify_every = notify_every
        self.pushed = 0
        self.finished = False

    def advance(self) -> None:
        with self._changed:
            self.pushed += 1
            if self.pushed % self._notify_every == 0:
                self._changed.notify_all()

    def finish(self) -> None:
        with self._changed:
            self.finished = True
            self._changed.notify_all()

    def reached(self, milestone: int) -> bool:
        """Wait until ``milestone`` submits were made (True) or the run ended (False)."""
        with self._changed:
            # No bound needed: the producers' ``finally`` always ends the run.
            self._changed.wait_for(lambda: self.pushed >= milestone or self.finished)
            return self.pushed >= milestone and not self.finished


class Run:
    """Everything one stress run recorded."""

    def __init__(self, events: int, seed: int) -> None:
        self.events = events
        self.seed = seed
        self.host: Optional[PluginHost] = None
        self.groups: Dict[str, Group] = {}
        self.tally = Tally()
        self.resolutions: Optional[Resolutions] = None
        self.thread_crashes: List[str] = []
        self.accepted: List[Accepted] = []
        self.rejected: List[tuple] = []  # (service, error)
        self.unexpected: List[tuple] = []  # (where, repr of what went wrong)
        self.kinds_pushed: collections.Counter = collections.Counter()
        self.lifecycle_ops: collections.Counter = collections.Counter()
        self.lifecycle_refused: collections.Counter = collections.Counter()
        self.snapshots = 0
        self.snapshot_violations: List[str] = []
        self.close_seconds = 0.0
        self.run_seconds = 0.0
        self.pushed = 0


# ----------------------------------------------------------------- threads
def _produce(run: Run, index: int, names: List[str], per_producer: int,
             progress: Progress) -> tuple:
    """Submit ``per_producer`` events; returns (accepted, rejected, kinds pushed)."""
    host = run.host
    rng = random.Random(run.seed * 1000 + index)
    source = "producer-%d" % index
    gates: collections.deque = collections.deque()
    accepted: List[Accepted] = []
    rejected: List[tuple] = []
    kinds: collections.Counter = collections.Counter()
    try:
        for _ in range(per_producer):
            name = rng.choice(names)
            kind = rng.choices(KINDS, WEIGHTS)[0]
            argument: Any = None
            if kind == "block":
                argument = threading.Event()
                gates.append(argument)
            event = IngressEvent(INGRESS, source, (kind, argument))
            kinds[kind] += 1
            block = rng.random() < BLOCKING_SHARE
            try:
                future = host.submit(name, event, block=block, timeout=0.01 if block else None)
            except errors.PluginServiceError as exc:
                rejected.append((name, exc))
                if not isinstance(exc, SUBMIT_REJECTIONS):
                    run.unexpected.append((source, "submit raised %r" % (exc,)))
            else:
                record = Accepted(name, kind, event, future)
                run.resolutions.watch(name, future)
                if rng.random() < CANCEL_SHARE:
                    record.cancel_tried = True
                    record.cancel_returned = future.cancel()
                accepted.append(record)
            if len(gates) > BLOCK_RELEASE_AFTER:
                gates.popleft().set()
            progress.advance()
    finally:
        for gate in gates:
            gate.set()
    return accepted, rejected, kinds


def _lifecycle(run: Run, what: str, call: Callable[[], Any]) -> None:
    """Perform one lifecycle fault; a typed refusal (lost race) is recorded."""
    try:
        call()
    except (errors.LifecycleError, errors.ServiceFailed, errors.ServiceStopped,
            errors.ServiceUnavailable) as exc:
        run.lifecycle_refused["%s: %s" % (what, type(exc).__name__)] += 1
    else:
        run.lifecycle_ops[what] += 1


def _inject_faults(run: Run, faults: int, progress: Progress) -> None:
    """Every ``events / faults`` submits: restart what the last step stopped and
    the manually restarted services that FAILED, then stop one running service,
    with and without drain in turn."""
    host = run.host
    rng = random.Random(run.seed)
    step = max(1, run.events // faults)
    handles = host.services()
    manual = [h for h in handles if run.groups[h.name].manual_restart]
    stopped: List[Any] = []
    milestone = step
    drain = True
    while progress.reached(milestone):
        milestone += step
        for handle in stopped:
            _lifecycle(run, "restart after stop", lambda h=handle: h.restart(timeout=HANG))
        stopped = []
        for handle in manual:
            if handle.state is _FAILED:
                _lifecycle(run, "manual restart after failure",
                           lambda h=handle: h.restart(timeout=HANG))
        running = [h for h in handles if h.state is _RUNNING]
        if running:
            handle = rng.choice(running)
            _lifecycle(run, "stop drain=%s" % drain,
                       lambda h=handle, d=drain: h.stop(drain=d, timeout=1.0))
            stopped.append(handle)
            drain = not drain


def _sample(run: Run, every: int, progress: Progress) -> None:
    """Take a ``host.status()`` snapshot every ``every`` submits and check it."""
    host = run.host
    last: Dict[str, Any] = {}
    milestone = every
    while progress.reached(milestone):
        milestone += every
        run.snapshot_violations.extend(check_snapshot(host.status(), last))
        run.snapshots += 1


def check_snapshot(status: Any, last: Dict[str, Any]) -> List[str]:
    """The violations of the accounting invariants in one host snapshot; ``last``
    (service -> previous ServiceStatus) checks that counters never go back."""
    found = []
    for name, s in status.services.items():
        c = s.counters
        if c.enqueued != (c.succeeded + c.failed + c.timed_out + c.dropped + c.expired
                          + s.queue_depth + s.in_flight):
            found.append("enqueued invariant broken: %r" % (s,))
        if c.dispatched != c.succeeded + c.failed + c.timed_out + s.in_flight:
            found.append("dispatched invariant broken: %r" % (s,))
        if not 0 <= s.queue_depth <= s.queue_capacity or s.in_flight not in (0, 1):
            found.append("queue_depth or in_flight out of range: %r" % (s,))
        previous = last.get(name)
        if previous is not None:
            for field in ("enqueued", "dispatched", "succeeded", "failed", "timed_out",
                          "rejected", "dropped", "retried"):
                if getattr(c, field) < getattr(previous.counters, field):
                    found.append("%s.%s went back: %r -> %r" % (
                        name, field, previous, s))
            if s.restarts < previous.restarts:
                found.append("%s.restarts went back" % name)
        last[name] = s
    return found


# ----------------------------------------------------------------- the run
def run_stress(events: int, *, seed: int = 6, faults: int = 100,
               close_bound: float = 30.0) -> Run:
    """Push ``events`` submits through a fresh host, inject faults meanwhile, then
    close the host (bounded; the producers have released every gate). Returns the
    record. A thread that dies of an exception meanwhile is recorded in
    ``thread_crashes``."""
    run = Run(events, seed)
    previous_hook = threading.excepthook
    threading.excepthook = lambda args: run.thread_crashes.append(
        "%s: %r" % (args.thread.name if args.thread else "?", args.exc_value))
    try:
        _drive(run, faults, close_bound)
    finally:
        threading.excepthook = previous_hook
    return run


def _drive(run: Run, faults: int, close_bound: float) -> None:
    events = run.events
    host = run.host = PluginHost(dead_letter_limit=events + 1)
    names = []
    for index in range(SERVICES):
        group = GROUPS[index % len(GROUPS)]
        name = "svc-%02d-%s" % (index, group.name)
        host.add_service(name, _factory(name, run.tally), group.config)
        run.groups[name] = group
        names.append(name)
    run.resolutions = Resolutions(host)
    try:
        host.start_all(timeout=HANG)
        progress = Progress(notify_every=50)
        began = time.monotonic()
        with ThreadPoolExecutor(PRODUCERS + 2, thread_name_prefix="stress-driver") as pool:
            producers = [pool.submit(_produce, run, i, names, events // PRODUCERS, progress)
                         for i in range(PRODUCERS)]
            injector = pool.submit(_inject_faults, run, faults, progress)
            sampler = pool.submit(_sample, run, max(1, events // 400), progress)
            try:
                for producer in producers:
                    accepted, rejected, kinds = producer.result(timeout=600)
                    run.accepted.extend(accepted)
                    run.rejected.extend(rejected)
                    run.kinds_pushed.update(kinds)
            finally:
                progress.finish()
            injector.result(timeout=600)
            sampler.result(timeout=600)
        run.pushed = progress.pushed
        run.run_seconds = time.monotonic() - began
    finally:
        closing = time.monotonic()
        host.close(timeout=close_bound)
        run.close_seconds = time.monotonic() - closing
