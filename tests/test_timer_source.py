"""TimerSource: a fixed-rate schedule on the monotonic clock that skips, and
counts, the ticks it could not deliver on time; checked against a fake clock,
and through a host with bounds that only catch a hang."""
from __future__ import annotations

import pytest
from support.checks import wait_until
from support.doubles import INGRESS, Echo

from plugin_service import SourceContext, TimerSource


class FakeClock:
    """The timer's clock; ``wait`` advances it as a real wait would pass time."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeContext(SourceContext):
    """A receive context whose wait moves the fake clock on by the time waited."""

    __slots__ = ("clock",)

    def __init__(self, clock: FakeClock, bound: float) -> None:
        super().__init__(clock.now + bound)
        self.clock = clock

    def remaining(self):
        return max(0.0, self.deadline - self.clock.now)

    def wait(self, seconds=None):
        self.clock.now += seconds
        return False


def _timer(every, clock, **options):
    timer = TimerSource(every, **options)
    timer._clock = clock
    timer.connect()
    return timer


def test_the_first_tick_is_due_one_period_after_connect():
    clock = FakeClock()
    timer = _timer(1.0, clock)
    assert timer.receive(FakeContext(clock, 0.5)) is None  # waited the whole bound
    assert clock.now == 100.5
    assert timer.receive(FakeContext(clock, 0.75)) == 1  # waited until it was due
    assert clock.now == 101.0


def test_ticks_keep_a_fixed_rate_whatever_the_delivery_took():
    clock = FakeClock()
    timer = _timer(1.0, clock)
    due = []
    for _ in range(5):
        timer.receive(FakeContext(clock, 5.0))
        due.append(clock.now)
        clock.now += 0.3  # delivering it took 0.3 s: the next is still due on the second
    assert due == [101.0, 102.0, 103.0, 104.0, 105.0]
    assert (timer.ticks, timer.skipped) == (5, 0)


def test_missed_ticks_are_skipped_and_counted_not_piled_up():
    clock = FakeClock()
    timer = _timer(1.0, clock)
    timer.receive(FakeContext(clock, 5.0))  # tick 1 at 101
    clock.now = 104.5  # the reader was blocked: ticks due at 102, 103, 104 missed
    assert timer.receive(FakeContext(clock, 5.0)) == 2  # one, at once
    assert clock.now == 104.5
    assert timer.skipped == 2
    assert timer.receive(FakeContext(clock, 5.0)) == 3
    assert clock.now == 105.0  # back on the schedule


def test_a_reconnect_keeps_the_schedule():
    clock = FakeClock()
    timer = _timer(1.0, clock)
    timer.receive(FakeContext(clock, 5.0))
    timer.connect()
    timer.receive(FakeContext(clock, 5.0))
    assert clock.now == 102.0


@pytest.mark.parametrize("every", [0, -1, float("nan"), float("inf"), "1", True])
def test_a_period_that_is_no_positive_number_is_refused(every):
    with pytest.raises(ValueError):
        TimerSource(every)


def test_a_timer_sends_events_of_its_kind_and_payload(host, start_service):
    plugin = Echo()
    start_service("svc", plugin)
    payload = {"job": "sweep"}
    handle = host.add_source("every", TimerSource(0.01, kind="tick", payload=payload),
                             service="svc", ingress=INGRESS)
    wait_until(lambda: len(plugin.events) >= 3)
    first = plugin.events[0]
    assert (first.kind, first.payload, first.source, first.ingress) == (
        "tick", payload, "every", INGRESS)
    assert handle.status().submitted >= 3
