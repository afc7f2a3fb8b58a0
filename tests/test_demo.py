"""The README's main command, ``python -m plugin_service`` (issue 4).

The contract: a demo host loads one example service plugin and one example tool
plugin shipped inside the package, feeds it events, calls the tool and prints the
final status diagnostics. The demo runs twice, side by side, once per module: as
is, for its exit code and output, and under a spy that records the host's tool
calls and its status once closed, so the behaviour is checked whatever the
output's layout.
"""
from __future__ import annotations

import configparser
import json
import pathlib
import re
import subprocess
import sys
from importlib.metadata import EntryPoint

import pytest

from plugin_service import ServicePlugin, ToolPlugin

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES_GROUP = "plugin_service.examples"
#: Only catches a hang: the demo runs for a few seconds.
DEMO_BOUND = 60
SPY_MARK = "DEMO-SPY:"

SPY = '''\
import json, runpy, sys
import plugin_service

Host = plugin_service.PluginHost
record = {"tool_calls": [], "final": None}
submit_tool, close = Host.submit_tool, Host.close


def spy_submit_tool(self, name, request, **kwargs):
    future = submit_tool(self, name, request, **kwargs)
    record["tool_calls"].append(name)
    return future


def spy_close(self, *args, **kwargs):
    close(self, *args, **kwargs)
    if record["final"] is None:
        record["final"] = self.status().to_dict()


Host.submit_tool, Host.close = spy_submit_tool, spy_close
try:
    runpy.run_module("plugin_service", run_name="__main__", alter_sys=True)
finally:
    sys.stderr.write("\\nMARK" + json.dumps(record) + "\\n")
'''.replace("MARK", SPY_MARK)


def example_entry_points():
    """The example plugins the package declares (setup.cfg), by entry point name."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = config["options.entry_points"][EXAMPLES_GROUP].strip().splitlines()
    entries = {}
    for line in lines:
        name, value = (part.strip() for part in line.split("=", 1))
        entries[name] = EntryPoint(name, value, EXAMPLES_GROUP)
    return entries


def example_name(base):
    (name,) = [name for name, entry in example_entry_points().items()
               if issubclass(entry.load(), base)]
    return name


@pytest.fixture(scope="module")
def runs():
    """``(plain, spied)``: the completed ``python -m plugin_service`` runs."""
    commands = [[sys.executable, "-m", "plugin_service"], [sys.executable, "-c", SPY]]
    processes = [subprocess.Popen(command, cwd=str(ROOT), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
                 for command in commands]
    results = []
    try:
        for process in processes:
            out, err = process.communicate(timeout=DEMO_BOUND)
            results.append((process.returncode, out, err))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return results


@pytest.fixture(scope="module")
def plain(runs):
    return runs[0]


@pytest.fixture(scope="module")
def spied(runs):
    """What the spy recorded: ``{"tool_calls": [...], "final": HostStatus dict}``."""
    returncode, out, err = runs[1]
    assert returncode == 0, err
    (line,) = [line for line in err.splitlines() if line.startswith(SPY_MARK)]
    return json.loads(line[len(SPY_MARK):])


def test_package_ships_one_example_service_and_one_example_tool():
    loaded = {name: entry.load() for name, entry in example_entry_points().items()}

    assert all(entry.module.startswith("plugin_service.")
               for entry in example_entry_points().values())
    assert len([p for p in loaded.values() if issubclass(p, ServicePlugin)]) == 1
    assert len([p for p in loaded.values() if issubclass(p, ToolPlugin)]) == 1


def test_main_command_exits_zero(plain):
    returncode, out, err = plain

    assert returncode == 0, err
    assert "Traceback" not in err


def test_main_command_hosts_exactly_the_example_service_and_tool(spied):
    assert list(spied["final"]["services"]) == [example_name(ServicePlugin)]
    assert list(spied["final"]["tools"]) == [example_name(ToolPlugin)]


def test_main_command_feeds_events_to_the_service(spied):
    counters = spied["final"]["services"][example_name(ServicePlugin)]["counters"]

    assert counters["enqueued"] >= 1
    assert counters["succeeded"] >= 1


def test_main_command_calls_the_tool(spied):
    tool = example_name(ToolPlugin)

    assert tool in spied["tool_calls"]
    assert spied["final"]["tools"][tool]["counters"]["succeeded"] >= 1


def test_main_command_closes_its_host(spied):
    service = spied["final"]["services"][example_name(ServicePlugin)]

    assert service["state"] == "stopped"
    assert service["in_flight"] == 0


def test_main_command_prints_the_final_status_of_service_and_tool(plain):
    returncode, out, err = plain
    service, tool = example_name(ServicePlugin), example_name(ToolPlugin)

    assert service in out
    assert tool in out
    assert re.search(r"\bstopped\b", out)  # the service's state once the host closed
