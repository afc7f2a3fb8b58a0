"""A plugin's traceback is logged at DEBUG, redacted, as text in the message.

Never as loguru's ``exception``: a sink with ``diagnose=True`` would print every
frame's values and the exception's text unredacted. And it is formatted only
when some sink takes DEBUG records of ours.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any, Callable, List

import pytest
from loguru import logger
from support.doubles import event
from support.timing import HANG

from plugin_service import Ingress, ServicePlugin, errors

#: Where the secrets are: the exception's text, the source line of the raise (both
#: redacted), and a local variable of the raising frame (never read).
SECRETS = ("s3cr3t-in-text", "abc123", "l0cal-s3cr3t")


def raise_with_a_secret() -> None:
    api_key = "l0cal-s3cr3t"  # noqa: F841 - a frame's value, for diagnose=True
    raise ValueError("token=s3cr3t-in-text Authorization: Bearer abc123")


class Secretive(ServicePlugin):
    """Raises the secret from the hooks named in ``raising``."""

    ingresses = [Ingress("in")]

    def __init__(self, *raising: str) -> None:
        self.raising = raising

    def start(self) -> None:
        if "start" in self.raising:
            raise_with_a_secret()

    def handle_ingress(self, event: Any, ctx: Any) -> Any:
        raise_with_a_secret()

    def stop(self) -> None:
        if "stop" in self.raising:
            raise_with_a_secret()

    def on_failure(self, diagnostic: Any) -> None:
        if "on_failure" in self.raising:
            raise_with_a_secret()


class Log:
    """Every record of ours and every line a ``diagnose=True`` sink writes."""

    def __init__(self) -> None:
        self.records: List[Any] = []
        self.lines: List[str] = []
        self._seen = threading.Condition()

    def sink(self, message: Any) -> None:
        with self._seen:
            self.records.append(message.record)
            self.lines.append(str(message))
            self._seen.notify_all()

    def wait_for(self, found: Callable[[Any], bool]) -> Any:
        with self._seen:
            assert self._seen.wait_for(
                lambda: any(found(r) for r in self.records), HANG), self.records
            return next(r for r in self.records if found(r))


@pytest.fixture
def log():
    seen = Log()
    logger.enable("plugin_service")
    sink = logger.add(seen.sink, level="DEBUG", filter="plugin_service", diagnose=True,
                      backtrace=True, format="{level} {message} | {extra}\n{exception}")
    try:
        yield seen
    finally:
        logger.remove(sink)
        logger.disable("plugin_service")


def traceback_of(head: str) -> Callable[[Any], bool]:
    return lambda r: r["level"].name == "DEBUG" and head in r["message"].split("\n")[0]


def assert_redacted_traceback(log: Log, record: Any) -> None:
    message = record["message"]
    assert "Traceback (most recent call last, redacted):" in message
    assert "in raise_with_a_secret" in message  # the raising function's frame
    assert "ValueError: token=***" in message
    assert record["exception"] is None  # nothing for diagnose=True to render
    written = "\n".join(log.lines)
    assert not [secret for secret in SECRETS if secret in written], written


def test_a_handlers_traceback_is_logged_at_debug_redacted(start_service, log):
    handle = start_service("orders", Secretive(), fail_after=None)
    submitted = event(1)
    error = handle.submit(submitted).exception(timeout=HANG)
    assert type(error) is errors.DispatchFailed
    [record] = [r for r in log.records if traceback_of("handler raised ValueError")(r)]
    assert record["message"].startswith("service 'orders': handler raised ValueError: ")
    assert record["extra"] == {"service": "orders",
                               "correlation_id": submitted.correlation_id}
    assert_redacted_traceback(log, record)


def test_a_start_traceback_is_logged_at_debug_redacted(host, log):
    handle = host.add_service("orders", Secretive("start"))
    with pytest.raises(errors.ServiceFailed):
        handle.start(timeout=HANG)
    record = log.wait_for(traceback_of("start() raised ValueError"))
    assert record["extra"]["service"] == "orders"
    assert_redacted_traceback(log, record)


def test_a_stop_traceback_is_logged_at_debug_redacted(start_service, log):
    handle = start_service("orders", Secretive("stop"))
    try:
        handle.stop(timeout=HANG)
    except errors.PluginServiceError:
        pass  # whether stop() reports it is not this test's concern
    record = log.wait_for(traceback_of("stop() raised ValueError"))
    assert_redacted_traceback(log, record)


def test_an_on_failure_traceback_is_logged_at_debug_redacted(start_service, log):
    handle = start_service("orders", Secretive("on_failure"), fail_after=1)
    handle.submit(event(1)).exception(timeout=HANG)
    record = log.wait_for(traceback_of("on_failure() after the failure raised ValueError"))
    assert_redacted_traceback(log, record)


def test_a_tools_traceback_is_logged_at_debug_redacted(host, log):
    host.add_tool("lookup", lambda request, ctx: raise_with_a_secret())
    error = host.submit_tool("lookup", 1).exception(timeout=HANG)
    assert type(error) is errors.ToolFailed
    [record] = [r for r in log.records if traceback_of("tool 'lookup' raised ValueError")(r)]
    assert record["extra"] == {"tool": "lookup"}
    assert_redacted_traceback(log, record)


#: A plugin's exception class may be named anything, newlines included.
Forged = type("X\n2026-01-01 | ERROR | forged", (Exception,), {})


class Forging(ServicePlugin):
    ingresses = [Ingress("in")]

    def handle_ingress(self, event: Any, ctx: Any) -> Any:
        raise Forged("m\nforged")


def test_an_exception_named_like_a_log_line_cannot_start_one(start_service, log):
    handle = start_service("forging", Forging(), fail_after=None)
    handle.submit(event(1)).exception(timeout=HANG)
    assert any(traceback_of("handler raised")(r) for r in log.records)
    for record in log.records:
        first, *more = record["message"].split("\n")
        assert all(line.startswith("  ") for line in more), record["message"]
    assert not [line for text in log.lines for line in text.split("\n")
                if line.startswith(("2026", "forged"))]


_NO_DEBUG_SINK = """
from loguru import logger
logger.remove()
logger.add(lambda m: None, level=LEVEL)
logger.enable("plugin_service")
import plugin_service._logs as logs
from plugin_service import Ingress, IngressEvent, PluginHost, ServiceConfig, ServicePlugin
formatted = []
real = logs.traceback_text
logs.traceback_text = lambda exc, *more: formatted.append(exc) or real(exc, *more)

class AlwaysRaises(ServicePlugin):
    ingresses = [Ingress("in")]
    def handle_ingress(self, event, ctx):
        raise ValueError("boom")

with PluginHost() as host:
    handle = host.add_service("svc", AlwaysRaises(), ServiceConfig(fail_after=None))
    handle.start(timeout=5)
    for _ in range(3):
        handle.submit(IngressEvent("in", "t")).exception(timeout=5)
print(len(formatted))
"""


@pytest.mark.parametrize(("level", "formatted"), [("INFO", "0"), ("DEBUG", "3")])
def test_a_traceback_is_formatted_only_when_a_sink_takes_debug(level, formatted):
    script = textwrap.dedent(_NO_DEBUG_SINK).replace("LEVEL", repr(level))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=30, cwd=str(Path(__file__).resolve().parents[1]))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [formatted]
