"""Logging through loguru: silent until enabled, then bound and redacted."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from loguru import logger
from support.checks import outcome
from support.doubles import Factory, Raising, Scripted, event
from support.states import RUNNING
from support.timing import HANG

from plugin_service import PluginHost, RestartPolicy, ServiceConfig


def _ours(records):
    return [r for r in records if r["name"].startswith("plugin_service")]


@pytest.fixture
def log_records():
    """Records reaching a sink added by the test; logging re-disabled afterwards."""
    records = []
    sink = logger.add(lambda message: records.append(message.record), level=0)
    try:
        yield records
    finally:
        logger.remove(sink)
        logger.disable("plugin_service")


@pytest.fixture
def enabled(log_records):
    logger.enable("plugin_service")
    return log_records


def test_logging_is_disabled_at_import():
    script = textwrap.dedent("""
        from loguru import logger
        records = []
        logger.remove()
        logger.add(lambda m: records.append(m.record), level=0)
        from plugin_service import Ingress, IngressEvent, PluginHost, ServicePlugin

        class AlwaysRaises(ServicePlugin):
            ingresses = [Ingress("in")]
            def handle_ingress(self, event, ctx):
                raise ValueError("boom")

        def run():
            with PluginHost() as host:
                handle = host.add_service("svc", AlwaysRaises())
                handle.start(timeout=5)
                handle.submit(IngressEvent("in", "t")).exception(timeout=5)
            return len([r for r in records if r["name"].startswith("plugin_service")])

        silent = run()
        logger.enable("plugin_service")
        print(silent, run() > 0)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=30, cwd=str(Path(__file__).resolve().parents[1]))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "True"]


def test_disabled_logging_reaches_no_sink(start_service, log_records):
    handle = start_service("svc", Raising())
    outcome(handle.submit(event(1)))
    handle.stop(timeout=HANG)
    assert _ours(log_records) == []


def test_enabled_logging_records_transitions_with_service_bound(start_service, enabled):
    handle = start_service("svc", Scripted())
    handle.stop(timeout=HANG)
    records = _ours(enabled)
    assert records
    assert {r["extra"]["service"] for r in records} == {"svc"}


def test_failure_record_carries_correlation_id(start_service, enabled):
    handle = start_service("svc", Raising())
    submitted = event(1)
    outcome(handle.submit(submitted))
    tagged = [r for r in _ours(enabled)
              if r["extra"].get("correlation_id") == submitted.correlation_id]
    assert tagged  # logged before the future resolved
    assert all(r["extra"]["service"] == "svc" for r in tagged)
    assert any(r["level"].no >= 30 for r in tagged)


def test_every_record_carries_service_and_correlation_id(start_service, enabled):
    handle = start_service("svc", Raising())
    outcome(handle.submit(event(1)))
    records = _ours(enabled)
    assert records
    assert all({"service", "correlation_id"} <= set(r["extra"]) for r in records)


def test_log_messages_are_redacted(start_service, enabled):
    handle = start_service("svc", Raising(lambda e: ValueError(
        "auth failed: Authorization: Bearer abc123 password=hunter2")))
    outcome(handle.submit(event(1)))
    messages = [r["message"] for r in _ours(enabled)]
    assert any("auth failed" in m for m in messages)
    assert not any("abc123" in m or "hunter2" in m for m in messages)


def test_automatic_restart_records_carry_service_and_correlation_id(host, enabled):
    handle = host.add_service("svc", Factory(Scripted), ServiceConfig(
        restart=RestartPolicy(max_restarts=1, backoff=0.0)))
    handle.start(timeout=HANG)
    outcome(handle.submit(event(ValueError("x"))))
    assert handle.wait_for(RUNNING, timeout=HANG)
    records = _ours(enabled)
    missing = [r["message"] for r in records
               if not {"service", "correlation_id"} <= set(r["extra"])]
    assert missing == []


# ------------------------------------------- enabling before the import (issue 17)
_FAILING_EVENT = """
from plugin_service import Ingress, IngressEvent, PluginHost, ServicePlugin

class AlwaysRaises(ServicePlugin):
    ingresses = [Ingress("in")]
    def handle_ingress(self, event, ctx):
        raise ValueError("boom")

def bad_tool(request, ctx):
    raise KeyError("nope")

with PluginHost() as host:
    handle = host.add_service("svc", AlwaysRaises())
    host.add_tool("lookup", bad_tool)
    handle.start(timeout=5)
    handle.submit(IngressEvent("in", "t")).exception(timeout=5)
    host.submit_tool("lookup", 1).exception(timeout=5)
ours = [r for r in records if r["name"].startswith("plugin_service")]
print(sorted({r["name"] for r in ours}))
print(any(r["level"].name == "WARNING" and "dispatch_failed" in r["message"] for r in ours))
"""


