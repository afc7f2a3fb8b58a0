"""The bridge into the standard ``logging`` module: ``log_to_stdlib`` and the
README's recipe, run as written (read from README.rst, so the two cannot drift)."""
from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Iterator, List

import pytest
from loguru import logger
from support.doubles import Raising, Scripted, event
from support.readme import readme_block
from support.timing import HANG

import plugin_service

REPO = Path(__file__).resolve().parents[1]


def readme_recipe() -> str:
    """The code block under the README's "Into the standard ``logging`` module"."""
    return readme_block("Into the standard ``logging`` module\n", "::\n\n")


def test_the_readme_recipe_routes_records_into_logging() -> None:
    recipe = readme_recipe()
    assert "plugin_service.log_to_stdlib()" in recipe
    script = recipe + textwrap.dedent("""

        import json
        from plugin_service import Ingress, IngressEvent, PluginHost, ServicePlugin

        seen = []
        class Keep(logging.Handler):
            def emit(self, record):
                seen.append({"name": record.name, "level": record.levelname,
                             "message": record.getMessage(), "exc_info": record.exc_info,
                             "service": getattr(record, "service", None),
                             "funcName": record.funcName})
        logging.getLogger().addHandler(Keep())

        class AlwaysRaises(ServicePlugin):
            ingresses = [Ingress("in")]
            def handle_ingress(self, event, ctx):
                return raise_it()

        def raise_it():
            raise ValueError("password=hunter2 refused")

        with PluginHost() as host:
            handle = host.add_service("orders", AlwaysRaises())
            handle.start(timeout=5)
            handle.submit(IngressEvent("in", "t")).exception(timeout=5)
        print(json.dumps(seen))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=30, cwd=str(REPO))
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert {r["name"] for r in seen} == {"plugin_service._service"}
    assert all(r["service"] == "orders" and r["exc_info"] is None for r in seen)
    assert all(r["message"].startswith("service 'orders': ") for r in seen)
    levels = {r["level"] for r in seen}
    assert {"DEBUG", "INFO", "WARNING"} <= levels
    [warning] = [r for r in seen if r["level"] == "WARNING"]
    assert "dispatch_failed: handler raised ValueError: password=***" in warning["message"]
    [trace] = [r for r in seen if r["level"] == "DEBUG"]
    assert "Traceback (most recent call last, redacted):" in trace["message"]
    assert "in raise_it" in trace["message"]
    assert "hunter2" not in done.stdout and "hunter2" not in done.stderr
    # logging's own basicConfig handler wrote them; loguru's stderr handler is gone.
    assert "WARNING:plugin_service._service:service 'orders': dispatch_failed" in done.stderr
    assert " | WARNING  | " not in done.stderr, done.stderr


@pytest.fixture
def to_stdlib(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """``log_to_stdlib()`` with ``logging`` at DEBUG for plugin_service; undone after."""
    caplog.set_level(logging.DEBUG, logger="plugin_service")
    handler_id = plugin_service.log_to_stdlib()
    try:
        yield caplog
    finally:
        logger.remove(handler_id)
        logger.disable("plugin_service")


def _ours(records: List[logging.LogRecord]) -> List[logging.LogRecord]:
    return [r for r in records if r.name.startswith("plugin_service")]


def test_levels_names_and_extras_arrive_as_logging_knows_them(start_service, to_stdlib):
    handle = start_service("orders", Raising(), fail_after=None)
    submitted = event(1)
    handle.submit(submitted).exception(timeout=HANG)
    records = _ours(to_stdlib.records)
    assert {r.name for r in records} == {"plugin_service._service"}
    levels = {r.levelno for r in records}
    assert {logging.DEBUG, logging.INFO, logging.WARNING} <= levels
    failed = [r for r in records if r.levelno == logging.WARNING]
    assert [r.correlation_id for r in failed] == [submitted.correlation_id]  # type: ignore[attr-defined]
    assert all(r.service == "orders" for r in records)  # type: ignore[attr-defined]
    assert all(r.getMessage().startswith("service 'orders': ") for r in records)
    assert all(r.exc_info is None for r in records)
    [trace] = [r for r in records if r.levelno == logging.DEBUG]
    assert "Traceback (most recent call last, redacted):" in trace.getMessage()
    assert trace.pathname.endswith("ledger.py")  # where the library logged it
    assert trace.correlation_id == submitted.correlation_id  # type: ignore[attr-defined]


def test_tool_records_arrive_under_the_tools_logger(host, to_stdlib):
    host.add_tool("lookup", lambda request, ctx: {}["missing"])
    host.submit_tool("lookup", 1).exception(timeout=HANG)
    records = [r for r in _ours(to_stdlib.records) if getattr(r, "tool", None) == "lookup"]
    assert {r.name for r in records} == {"plugin_service._tools"}
    assert {r.levelno for r in records} == {logging.DEBUG, logging.WARNING}


def test_the_default_level_is_the_stdlib_loggers_own(start_service, caplog):
    caplog.set_level(logging.WARNING, logger="plugin_service")
    handler_id = plugin_service.log_to_stdlib()
    try:
        handle = start_service("orders", Raising(), fail_after=None)
        handle.submit(event(1)).exception(timeout=HANG)
        handle.stop(timeout=HANG)
    finally:
        logger.remove(handler_id)
        logger.disable("plugin_service")
    assert {r.levelno for r in _ours(caplog.records)} == {logging.WARNING}


def test_records_below_the_stdlib_loggers_level_are_not_handed_over(start_service, caplog):
    caplog.set_level(logging.INFO, logger="plugin_service")
    handler_id = plugin_service.log_to_stdlib(level="DEBUG")
    logging.getLogger("plugin_service._service").setLevel(logging.WARNING)
    try:
        handle = start_service("orders", Scripted())
        handle.stop(timeout=HANG)
    finally:
        logging.getLogger("plugin_service._service").setLevel(logging.NOTSET)
        logger.remove(handler_id)
        logger.disable("plugin_service")
    assert _ours(caplog.records) == []


def test_a_module_the_host_disabled_stays_disabled(start_service, host, caplog):
    caplog.set_level(logging.DEBUG, logger="plugin_service")
    logger.enable("plugin_service")  # (while the package is off, loguru keeps no
    logger.disable("plugin_service._tools")  # choice for a module of it)
    handler_id = plugin_service.log_to_stdlib()
    try:
        host.add_tool("lookup", lambda request, ctx: {}["missing"])
        host.submit_tool("lookup", 1).exception(timeout=HANG)
        start_service("orders", Scripted()).stop(timeout=HANG)
    finally:
        logger.remove(handler_id)
        logger.disable("plugin_service")
    assert {r.name for r in _ours(caplog.records)} == {"plugin_service._service"}


def test_the_library_never_routes_on_its_own() -> None:
    script = textwrap.dedent("""
        import logging
        seen = []
        class Keep(logging.Handler):
            def emit(self, record):
                seen.append(record.name)
        logging.getLogger().addHandler(Keep())
        logging.getLogger().setLevel(logging.DEBUG)
        from plugin_service import PluginHost
        from support.doubles import Raising, event
        with PluginHost() as host:
            handle = host.add_service("orders", Raising())
            handle.start(timeout=5)
            handle.submit(event(1)).exception(timeout=5)
        print([name for name in seen if name.startswith("plugin_service")])
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=30, cwd=str(REPO / "tests"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[]"]
