"""A host belongs to the process that created it (issue 12, item 2).

Threads do not survive ``os.fork()``: a child that inherits a started host has its
objects but none of its threads. Each test forks a real child (``os.fork`` or
``multiprocessing``'s fork context); the child reports what it saw as JSON over a
pipe and leaves with ``os._exit``, and the parent reads it with a bounded wait, so
a child that hangs fails the test instead of freezing it.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import select
import signal
import threading
from typing import Any, Callable, Dict, List

import pytest
from support.checks import assert_invariants
from support.doubles import INGRESS, Blocking, Echo, event
from support.timing import HANG

import plugin_service._context as _context
import plugin_service._future as _future
from plugin_service import DiagnosticKind, IterableSource, PluginHost, ServiceConfig, errors

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    # Forking a multi-threaded process is exactly what these tests are about.
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded"
                               ":DeprecationWarning"),
]

#: How long the parent waits for a child's report: catches a hang only.
CHILD_BOUND = 20.0


def _report_error(exc: BaseException) -> Dict[str, Any]:
    return {"raised": type(exc).__name__, "message": str(exc),
            "kind": getattr(getattr(exc, "kind", None), "value", None),
            "created_pid": getattr(exc, "created_pid", None),
            "pid": getattr(exc, "pid", None)}


def attempt(call: Callable[[], Any]) -> Dict[str, Any]:
    """What ``call()`` did, as JSON-able data: what it raised, or that it returned."""
    try:
        call()
    except BaseException as exc:
        return _report_error(exc)
    return {"returned": True}


def in_child(body: Callable[[], Any]) -> Any:
    """Run ``body()`` in an ``os.fork()`` child; return what it returned (JSON)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read_end)
            try:
                data = json.dumps({"result": body(), "pid": os.getpid()})
            except BaseException as exc:
                data = json.dumps({"crashed": _report_error(exc)})
            os.write(write_end, data.encode("utf-8"))
        finally:
            os._exit(0)
    os.close(write_end)
    chunks: List[bytes] = []
    try:
        with os.fdopen(read_end, "rb") as reader:
            while True:
                ready, _, _ = select.select([reader], [], [], CHILD_BOUND)
                assert ready, "the forked child did not report within %ss" % CHILD_BOUND
                chunk = reader.read1(65536)
                if not chunk:
                    break
                chunks.append(chunk)
    finally:
        if os.waitpid(pid, os.WNOHANG) == (0, 0):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    report = json.loads(b"".join(chunks).decode("utf-8"))
    assert "crashed" not in report, report
    assert report["pid"] != os.getpid()
    return report["result"]


@pytest.fixture
def started(host):
    """The ``host`` fixture with an Echo service ``svc`` and a tool ``echo``, started."""
    host.add_service("svc", Echo(), ServiceConfig(queue_size=8))
    host.add_tool("echo", lambda request, ctx: request)
    host.start_all(timeout=HANG)
    assert host.submit("svc", event(0)).result(timeout=HANG) == 0
    return host


# ------------------------------------------------------------ the child refuses
def test_every_call_on_an_inherited_host_raises_host_forked(started):
    handle = started.service("svc")

    def child() -> Dict[str, Any]:
        return {
            "host.submit": attempt(lambda: started.submit("svc", event(1))),
            "host.submit(unknown)": attempt(lambda: started.submit("nope", event(1))),
            "handle.submit": attempt(lambda: handle.submit(event(1))),
            "host.service": attempt(lambda: started.service("svc")),
            "host.services": attempt(started.services),
            "host.add_service": attempt(lambda: started.add_service("new", Echo())),
            "host.start_all": attempt(started.start_all),
            "host.add_tool": attempt(lambda: started.add_tool("t", lambda r, c: r)),
            "host.submit_tool": attempt(lambda: started.submit_tool("echo", 1)),
            "host.call_tool": attempt(lambda: started.call_tool("echo", 1)),
            "host.load_entry_points": attempt(started.load_entry_points),
            "host.dead_letters": attempt(started.dead_letters),
            "host.__enter__": attempt(started.__enter__),
            "handle.start": attempt(handle.start),
            "handle.stop": attempt(handle.stop),
            "handle.restart": attempt(handle.restart),
            "handle.wait_for": attempt(lambda: handle.wait_for("running", timeout=0)),
            "host.add_listener": attempt(lambda: started.add_listener(print)),
            "host.remove_listener": attempt(lambda: started.remove_listener(print)),
            "handle.add_listener": attempt(lambda: handle.add_listener(print)),
            "handle.remove_listener": attempt(lambda: handle.remove_listener(print)),
        }

    seen = in_child(child)
    for call, what in seen.items():
        assert what.get("raised") == "HostForked", (call, what)
        assert what["kind"] == "host_forked", (call, what)
        assert what["created_pid"] == os.getpid(), (call, what)
        assert what["pid"] not in (None, os.getpid()), (call, what)


