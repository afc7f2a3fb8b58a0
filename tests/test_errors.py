"""The typed errors: one hierarchy, each with its DiagnosticKind and its data."""
from __future__ import annotations

import concurrent.futures
import copy
import inspect
import pickle
import queue
import re
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

import pytest
from support.doubles import Blocking, Cooperative, event
from support.timing import HANG, SHORT

from plugin_service import DiagnosticKind, LifecycleState, errors

README = Path(__file__).resolve().parent.parent / "README.rst"

KINDS = [
    (errors.QueueFull, DiagnosticKind.QUEUE_FULL),
    (errors.InvalidEvent, DiagnosticKind.INVALID_EVENT),
    (errors.ServiceUnavailable, DiagnosticKind.SERVICE_UNAVAILABLE),
    (errors.ServiceStopped, DiagnosticKind.SERVICE_STOPPED),
    (errors.ServiceFailed, DiagnosticKind.SERVICE_FAILED),
    (errors.DispatchTimeout, DiagnosticKind.DISPATCH_TIMEOUT),
    (errors.DispatchFailed, DiagnosticKind.DISPATCH_FAILED),
    (errors.LifecycleError, DiagnosticKind.LIFECYCLE),
    (errors.ServiceNotFound, DiagnosticKind.SERVICE_NOT_FOUND),
]


@pytest.mark.parametrize(("error", "kind"), KINDS, ids=[e.__name__ for e, _ in KINDS])
def test_every_error_is_a_plugin_service_error_with_its_kind(error, kind):
    assert issubclass(error, errors.PluginServiceError)
    assert error.kind is kind


@pytest.mark.parametrize("error", [errors.DispatchTimeout, errors.DispatchFailed])
def test_dispatch_outcomes_share_dispatch_error(error):
    assert issubclass(error, errors.DispatchError)


def test_errors_carry_their_data():
    assert errors.QueueFull(8, service="s").capacity == 8
    assert errors.InvalidEvent("blank source", service="s").reason == "blank source"
    assert errors.DispatchTimeout("late", service="s", timeout=0.5).timeout == 0.5
    for error in (errors.ServiceUnavailable, errors.ServiceStopped, errors.ServiceFailed):
        assert error("x", service="s", state=LifecycleState.STOPPED).state is LifecycleState.STOPPED


@pytest.mark.parametrize(("enum", "member", "value"), [
    (LifecycleState, "RUNNING", "running"),
    (LifecycleState, "STOPPING", "stopping"),
    (DiagnosticKind, "QUEUE_FULL", "queue_full"),
    (DiagnosticKind, "SERVICE_NOT_FOUND", "service_not_found"),
])
def test_enum_values_are_lower_case_names(enum, member, value):
    assert enum[member].value == value


def test_lifecycle_states_are_the_six_of_the_contract():
    assert [s.name for s in LifecycleState] == [
        "READY", "STARTING", "RUNNING", "STOPPING", "STOPPED", "FAILED"]


# ------------------------------------------- the standard library's exceptions too
def test_except_timeout_error_catches_a_handler_timeout_from_result(start_service):
    handle = start_service("svc", Cooperative(), dispatch_timeout=SHORT, fail_after=None)
    future = handle.submit(event(1))
    with pytest.raises(TimeoutError) as raised:  # the wait's timeout, or the handler's
        future.result(timeout=HANG)
    assert type(raised.value) is errors.DispatchTimeout  # not the wait running out
    assert raised.value.timeout == SHORT


def test_except_futures_timeout_error_catches_a_handler_timeout_on_every_python(
        start_service):
    # What a wait raises: TimeoutError itself since 3.11, a class of its own before.
    handle = start_service("svc", Cooperative(), dispatch_timeout=SHORT, fail_after=None)
    with pytest.raises(concurrent.futures.TimeoutError) as raised:
        handle.submit(event(1)).result(timeout=HANG)
    assert type(raised.value) is errors.DispatchTimeout


def test_a_tool_timeout_is_a_timeout_error(make_host, make_gate):
    host = make_host()
    host.add_tool("gate", make_gate())
    with pytest.raises(TimeoutError) as raised:
        host.call_tool("gate", 1, timeout=SHORT)
    assert type(raised.value) is errors.ToolTimeout
    with pytest.raises(concurrent.futures.TimeoutError) as waited:
        host.submit_tool("gate", 2, timeout=SHORT).result(timeout=HANG)
    assert type(waited.value) is errors.ToolTimeout


def test_except_queue_full_catches_queue_full_from_submit(start_service, gates):
    plugin = Blocking(gates.new())
    handle = start_service("svc", plugin, queue_size=1)
    handle.submit(event("in flight"))
    plugin.entered()
    handle.submit(event("queued"))
    with pytest.raises(queue.Full) as raised:  # as from queue.Queue.put_nowait
        handle.submit(event("one too many"))
    assert type(raised.value) is errors.QueueFull and raised.value.capacity == 1
    with pytest.raises(queue.Full):  # as from queue.Queue.put(timeout=...)
        handle.submit(event("still too many"), block=True, timeout=SHORT)


