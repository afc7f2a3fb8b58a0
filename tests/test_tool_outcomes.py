"""Every admitted tool call ends in one counted outcome, whatever the tool's
exception does, whoever cancels it, and wherever it is called from (issue 20)."""
from __future__ import annotations

import threading
from concurrent.futures import wait

import pytest
from support.hostile_errors import LyingError, NonStrError, RaisingStrError, SlowStrError
from support.timing import HANG, SHORT, STARTS_WITHIN
from support.tools import RecordingTool, raising

from plugin_service import DiagnosticKind, ToolCounters, errors


def tool_status(host, name):
    return host.status().tools[name]


def in_thread(fn):
    """Run ``fn`` on a daemon thread; returns (done Event, results list)."""
    done, results = threading.Event(), []

    def run():
        try:
            results.append(fn())
        finally:
            done.set()

    threading.Thread(target=run, daemon=True).start()
    return done, results


# ------------------------------------------- exceptions that fight being described

HOSTILE = [
    pytest.param(lambda: RaisingStrError(ValueError("str failed")), id="raising-str"),
    pytest.param(lambda: RaisingStrError(SystemExit(3)), id="str-raising-systemexit"),
    pytest.param(NonStrError, id="non-str-str"),
    pytest.param(LyingError, id="lying-attributes"),
]


@pytest.mark.parametrize("make_error", HOSTILE)
@pytest.mark.parametrize("timeout", [None, HANG], ids=["no-timeout", "with-timeout"])
def test_hostile_exception_still_resolves_the_future_with_tool_failed(
        make_host, make_error, timeout):
    host = make_host()
    error = make_error()
    host.add_tool("bad", raising(error))

    future = host.submit_tool("bad", 1, timeout=timeout)

    failure = future.exception(timeout=HANG)
    assert isinstance(failure, errors.ToolFailed)
    assert failure.__cause__ is error
    status = tool_status(host, "bad")
    assert status.counters == ToolCounters(calls=1, failed=1)
    assert (status.in_flight, status.overdue) == (0, 0)
    assert status.last_error.kind is DiagnosticKind.TOOL_FAILED
    assert "bad" in status.last_error.message


def test_hostile_exception_does_not_block_call_tool(make_host):
    host = make_host()
    host.add_tool("bad", raising(RaisingStrError(ValueError("str failed"))))

    done, results = in_thread(lambda: pytest.raises(errors.ToolFailed,
                                                    host.call_tool, "bad", 1))

    assert done.wait(HANG)
    assert results  # call_tool raised ToolFailed


def test_exception_class_name_appears_when_only_its_str_fails(make_host):
    host = make_host()
    host.add_tool("bad", raising(NonStrError()))

    host.submit_tool("bad", 1).exception(timeout=HANG)

    message = tool_status(host, "bad").last_error.message
    assert "NonStrError" in message
    assert "unprintable" in message


def test_slow_exception_str_does_not_hold_the_tools_lock(make_host):
    host = make_host()
    error = SlowStrError()
    host.add_tool("slow", raising(error))
    try:
        future = host.submit_tool("slow", 1)
        assert error.entered.wait(HANG)

        done, results = in_thread(lambda: tool_status(host, "slow"))

        assert done.wait(HANG)  # status() answers while the __str__ still runs
        (status,) = results
        assert status.in_flight == 1
        assert not future.done()
    finally:
        error.release.set()
    assert isinstance(future.exception(timeout=HANG), errors.ToolFailed)
    assert "finally described" in tool_status(host, "slow").last_error.message


def test_slow_exception_str_cannot_delay_the_deadline(make_host):
    host = make_host()
    error = SlowStrError()
    host.add_tool("slow", raising(error))
    try:
        future = host.submit_tool("slow", 1, timeout=STARTS_WITHIN)
        assert error.entered.wait(HANG)

        # The deadline passes while the tool's exception is still being described.
        assert isinstance(future.exception(timeout=HANG), errors.ToolTimeout)
        assert tool_status(host, "slow").counters == ToolCounters(calls=1, timed_out=1)
    finally:
        error.release.set()


# ------------------------------------------------------------------ cancel()


