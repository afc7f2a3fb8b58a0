"""IngressEvent values and what submit accepts."""
from __future__ import annotations

import datetime as dt
import threading

import attrs
import pytest
from support.doubles import INGRESS, Echo, event
from support.timing import HANG

from plugin_service import DiagnosticKind, Ingress, IngressEvent, errors


def test_event_defaults():
    created = IngressEvent("in", "src")
    assert (created.payload, created.kind, created.attempt) == (None, "event", 1)


def test_event_created_at_defaults_to_now_in_utc():
    before = dt.datetime.now(dt.timezone.utc)
    created = IngressEvent("in", "src")
    after = dt.datetime.now(dt.timezone.utc)
    assert created.created_at.utcoffset() == dt.timedelta(0)
    assert before <= created.created_at <= after


def test_event_correlation_ids_are_unique_strings():
    ids = [IngressEvent("in", "src").correlation_id for _ in range(10_000)]
    assert all(isinstance(cid, str) and cid for cid in ids)
    assert len(set(ids)) == len(ids)


def test_event_is_frozen():
    created = IngressEvent("in", "src", 1)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        created.payload = 2


def test_event_construction_does_not_validate():
    created = IngressEvent("", "", kind="", attempt=0, correlation_id="")
    assert (created.ingress, created.source, created.attempt) == ("", "", 0)


def test_event_fields_are_settable_by_keyword():
    when = dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc)
    created = IngressEvent("in", "src", {"a": 1}, kind="k", created_at=when, attempt=2,
                           correlation_id="cid-1")
    assert (created.kind, created.created_at, created.attempt, created.correlation_id) == (
        "k", when, 2, "cid-1")


class Selective(Echo):
    """Accepts kind "order" from "shop" or "crm", with a dict payload."""

    ingresses = [Ingress(INGRESS, event_kinds=("order",), sources=("shop", "crm"),
                         validate=lambda payload: isinstance(payload, dict))]


class ValidatorRaises(Echo):
    ingresses = [Ingress(INGRESS, validate=lambda payload: payload["missing"])]


def _good(**fields):
    settings = dict(kind="order", source="shop")
    settings.update(fields)
    return event({"id": 1}, **settings)


NAIVE = dt.datetime(2024, 1, 1, 12, 0)

INVALID = [
    pytest.param(lambda: {"ingress": INGRESS, "source": "shop"}, id="not-an-IngressEvent"),
    pytest.param(lambda: _good(ingress="elsewhere"), id="undeclared-ingress"),
    pytest.param(lambda: _good(kind="refund"), id="kind-not-allowed"),
    pytest.param(lambda: _good(source="mail"), id="source-not-allowed"),
    pytest.param(lambda: event([1], kind="order", source="shop"), id="validate-falsy"),
    pytest.param(lambda: _good(source=""), id="blank-source"),
    pytest.param(lambda: _good(source="   "), id="whitespace-source"),
    pytest.param(lambda: _good(kind=""), id="blank-kind"),
    pytest.param(lambda: _good(correlation_id=""), id="blank-correlation-id"),
    pytest.param(lambda: _good(correlation_id=" "), id="whitespace-correlation-id"),
    pytest.param(lambda: _good(attempt=0), id="attempt-zero"),
    pytest.param(lambda: _good(attempt=-1), id="attempt-negative"),
    pytest.param(lambda: _good(created_at=NAIVE), id="naive-created-at"),
]


@pytest.fixture
def strict(start_service):
    return start_service("strict", Selective())


@pytest.mark.parametrize("make", INVALID)
def test_invalid_event_is_rejected_with_reason(strict, make):
    with pytest.raises(errors.InvalidEvent) as raised:
        strict.submit(make())
    assert raised.value.reason
    assert raised.value.kind is DiagnosticKind.INVALID_EVENT


@pytest.mark.parametrize("make", INVALID)
def test_invalid_event_is_counted_recorded_and_not_enqueued(strict, make):
    with pytest.raises(errors.InvalidEvent):
        strict.submit(make())
    status = strict.status()
    assert (status.counters.rejected, status.counters.enqueued) == (1, 0)
    assert status.last_error.kind is DiagnosticKind.INVALID_EVENT
    assert status.last_error in status.diagnostics


def test_validate_raising_makes_event_invalid(start_service):
    handle = start_service("svc", ValidatorRaises())
    with pytest.raises(errors.InvalidEvent):
        handle.submit(event({"other": 1}))
    assert handle.status().counters.rejected == 1


def test_valid_event_is_accepted(strict):
    assert strict.submit(_good(source="crm")).result(timeout=HANG) == {"id": 1}


def test_empty_kinds_and_sources_accept_any(start_service):
    handle = start_service("svc", Echo())
    submitted = event("x", kind="anything", source="anyone")
    assert handle.submit(submitted).result(timeout=HANG) == "x"


def test_aware_non_utc_created_at_is_accepted(start_service):
    handle = start_service("svc", Echo())
    tz = dt.timezone(dt.timedelta(hours=2))
    submitted = event("x", created_at=dt.datetime(2024, 1, 1, tzinfo=tz))
    assert handle.submit(submitted).result(timeout=HANG) == "x"


def test_rejected_invalid_event_never_reaches_handler(start_service):
    plugin = Selective()
    handle = start_service("svc", plugin)
    with pytest.raises(errors.InvalidEvent):
        handle.submit(_good(kind="refund"))
    handle.stop(timeout=HANG)
    assert plugin.payloads == []
    assert handle.status().counters.dispatched == 0


def watched():
    """A plugin whose ingress records the thread of every validate call."""
    validated_on = []

    def validate(payload):
        validated_on.append(threading.get_ident())
        return True

    class Watched(Echo):
        ingresses = [Ingress(INGRESS, validate=validate)]

    return Watched(), validated_on


def test_validate_is_called_once_per_submit_on_the_calling_thread(start_service, background):
    plugin, validated_on = watched()
    handle = start_service("svc", plugin)
    submitter = background(lambda: (threading.get_ident(), handle.submit(event(1))))
    ident, future = submitter.result(timeout=HANG)
    future.result(timeout=HANG)
    assert validated_on == [ident]


def test_state_is_checked_before_validation(host):
    plugin, validated_on = watched()
    handle = host.add_service("svc", plugin)
    with pytest.raises(errors.ServiceUnavailable):
        handle.submit(event(1, kind=""))
    assert validated_on == []


def test_state_and_validation_rejections_both_count(host):
    handle = host.add_service("svc", Selective())
    with pytest.raises(errors.ServiceUnavailable):
        handle.submit(_good(kind="refund"))
    handle.start(timeout=HANG)
    with pytest.raises(errors.InvalidEvent):
        handle.submit(_good(kind="refund"))
    status = handle.status()
    assert status.counters.rejected == 2
    kinds = [d.kind for d in status.diagnostics if d.kind is not DiagnosticKind.LIFECYCLE]
    assert kinds == [DiagnosticKind.SERVICE_UNAVAILABLE, DiagnosticKind.INVALID_EVENT]
