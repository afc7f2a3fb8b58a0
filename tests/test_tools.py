"""Tool plugins on the host's shared executor (issue 4)."""
from __future__ import annotations

import threading
from concurrent.futures import Future

import pytest
from support.doubles import EchoService
from support.timing import HANG, SHORT, STARTS_WITHIN
from support.tools import RecordingTool, Upper, raising_tool

from plugin_service import (
    Diagnostic,
    DiagnosticKind,
    ToolContext,
    ToolCounters,
    errors,
)


def counters(host, name):
    return host.status().tools[name].counters


# ------------------------------------------------------------------ calling


def test_tool_plugin_subclass_without_super_init_answers_call_tool(make_host):
    host = make_host()
    host.add_tool("upper", Upper("!"))

    assert host.call_tool("upper", "hello") == "HELLO!"


def test_tool_plugin_class_is_accepted_as_a_tool(make_host):
    host = make_host()
    host.add_tool("upper", Upper)

    assert host.call_tool("upper", "abc") == "ABC"


def test_plain_callable_answers_call_tool(make_host):
    host = make_host()
    host.add_tool("double", lambda request, ctx: request * 2)

    assert host.call_tool("double", 21) == 42


def test_tool_gets_a_tool_context_carrying_its_request(make_host):
    host = make_host()
    seen = []
    host.add_tool("look", lambda request, ctx: seen.append(ctx) or "ok")

    host.call_tool("look", {"q": 1})

    (ctx,) = seen
    assert isinstance(ctx, ToolContext)
    assert ctx.request == {"q": 1}
    assert ctx.cancelled is False


def test_call_without_timeout_has_no_deadline(make_host):
    host = make_host()
    host.add_tool("look", lambda request, ctx: (ctx.deadline, ctx.remaining()))

    assert host.call_tool("look", None) == (None, None)


def test_context_wait_returns_false_when_not_cancelled(make_host):
    host = make_host()
    host.add_tool("look", lambda request, ctx: ctx.wait(0))

    assert host.call_tool("look", None) is False


def test_call_timeout_sets_the_context_deadline(make_host):
    host = make_host()
    host.add_tool("look", lambda request, ctx: ctx.remaining())

    remaining = host.call_tool("look", None, timeout=HANG)

    assert 0 < remaining <= HANG


def test_submit_tool_returns_a_concurrent_future_of_the_result(make_host):
    host = make_host()
    host.add_tool("upper", Upper())

    future = host.submit_tool("upper", "abc")

    assert isinstance(future, Future)
    assert future.result(timeout=HANG) == "ABC"


def test_tool_runs_on_a_pool_thread_not_a_service_worker(make_host):
    host = make_host()
    host.add_service("svc", EchoService())
    host.service("svc").start(timeout=HANG)
    recorder = RecordingTool()
    host.add_tool("rec", recorder)

    host.call_tool("rec", 1)

    (thread,) = recorder.threads
    assert thread is not threading.current_thread()
    assert thread.name != "svc"
    assert "svc" not in thread.name


def test_tools_share_one_executor_of_tool_workers_threads(make_host, make_gate):
    host = make_host(tool_workers=1)
    gate, recorder = make_gate(), RecordingTool()
    host.add_tool("gate", gate)
    host.add_tool("rec", recorder)
    blocked = host.submit_tool("gate", "a")
    assert gate.wait_entered(1)

    queued = host.submit_tool("rec", "b")
    gate.release()

    assert blocked.result(timeout=HANG) == "a"
    assert queued.result(timeout=HANG) == "b"
    assert recorder.threads == gate.threads  # the pool's single thread ran both


def test_duplicate_tool_name_raises_value_error_and_keeps_the_first(make_host):
    host = make_host()
    host.add_tool("t", lambda request, ctx: "first")

    with pytest.raises(ValueError):
        host.add_tool("t", lambda request, ctx: "second")
    assert host.call_tool("t", None) == "first"


# ------------------------------------------------------- errors at submit


def test_unknown_tool_raises_tool_not_found_from_submit_tool(make_host):
    host = make_host()

    with pytest.raises(errors.ToolNotFound) as caught:
        host.submit_tool("nope", 1)
    assert caught.value.kind is DiagnosticKind.TOOL_NOT_FOUND
    assert "nope" in str(caught.value)


