"""Plugins found through entry points (issue 4).

Each test builds a small distribution in ``tmp_path`` (a ``.dist-info`` folder with
``METADATA`` and ``entry_points.txt``, plus the module its entry points name) and
puts ``tmp_path`` on ``sys.path``. The module name is unique per test, so no test
sees another's module.
"""
from __future__ import annotations

import sys
import textwrap
import uuid

import pytest
from support.doubles import event
from support.timing import HANG

from plugin_service import DiagnosticKind, LifecycleState, LoadReport, errors

DEFAULT_GROUP = "plugin_service.plugins"

MODULE = '''\
from plugin_service import Ingress, ServicePlugin, ToolPlugin


class LoadedService(ServicePlugin):
    ingresses = [Ingress("in")]

    def handle_ingress(self, event, ctx):
        return ("loaded", event.payload)


class Shout(ToolPlugin):
    instances = 0

    def __init__(self):
        type(self).instances += 1

    def invoke(self, request, ctx):
        return str(request).upper()


class _Adder(ToolPlugin):
    def invoke(self, request, ctx):
        return request + 1


adder = _Adder()


def double(request, ctx):
    return request * 2


not_a_plugin = 42
'''

# Broken entries come first and between the good ones: they must not stop the rest.
ENTRY_POINTS = '''\
missing = no_such_module_{token}:thing
echo = {module}:LoadedService
bogus = {module}:not_a_plugin
shout = {module}:Shout
adder = {module}:adder
double = {module}:double
'''

GOOD = ["echo", "shout", "adder", "double"]
BROKEN = ["missing", "bogus"]


@pytest.fixture
def write_distribution(tmp_path, monkeypatch):
    """``write_distribution(group=..., entries=...)``: ``mydist`` 1.0 declaring
    ``entries`` in ``group``, on ``sys.path``; returns its module's name."""
    modules = []

    def write(group=DEFAULT_GROUP, entries=ENTRY_POINTS):
        token = uuid.uuid4().hex[:12]
        module = "ps_discovery_plugins_%s" % token
        modules.append(module)
        (tmp_path / ("%s.py" % module)).write_text(MODULE)
        info = tmp_path / "mydist-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mydist\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(
            "[%s]\n" % group + textwrap.dedent(entries.format(module=module, token=token)))
        monkeypatch.syspath_prepend(str(tmp_path))
        return module

    yield write
    for module in modules:
        sys.modules.pop(module, None)


@pytest.fixture
def loaded(write_distribution, make_host):
    """``(host, report, module)`` after loading the default group of ``mydist``."""
    module = write_distribution()
    host = make_host()
    report = host.load_entry_points()
    return host, report, module


# ------------------------------------------------------------------ loaded


def test_report_is_a_load_report_naming_every_good_entry_point(loaded):
    host, report, module = loaded

    assert isinstance(report, LoadReport)
    assert sorted(report.loaded) == sorted(GOOD)


def test_service_entry_point_is_registered_ready_under_its_name(loaded):
    host, report, module = loaded

    assert host.service("echo").state is LifecycleState.READY


def test_loaded_service_starts_and_handles_events(loaded):
    host, report, module = loaded
    service = host.service("echo")

    service.start(timeout=HANG)

    assert service.submit(event("hi")).result(timeout=HANG) == ("loaded", "hi")


def test_tool_plugin_subclass_entry_point_becomes_a_tool(loaded):
    host, report, module = loaded

    assert host.call_tool("shout", "hey", timeout=HANG) == "HEY"


def test_tool_plugin_subclass_entry_point_is_instantiated_once(loaded):
    host, report, module = loaded

    host.call_tool("shout", "a", timeout=HANG)
    host.call_tool("shout", "b", timeout=HANG)

    assert sys.modules[module].Shout.instances == 1


def test_tool_plugin_instance_entry_point_becomes_a_tool(loaded):
    host, report, module = loaded

    assert host.call_tool("adder", 41, timeout=HANG) == 42


def test_plain_function_entry_point_becomes_a_tool(loaded):
    host, report, module = loaded

    assert host.call_tool("double", 21, timeout=HANG) == 42


# ------------------------------------------------------------------ broken


def test_report_has_a_plugin_load_error_keyed_by_each_broken_name(loaded):
    host, report, module = loaded

    assert sorted(report.errors) == sorted(BROKEN)
    for name in BROKEN:
        assert isinstance(report.errors[name], errors.PluginLoadError)
        assert report.errors[name].name == name


def test_missing_module_error_names_the_entry_point(loaded):
    host, report, module = loaded

    error = report.errors["missing"]

    assert "missing" in str(error)
    assert error.kind is DiagnosticKind.PLUGIN_LOAD


def test_non_plugin_object_error_names_the_entry_point(loaded):
    host, report, module = loaded

    error = report.errors["bogus"]

    assert "bogus" in str(error)
    assert error.kind is DiagnosticKind.PLUGIN_LOAD


