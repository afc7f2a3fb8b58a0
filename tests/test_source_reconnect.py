"""A source whose connect() or receive() raises is closed and reconnected after
the backoff of its ReconnectPolicy; the policy itself."""
from __future__ import annotations

import time

import pytest
from support.checks import wait_until
from support.doubles import INGRESS, Echo
from support.sources import END, SECRET, FedSource
from support.timing import HANG

from plugin_service import DiagnosticKind, ReconnectPolicy, SourceExhausted, SourceState

TINY = ReconnectPolicy(initial=0.001, max=0.001, jitter=0.0)


def test_a_failing_connect_is_retried_with_backoff_until_it_connects(host, start_service):
    plugin = Echo()
    start_service("svc", plugin)
    source = FedSource(OSError("refused"), OSError("refused"))
    handle = host.add_source("fed", source, service="svc", ingress=INGRESS, reconnect=TINY)
    source.put(1)
    assert plugin.entered().payload == 1
    status = handle.status()
    assert (status.reconnects, source.connects, status.state) == (2, 3, SourceState.OPEN)
    assert status.last_error.kind is DiagnosticKind.SOURCE_FAILED
    assert "connect() raised OSError: refused" in status.last_error.message
    assert source.closes == 2  # close() after each failed connect


def test_a_failing_receive_closes_reconnects_and_later_items_arrive(host, start_service):
    plugin = Echo()
    start_service("svc", plugin)
    source = FedSource()
    handle = host.add_source("fed", source, service="svc", ingress=INGRESS, reconnect=TINY)
    source.put(1, ConnectionResetError("token=%s" % SECRET), 2)
    wait_until(lambda: plugin.payloads == [1, 2])
    status = handle.status()
    assert (status.reconnects, source.connects, source.closes) == (1, 2, 1)
    assert "receive() raised ConnectionResetError" in status.last_error.message
    assert SECRET not in str(status.to_dict())


def test_a_source_gives_up_after_max_attempts_and_fails(host, start_service):
    start_service("svc", Echo())
    source = FedSource(*(OSError("down") for _ in range(5)))
    policy = ReconnectPolicy(initial=0.001, max=0.001, jitter=0.0, max_attempts=2)
    handle = host.add_source("fed", source, service="svc", ingress=INGRESS, reconnect=policy)
    wait_until(lambda: handle.status().state is SourceState.FAILED)
    status = handle.status()
    assert (source.connects, status.reconnects) == (3, 2)
    assert "gave up after 3 failures" in status.last_error.message


def test_an_item_delivered_starts_the_count_of_failures_again(host, start_service):
    plugin = Echo()
    start_service("svc", plugin)
    source = FedSource()
    policy = ReconnectPolicy(initial=0.001, max=0.001, jitter=0.0, max_attempts=1)
    handle = host.add_source("fed", source, service="svc", ingress=INGRESS, reconnect=policy)
    for n in range(3):  # each failure follows an item: never two in a row
        source.put(n, OSError("reset"))
    source.put(END)
    wait_until(lambda: handle.status().state is SourceState.STOPPED)  # not FAILED
    wait_until(lambda: len(plugin.payloads) == 3)
    assert plugin.payloads == [0, 1, 2]
    assert handle.status().reconnects == 3


def test_close_ends_a_source_waiting_out_a_long_backoff_at_once(make_host):
    host = make_host()
    host.add_service("svc", Echo()).start(timeout=HANG)
    source = FedSource(OSError("down"))
    handle = host.add_source("fed", source, service="svc", ingress=INGRESS,
                             reconnect=ReconnectPolicy(initial=60.0, jitter=0.0))
    wait_until(lambda: handle.status().state is SourceState.BACKOFF)
    began = time.monotonic()
    host.close(timeout=HANG)
    assert time.monotonic() - began < HANG
    assert handle.status().state is SourceState.STOPPED


def test_a_source_exhausted_at_connect_stops_without_reconnecting(host, start_service):
    class Empty(FedSource):
        def connect(self):
            super().connect()
            raise SourceExhausted()

    start_service("svc", Echo())
    source = Empty()
    handle = host.add_source("fed", source, service="svc", ingress=INGRESS, reconnect=TINY)
    wait_until(lambda: handle.status().state is SourceState.STOPPED)
    assert (source.connects, handle.status().reconnects, handle.status().last_error) == (
        1, 0, None)


# -------------------------------------------------------------- the policy
def test_the_default_policy_reconnects_forever_with_capped_exponential_backoff():
    policy = ReconnectPolicy(jitter=0.0)
    assert (policy.initial, policy.multiplier, policy.max, policy.max_attempts) == (
        0.1, 2.0, 30.0, None)
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == pytest.approx([0.1, 0.2, 0.4, 0.8])
    assert policy.delay(20) == 30.0 and policy.delay(10_000) == 30.0
    assert not policy.gives_up(10_000)


def test_jitter_adds_at_most_its_seconds():
    policy = ReconnectPolicy(initial=1.0, multiplier=1.0, jitter=0.5)
    delays = [policy.delay(1) for _ in range(200)]
    assert all(1.0 <= delay <= 1.5 for delay in delays)
    assert len(set(delays)) > 1


@pytest.mark.parametrize("options", [
    {"initial": -1}, {"max": float("nan")}, {"jitter": "1"}, {"multiplier": 0.5},
    {"max_attempts": -1}, {"max_attempts": True}, {"initial": True},
])
def test_a_bad_policy_is_refused_with_value_error(options):
    with pytest.raises(ValueError):
        ReconnectPolicy(**options)


def test_max_attempts_zero_never_reconnects():
    assert ReconnectPolicy(max_attempts=0).gives_up(1)
    assert not ReconnectPolicy(max_attempts=1).gives_up(1)


def test_a_receive_raising_a_base_exception_reconnects_like_any_failure(host, start_service):
    class Abort(BaseException):
        """Not an Exception: plugin code may raise one all the same."""

    plugin = Echo()
    start_service("svc", plugin)
    source = FedSource()
    handle = host.add_source("fed", source, service="svc", ingress=INGRESS, reconnect=TINY)
    source.put(1, Abort("lost"), 2)
    wait_until(lambda: plugin.payloads == [1, 2])
    status = handle.status()
    assert (status.state, status.reconnects, source.connects) == (SourceState.OPEN, 1, 2)
    assert "receive() raised Abort" in status.last_error.message


def test_a_close_raising_a_base_exception_is_recorded_and_the_source_reconnects(
        host, start_service):
    class Abort(BaseException):
        """Not an Exception: plugin code may raise one all the same."""

    class BadClose(FedSource):
        def close(self):
            super().close()
            if self.closes == 1:
                raise Abort("close failed")

    plugin = Echo()
    start_service("svc", plugin)
    source = BadClose()
    handle = host.add_source("fed", source, service="svc", ingress=INGRESS, reconnect=TINY)
    source.put(1, RuntimeError("lost"), 2)
    wait_until(lambda: plugin.payloads == [1, 2])
    status = handle.status()
    assert (status.state, status.reconnects, source.connects) == (SourceState.OPEN, 1, 2)
    assert "close() raised Abort" in status.last_error.message
