"""Bad input at submit (issue 6): hypothesis-generated events end in
``InvalidEvent`` or acceptance, never in another exception, a crash, a hang or a
corrupted counter.

Events are built directly: ``IngressEvent`` does not validate at construction, so
every field can hold a wrong type, a huge or control-character string, a naive
datetime, a bad attempt, bytes, or an object whose ``__eq__``, ``__hash__``,
``__repr__`` or ``__str__`` raises. An oracle written from the contract says which
of them must be accepted; the others must be refused with ``InvalidEvent``.
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Any, Dict

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from support.checks import assert_invariants
from support.timing import HANG

from plugin_service import Ingress, IngressEvent, PluginHost, ServiceConfig, ServicePlugin, errors

UTC = dt.timezone.utc
#: What ran, printed at the end of each generated test.
RUN: Dict[str, int] = {"examples": 0, "invalid": 0, "accepted": 0}

BAD_INPUT_SETTINGS = settings(
    max_examples=1000,
    deadline=None,
    database=None,  # write nothing into the checkout
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ---------------------------------------------------------------- hostile values
class Hostile(Exception):
    """What the hostile objects raise."""


class RaisesOnEq:
    def __eq__(self, other: Any) -> bool:
        raise Hostile("__eq__")

    def __ne__(self, other: Any) -> bool:
        raise Hostile("__ne__")

    __hash__ = object.__hash__


class RaisesOnHash:
    def __hash__(self) -> int:
        raise Hostile("__hash__")


class RaisesOnRepr:
    def __repr__(self) -> str:
        raise Hostile("__repr__")

    def __str__(self) -> str:
        raise Hostile("__str__")


class RaisesOnEverything:
    def __eq__(self, other: Any) -> bool:
        raise Hostile("__eq__")

    def __ne__(self, other: Any) -> bool:
        raise Hostile("__ne__")

    def __hash__(self) -> int:
        raise Hostile("__hash__")

    def __repr__(self) -> str:
        raise Hostile("__repr__")

    def __str__(self) -> str:
        raise Hostile("__str__")

    def __bool__(self) -> bool:
        raise Hostile("__bool__")


class HostileStr(str):
    """A string whose comparison and hashing raise."""

    def __eq__(self, other: Any) -> bool:
        raise Hostile("__eq__")

    def __ne__(self, other: Any) -> bool:
        raise Hostile("__ne__")

    def __hash__(self) -> int:
        raise Hostile("__hash__")


class ReprRaisingStr(str):
    """A well-behaved string except that ``repr`` and ``str`` raise."""

    def __repr__(self) -> str:
        raise Hostile("__repr__")

    def __str__(self) -> str:
        raise Hostile("__str__")


class RaisesOnAttribute:
    """Not an event; any attribute lookup raises something other than AttributeError."""

    def __getattr__(self, name: str) -> Any:
        raise Hostile("attribute %s" % name)


class PosesAsEvent:
    """Claims to be an IngressEvent (as a spec'd mock does) but has no fields."""

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return IngressEvent


class Boxed:
    """Carries a hostile value past hypothesis, which prints its arguments."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        try:
            return "Boxed(%s)" % (repr(self.value)[:200],)
        except Exception:
            return "Boxed(<%s whose repr raises>)" % type(self.value).__name__


class NoOffset(dt.tzinfo):
    """A tzinfo that does not know its offset: the datetime counts as naive."""

    def utcoffset(self, when: Any) -> None:
        return None


class BrokenOffset(dt.tzinfo):
    def utcoffset(self, when: Any) -> dt.timedelta:
        raise Hostile("utcoffset")


# Objects that are safe to compare and hash but hostile to print; fine anywhere.
printing_hostile = st.one_of(st.builds(RaisesOnRepr),
                            st.sampled_from(["in", "shop"]).map(ReprRaisingStr))
# Objects whose comparison or hashing raises; fine wherever the contract's checks
# never need to compare them (the payload of an unvalidated ingress).
comparing_hostile = st.sampled_from([RaisesOnEq, RaisesOnHash, RaisesOnEverything,
                                     HostileStr]).map(
    lambda cls: cls("in") if cls is HostileStr else cls())

huge_text = st.integers(10_000, 2_000_000).map(lambda n: "x" * n)
control_text = st.text(alphabet=st.characters(categories=["Cc", "Cf", "Zl", "Zp", "Zs"]),
                       min_size=1, max_size=20)
odd_text = st.one_of(st.text(max_size=30), huge_text, control_text,
                     st.text(max_size=10).map(lambda t: "\n\x00" + t + "\u202e"))
wrong_type = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
    st.binary(max_size=30), st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.just(dt.datetime(2020, 1, 1)), st.builds(object), printing_hostile,
)


def mostly(good: st.SearchStrategy, bad: st.SearchStrategy) -> st.SearchStrategy:
    """``good`` five times in six: most events then break one or two rules only."""
    return st.integers(0, 5).flatmap(lambda roll: bad if roll == 0 else good)


def names(*good: str) -> st.SearchStrategy:
    """A string field: one of ``good``, else odd text (often still valid), a wrong
    type, or bytes."""
    return mostly(st.sampled_from(good),
                  st.one_of(odd_text, wrong_type, st.sampled_from(good).map(str.encode)))


aware = st.datetimes(timezones=st.sampled_from([
    UTC, dt.timezone(dt.timedelta(hours=5, minutes=30)),
    dt.timezone(dt.timedelta(hours=-23, minutes=-59))]))
created_ats = mostly(aware, st.one_of(
    st.datetimes(),  # naive
    st.datetimes().map(lambda d: d.replace(tzinfo=NoOffset())),
    st.builds(lambda: dt.datetime(2020, 1, 1, tzinfo=BrokenOffset())),
    st.dates(), st.floats(), st.text(max_size=20), wrong_type,
))
attempts = mostly(st.integers(1, 10 ** 20),
                  st.one_of(st.integers(-(10 ** 20), 0), st.integers(-3, 3), st.floats(),
                            st.text(max_size=3), wrong_type))
payloads = st.one_of(st.none(), st.binary(max_size=100), huge_text, control_text,
                     st.just("forbidden"), wrong_type, comparing_hostile, printing_hostile,
                     st.integers())

events = st.builds(
    lambda ingress, source, payload, kind, created_at, attempt, cid: Boxed(IngressEvent(
        ingress, source, payload, kind=kind, created_at=created_at, attempt=attempt,
        correlation_id=cid)),
    ingress=names("open", "open", "open", "strict"), source=names("shop", "test"), payload=payloads,
    kind=names("order", "event"), created_at=created_ats, attempt=attempts,
    cid=names("cid-1"),
)
not_events = st.one_of(wrong_type, odd_text, comparing_hostile,
                       st.just(("open", "shop")), st.just({"ingress": "open"}),
                       st.builds(Ingress, st.just("open"))).map(Boxed)


# --------------------------------------------------------------------- oracle
def _blank(value: Any) -> bool:
    """Blank: not a string, empty, or only whitespace (``str.isspace``)."""
    return not isinstance(value, str) or not value or value.isspace()


def acceptable(event: Any) -> bool:
    """Whether the contract requires ``event`` to be accepted by ``Validating``."""
    if not isinstance(event, IngressEvent):
        return False
    ingress = event.ingress
    if type(ingress) not in (str, ReprRaisingStr) or ingress not in ("open", "strict"):
        return False
    if _blank(event.source) or _blank(event.kind) or _blank(event.correlation_id):
        return False
    attempt = event.attempt
    if type(attempt) is not int or attempt < 1:
        return False
    created = event.created_at
    if not isinstance(created, dt.datetime) or isinstance(created.tzinfo, BrokenOffset) \
            or created.utcoffset() is None:
        return False
    if ingress == "strict":
        if event.kind != "order" or event.source != "shop":
            return False
        payload = event.payload
        if isinstance(payload, (RaisesOnEq, RaisesOnEverything, HostileStr)):
            return False  # validate raises
        return payload != "forbidden"
    return True


class Validating(ServicePlugin):
    """``open`` accepts anything; ``strict`` takes kind ``order`` from ``shop`` only and
    validates the payload. Handlers return the payload itself."""

    ingresses = [
        Ingress("open"),
        Ingress("strict", event_kinds=("order",), sources=("shop",),
                validate=lambda payload: payload != "forbidden"),
    ]

    def handle_ingress(self, event: IngressEvent, ctx: Any) -> Any:
        return event.payload


@pytest.fixture
def running(request: Any, capsys: Any):
    """A running service that isolates failures, and a tally of what the test saw;
    prints the number of examples at the end."""
    host = PluginHost()
    handle = host.add_service("bad-input", Validating, ServiceConfig(fail_after=None))
    handle.start(timeout=HANG)
    seen = {"invalid": 0, "accepted": 0, "examples": 0}
    try:
        yield handle, seen
    finally:
        host.close(timeout=HANG)
        for key in RUN:
            RUN[key] += seen[key]
        with capsys.disabled():
            print("\n%s: %d hypothesis examples, %d InvalidEvent, %d accepted"
                  % (request.node.name, seen["examples"], seen["invalid"], seen["accepted"]))


def submit_and_classify(handle: Any, seen: Dict[str, int], event: Any) -> str:
    """Submit; ``"invalid"`` or ``"accepted"`` (then the future resolves to the
    payload itself). Any other exception propagates and fails the test."""
    seen["examples"] += 1
    try:
        future = handle.submit(event)
    except errors.InvalidEvent as error:
        assert isinstance(error.reason, str) and error.reason
        seen["invalid"] += 1
        return "invalid"
    assert future.result(timeout=HANG) is event.payload
    seen["accepted"] += 1
    return "accepted"


def assert_counted_consistently(handle: Any, seen: Dict[str, int]) -> None:
    """Counters agree with what the submits returned; diagnostics stay bounded,
    single-line and JSON-able."""
    status = handle.status()
    assert_invariants(status)
    counters = status.counters
    assert counters.rejected == seen["invalid"]
    assert counters.enqueued == counters.dispatched == counters.succeeded == seen["accepted"]
    assert counters.failed == counters.timed_out == counters.dropped == 0
    assert status.state.value == "running"
    assert seen["examples"] == seen["invalid"] + seen["accepted"] > 0
    for diagnostic in status.diagnostics:
        assert len(diagnostic.message) <= 513
        assert "\n" not in diagnostic.message and "\x00" not in diagnostic.message
    json.dumps(status.to_dict())


def test_generated_events_are_refused_or_accepted_as_the_contract_says(running):
    handle, seen = running

    @BAD_INPUT_SETTINGS
    @given(event=events)
    @example(event=Boxed(IngressEvent("open", "shop", b"\x00", created_at=dt.datetime(2020, 1, 1))))
    @example(event=Boxed(IngressEvent("open", "shop", None, attempt=0)))
    @example(event=Boxed(IngressEvent("open", "shop", None, attempt=-1)))
    @example(event=Boxed(IngressEvent("open", "shop", None, attempt=True)))
    @example(event=Boxed(IngressEvent("open", "x" * 1_000_000, RaisesOnEverything())))
    @example(event=Boxed(IngressEvent("x\n\x00" * 100_000, "shop")))
    @example(event=Boxed(IngressEvent("strict", "shop", RaisesOnEq(), kind="order")))
    @example(event=Boxed(IngressEvent(RaisesOnRepr(), "shop")))
    def check(event: Boxed) -> None:
        assert submit_and_classify(handle, seen, event.value) == (
            "accepted" if acceptable(event.value) else "invalid")

    check()
    assert_counted_consistently(handle, seen)


def test_non_events_are_refused_with_invalid_event(running):
    handle, seen = running

    @settings(BAD_INPUT_SETTINGS, max_examples=100)
    @given(thing=not_events)
    def check(thing: Boxed) -> None:
        assert submit_and_classify(handle, seen, thing.value) == "invalid"

    check()
    assert_counted_consistently(handle, seen)


# ----------------------------------------- fields that must be compared or hashed
hostile_in_checked_field = st.one_of(
    st.builds(lambda h: IngressEvent(h, "shop"), comparing_hostile),
    st.builds(lambda h: IngressEvent("strict", h, kind="order"), comparing_hostile),
    st.builds(lambda h: IngressEvent("strict", "shop", kind=h), comparing_hostile),
    st.builds(lambda h: IngressEvent("open", "shop", correlation_id=h), comparing_hostile),
    st.builds(lambda h: IngressEvent("open", "shop", attempt=h), comparing_hostile),
    st.builds(RaisesOnAttribute), st.builds(PosesAsEvent),
).map(Boxed)


def test_hostile_objects_in_checked_fields_end_in_invalid_event_or_acceptance(running):
    handle, seen = running

    @settings(BAD_INPUT_SETTINGS, max_examples=100)
    @given(thing=hostile_in_checked_field)
    @example(thing=Boxed(IngressEvent(RaisesOnHash(), "shop")))
    def check(thing: Boxed) -> None:
        assert submit_and_classify(handle, seen, thing.value) in ("invalid", "accepted")

    check()
    assert_counted_consistently(handle, seen)


# ------------------------------------------------ one hostile field at a time
def _refused(handle: Any, thing: Any) -> errors.InvalidEvent:
    with pytest.raises(errors.InvalidEvent) as raised:
        handle.submit(thing)
    return raised.value


@pytest.fixture
def plain():
    host = PluginHost()
    handle = host.add_service("plain", Validating, ServiceConfig(fail_after=None))
    handle.start(timeout=HANG)
    try:
        yield handle
    finally:
        host.close(timeout=HANG)


def test_ingress_name_whose_hash_raises_is_invalid_event(plain):
    _refused(plain, IngressEvent(RaisesOnHash(), "shop"))
    assert plain.status().counters.rejected == 1


def test_ingress_name_whose_eq_raises_is_invalid_event(plain):
    class EqRaisingName(str):
        __hash__ = str.__hash__

        def __eq__(self, other: Any) -> bool:
            raise Hostile("__eq__")

    _refused(plain, IngressEvent(EqRaisingName("open"), "shop"))
    assert plain.status().counters.rejected == 1


def test_kind_whose_eq_raises_is_compared_by_its_exact_str_value(plain):
    # Its own __eq__ is never called (issue 20): only its str value counts.
    future = plain.submit(IngressEvent("strict", "shop", kind=HostileStr("order")))
    assert future.result(timeout=HANG) is None
    _refused(plain, IngressEvent("strict", "shop", kind=HostileStr("refund")))
    assert plain.status().counters.rejected == 1


def test_source_whose_eq_raises_on_an_unrestricted_ingress_is_accepted(plain):
    future = plain.submit(IngressEvent("open", HostileStr("shop")))
    assert future.result(timeout=HANG) is None
    assert plain.status().counters.succeeded == 1


def test_object_whose_attribute_lookup_raises_is_invalid_event(plain):
    _refused(plain, RaisesOnAttribute())
    assert plain.status().counters.rejected == 1


def test_object_posing_as_an_event_without_fields_is_invalid_event(plain):
    _refused(plain, PosesAsEvent())
    assert plain.status().counters.rejected == 1


def test_created_at_with_raising_utcoffset_is_invalid_event(plain):
    error = _refused(plain, IngressEvent("open", "shop",
                                         created_at=dt.datetime(2020, 1, 1,
                                                                tzinfo=BrokenOffset())))
    assert "created_at" in error.reason
    assert plain.status().counters.rejected == 1


def test_validate_raising_on_a_hostile_payload_is_invalid_event(plain):
    error = _refused(plain, IngressEvent("strict", "shop", RaisesOnEverything(), kind="order"))
    assert "validate raised Hostile" in error.reason
    assert plain.status().counters.rejected == 1
