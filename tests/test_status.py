"""status(): one consistent, JSON-ready snapshot that never raises or leaks a secret."""
from __future__ import annotations

import datetime as dt
import json

import attrs
import pytest
from support.checks import outcome
from support.doubles import INGRESS, Blocking, Echo, FailingStart, Raising, event
from support.states import FAILED, READY, RUNNING
from support.timing import HANG

from plugin_service import (
    DiagnosticKind,
    HostStatus,
    Ingress,
    ServiceStatus,
    errors,
)

SERVICE_STATUS_FIELDS = {
    "name", "state", "queue_depth", "queue_capacity", "in_flight", "overdue", "last_error",
    "failure", "counters", "diagnostics", "plugin_status", "restarts", "rejections",
    "queue_wait", "handler_time", "restart_backoff", "breaker", "handler_stack",
}
COUNTER_FIELDS = {"enqueued", "dispatched", "succeeded", "failed", "timed_out", "rejected",
                  "dropped", "retried", "expired"}


class WithStatus(Raising):
    def status(self):
        return {"handled": len(self.payloads), "mode": "strict"}


class ExplodingStatus(Echo):
    def status(self):
        raise RuntimeError("status exploded")


@pytest.fixture
def failed_status(start_service):
    handle = start_service("svc", WithStatus(), queue_size=7)
    outcome(handle.submit(event(1)))
    return handle.status()


def test_status_to_dict_survives_json_dumps(failed_status):
    assert json.loads(json.dumps(failed_status.to_dict()))["name"] == "svc"


def test_status_to_dict_has_the_field_names_as_keys(failed_status):
    as_dict = failed_status.to_dict()
    assert set(as_dict) == SERVICE_STATUS_FIELDS
    assert set(as_dict["counters"]) == COUNTER_FIELDS


def test_status_to_dict_gives_enums_as_their_values(failed_status):
    as_dict = failed_status.to_dict()
    assert as_dict["state"] == "failed"
    assert as_dict["last_error"]["kind"] == "dispatch_failed"
    assert as_dict["last_error"]["state"] == "running"
    assert as_dict["failure"]["kind"] == "dispatch_failed"
    assert {d["kind"] for d in as_dict["diagnostics"]} == {"lifecycle", "dispatch_failed"}


def test_status_to_dict_gives_datetimes_as_iso_8601(failed_status):
    at = failed_status.to_dict()["last_error"]["at"]
    parsed = dt.datetime.fromisoformat(at)
    assert parsed == failed_status.last_error.at
    assert parsed.utcoffset() is not None


def test_status_to_dict_keeps_plain_values(failed_status):
    as_dict = failed_status.to_dict()
    assert (as_dict["queue_capacity"], as_dict["queue_depth"], as_dict["in_flight"]) == (7, 0, 0)
    assert as_dict["counters"]["failed"] == 1
    assert as_dict["plugin_status"] == {"handled": 1, "mode": "strict"}
    assert as_dict["last_error"]["correlation_id"] == failed_status.last_error.correlation_id


def test_plugin_status_is_reported(failed_status):
    assert failed_status.plugin_status == {"handled": 1, "mode": "strict"}


def test_plugin_status_defaults_to_none(start_service):
    assert start_service("svc", Echo()).status().plugin_status is None


def test_status_does_not_raise_when_plugin_status_raises(start_service):
    status = start_service("svc", ExplodingStatus()).status()
    assert status.state is RUNNING
    assert status.plugin_status is None


def test_status_does_not_block_on_a_running_handler(start_service, gates, background):
    plugin = Blocking(gates.new())
    handle = start_service("svc", plugin)
    handle.submit(event(1))
    plugin.entered()
    status = background(handle.status).result(timeout=HANG)
    assert (status.in_flight, status.counters.dispatched) == (1, 1)


def test_status_values_are_frozen(failed_status):
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        failed_status.state = RUNNING
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        failed_status.counters.failed = 0


def test_host_status_maps_each_service_to_its_status(host, start_service):
    start_service("a", Echo())
    host.add_service("b", Echo())
    status = host.status()
    assert isinstance(status, HostStatus)
    assert set(status.services) == {"a", "b"}
    assert isinstance(status.services["a"], ServiceStatus)
    assert (status.services["a"].state, status.services["b"].state) == (RUNNING, READY)


def test_host_status_to_dict_nests_services_by_name(host, start_service):
    start_service("a", Echo())
    host.add_service("b", Echo())
    as_dict = json.loads(json.dumps(host.status().to_dict()))
    assert set(as_dict["services"]) == {"a", "b"}
    assert as_dict["services"]["a"]["name"] == "a"
    assert as_dict["services"]["b"]["state"] == "ready"