def _fresh_interpreter(before_import: str) -> list:
    """Run ``before_import`` (loguru set up, no plugin_service imported yet), then
    import plugin_service and fail one event and one tool call in a fresh
    interpreter; its output lines: the names of our records, any dispatch_failed."""
    script = textwrap.dedent("""
        from loguru import logger
        records = []
        logger.remove()
        logger.add(lambda m: records.append(m.record), level=0)
    """) + textwrap.dedent(before_import) + _FAILING_EVENT
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=30, cwd=str(Path(__file__).resolve().parents[1]))
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_enable_before_import_is_not_undone_by_the_import():
    names, failed = _fresh_interpreter('logger.enable("plugin_service")')
    assert names == "['plugin_service._service', 'plugin_service._tools']"
    assert failed == "True"


def test_enabling_one_module_before_import_keeps_that_choice_only():
    names, failed = _fresh_interpreter('logger.enable("plugin_service._service")')
    assert names == "['plugin_service._service']"  # the tool's records stay off
    assert failed == "True"


def test_disabling_before_import_keeps_it_disabled():
    names, failed = _fresh_interpreter('logger.disable("plugin_service")')
    assert (names, failed) == ("[]", "False")


def test_unreadable_loguru_state_falls_back_to_disabling(monkeypatch, log_records):
    import plugin_service._logs as logs

    logger.enable("plugin_service")
    monkeypatch.setattr(logs, "_choices", lambda name: None)
    logs.disable_unless_chosen("plugin_service")
    with PluginHost() as host:
        host.add_service("svc", Scripted()).start(timeout=HANG)
    assert _ours(log_records) == []


# ----------------------------------------- the name in the message (issue 17)
def test_every_service_record_names_the_service_first(start_service, enabled):
    lines = []
    default_format = logger.add(lines.append, level="WARNING")  # loguru's own format
    try:
        handle = start_service("orders", Raising(), fail_after=None)
        outcome(handle.submit(event(1)))
        handle.stop(timeout=HANG)
    finally:
        logger.remove(default_format)
    records = [r for r in _ours(enabled) if r["extra"].get("service") == "orders"]
    assert {"DEBUG", "INFO", "WARNING"} <= {r["level"].name for r in records}
    wrong = [r["message"] for r in records if not r["message"].startswith("service 'orders': ")]
    assert wrong == []
    assert any("| WARNING" in line and "service 'orders': dispatch_failed: handler raised "
               "ValueError: boom 1" in line for line in lines), lines
    assert all(r["extra"]["service"] == "orders" for r in records)  # extra as before


def test_every_tool_record_names_the_tool(host, enabled):
    host.add_tool("lookup", lambda request, ctx: {}["missing"])
    assert isinstance(host.submit_tool("lookup", 1).exception(timeout=HANG), Exception)
    records = [r for r in _ours(enabled) if r["extra"].get("tool") == "lookup"]
    assert {"DEBUG", "WARNING"} <= {r["level"].name for r in records}
    assert all("tool 'lookup'" in r["message"].split("\n")[0] for r in records)


def _raising_callback(future):
    raise RuntimeError("callback bug")


def test_a_raising_done_callback_is_logged_with_its_service(start_service, enabled):
    handle = start_service("orders", Scripted())
    future = handle.submit(event(1))
    future.result(timeout=HANG)
    future.add_done_callback(_raising_callback)  # done: runs here, at once
    [record] = [r for r in _ours(enabled) if "done-callback" in r["message"]]
    assert record["message"].startswith("service 'orders': done-callback ")
    assert "RuntimeError: callback bug" in record["message"]


def test_a_raising_done_callback_is_logged_with_its_tool(host, enabled):
    host.add_tool("lookup", lambda request, ctx: request)
    future = host.submit_tool("lookup", 1)
    future.result(timeout=HANG)
    future.add_done_callback(_raising_callback)
    [record] = [r for r in _ours(enabled) if "done-callback" in r["message"]]
    assert record["message"].startswith("tool 'lookup': done-callback ")