def test_host_forked_says_what_to_do(started):
    seen = in_child(lambda: attempt(lambda: started.submit("svc", event(1))))
    message = seen["message"]
    assert "process %d" % os.getpid() in message
    assert "after the fork" in message and "post_fork" in message


def test_host_forked_is_a_typed_runtime_error():
    error = errors.HostForked(created_pid=1, pid=2, service="svc")
    assert isinstance(error, errors.PluginServiceError)
    assert isinstance(error, RuntimeError)
    assert error.kind is DiagnosticKind.HOST_FORKED
    assert (error.created_pid, error.pid, error.service) == (1, 2, "svc")
    assert "HostForked" in errors.__all__


def test_inherited_status_says_host_forked_and_counts_nothing(started, gates):
    plugin = Blocking(gates.new())
    blocked = started.add_service("blocked", plugin, ServiceConfig(queue_size=4))
    blocked.start(timeout=HANG)
    futures = [blocked.submit(event(i)) for i in range(3)]
    plugin.entered()  # one in flight, two queued in the parent at the fork

    def child() -> Dict[str, Any]:
        return {"status": started.status().to_dict(),
                "service_status": blocked.status().to_dict(),
                "state": blocked.state.value}

    seen = in_child(child)
    plugin.gate.set()
    assert [f.result(timeout=HANG) for f in futures] == [0, 1, 2]

    status = seen["status"]
    assert status["forked"] is True
    assert seen["state"] == "failed"
    assert seen["service_status"] == status["services"]["blocked"]
    assert set(status["services"]) == {"svc", "blocked"}
    for name, service in status["services"].items():
        assert service["state"] == "failed", name
        for field in ("failure", "last_error"):
            assert service[field]["kind"] == "host_forked", (name, field)
            assert "post_fork" in service[field]["message"]
        assert set(service["counters"].values()) == {0}, name
        assert (service["queue_depth"], service["in_flight"]) == (0, 0), name
    tool = status["tools"]["echo"]
    assert tool["last_error"]["kind"] == "host_forked"
    assert tool["in_flight"] == 0 and set(tool["counters"].values()) == {0}
    # The parent's own view is untouched.
    assert started.status().forked is False
    assert started.service("blocked").status().state.value == "running"


def test_inherited_service_status_keeps_the_counter_invariants(started):
    def child() -> Dict[str, Any]:
        for service in started.status().services.values():
            assert_invariants(service)  # an AssertionError is reported as a crash
        return {"ok": True}

    assert in_child(child) == {"ok": True}


def test_a_future_inherited_from_the_parent_raises_instead_of_hanging(started, gates):
    gate = gates.new()
    blocked = started.add_service("blocked", Blocking(gate), ServiceConfig(queue_size=4))
    blocked.start(timeout=HANG)
    future = blocked.submit(event("parent's"))

    def child() -> Dict[str, Any]:
        return {"result": attempt(lambda: future.result(timeout=HANG)),
                "exception": attempt(lambda: future.exception(timeout=HANG)),
                "cancel": attempt(future.cancel)}

    seen = in_child(child)
    gate.set()
    assert future.result(timeout=HANG) == "parent's"
    for call, what in seen.items():
        assert what.get("raised") == "HostForked", (call, what)


def test_close_in_the_child_is_a_quiet_no_op(started):
    def child() -> Dict[str, Any]:
        closed = attempt(lambda: started.close(timeout=HANG))
        with_block = attempt(lambda: started.__exit__(None, None, None))
        return {"close": closed, "exit": with_block,
                "after": attempt(lambda: started.submit("svc", event(1)))}

    seen = in_child(child)
    assert seen["close"] == {"returned": True}
    assert seen["exit"] == {"returned": True}
    assert seen["after"]["raised"] == "HostForked"  # still forked, not "closed"
    assert started.submit("svc", event(2)).result(timeout=HANG) == 2


# ------------------------------------------------------------- the parent is fine
def test_the_parents_queued_events_run_once_in_the_parent_only(host, gates, tmp_path):
    ledger = tmp_path / "handled"
    gate = gates.new()
    entered = threading.Event()

    class Appending(Echo):
        """Appends ``<pid> <correlation id>`` per handled event (O_APPEND)."""

        def behave(self, ev, ctx):
            entered.set()
            gate.wait(HANG)
            fd = os.open(ledger, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, ("%d %s\n" % (os.getpid(), ev.correlation_id)).encode())
            finally:
                os.close(fd)
            return ev.payload

    host.add_service("svc", Appending(), ServiceConfig(queue_size=8))
    host.start_all(timeout=HANG)
    futures = [host.submit("svc", event(i)) for i in range(5)]
    assert entered.wait(HANG)  # one in flight, four queued at the fork

    def child() -> Dict[str, Any]:
        # What a careless child might do with the inherited host.
        return {"submit": attempt(lambda: host.submit("svc", event("child"))),
                "start_all": attempt(host.start_all),
                "close": attempt(lambda: host.close(timeout=HANG))}

    seen = in_child(child)
    assert seen["submit"]["raised"] == "HostForked"
    gate.set()
    assert [f.result(timeout=HANG) for f in futures] == list(range(5))
    after = host.submit("svc", event(5))
    assert after.result(timeout=HANG) == 5
    lines = [line.split() for line in ledger.read_text().splitlines()]
    assert {pid for pid, _ in lines} == {str(os.getpid())}
    handled = [cid for _, cid in lines]
    assert sorted(handled) == sorted(f.event.correlation_id for f in futures + [after])
    status = host.status()
    assert status.forked is False
    assert status.services["svc"].counters.succeeded == 6