def test_cancel_of_a_running_call_answers_false_and_the_call_completes(make_host, make_gate):
    host = make_host()
    gate = make_gate()
    host.add_tool("gate", gate)
    future = host.submit_tool("gate", "payload")
    assert gate.wait_entered(1)

    assert future.running()
    assert future.cancel() is False
    gate.release()

    assert future.result(timeout=HANG) == "payload"
    assert not future.cancelled()
    assert tool_status(host, "gate").counters == ToolCounters(calls=1, succeeded=1)


def test_cancel_withdraws_a_waiting_call_frees_its_slot_and_counts_it_dropped(
        make_host, make_gate):
    host = make_host(tool_workers=1)
    hog, recorder = make_gate(), RecordingTool()
    host.add_tool("hog", hog)
    host.add_tool("one", recorder, max_concurrency=1)
    host.submit_tool("hog", 0)
    assert hog.wait_entered(1)
    waiting = host.submit_tool("one", "withdrawn")

    assert waiting.cancel() is True

    assert waiting.cancelled()
    assert wait([waiting], timeout=HANG).done == {waiting}  # waiters are notified
    status = tool_status(host, "one")
    assert status.counters == ToolCounters(calls=1, dropped=1)
    assert (status.in_flight, status.overdue) == (0, 0)
    later = host.submit_tool("one", "later")  # its slot is free: no ToolBusy
    hog.release()
    assert later.result(timeout=HANG) == "later"
    assert recorder.requests == ["later"]  # the withdrawn call never ran
    assert waiting.cancel() is True  # as Future: cancelling again answers True


def test_cancel_of_a_finished_call_answers_false_and_counts_nothing(make_host):
    host = make_host()
    host.add_tool("echo", lambda request, ctx: request)
    future = host.submit_tool("echo", 1)
    assert future.result(timeout=HANG) == 1

    assert future.cancel() is False
    assert tool_status(host, "echo").counters == ToolCounters(calls=1, succeeded=1)


def test_cancel_of_a_timed_out_call_answers_false(make_host, make_gate):
    host = make_host()
    host.add_tool("gate", make_gate())
    future = host.submit_tool("gate", 1, timeout=SHORT)
    assert isinstance(future.exception(timeout=HANG), errors.ToolTimeout)

    assert future.cancel() is False
    assert tool_status(host, "gate").counters == ToolCounters(calls=1, timed_out=1)


# ---------------------------------------------------- a tool calling a tool


def test_tool_calling_a_tool_on_a_full_pool_runs_it_inline(make_host):
    host = make_host(tool_workers=1)
    inner = RecordingTool()
    host.add_tool("inner", inner)
    host.add_tool("outer", lambda request, ctx: ("outer", host.call_tool("inner", request)))

    future = host.submit_tool("outer", 7)

    assert future.result(timeout=HANG) == ("outer", 7)
    (thread,) = inner.threads
    assert thread.name.startswith("plugin_service-tools-")  # the caller's pool thread
    assert tool_status(host, "inner").counters == ToolCounters(calls=1, succeeded=1)


def test_nested_call_keeps_the_callees_bulkhead(make_host, make_gate):
    host = make_host(tool_workers=2)
    gate = make_gate()
    host.add_tool("inner", gate, max_concurrency=1)
    host.add_tool("outer", lambda request, ctx: host.call_tool("inner", request))
    host.submit_tool("inner", "holds the slot")
    assert gate.wait_entered(1)

    failure = host.submit_tool("outer", 1).exception(timeout=HANG)

    assert isinstance(failure, errors.ToolFailed)
    assert isinstance(failure.__cause__, errors.ToolBusy)
    assert tool_status(host, "inner").counters.rejected == 1


def test_nested_call_keeps_the_callees_deadline_and_counters(make_host):
    host = make_host(tool_workers=1)

    def inner(request, ctx):
        cancelled = ctx.wait(HANG)  # True as soon as the watchdog cancels it
        return ("inner returned", cancelled)

    def outer(request, ctx):
        try:
            return host.call_tool("inner", request, timeout=SHORT)
        except errors.ToolTimeout as exc:
            return ("timed out", exc.timeout)

    host.add_tool("inner", inner)
    host.add_tool("outer", outer)

    assert host.call_tool("outer", 1, timeout=HANG) == ("timed out", SHORT)
    status = tool_status(host, "inner")
    assert status.counters == ToolCounters(calls=1, timed_out=1)
    assert (status.in_flight, status.overdue) == (0, 0)
