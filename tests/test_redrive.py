"""host.redrive: dead letters submitted again (attempt + 1, same correlation id),
each letter reported on its own future, and marked so it is not re-driven twice."""
from __future__ import annotations

import pytest
from support.timing import HANG

from plugin_service import (
    DispatchFuture,
    Ingress,
    IngressEvent,
    PluginHost,
    ServiceConfig,
    ServicePlugin,
    SQLiteDeadLetterSink,
    errors,
)

pytestmark = pytest.mark.timeout(60)


REFUSED: list = []  # payloads the ingress refuses from now on


class Flaky(ServicePlugin):
    """Fails every first attempt; returns (attempt, correlation id, payload) after."""

    ingresses = (Ingress("in", validate=lambda payload: payload not in REFUSED),)

    def handle_ingress(self, event, ctx):
        if event.attempt < 2:
            raise RuntimeError("first attempt fails")
        return event.attempt, event.correlation_id, event.payload


def _host(**kwargs) -> PluginHost:
    host = PluginHost(**kwargs)
    host.add_service("svc", Flaky, ServiceConfig(fail_after=None))
    host.add_service("other", Flaky, ServiceConfig(fail_after=None))
    host.start_all(timeout=HANG)
    return host


def _fail(host, *payloads, service="svc"):
    futures = [host.submit(service, IngressEvent("in", "test", p)) for p in payloads]
    for future in futures:
        assert isinstance(future.exception(timeout=HANG), errors.DispatchFailed)
    return [future.event for future in futures]


def test_a_dead_letter_is_redriven_with_attempt_plus_one_and_its_correlation_id():
    with _host() as host:
        (sent,) = _fail(host, {"n": 1})
        (future,) = host.redrive(host.dead_letters())
        assert isinstance(future, DispatchFuture)
        assert future.result(timeout=HANG) == (2, sent.correlation_id, {"n": 1})
        assert (future.event.attempt, future.event.correlation_id) == (2, sent.correlation_id)


def test_a_letter_goes_to_the_service_given():
    with _host() as host:
        (sent,) = _fail(host, "x")
        (future,) = host.redrive(host.dead_letters(), service="other")
        assert future.result(timeout=HANG) == (2, sent.correlation_id, "x")
        assert host.service("other").status().counters.succeeded == 1


def test_stored_letters_are_redriven_from_the_file_and_marked(tmp_path):
    db = tmp_path / "letters.db"
    with _host(dead_letter_sink=SQLiteDeadLetterSink(db, keep_payloads=True)) as host:
        sent = _fail(host, "a", "b")
    letters = SQLiteDeadLetterSink(db).letters()
    with _host() as other:  # another host, as after a restart
        futures = other.redrive(letters)
        assert [f.result(timeout=HANG) for f in futures] == [
            (2, sent[0].correlation_id, "a"), (2, sent[1].correlation_id, "b")]
    again = SQLiteDeadLetterSink(db).letters()
    assert [letter.redriven_at is not None for letter in again] == [True, True]


def test_each_letter_that_is_not_accepted_is_reported_on_its_own_future(tmp_path):
    db = tmp_path / "letters.db"
    with _host(dead_letter_sink=SQLiteDeadLetterSink(db)) as first:  # payloads not kept
        _fail(first, "good", "no service")
    kept = first.dead_letters()
    stored = SQLiteDeadLetterSink(db).letters()[0]  # written: close() waited for it
    with _host() as host:
        futures = host.redrive([kept[0], stored, "not a letter"])
        futures[2:2] = host.redrive([kept[1]], service="missing")
        assert futures[0].result(timeout=HANG)[0] == 2
        refused = futures[1].exception(timeout=0)
        assert isinstance(refused, errors.RedriveRefused)
        assert refused.letter_id == stored.id and "payload" in refused.reason
        assert isinstance(futures[2].exception(timeout=0), errors.ServiceNotFound)
        assert isinstance(futures[3].exception(timeout=0), errors.RedriveRefused)
        assert all(f.done() and not f.cancel() for f in futures[1:])
        # A refused submit takes its mark back: the letter can be re-driven later.
        (retried,) = host.redrive([kept[1]])
        assert retried.result(timeout=HANG)[2] == "no service"


def test_a_letter_the_service_refuses_now_is_reported_with_the_submit_error():
    with _host() as host:
        _fail(host, "invalid now")
        REFUSED.append("invalid now")
        (future,) = host.redrive(host.dead_letters())  # validated again: refused
        assert isinstance(future.exception(timeout=0), errors.InvalidEvent)


def test_a_letter_is_not_redriven_twice_unless_forced(tmp_path):
    db = tmp_path / "letters.db"
    with _host(dead_letter_sink=SQLiteDeadLetterSink(db, keep_payloads=True)) as host:
        _fail(host, "once")
        in_memory = host.dead_letters()
        assert host.redrive(in_memory)[0].result(timeout=HANG)[0] == 2
        (twice,) = host.redrive(in_memory)
        assert isinstance(twice.exception(timeout=0), errors.RedriveRefused)
    stale = SQLiteDeadLetterSink(db).letters()  # the in-memory re-drive marked it
    assert stale[0].redriven_at is not None
    with _host() as other:
        (refused,) = other.redrive(stale)
        assert "already" in refused.exception(timeout=0).reason
        (forced,) = other.redrive(stale, force=True)
        assert forced.result(timeout=HANG)[2] == "once"


def test_a_stale_list_cannot_redrive_a_letter_marked_meanwhile(tmp_path):
    db = tmp_path / "letters.db"
    with _host(dead_letter_sink=SQLiteDeadLetterSink(db, keep_payloads=True)) as host:
        _fail(host, "x")
    first, second = SQLiteDeadLetterSink(db).letters(), SQLiteDeadLetterSink(db).letters()
    with _host() as host:
        assert host.redrive(first)[0].result(timeout=HANG)[2] == "x"
        assert isinstance(host.redrive(second)[0].exception(timeout=0), errors.RedriveRefused)


def test_without_a_sink_the_host_remembers_what_it_redrove():
    with _host() as host:
        _fail(host, "x")
        letters = host.dead_letters()
        host.redrive(letters)[0].result(timeout=HANG)
        assert isinstance(host.redrive(letters)[0].exception(timeout=0), errors.RedriveRefused)
