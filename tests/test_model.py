"""Model-based test of the service lifecycle (issue 6).

A hypothesis ``RuleBasedStateMachine`` drives one service through random
interleavings of start, stop (with and without drain), restart, submits of events
whose handler succeeds, raises, or times out cooperatively, and waits for the
outstanding futures. A small model predicts the state, which call raises which
error, and the counters; after every step the real service is checked against it
and against the accounting invariants. At teardown the host is closed with a
bound and every accepted future must be done with exactly one outcome.

The model stays deterministic without sleeps: counters are compared exactly only
once every outstanding future is resolved. While events are outstanding, the
worker may be anywhere in the queue, so a stop without drain may find any prefix
of them handled; ``_check_batch`` accepts exactly the outcome sequences that
serial dispatch allows and nothing else.
"""
from __future__ import annotations

import concurrent.futures
import threading
import time
from typing import Any, List, Optional, Tuple

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from support.checks import assert_invariants
from support.states import FAILED, READY, RUNNING, STOPPED
from support.timing import HANG

from plugin_service import Ingress, IngressEvent, PluginHost, ServiceConfig, ServicePlugin, errors

#: The dispatch timeout of the modelled service: tiny, so timeouts are cheap, yet
#: far above what an immediately returning handler needs.
TIMEOUT = 0.05
#: Capacity of the ingress queue; the model never has more events outstanding, so
#: a submit to a running service never meets a full queue.
QUEUE = 6
#: How close() is bounded at teardown, and how much longer it may take to return.
CLOSE_BOUND = HANG
CLOSE_SLACK = 2.0

OK, RAISE, TIME_OUT = "ok", "raise", "timeout"
#: What a submit draws from: mostly events that succeed.
KINDS = [OK, OK, OK, RAISE, TIME_OUT]

#: What ran, printed at the end of the test.
RUN = {"examples": 0, "steps": 0, "starts": 0, "stops": 0, "restarts": 0, "accepted": 0,
       "rejected": 0, "succeeded": 0, "failed": 0, "timed_out": 0, "dropped": 0}

