"""The numbers a caller configures: every option's refusal, word for word.

All of them go through one pair of checks (``plugin_service._checks``); each
option keeps its own words. Only the public API is used here.
"""
from __future__ import annotations

import math
import re

import pytest

from plugin_service import PluginHost, RestartPolicy, RetryPolicy, ServiceConfig
from plugin_service.integrations.gunicorn import WorkerHost


@pytest.fixture
def host():
    with PluginHost(tool_workers=1) as plugin_host:
        yield plugin_host


def refused(message):
    return pytest.raises(ValueError, match="^%s$" % re.escape(message))


# ------------------------------------------------------------- configuration


@pytest.mark.parametrize("build, message", [
    (lambda: ServiceConfig(queue_size=0), "queue_size must be an int >= 1, got 0"),
    (lambda: ServiceConfig(queue_size=True), "queue_size must be an int >= 1, got True"),
    (lambda: ServiceConfig(queue_size=2.0), "queue_size must be an int >= 1, got 2.0"),
    (lambda: ServiceConfig(fail_after=0), "fail_after must be an int >= 1, got 0"),
    (lambda: ServiceConfig(dispatch_timeout=-1),
     "dispatch_timeout must be >= 0 or None, got -1"),
    (lambda: ServiceConfig(cancel_grace=False), "cancel_grace must be >= 0 or None, got False"),
    (lambda: RetryPolicy(max_attempts=0), "max_attempts must be an int >= 1, got 0"),
    (lambda: RetryPolicy(backoff=-0.5), "backoff must be >= 0 or None, got -0.5"),
    (lambda: RestartPolicy(max_restarts=-3), "max_restarts must be an int >= 1, got -3"),
    (lambda: RestartPolicy(window=-1.0), "window must be >= 0 or None, got -1.0"),
])
def test_configuration_refusals(build, message):
    with refused(message):
        build()


def test_configuration_accepts_none_where_it_disables_a_bound():
    config = ServiceConfig(fail_after=None, dispatch_timeout=None, cancel_grace=None)

    assert (config.fail_after, config.dispatch_timeout, config.cancel_grace) == (
        None, None, None)
    assert RestartPolicy(window=None).window is None


def test_configuration_seconds_are_only_compared_with_zero():
    # Not type-checked: what cannot be compared raises the comparison's TypeError,
    # and NaN, which compares with nothing, passes.
    with pytest.raises(TypeError):
        ServiceConfig(stop_timeout="5")
    assert math.isnan(ServiceConfig(stop_timeout=math.nan).stop_timeout)


def test_queue_size_has_no_none():
    with refused("queue_size must be an int >= 1, got None"):
        ServiceConfig(queue_size=None)


# ---------------------------------------------------------------- the host


@pytest.mark.parametrize("workers", [0, -1, True, 2.0, None, "4"])
def test_tool_workers_refusals(workers):
    with refused("tool_workers must be an int >= 1, got %r" % (workers,)):
        PluginHost(tool_workers=workers)


@pytest.mark.parametrize("grace", [-1, True, "5", math.nan])
def test_tool_cancel_grace_refusals(grace):
    with refused("tool_cancel_grace must be a number of seconds >= 0 or None, got %r"
                 % (grace,)):
        PluginHost(tool_cancel_grace=grace)


@pytest.mark.parametrize("limit", [0, -2, True, 1.5, "3"])
def test_max_concurrency_refusals(host, limit):
    with refused("max_concurrency must be an int >= 1 or None, got %r" % (limit,)):
        host.add_tool("t", lambda request, ctx: request, max_concurrency=limit)


@pytest.mark.parametrize("timeout", [-1, -0.1, True])
def test_tool_timeout_refusals(host, timeout):
    with refused("timeout must be >= 0 or None, got %r" % (timeout,)):
        host.add_tool("t", lambda request, ctx: request, timeout=timeout)
    host.add_tool("ok", lambda request, ctx: request)
    with refused("timeout must be >= 0 or None, got %r" % (timeout,)):
        host.submit_tool("ok", 1, timeout=timeout)


# ------------------------------------------------------------------ gunicorn


@pytest.mark.parametrize("margin", [-1, -0.5, True, None, "1"])
def test_worker_host_margin_refusals(margin):
    with refused("margin must be a number of seconds >= 0, got %r" % (margin,)):
        WorkerHost(PluginHost, margin=margin)


def test_worker_host_margin_is_kept_as_a_float():
    assert WorkerHost(PluginHost, margin=2)._margin == 2.0