@pytest.mark.parametrize("error", [errors.DispatchTimeout, errors.ToolTimeout])
def test_timeouts_keep_their_message_args_and_data(error):
    # A TimeoutError is an OSError, whose constructor reads errno/strerror from its
    # arguments and which pickles through its own __reduce__: none of that shows.
    made = error("late by 0.1 s", service="s", timeout=0.5)
    assert (str(made), made.args, repr(made)) == (
        "late by 0.1 s", ("late by 0.1 s",), "%s('late by 0.1 s')" % error.__name__)
    assert (made.service, made.timeout, made.errno, made.strerror) == ("s", 0.5, None, None)
    assert isinstance(made, errors.PluginServiceError) and made.kind is error.kind
    assert (str(error()), error().args) == ("", ("",))
    for again in (pickle.loads(pickle.dumps(made)), copy.copy(made), copy.deepcopy(made)):
        assert type(again) is error
        assert (str(again), again.args, again.service, again.timeout) == (
            str(made), made.args, "s", 0.5)


# ----------------------------------------------------- the tree in the README
_TREE_LINE = re.compile(r"^(?P<indent>[ │├└─]*)(?P<name>[A-Za-z_.]+)"
                        r"(?:\s+(?P<data>[a-z_, ]+?))?(?:\s+\[(?P<also>[^\]]+)\])?\s*$")


def _readme_tree() -> Dict[str, Tuple[Optional[str], Set[str], Set[str]]]:
    """README's error tree: name -> (parent, data attributes, also-bases)."""
    text = README.read_text()
    section = text[text.index("\nErrors\n======\n"):]
    block = section[section.index("::\n\n") + 3:]
    lines = []
    for line in block.splitlines():
        if line and not line.startswith("    "):
            break  # the literal block ends at the first line not indented
        if line:
            lines.append(line[4:])
    tree: Dict[str, Tuple[Optional[str], Set[str], Set[str]]] = {}
    parents: List[str] = []
    for line in lines:
        match = _TREE_LINE.match(line)
        assert match, "not a line of the tree: %r" % line
        depth = len(match["indent"]) // 4
        del parents[depth:]
        data = {d.strip() for d in (match["data"] or "").split(",") if d.strip()}
        also = {a.strip() for a in (match["also"] or "").split(",") if a.strip()}
        tree[match["name"]] = (parents[-1] if parents else None, data, also)
        parents.append(match["name"])
    return tree


def _named(base: type) -> str:
    if base.__module__ in ("builtins", errors.__name__):
        return base.__qualname__
    return "%s.%s" % (base.__module__, base.__qualname__)


def _public_bases(cls: type) -> List[type]:
    """``cls``'s bases with the module's private classes replaced by theirs."""
    bases: List[type] = []
    for base in cls.__bases__:
        if base.__module__ == errors.__name__ and base.__name__.startswith("_"):
            bases.extend(_public_bases(base))
        else:
            bases.append(base)
    return bases


def test_readme_error_tree_names_every_error_once():
    tree = _readme_tree()
    assert set(tree) == set(errors.__all__) | {"Exception"}
    assert tree["Exception"][0] is None


@pytest.mark.parametrize("name", errors.__all__)
def test_readme_error_tree_is_the_class_hierarchy(name):
    parent, data, also = _readme_tree()[name]
    cls = getattr(errors, name)
    first, *others = _public_bases(cls)
    assert _named(first) == parent
    # Before 3.11 the timeouts are concurrent.futures.TimeoutError too, a class of
    # its own there: the README says so below the tree (tested above, in behaviour).
    if concurrent.futures.TimeoutError is not TimeoutError:
        others = [b for b in others if b is not concurrent.futures.TimeoutError]
    assert {_named(b) for b in others} == also
    assert all(issubclass(cls, b) for b in others)


def _assigned(cls: type) -> Set[str]:
    """The attributes the errors module's classes in ``cls``'s MRO assign."""
    names: Set[str] = set()
    for klass in cls.__mro__:
        if klass.__module__ == errors.__name__:
            names |= set(re.findall(r"self\.(\w+) = ", inspect.getsource(klass)))
    return names


@pytest.mark.parametrize("name", errors.__all__)
def test_readme_error_tree_names_the_data_each_error_carries(name):
    tree = _readme_tree()
    listed, line = set(), name
    while line is not None:  # its own data and what it inherits
        listed |= tree[line][1]
        line = tree[line][0]
    cls = getattr(errors, name)
    taken = set(inspect.signature(cls.__init__).parameters) - {"self", "message"}
    assert taken <= listed, "%s takes %s" % (name, sorted(taken))
    assert listed - {"kind"} <= _assigned(cls), "%s sets %s" % (name, sorted(_assigned(cls)))