def test_transitions_add_lifecycle_diagnostics(start_service):
    handle = start_service("svc", Echo())
    handle.stop(timeout=HANG)
    diagnostics = handle.status().diagnostics
    assert len(diagnostics) >= 4
    assert {d.kind for d in diagnostics} == {DiagnosticKind.LIFECYCLE}


def test_lifecycle_diagnostics_never_become_last_error(start_service):
    handle = start_service("svc", Echo())
    handle.stop(timeout=HANG)
    handle.restart(timeout=HANG)
    assert handle.status().last_error is None


def test_last_error_survives_the_transition_it_causes(start_service):
    handle = start_service("svc", Raising())
    outcome(handle.submit(event(1)))
    status = handle.status()
    assert status.state is FAILED
    assert status.diagnostics[-1].kind is DiagnosticKind.LIFECYCLE
    assert status.last_error.kind is DiagnosticKind.DISPATCH_FAILED


def test_diagnostic_message_is_bounded_with_an_ellipsis(start_service):
    handle = start_service("svc", Raising(lambda e: ValueError("x" * 5000)), fail_after=None)
    outcome(handle.submit(event(1)))
    message = handle.status().last_error.message
    assert len(message) == 513
    assert message.endswith("\u2026")


def test_diagnostic_message_has_control_characters_replaced(start_service):
    error = ValueError("line one\nline two\r\x1b[31mred\x00")
    handle = start_service("svc", Raising(lambda e: error), fail_after=None)
    outcome(handle.submit(event(1)))
    message = handle.status().last_error.message
    assert "line one line two" in message
    assert not any(ch in message for ch in "\n\r\x1b\x00")


SECRETS = [
    pytest.param("token=abc123", id="key=value"),
    pytest.param("password: abc123", id="key: value"),
    pytest.param('{"secret": "abc123"}', id="json"),
    pytest.param("api-key=abc123", id="api-key"),
    pytest.param("X-Api-Key: abc123", id="x-api-key"),
    pytest.param("Cookie: session=abc123", id="cookie"),
    pytest.param("Authorization: Bearer abc123", id="authorization-bearer"),
    pytest.param("fetch https://user:abc123@example.com/x failed", id="url-credentials"),
]


@pytest.mark.parametrize("text", SECRETS)
def test_secret_in_handler_error_is_redacted_in_status(start_service, text):
    handle = start_service("svc", Raising(lambda e: ValueError(text)))
    outcome(handle.submit(event(1)))
    status = handle.status()
    dumped = json.dumps(status.to_dict())
    assert "abc123" not in dumped
    assert "abc123" not in status.last_error.message
    assert "abc123" not in status.failure.message


@pytest.mark.parametrize("text", SECRETS)
def test_secret_in_handler_error_is_redacted_in_dead_letters(host, start_service, text):
    handle = start_service("svc", Raising(lambda e: ValueError(text)))
    outcome(handle.submit(event(1)))
    [letter] = host.dead_letters()
    assert "abc123" not in letter.diagnostic.message


def test_bearer_scheme_and_credential_are_both_hidden(start_service):
    handle = start_service("svc", Raising(lambda e: ValueError("Authorization: Bearer abc123")))
    outcome(handle.submit(event(1)))
    message = handle.status().last_error.message
    assert "Bearer" not in message and "abc123" not in message
    assert "Authorization" in message


def test_start_failure_message_includes_exception_text_redacted(host):
    handle = host.add_service("svc", FailingStart(RuntimeError("login failed password=abc123")))
    with pytest.raises(errors.ServiceFailed):
        handle.start(timeout=HANG)
    message = handle.status().failure.message
    assert "login failed" in message
    assert "abc123" not in message


def test_secret_in_validate_error_is_redacted_in_diagnostics(start_service):
    def validate(payload):
        raise ValueError("bad token=abc123")

    class Checked(Echo):
        ingresses = [Ingress(INGRESS, validate=validate)]

    handle = start_service("svc", Checked())
    with pytest.raises(errors.InvalidEvent):
        handle.submit(event(1))
    assert "abc123" not in json.dumps(handle.status().to_dict())


def test_host_status_built_from_services_gives_them_under_services(failed_status):
    as_dict = HostStatus({"svc": failed_status}).to_dict()
    assert as_dict["services"] == {"svc": failed_status.to_dict()}
    json.dumps(as_dict)