def test_unknown_tool_raises_tool_not_found_from_call_tool(make_host):
    host = make_host()

    with pytest.raises(errors.ToolNotFound):
        host.call_tool("nope", 1)


def test_submit_tool_after_close_raises_host_closed(make_host):
    host = make_host()
    host.add_tool("upper", Upper())
    host.close(timeout=HANG)

    with pytest.raises(errors.HostClosed) as caught:
        host.submit_tool("upper", "x")
    assert caught.value.kind is DiagnosticKind.HOST_CLOSED


def test_call_beyond_max_concurrency_raises_tool_busy_from_submit_tool(make_host, make_gate):
    host = make_host()
    gate = make_gate()
    host.add_tool("gate", gate, max_concurrency=1)
    host.submit_tool("gate", 1)

    with pytest.raises(errors.ToolBusy) as caught:
        host.submit_tool("gate", 2)
    assert caught.value.max_concurrency == 1
    assert caught.value.kind is DiagnosticKind.TOOL_BUSY


def test_busy_call_is_refused_even_while_the_admitted_call_waits_for_a_thread(
        make_host, make_gate):
    host = make_host(tool_workers=1)
    hog, limited = make_gate(), RecordingTool()
    host.add_tool("hog", hog)
    host.add_tool("limited", limited, max_concurrency=1)
    host.submit_tool("hog", 0)
    assert hog.wait_entered(1)
    host.submit_tool("limited", 1)  # admitted, waiting for the only pool thread

    with pytest.raises(errors.ToolBusy):
        host.submit_tool("limited", 2)
    hog.release()


# ------------------------------------------------------- outcomes via future


def test_tool_exception_becomes_tool_failed_with_it_as_cause(make_host):
    host = make_host()
    tool = raising_tool("bad input")
    host.add_tool("bad", tool)

    future = host.submit_tool("bad", 1)

    error = future.exception(timeout=HANG)
    assert isinstance(error, errors.ToolFailed)
    assert error.__cause__ is tool.raised[0]
    assert error.kind is DiagnosticKind.TOOL_FAILED


def test_call_tool_raises_tool_failed(make_host):
    host = make_host()
    host.add_tool("bad", raising_tool("bad input"))

    with pytest.raises(errors.ToolFailed):
        host.call_tool("bad", 1)


def test_call_past_its_timeout_raises_tool_timeout(make_host, make_gate):
    host = make_host()
    host.add_tool("gate", make_gate())

    with pytest.raises(errors.ToolTimeout) as caught:
        host.call_tool("gate", 1, timeout=SHORT)
    assert caught.value.timeout == SHORT
    assert caught.value.kind is DiagnosticKind.TOOL_TIMEOUT


def test_context_is_cancelled_at_the_deadline(make_host):
    host = make_host()
    seen = []
    returned = threading.Event()

    def patient(request, ctx):
        seen.append(ctx.cancelled)
        seen.append(ctx.wait(HANG))  # True as soon as cancelled
        seen.append(ctx.cancelled)
        returned.set()

    host.add_tool("patient", patient)
    future = host.submit_tool("patient", 1, timeout=STARTS_WITHIN)

    assert isinstance(future.exception(timeout=HANG), errors.ToolTimeout)
    assert returned.wait(HANG)
    assert seen == [False, True, True]


def test_timeout_counts_from_submission_so_a_queued_call_times_out_and_never_runs(
        make_host, make_gate):
    host = make_host(tool_workers=1)
    hog, late, marker = make_gate(), RecordingTool(), RecordingTool()
    host.add_tool("hog", hog)
    host.add_tool("late", late)
    host.add_tool("marker", marker)
    host.submit_tool("hog", 0)
    assert hog.wait_entered(1)

    future = host.submit_tool("late", 1, timeout=SHORT)

    assert isinstance(future.exception(timeout=HANG), errors.ToolTimeout)
    assert not hog.is_released  # it timed out while still waiting for the thread
    hog.release()
    # The pool runs its queue in order on its one thread: once the marker has run,
    # the timed-out call has had every chance to run.
    assert host.call_tool("marker", 2, timeout=HANG) == 2
    assert late.requests == []
    assert host.status().tools["late"].in_flight == 0


