"""What kind of plugin an object is: the one classifier behind ``add_service``,
``add_tool``, entry points and the command line, and the words of its refusals."""
from __future__ import annotations

import re

import pytest

from plugin_service import PluginHost, ServicePlugin, ToolPlugin
from plugin_service._kinds import Kind, classify


class Service(ServicePlugin):
    def handle_ingress(self, event, ctx):
        return event


class Hollow(ServicePlugin):
    """A service that forgot handle_ingress."""


class Tool(ToolPlugin):
    made = 0

    def __init__(self):
        type(self).made += 1

    def invoke(self, request, ctx):
        return request


class Silent(ToolPlugin):
    """A tool that forgot invoke."""


class Duck:
    def handle_ingress(self, event, ctx):
        return event


class Plain:
    pass


def function(request, ctx):
    return request


@pytest.fixture
def host():
    with PluginHost(tool_workers=1) as plugin_host:
        yield plugin_host


# ------------------------------------------------------------------ declared


def test_declared_kinds():
    service = Service()
    tool = Tool()

    assert classify(Service) == (Kind.SERVICE_FACTORY, Service)
    assert classify(service) == (Kind.SERVICE_INSTANCE, service)
    assert classify(tool) == (Kind.TOOL, tool)
    assert classify(function) == (Kind.TOOL, function)


def test_declared_tool_class_is_instantiated_once():
    before = Tool.made

    kind, value = classify(Tool)

    assert kind is Kind.TOOL and isinstance(value, Tool)
    assert Tool.made == before + 1


def test_roles_name_the_registry():
    assert [kind.role for kind in Kind] == ["service", "service", "tool"]


def test_declared_refusals():
    with pytest.raises(TypeError, match="^class Plain is neither a ServicePlugin nor a "
                                        "ToolPlugin subclass$"):
        classify(Plain)
    with pytest.raises(TypeError, match="^int object is not a plugin$"):
        classify(42)


# ------------------------------------------------------------------ services


def test_service_kinds():
    service, duck = Service(), Duck()

    assert classify(Service, "service") == (Kind.SERVICE_FACTORY, Service)
    assert classify(Plain, "service") == (Kind.SERVICE_FACTORY, Plain)  # any class
    assert classify(service, "service") == (Kind.SERVICE_INSTANCE, service)
    assert classify(duck, "service") == (Kind.SERVICE_INSTANCE, duck)
    assert classify(function, "service") == (Kind.SERVICE_FACTORY, function)


def test_add_service_refusals_say_what_is_missing(host):
    with pytest.raises(TypeError, match="^Hollow does not implement handle_ingress$"):
        host.add_service("a", Hollow)
    with pytest.raises(TypeError, match="^Hollow does not implement handle_ingress$"):
        host.add_service("b", Hollow())
    with pytest.raises(TypeError, match=re.escape(
            "add_service takes a ServicePlugin, a plugin class or a zero-argument "
            "factory, got 42")):
        host.add_service("c", 42)
    assert host.services() == []


# --------------------------------------------------------------------- tools


def test_tool_kinds():
    tool = Tool()

    assert classify(tool, "tool") == (Kind.TOOL, tool.invoke)
    assert classify(function, "tool") == (Kind.TOOL, function)
    kind, value = classify(Tool, "tool")
    assert kind is Kind.TOOL and isinstance(value.__self__, Tool)


def test_add_tool_refusals_say_what_is_missing(host):
    with pytest.raises(TypeError, match="^Silent does not implement invoke$"):
        host.add_tool("a", Silent)
    with pytest.raises(TypeError, match="^Silent does not implement invoke$"):
        host.add_tool("b", Silent())
    with pytest.raises(TypeError, match=re.escape(
            "a tool is a ToolPlugin or a callable (request, ctx), got 42")):
        host.add_tool("c", 42)
    assert host.status().tools == {}