# ------------------------------------------------------------ multiprocessing
def _submit_in_process(host: PluginHost, conn: Any) -> None:
    """A ``multiprocessing`` target: use the inherited host, report what happened."""
    conn.send({"submit": attempt(lambda: host.submit("svc", event(1))),
               "status": host.status().services["svc"].failure is not None})
    conn.close()


def test_multiprocessing_fork_child_gets_host_forked(started):
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_submit_in_process, args=(started, sender))
    process.start()
    try:
        assert receiver.poll(CHILD_BOUND), "the child did not report"
        seen = receiver.recv()
    finally:
        process.join(CHILD_BOUND)
        if process.is_alive():
            process.kill()
            process.join()
    assert seen["submit"]["raised"] == "HostForked"
    assert seen["status"] is True
    assert started.submit("svc", event(2)).result(timeout=HANG) == 2


# ------------------------------------------------------- a new host in the child
def test_a_host_made_after_the_fork_works_though_a_parent_thread_held_module_locks():
    # A thread of the parent may hold a module-level lock at the moment of the
    # fork; in the child nobody would ever release it. Held here by the forking
    # thread itself, which is the same thing for the child.
    with _future._condition_made, _context._event_lock:
        def child() -> Any:
            class Waiting(Echo):
                def behave(self, ev, ctx):
                    ctx.wait(0)  # makes the context's event, under _event_lock
                    return ev.payload

            with PluginHost() as fresh:
                fresh.add_service("svc", Waiting())
                fresh.start_all(timeout=HANG)
                future = fresh.submit("svc", event("child"))
                future.add_done_callback(lambda f: None)  # makes its condition
                return future.result(timeout=HANG)

        assert in_child(child) == "child"


def test_an_inherited_tool_future_and_callbacks_raise_instead_of_hanging(started, gates):
    gate = gates.new()
    started.add_tool("held", lambda request, ctx: gate.wait(HANG) and request)
    tool_future = started.submit_tool("held", "parent's")
    blocked = started.add_service("blocked", Blocking(gate), ServiceConfig(queue_size=4))
    blocked.start(timeout=HANG)
    event_future = blocked.submit(event("parent's"))

    def child() -> Dict[str, Any]:
        return {"tool result": attempt(lambda: tool_future.result(timeout=HANG)),
                "tool exception": attempt(lambda: tool_future.exception(timeout=HANG)),
                "tool cancel": attempt(tool_future.cancel),
                "tool callback": attempt(lambda: tool_future.add_done_callback(print)),
                "event callback": attempt(lambda: event_future.add_done_callback(print))}

    seen = in_child(child)
    gate.set()
    assert tool_future.result(timeout=HANG) == "parent's"
    assert event_future.result(timeout=HANG) == "parent's"
    for call, what in seen.items():
        assert what.get("raised") == "HostForked", (call, what)


# ------------------------------------------------------------------ sources
def test_an_inherited_source_refuses_every_call_and_reports_failed(started):
    handle = started.add_source("numbers", IterableSource([1]), service="svc",
                                ingress=INGRESS)

    def child() -> Dict[str, Any]:
        return {
            "calls": {
                "host.add_source": attempt(lambda: started.add_source(
                    "more", IterableSource([]), service="svc", ingress=INGRESS)),
                "host.source": attempt(lambda: started.source("numbers")),
                "handle.send": attempt(lambda: handle.send("x")),
                "handle.pause": attempt(handle.pause),
                "handle.resume": attempt(handle.resume),
            },
            "status": handle.status().to_dict(),
            "host": started.status().to_dict()["sources"]["numbers"],
        }

    seen = in_child(child)
    for call, what in seen["calls"].items():
        assert what.get("raised") == "HostForked", (call, what)
    for status in (seen["status"], seen["host"]):
        assert status["state"] == "failed" and status["received"] == 0
        assert status["last_error"]["kind"] == "host_forked"
    assert handle.status().state != "failed"  # the parent's source is unaffected