def test_call_timeout_overrides_a_shorter_tool_timeout(make_host):
    host = make_host()

    def slow(request, ctx):
        ctx.wait(0.3)  # outlives the tool's 0.05 s timeout, not the call's
        return "finished"

    host.add_tool("slow", slow, timeout=SHORT)

    assert host.call_tool("slow", 1, timeout=HANG) == "finished"
    assert counters(host, "slow").timed_out == 0


def test_call_timeout_overrides_a_longer_tool_timeout(make_host, make_gate):
    host = make_host()
    host.add_tool("gate", make_gate(), timeout=HANG)

    with pytest.raises(errors.ToolTimeout) as caught:
        host.call_tool("gate", 1, timeout=SHORT)
    assert caught.value.timeout == SHORT


def test_tool_timeout_applies_when_the_call_gives_none(make_host, make_gate):
    host = make_host()
    host.add_tool("gate", make_gate(), timeout=SHORT)

    with pytest.raises(errors.ToolTimeout) as caught:
        host.call_tool("gate", 1)
    assert caught.value.timeout == SHORT


# ---------------------------------------------------------------- counters


def test_new_tool_has_zero_counters_and_no_last_error(make_host):
    host = make_host()
    host.add_tool("upper", Upper(), max_concurrency=3)

    status = host.status().tools["upper"]

    assert status.name == "upper"
    assert status.in_flight == 0
    assert status.max_concurrency == 3
    assert status.counters == ToolCounters(0, 0, 0, 0, 0)
    assert status.last_error is None


def test_counters_count_each_outcome(make_host, make_gate):
    host = make_host()
    gate, fail = make_gate(), raising_tool("no")

    def mixed(request, ctx):
        if request == "fail":
            return fail(request, ctx)
        if request == "hang":
            return gate(request, ctx)
        return "fine"

    host.add_tool("mixed", mixed)
    host.call_tool("mixed", "ok")
    host.call_tool("mixed", "ok")
    with pytest.raises(errors.ToolFailed):
        host.call_tool("mixed", "fail")
    with pytest.raises(errors.ToolTimeout):
        host.call_tool("mixed", "hang", timeout=SHORT)

    assert counters(host, "mixed") == ToolCounters(
        calls=4, succeeded=2, failed=1, timed_out=1, rejected=0)


def test_rejected_call_counts_in_rejected_not_in_calls(make_host, make_gate):
    host = make_host()
    host.add_tool("gate", make_gate(), max_concurrency=1)
    host.submit_tool("gate", 1)
    with pytest.raises(errors.ToolBusy):
        host.submit_tool("gate", 2)

    assert counters(host, "gate") == ToolCounters(
        calls=1, succeeded=0, failed=0, timed_out=0, rejected=1)


def test_outcome_is_recorded_before_the_future_resolves(make_host):
    host = make_host()
    host.add_tool("bad", raising_tool("no"))
    seen = []
    future = host.submit_tool("bad", 1)
    # A done-callback runs the moment the future resolves (or at once if it has).
    future.add_done_callback(lambda f: seen.append(host.status().tools["bad"]))

    assert future.exception(timeout=HANG) is not None
    (status,) = seen
    assert status.counters.failed == 1
    assert status.in_flight == 0
    assert status.last_error.kind is DiagnosticKind.TOOL_FAILED


def test_timeout_is_recorded_before_the_future_resolves(make_host, make_gate):
    host = make_host()
    host.add_tool("gate", make_gate())
    seen = []
    future = host.submit_tool("gate", 1, timeout=SHORT)
    future.add_done_callback(lambda f: seen.append(host.status().tools["gate"]))

    assert isinstance(future.exception(timeout=HANG), errors.ToolTimeout)
    (status,) = seen
    assert status.counters.timed_out == 1
    assert status.last_error.kind is DiagnosticKind.TOOL_TIMEOUT


# -------------------------------------------------------------- last_error


def test_failed_call_becomes_last_error_of_kind_tool_failed(make_host):
    host = make_host()
    host.add_tool("bad", raising_tool("exploded"))
    with pytest.raises(errors.ToolFailed):
        host.call_tool("bad", 1)

    last_error = host.status().tools["bad"].last_error

    assert isinstance(last_error, Diagnostic)
    assert last_error.kind is DiagnosticKind.TOOL_FAILED
    assert "exploded" in last_error.message


