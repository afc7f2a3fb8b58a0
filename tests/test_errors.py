"""The typed errors: one hierarchy, each with its DiagnosticKind and its data."""
from __future__ import annotations

import pytest

from plugin_service import DiagnosticKind, LifecycleState, errors

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