MACHINE_SETTINGS = settings(
    max_examples=300,
    stateful_step_count=50,
    deadline=None,
    database=None,  # write nothing into the checkout
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


class ModelPlugin(ServicePlugin):
    """Behaves per payload ``(kind, n)``: ``ok`` returns n, ``raise`` raises
    ``ValueError("planned failure n")``, ``timeout`` sleeps through ``ctx.wait``
    until the dispatch timeout cancels it (bounded, so a missing cancel shows up as
    a wrong outcome rather than a hang)."""

    ingresses = [Ingress("in")]

    def handle_ingress(self, event: IngressEvent, ctx: Any) -> Any:
        kind, n = event.payload
        if kind == RAISE:
            raise ValueError("planned failure %d" % n)
        if kind == TIME_OUT:
            woke_cancelled = ctx.wait(HANG)
            return ("woke", woke_cancelled)
        return n


class Built:
    """The factory of the modelled service: counts the instances (one per life)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> ModelPlugin:
        self.count += 1
        return ModelPlugin()


class TrackedEvent:
    """An accepted event: its future, kind, number, and how often it resolved
    (done-callbacks run just after waiters wake, hence the ``resolved`` event)."""

    __slots__ = ("future", "kind", "n", "resolutions", "resolved")

    def __init__(self, future: Any, kind: str, n: int) -> None:
        self.future = future
        self.kind = kind
        self.n = n
        self.resolutions = 0
        self.resolved = threading.Event()
        future.add_done_callback(self._resolved)

    def _resolved(self, _future: Any) -> None:
        self.resolutions += 1
        self.resolved.set()


def _trips(kinds: List[str], consecutive: int, fail_after: Optional[int]) -> Optional[int]:
    """Index of the event whose failure trips ``fail_after``, if all were handled."""
    for index, kind in enumerate(kinds):
        if kind == OK:
            consecutive = 0
        else:
            consecutive += 1
            if fail_after is not None and consecutive >= fail_after:
                return index
    return None


class LifecycleMachine(RuleBasedStateMachine):
    """One service in one host, checked against the model after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.host = PluginHost()
        self.factory = Built()
        self.handle: Any = None
        self.fail_after: Optional[int] = None
        # The model.
        self.state = READY
        self.consecutive = 0  # consecutive failed/timed-out events of this life
        self.pending: List[TrackedEvent] = []  # accepted, outcome not checked yet
        self.accepted: List[TrackedEvent] = []
        self.numbers = 0
        self.lives = 0
        self.restarts = 0
        self.enqueued = self.rejected = 0
        self.succeeded = self.failed = self.timed_out = self.dropped = 0
        RUN["examples"] += 1

    # ------------------------------------------------------------- helpers
    def _doomed(self) -> bool:
        """Some outstanding event will trip ``fail_after`` once handled: until then
        the service may be RUNNING or FAILED."""
        return self.state is RUNNING and _trips(
            [a.kind for a in self.pending], self.consecutive, self.fail_after) is not None

    def _event(self, kind: str, ingress: str = "in") -> Tuple[IngressEvent, int]:
        self.numbers += 1
        return IngressEvent(ingress, "model", (kind, self.numbers)), self.numbers

    def _check_natural(self, accepted: TrackedEvent, error: Optional[BaseException]) -> None:
        """The outcome of an event that was handled, and its counters."""
        if accepted.kind == OK:
            assert error is None, (accepted.kind, error)
            assert accepted.future.result(timeout=0) == accepted.n
            self.succeeded += 1
        elif accepted.kind == RAISE:
            assert type(error) is errors.DispatchFailed, error
            assert type(error.__cause__) is ValueError
            assert str(error.__cause__) == "planned failure %d" % accepted.n
            self.failed += 1
        else:
            assert type(error) is errors.DispatchTimeout, error
            assert error.timeout == TIMEOUT
            self.timed_out += 1

    def _check_batch(self, allow_stopped_drop: bool) -> bool:
        """Wait for every outstanding future and check their outcomes together.

        Serial dispatch allows exactly this shape: a prefix handled naturally (in
        submit order, ending at the event that trips ``fail_after`` if one does),
        then the rest dropped at once, all with the same error: ``ServiceFailed``
        after a trip, ``ServiceStopped`` only for a stop without drain. Returns
        whether ``fail_after`` tripped.
        """
        batch, self.pending = self.pending, []
        _, not_done = concurrent.futures.wait([a.future for a in batch], timeout=HANG)
        assert not not_done, "futures still pending: %r" % (not_done,)
        tripped = False
        drop_type: Optional[type] = None
        for accepted in batch:
            error = accepted.future.exception(timeout=0)
            if tripped or drop_type is not None or isinstance(
                    error, (errors.ServiceStopped, errors.ServiceFailed)):
                assert type(error) in (errors.ServiceStopped, errors.ServiceFailed), error
                drop_type = drop_type or type(error)
                assert type(error) is drop_type, "one drop, one error type"
                self.dropped += 1
                continue
            self._check_natural(accepted, error)
            if accepted.kind == OK:
                self.consecutive = 0
            else:
                self.consecutive += 1
                if self.fail_after is not None and self.consecutive >= self.fail_after:
                    tripped = True
        if drop_type is errors.ServiceStopped:
            assert allow_stopped_drop, "events dropped by a stop that drained"
        if drop_type is errors.ServiceFailed:
            assert tripped, "events dropped as failed, yet fail_after did not trip"
        return tripped

    def _settle(self) -> None:
        """Wait for the outstanding events (no stop in between) and update the model."""
        if not self.pending:
            return
        if self._check_batch(allow_stopped_drop=False):
            self.state = FAILED
            # A timed-out event's FAILED transition may follow its DispatchTimeout.
            assert self.handle.wait_for(FAILED, timeout=HANG)

    def _reject(self, call: Any, *expected: type) -> BaseException:
        with pytest.raises(expected) as raised:
            call()
        self.rejected += 1
        RUN["rejected"] += 1
        return raised.value

    # --------------------------------------------------------------- rules
    @initialize(fail_after=st.sampled_from([None, 1, 2, 3]),
                start_now=st.sampled_from([True, True, True, False]))
    def add_service(self, fail_after: Optional[int], start_now: bool) -> None:
        self.fail_after = fail_after
        self.handle = self.host.add_service("model", self.factory, ServiceConfig(
            queue_size=QUEUE, dispatch_timeout=TIMEOUT, cancel_grace=HANG,
            start_timeout=HANG, stop_timeout=HANG, fail_after=fail_after,
            latency_histograms=True))
        if start_now:
            self.start()

    @rule()
    def start(self) -> None:
        RUN["steps"] += 1
        if self._doomed():
            self._settle()
        if self.state in (STOPPED, FAILED):
            error = self._lifecycle_error(lambda: self.handle.start(timeout=HANG))
            assert error.state is self.state
            return
        status = self.handle.start(timeout=HANG)
        assert status.state is RUNNING
        if self.state is READY:
            self.state = RUNNING
            self.consecutive = 0
            self.lives += 1
            RUN["starts"] += 1

    def _lifecycle_error(self, call: Any) -> BaseException:
        with pytest.raises(errors.LifecycleError) as raised:
            call()
        return raised.value

    @rule()
    def restart(self) -> None:
        RUN["steps"] += 1
        if self._doomed():
            self._settle()
        if self.state in (READY, RUNNING):
            error = self._lifecycle_error(lambda: self.handle.restart(timeout=HANG))
            assert error.state is self.state
            return
        status = self.handle.restart(timeout=HANG)
        assert status.state is RUNNING
        assert status.failure is None
        self.state = RUNNING
        self.consecutive = 0
        self.lives += 1
        self.restarts += 1
        RUN["restarts"] += 1

    @rule(drain=st.booleans())
    def stop(self, drain: bool) -> None:
        RUN["steps"] += 1
        before = self.state
        try:
            status: Any = self.handle.stop(drain=drain)
        except errors.ServiceFailed as error:
            status = error
        if before is not RUNNING:
            # READY -> STOPPED without the plugin; STOPPED and FAILED: unchanged.
            assert not self.pending
            self.state = STOPPED if before is READY else before
            assert not isinstance(status, BaseException), status
            assert status.state is self.state
            return
        RUN["stops"] += 1
        tripped = self._check_batch(allow_stopped_drop=not drain)
        if tripped:
            # Failed before the stop (a no-op returning the FAILED status) or while
            # stopping (the stop raises ServiceFailed); either way FAILED.
            self.state = FAILED
            assert status.state is FAILED
        else:
            self.state = STOPPED
            assert not isinstance(status, BaseException), status
            assert status.state is STOPPED
        assert self.handle.state is self.state

    @rule(kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=4))
    def submit(self, kinds: List[str]) -> None:
        """A burst of submits (fewer if the model's queue bound is reached)."""
        RUN["steps"] += 1
        for kind in kinds[:QUEUE - len(self.pending)]:
            self._submit_one(kind)

    def _submit_one(self, kind: str) -> None:
        event, n = self._event(kind)
        state = self.state
        if state is READY:
            self._reject(lambda: self.handle.submit(event), errors.ServiceUnavailable)
        elif state is STOPPED:
            self._reject(lambda: self.handle.submit(event), errors.ServiceStopped)
        elif state is FAILED:
            self._reject(lambda: self.handle.submit(event), errors.ServiceFailed)
        elif self._doomed():
            # The tripping event may have been handled already.
            try:
                future = self.handle.submit(event)
            except errors.ServiceFailed:
                self.rejected += 1
                RUN["rejected"] += 1
                return
            self._accept(future, kind, n)
        else:
            self._accept(self.handle.submit(event), kind, n)

    def _accept(self, future: Any, kind: str, n: int) -> None:
        accepted = TrackedEvent(future, kind, n)
        self.pending.append(accepted)
        self.accepted.append(accepted)
        self.enqueued += 1
        RUN["accepted"] += 1

    @rule()
    def submit_invalid(self) -> None:
        """The state is checked before validation; both rejections count."""
        RUN["steps"] += 1
        event, _ = self._event(OK, ingress="undeclared")
        expected = {READY: errors.ServiceUnavailable, STOPPED: errors.ServiceStopped,
                    FAILED: errors.ServiceFailed}.get(self.state, errors.InvalidEvent)
        if self._doomed():
            self._reject(lambda: self.handle.submit(event), errors.InvalidEvent,
                         errors.ServiceFailed)
        else:
            error = self._reject(lambda: self.handle.submit(event), expected)
            assert type(error) is expected

    @rule()
    def wait_for_outstanding(self) -> None:
        RUN["steps"] += 1
        self._settle()

    # ----------------------------------------------------------- invariants
    @invariant()
    def matches_model(self) -> None:
        if self.handle is None:
            return
        status = self.handle.status()
        assert_invariants(status)
        counters = status.counters
        assert counters.enqueued == self.enqueued
        assert counters.rejected == self.rejected
        assert counters.retried == 0
        assert status.restarts == self.restarts
        assert self.factory.count == self.lives
        settled = self.succeeded + self.failed + self.timed_out + self.dropped
        if not self.pending:
            assert status.state is self.state
            assert (counters.succeeded, counters.failed, counters.timed_out,
                    counters.dropped) == (self.succeeded, self.failed, self.timed_out,
                                          self.dropped)
            assert counters.dispatched == self.succeeded + self.failed + self.timed_out
            assert status.queue_wait is not None and status.handler_time is not None
            assert status.queue_wait.count == status.handler_time.count \
                == self.succeeded + self.failed
            assert status.queue_depth == 0 and status.in_flight == 0
            assert len(self.host.dead_letters()) == self.failed + self.timed_out + self.dropped
        else:
            if self._doomed():
                assert status.state in (RUNNING, FAILED)
            else:
                assert status.state is RUNNING
            decided = (counters.succeeded + counters.failed + counters.timed_out
                       + counters.dropped)
            assert settled <= decided <= settled + len(self.pending)

    def teardown(self) -> None:
        began = time.monotonic()
        self.host.close(timeout=CLOSE_BOUND)
        assert time.monotonic() - began < CLOSE_BOUND + CLOSE_SLACK
        if self.handle is None:
            return
        if self.state is RUNNING and self.pending:
            if self._check_batch(allow_stopped_drop=False):  # close drains
                self.state = FAILED
        _, not_done = concurrent.futures.wait([a.future for a in self.accepted], timeout=HANG)
        assert not not_done
        assert all(a.resolved.wait(HANG) for a in self.accepted)
        assert [a.resolutions for a in self.accepted] == [1] * len(self.accepted)
        status = self.handle.status()
        assert status.state in (STOPPED, FAILED)
        counters = status.counters
        assert counters.enqueued == (counters.succeeded + counters.failed
                                     + counters.timed_out + counters.dropped
                                     + counters.expired)
        assert counters.expired == 0  # no event of the model has a deadline
        assert (counters.succeeded, counters.failed, counters.timed_out,
                counters.dropped) == (self.succeeded, self.failed, self.timed_out,
                                      self.dropped)
        outcomes = {"ok": 0, "failed": 0, "timed_out": 0, "dropped": 0}
        for accepted in self.accepted:
            error = accepted.future.exception(timeout=0)
            if error is None:
                outcomes["ok"] += 1
            elif type(error) is errors.DispatchFailed:
                outcomes["failed"] += 1
            elif type(error) is errors.DispatchTimeout:
                outcomes["timed_out"] += 1
            else:
                assert type(error) in (errors.ServiceStopped, errors.ServiceFailed), error
                outcomes["dropped"] += 1
        for key, name in (("ok", "succeeded"), ("failed", "failed"),
                          ("timed_out", "timed_out"), ("dropped", "dropped")):
            RUN[name] += outcomes[key]
        assert outcomes == {"ok": counters.succeeded, "failed": counters.failed,
                            "timed_out": counters.timed_out, "dropped": counters.dropped}


def test_lifecycle_follows_the_model(request: Any, capsys: Any) -> None:
    before = dict(RUN)
    run_state_machine_as_test(LifecycleMachine, settings=MACHINE_SETTINGS)
    ran = {key: RUN[key] - before[key] for key in RUN}
    assert ran["examples"] >= 10
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    line = ("test_model: %(examples)d hypothesis examples, %(steps)d steps "
            "(%(starts)d starts, %(stops)d stops of a running service, %(restarts)d restarts), "
            "%(accepted)d events accepted (%(succeeded)d succeeded, %(failed)d failed, "
            "%(timed_out)d timed out, %(dropped)d dropped), %(rejected)d rejected at submit"
            % ran)
    with capsys.disabled():
        if reporter is not None:
            reporter.write_line("")
            reporter.write_line(line)
        else:  # pragma: no cover
            print(line)