def test_timed_out_call_becomes_last_error_of_kind_tool_timeout(make_host, make_gate):
    host = make_host()
    host.add_tool("gate", make_gate())
    with pytest.raises(errors.ToolTimeout):
        host.call_tool("gate", 1, timeout=SHORT)

    last_error = host.status().tools["gate"].last_error

    assert isinstance(last_error, Diagnostic)
    assert last_error.kind is DiagnosticKind.TOOL_TIMEOUT


def test_rejected_call_becomes_last_error_of_kind_tool_busy(make_host, make_gate):
    host = make_host()
    host.add_tool("gate", make_gate(), max_concurrency=1)
    host.submit_tool("gate", 1)
    with pytest.raises(errors.ToolBusy):
        host.submit_tool("gate", 2)

    last_error = host.status().tools["gate"].last_error

    assert isinstance(last_error, Diagnostic)
    assert last_error.kind is DiagnosticKind.TOOL_BUSY


def test_last_error_message_is_redacted_single_line_and_bounded(make_host):
    host = make_host()
    host.add_tool("leaky", raising_tool(
        "login failed password=hunter2\nAuthorization: Bearer s3cr3t-tok " + "x" * 5000))
    with pytest.raises(errors.ToolFailed):
        host.call_tool("leaky", 1)

    message = host.status().tools["leaky"].last_error.message

    assert "hunter2" not in message
    assert "s3cr3t-tok" not in message
    assert "login failed" in message
    assert "\n" not in message
    assert len(message) <= 513  # 512 characters plus "…"


# ----------------------------------------------------------------- bulkhead


def test_sequential_calls_to_a_single_slot_tool_never_see_tool_busy(make_host):
    host = make_host()
    host.add_tool("one", lambda request, ctx: request, max_concurrency=1)

    results = [host.call_tool("one", i) for i in range(200)]

    assert results == list(range(200))
    assert counters(host, "one") == ToolCounters(
        calls=200, succeeded=200, failed=0, timed_out=0, rejected=0)


def test_sequential_failing_calls_to_a_single_slot_tool_never_see_tool_busy(make_host):
    host = make_host()
    host.add_tool("one", raising_tool("no"), max_concurrency=1)

    for _ in range(200):
        with pytest.raises(errors.ToolFailed):
            host.call_tool("one", None)

    assert counters(host, "one").failed == 200
    assert counters(host, "one").rejected == 0


def test_timed_out_call_keeps_its_slot_until_its_thread_returns(make_host, make_gate):
    host = make_host(tool_workers=1)
    gate, marker = make_gate(), RecordingTool()
    host.add_tool("gate", gate, max_concurrency=1)
    host.add_tool("marker", marker)
    stuck = host.submit_tool("gate", "stuck", timeout=STARTS_WITHIN)
    assert gate.wait_entered(1)
    assert isinstance(stuck.exception(timeout=HANG), errors.ToolTimeout)

    status = host.status().tools["gate"]
    assert (status.in_flight, status.overdue) == (0, 1)  # decided, but holds its slot
    with pytest.raises(errors.ToolBusy):
        host.submit_tool("gate", "too early")

    gate.release()
    # The pool's only thread takes the marker once the stuck call has fully returned.
    assert host.call_tool("marker", None, timeout=HANG) is None
    status = host.status().tools["gate"]
    assert (status.in_flight, status.overdue) == (0, 0)
    assert host.call_tool("gate", "now", timeout=HANG) == "now"


def test_timed_out_calls_still_running_count_as_overdue_not_in_flight(make_host, make_gate):
    host = make_host()
    gate = make_gate()
    host.add_tool("gate", gate)
    futures = [host.submit_tool("gate", i, timeout=STARTS_WITHIN) for i in range(2)]
    assert gate.wait_entered(2)
    assert all(isinstance(f.exception(timeout=HANG), errors.ToolTimeout) for f in futures)

    status = host.status().tools["gate"]

    assert status.counters.timed_out == 2
    assert status.in_flight == 0  # their outcome is recorded...
    assert status.overdue == 2  # ...but their threads still hold the slots