def test_report_repr_names_the_broken_entry_points(loaded):
    host, report, module = loaded

    text = repr(report)

    assert "missing" in text
    assert "bogus" in text


def test_broken_entry_points_are_not_registered(loaded):
    host, report, module = loaded

    with pytest.raises(errors.ToolNotFound):
        host.call_tool("bogus", 1)
    with pytest.raises(errors.ServiceNotFound):
        host.service("missing")
    assert sorted(host.status().tools) == ["adder", "double", "shout"]
    assert sorted(host.status().services) == ["echo"]


def test_missing_attribute_is_reported_and_the_rest_still_load(
        write_distribution, make_host):
    write_distribution(entries='''\
        gone = {module}:does_not_exist
        double = {module}:double
        ''')
    host = make_host()

    report = host.load_entry_points()

    assert list(report.errors) == ["gone"]
    assert list(report.loaded) == ["double"]
    assert host.call_tool("double", 2, timeout=HANG) == 4


# ------------------------------------------------------------------- group


def test_group_argument_loads_only_that_group(write_distribution, make_host):
    group = "ps_test_group_%s" % uuid.uuid4().hex[:12]
    write_distribution(group=group, entries='''\
        double = {module}:double
        ''')
    host = make_host()

    assert list(host.load_entry_points().loaded) == []
    assert list(host.load_entry_points(group).loaded) == ["double"]
    assert host.call_tool("double", 3, timeout=HANG) == 6


def test_broken_entry_point_reasons_describe_the_error(loaded):
    host, report, module = loaded
    token = module.rsplit("_", 1)[-1]

    assert report.errors["missing"].reason == (
        "cannot import no_such_module_%s:thing: ModuleNotFoundError: "
        "No module named 'no_such_module_%s'" % (token, token))
    assert report.errors["bogus"].reason == "TypeError: int object is not a plugin"


# ------------------------------------------------------------------ reload
RELOADED = '''\
from plugin_service import Ingress, ServicePlugin


class ReloadedService(ServicePlugin):
    ingresses = [Ingress("in")]

    def handle_ingress(self, event, ctx):
        return ("reloaded", event.payload)
'''


@pytest.fixture
def reloadable(write_distribution, make_host, tmp_path):
    """``(host, group, rewrite)``: ``echo`` and ``same`` services and a ``shout`` tool
    loaded from a group and started; ``rewrite(echo=...)`` points ``echo``'s entry
    point elsewhere (``"new"``: a class in a module of its own)."""
    group = "ps_test_group_%s" % uuid.uuid4().hex[:12]
    module = write_distribution(group=group, entries='''\
        echo = {module}:LoadedService
        same = {module}:LoadedService
        shout = {module}:Shout
        ''')
    new_module = module + "_v2"
    (tmp_path / ("%s.py" % new_module)).write_text(RELOADED)
    host = make_host()
    assert host.load_entry_points(group).ok
    for name in ("echo", "same"):
        host.service(name).start(timeout=HANG)

    def rewrite(echo):
        target = "%s:ReloadedService" % new_module if echo == "new" else echo
        (tmp_path / "mydist-1.0.dist-info" / "entry_points.txt").write_text(
            "[%s]\necho = %s\nsame = %s:LoadedService\nshout = %s:Shout\n"
            % (group, target, module, module))

    yield host, group, rewrite
    sys.modules.pop(new_module, None)


def test_reload_replaces_the_service_whose_entry_point_resolves_to_a_new_class(reloadable):
    host, group, rewrite = reloadable
    rewrite(echo="new")

    report = host.reload_entry_points(group, timeout=HANG)

    assert report.loaded == ("echo",) and report.ok
    assert host.service("echo").submit(event("hi")).result(timeout=HANG) == ("reloaded", "hi")
    assert host.service("same").submit(event("hi")).result(timeout=HANG) == ("loaded", "hi")
    assert host.service("echo").status().replacements == 1
    assert host.service("same").status().replacements == 0


def test_a_second_reload_without_changes_replaces_nothing(reloadable):
    host, group, rewrite = reloadable
    rewrite(echo="new")
    host.reload_entry_points(group, timeout=HANG)

    assert host.reload_entry_points(group, timeout=HANG).loaded == ()
    assert host.service("echo").status().replacements == 1


def test_reload_reports_an_entry_point_that_no_longer_resolves_and_keeps_the_service(
        reloadable):
    host, group, rewrite = reloadable
    rewrite(echo="no_such_module_%s:Thing" % uuid.uuid4().hex[:12])

    report = host.reload_entry_points(group, timeout=HANG)

    assert report.loaded == () and list(report.errors) == ["echo"]
    assert "ModuleNotFoundError" in report.errors["echo"].reason
    assert host.service("echo").submit(event("hi")).result(timeout=HANG) == ("loaded", "hi")