def test_in_flight_counts_calls_waiting_for_a_pool_thread(make_host, make_gate):
    host = make_host(tool_workers=1)
    hog, recorder = make_gate(), RecordingTool()
    host.add_tool("hog", hog)
    host.add_tool("rec", recorder)
    host.submit_tool("hog", 0)
    assert hog.wait_entered(1)

    waiting = [host.submit_tool("rec", i) for i in range(2)]

    assert host.status().tools["rec"].in_flight == 2
    assert recorder.requests == []
    hog.release()
    assert [f.result(timeout=HANG) for f in waiting] == [0, 1]


def test_call_timed_out_while_waiting_for_a_thread_frees_its_slot(make_host, make_gate):
    host = make_host(tool_workers=1)
    hog, recorder = make_gate(), RecordingTool()
    host.add_tool("hog", hog)
    host.add_tool("one", recorder, max_concurrency=1)
    host.submit_tool("hog", 0)
    assert hog.wait_entered(1)
    late = host.submit_tool("one", "late", timeout=SHORT)
    assert isinstance(late.exception(timeout=HANG), errors.ToolTimeout)

    assert host.status().tools["one"].in_flight == 0
    queued = host.submit_tool("one", "next")  # admitted: no ToolBusy
    hog.release()
    assert queued.result(timeout=HANG) == "next"
    assert recorder.requests == ["next"]


def test_calls_never_run_beyond_max_concurrency_after_timeouts(make_host, make_gate):
    host = make_host(tool_workers=4)
    gate = make_gate()
    host.add_tool("gate", gate, max_concurrency=2)
    futures = [host.submit_tool("gate", i, timeout=STARTS_WITHIN) for i in range(2)]
    assert gate.wait_entered(2)
    assert all(isinstance(f.exception(timeout=HANG), errors.ToolTimeout) for f in futures)

    for i in range(3):
        with pytest.raises(errors.ToolBusy):
            host.submit_tool("gate", i)

    assert gate.entered == 2
    assert counters(host, "gate").rejected == 3


def test_late_return_of_a_timed_out_call_is_not_counted_again(make_host, make_gate):
    host = make_host(tool_workers=1)
    gate = make_gate()
    host.add_tool("gate", gate)
    host.add_tool("marker", RecordingTool())
    stuck = host.submit_tool("gate", "stuck", timeout=STARTS_WITHIN)
    assert gate.wait_entered(1)
    assert isinstance(stuck.exception(timeout=HANG), errors.ToolTimeout)

    gate.release()
    host.call_tool("marker", None, timeout=HANG)  # runs after the stuck call returned

    assert host.status().tools["gate"].in_flight == 0
    assert host.status().tools["gate"].overdue == 0
    assert counters(host, "gate") == ToolCounters(
        calls=1, succeeded=0, failed=0, timed_out=1, rejected=0)


# ------------------------------------------------------------------- kinds


@pytest.mark.parametrize("name", errors.__all__)
def test_every_error_kind_is_a_diagnostic_kind_member(name):
    error_type = getattr(errors, name)

    assert isinstance(error_type.kind, DiagnosticKind)


@pytest.mark.parametrize(("error_type", "kind"), [
    (errors.ToolNotFound, DiagnosticKind.TOOL_NOT_FOUND),
    (errors.ToolFailed, DiagnosticKind.TOOL_FAILED),
    (errors.ToolTimeout, DiagnosticKind.TOOL_TIMEOUT),
    (errors.ToolBusy, DiagnosticKind.TOOL_BUSY),
    (errors.HostClosed, DiagnosticKind.HOST_CLOSED),
    (errors.PluginLoadError, DiagnosticKind.PLUGIN_LOAD),
])
def test_each_new_error_has_its_own_kind(error_type, kind):
    assert error_type.kind is kind


@pytest.mark.parametrize("error_type", [
    errors.ToolNotFound, errors.ToolFailed, errors.ToolTimeout, errors.ToolBusy])
def test_tool_errors_are_tool_errors(error_type):
    assert issubclass(error_type, errors.ToolError)
    assert issubclass(error_type, errors.PluginServiceError)
