"""Exports (``to_dict()``, reprs, logs, refusal reasons) are redacted, bounded and never
raise (issues 12 and 20).

A dead letter keeps the event as it was submitted, to act on; everything that shows
it (``to_dict()``, its repr) redacts it by the rules of the diagnostics, as does the
plugin's own status. Whatever a plugin hands over (cycles, hostile mappings, keys
whose ``str()`` raises, a ``__repr__`` raising ``KeyboardInterrupt``, huge or deep
values) the exports stay quick and never raise. Correlation ids are shown on one
line; ``sources`` and ``event_kinds`` compare exact ``str`` values.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
from loguru import logger
from support.doubles import INGRESS, Raising, Recorder, event
from support.timing import HANG

from plugin_service import Ingress, IngressEvent, ServicePlugin, errors

REPO = Path(__file__).resolve().parents[1]
CONTROL = [chr(c) for c in range(32)] + ["\x7f", "\x85", "\u2028", "\u2029"]


class Reports(Recorder):
    """Returns ``report`` from ``status()``."""

    def __init__(self, report: Any) -> None:
        super().__init__()
        self.report = report

    def status(self) -> Any:
        return self.report


def dead_letter_of(host: Any, start_service: Any, payload: Any, **fields: Any) -> Any:
    handle = start_service("svc", Raising(lambda e: ValueError("boom")), fail_after=None)
    error = handle.submit(event(payload, **fields)).exception(timeout=HANG)
    assert type(error) is errors.DispatchFailed
    [letter] = host.dead_letters()
    return letter


# ----------------------------------------------------- dead letters are redacted
SECRET_PAYLOAD = {
    "user": "bob",
    "password": "hunter2",
    "headers": {"Authorization": ["Bearer abc.def"], "Accept": "json"},
    "private_key": {"pem": "MIIEsecret"},
    "note": "retry with token=tok42 later",
    "items": [{"api_key": 42}, "plain"],
}
REDACTED_PAYLOAD = {
    "user": "bob",
    "password": "***",
    "headers": {"Authorization": "***", "Accept": "json"},
    "private_key": "***",
    "note": "retry with token=*** later",
    "items": [{"api_key": "***"}, "plain"],
}


def test_dead_letter_to_dict_redacts_the_payload(host, start_service):
    letter = dead_letter_of(host, start_service, SECRET_PAYLOAD)
    exported = letter.to_dict()
    assert exported["event"]["payload"] == REDACTED_PAYLOAD
    for secret in ("hunter2", "abc.def", "MIIEsecret", "tok42"):
        assert secret not in json.dumps(exported)


def test_dead_letter_keeps_the_event_as_submitted(host, start_service):
    letter = dead_letter_of(host, start_service, SECRET_PAYLOAD)
    assert letter.event.payload is SECRET_PAYLOAD
    assert letter.event.payload["password"] == "hunter2"


def test_dead_letter_repr_redacts_the_payload(host, start_service):
    text = repr(dead_letter_of(host, start_service, SECRET_PAYLOAD))
    assert "'password': '***'" in text
    assert "hunter2" not in text and "tok42" not in text


def test_plugin_status_is_redacted_in_the_status_and_its_dict(start_service):
    report = {"handled": 3, "db": {"dsn": "postgres://app:pw9@db/x", "password": "pw9"},
              "tokens": ["t1", "t2"], "max_tokens": 512}
    status = start_service("svc", Reports(report)).status()
    expected = {"handled": 3, "db": {"dsn": "postgres://***@db/x", "password": "***"},
                "tokens": "***", "max_tokens": 512}
    assert status.plugin_status == expected
    assert status.to_dict()["plugin_status"] == expected


def test_service_names_are_not_taken_for_secret_keys(host, start_service):
    start_service("token-service", Reports({"ok": True}))
    exported = host.status().to_dict()
    assert exported["services"]["token-service"]["plugin_status"] == {"ok": True}


# ------------------------------------------- exports never raise, never crawl
def self_referential() -> Dict[str, Any]:
    report: Dict[str, Any] = {"handled": 1}
    report["self"] = report
    report["list"] = [report]
    return report


class IterationRaises(Mapping):
    def __getitem__(self, key: Any) -> Any:
        raise KeyError(key)

    def __len__(self) -> int:
        return 1

    def __iter__(self) -> Iterator[Any]:
        raise RuntimeError("iteration raised")


class StrRaises:
    def __str__(self) -> str:
        raise RuntimeError("str raised")

    __repr__ = __str__

    def __hash__(self) -> int:
        return 1


class ReprInterrupts:
    def __repr__(self) -> str:
        raise KeyboardInterrupt


def nested(depth: int) -> List[Any]:
    value: List[Any] = []
    for _ in range(depth):
        value = [value]
    return value


HOSTILE_REPORTS = {
    "self_referential": self_referential,
    "iteration_raises": lambda: {"inner": IterationRaises(), "ok": 1},
    "mapping_iteration_raises": IterationRaises,
    "key_str_raises": lambda: {StrRaises(): "value", "ok": 1},
    "repr_interrupts": lambda: {"value": ReprInterrupts()},
    "deep": lambda: {"deep": nested(100_000)},
    "long": lambda: {"long": list(range(1_000_000))},
    "wide": lambda: {str(i): i for i in range(200_000)},
    "long_string": lambda: {"text": "x" * 10_000_000},
    "long_bytes": lambda: {"raw": b"x" * 10_000_000, "buffer": bytearray(10_000_000)},
}


@pytest.mark.parametrize("name", sorted(HOSTILE_REPORTS))
def test_status_to_dict_of_a_hostile_plugin_status_never_raises(name, host, start_service):
    start_service("svc", Reports(HOSTILE_REPORTS[name]()))
    for exported in (host.service("svc").status().to_dict(), host.status().to_dict()):
        text = json.dumps(exported)
        assert len(text) < 200_000  # bounded whatever the plugin returned


@pytest.mark.parametrize("name", sorted(HOSTILE_REPORTS))
def test_dead_letter_to_dict_of_a_hostile_payload_never_raises(name, host, start_service):
    letter = dead_letter_of(host, start_service, HOSTILE_REPORTS[name]())
    assert len(json.dumps(letter.to_dict())) < 200_000
    assert len(repr(letter)) < 200_000


def test_cycles_and_depth_are_marked(start_service):
    report = self_referential()
    report["deep"] = nested(50)
    exported = start_service("svc", Reports(report)).status().to_dict()["plugin_status"]
    assert exported["self"] == "<cycle>" and exported["list"] == ["<cycle>"]
    assert "<too deep>" in json.dumps(exported["deep"])


def test_payload_whose_repr_raises_keyboard_interrupt_is_marked(host, start_service):
    letter = dead_letter_of(host, start_service, ReprInterrupts())
    assert letter.to_dict()["event"]["payload"] == "<unrepresentable ReprInterrupts>"


def test_bytes_are_shown_as_the_redacted_repr_of_their_head(start_service):
    report = {"raw": b"token=abc " + b"x" * 5000}
    raw = start_service("svc", Reports(report)).status().to_dict()["plugin_status"]["raw"]
    assert raw.startswith("b'token=*** xxx") and len(raw) <= 1001


def test_long_containers_are_cut_with_a_marker(start_service):
    exported = start_service("svc", Reports({"long": list(range(10_000))})).status().to_dict()
    long = exported["plugin_status"]["long"]
    assert long[:3] == [0, 1, 2] and long[-1] == "<truncated>" and len(long) < 1_000


def test_command_line_status_survives_a_self_referential_plugin_status(tmp_path):
    (tmp_path / "selfref_plugins.py").write_text(textwrap.dedent('''
        from plugin_service import Ingress, ServicePlugin

        class SelfRef(ServicePlugin):
            ingresses = [Ingress("in")]

            def handle_ingress(self, event, ctx):
                return None

            def status(self):
                report = {"handled": 0}
                report["self"] = report
                return report
    '''))
    env = {"PYTHONPATH": "%s:%s" % (tmp_path, REPO), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "plugin_service", "run",
                           "selfref_plugins:SelfRef"], input="", capture_output=True,
                          text=True, env=env, timeout=60)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 0, done.stderr
    [status_line] = [line for line in done.stderr.splitlines() if '"status"' in line]
    services = json.loads(status_line)["status"]["services"]
    assert services["selfref"]["plugin_status"]["self"] == "<cycle>"


# --------------------------------------- refusal reasons are redacted (issue 20)
class Validates(ServicePlugin):
    def __init__(self, message: str) -> None:
        def validate(payload: Any) -> bool:
            raise ValueError(message)

        self.ingresses = [Ingress(INGRESS, validate=validate)]

    def handle_ingress(self, event: IngressEvent, ctx: Any) -> Any:
        return None


def test_invalid_event_reason_from_validate_is_redacted_and_one_line(start_service):
    handle = start_service("svc", Validates("bad login password=hunter2\nForged: line"))
    with pytest.raises(errors.InvalidEvent) as raised:
        handle.submit(event())
    assert raised.value.reason == (
        "validate raised ValueError: bad login password=*** Forged: line")
    assert "hunter2" not in str(raised.value)


def test_invalid_event_reason_quoting_a_field_is_redacted(start_service):
    handle = start_service("svc", Recorder())
    with pytest.raises(errors.InvalidEvent) as raised:
        handle.submit(IngressEvent("token=hunter2\nx", "test"))
    assert "hunter2" not in str(raised.value) and "\n" not in str(raised.value)


# ------------------------------------------- correlation ids are shown on one line
FORGED = "cid-1\n2026-01-01 | ERROR | forged line\x1b[31m\u2028token=hunter2"


@pytest.fixture
def log_records():
    records: List[Any] = []
    lines: List[str] = []
    logger.enable("plugin_service")
    sinks = [logger.add(lambda m: records.append(m.record), level="TRACE",
                        filter="plugin_service"),
             logger.add(lines.append, level="TRACE", filter="plugin_service",
                        format="{message} | {extra[correlation_id]}")]
    try:
        yield records, lines
    finally:
        for sink in sinks:
            logger.remove(sink)
        logger.disable("plugin_service")


def assert_shown_safely(text: Any) -> None:
    assert isinstance(text, str) and text.startswith("cid-1 ")
    assert not any(c in text for c in CONTROL), repr(text)
    assert "hunter2" not in text


def test_correlation_id_is_flattened_in_diagnostics_dead_letters_and_logs(
        host, start_service, log_records):
    records, lines = log_records
    plugin = Raising(lambda e: ValueError("boom"))
    handle = start_service("svc", plugin, fail_after=None)
    handle.submit(event(correlation_id=FORGED)).exception(timeout=HANG)
    assert plugin.events[0].correlation_id == FORGED  # the plugin gets it as submitted
    [letter] = host.dead_letters()
    assert letter.event.correlation_id == FORGED
    exported = letter.to_dict()
    status = handle.status()
    for shown in (status.last_error.correlation_id, exported["event"]["correlation_id"],
                  exported["diagnostic"]["correlation_id"],
                  status.to_dict()["last_error"]["correlation_id"]):
        assert_shown_safely(shown)
    failures = [r for r in records if r["extra"].get("correlation_id") not in (None, "None")]
    assert failures, records
    for record in failures:
        assert_shown_safely(record["extra"]["correlation_id"])
    assert len(lines) == len(records)
    for record, line in zip(records, lines):
        # One line per record; a DEBUG traceback record's further lines are all
        # indented, so none can pass for a record of its own.
        assert line.endswith("\n"), repr(line)
        first, *more = line[:-1].split("\n")
        if record["level"].name != "DEBUG":
            assert more == [], repr(line)
        assert all(extra.startswith("  ") for extra in more), repr(line)


def test_correlation_id_of_a_refused_event_is_flattened(start_service, log_records):
    records, _ = log_records
    handle = start_service("svc", Recorder())
    with pytest.raises(errors.InvalidEvent):
        handle.submit(event(ingress="undeclared", correlation_id=FORGED))
    assert_shown_safely(handle.status().last_error.correlation_id)
    [record] = [r for r in records if r["level"].name == "WARNING"]
    assert_shown_safely(record["extra"]["correlation_id"])


# ------------------------------------- sources and kinds compare exact str values
class AlwaysEqual(str):
    __hash__ = str.__hash__

    def __eq__(self, other: Any) -> bool:
        return True

    def __ne__(self, other: Any) -> bool:
        return False


class Named(str):
    """A well-behaved str subclass."""


class Restricted(Recorder):
    ingresses = [Ingress(INGRESS, sources=("trusted",), event_kinds=("order",))]


@pytest.mark.parametrize("fields", [
    {"source": AlwaysEqual("intruder"), "kind": "order"},
    {"source": "trusted", "kind": AlwaysEqual("refund")},
], ids=["source", "kind"])
def test_str_subclass_equal_to_everything_is_refused(fields, start_service):
    handle = start_service("svc", Restricted())
    with pytest.raises(errors.InvalidEvent) as raised:
        handle.submit(IngressEvent(INGRESS, fields["source"], kind=fields["kind"]))
    assert "not accepted" in raised.value.reason


def test_str_subclass_with_a_declared_value_is_accepted(start_service):
    handle = start_service("svc", Restricted(), fail_after=None)
    future = handle.submit(IngressEvent(INGRESS, Named("trusted"), kind=Named("order")))
    assert future.exception(timeout=HANG) is None



def test_bounds_apply_to_plugin_data_not_to_the_hosts_own_status(host, start_service):
    # Eight services with a full ring of diagnostics each are thousands of values:
    # all of them are exported; only what plugins hand over is bounded.
    names = ["svc-%d" % i for i in range(8)]
    for name in names:
        handle = start_service(name, Raising(lambda e: ValueError("boom")), fail_after=None)
        for i in range(60):
            handle.submit(event(i)).exception(timeout=HANG)
    exported = host.status().to_dict()
    assert sorted(exported["services"]) == names
    for name in names:
        diagnostics = exported["services"][name]["diagnostics"]
        assert len(diagnostics) == len(host.service(name).status().diagnostics)
        assert all(isinstance(d, dict) for d in diagnostics)
    assert "<truncated>" not in json.dumps(exported)


class BlocksInRepr:
    def __init__(self, gate: Any) -> None:
        self.gate = gate

    def __repr__(self) -> str:
        self.gate.wait()
        return "released"


def test_plugin_status_whose_repr_blocks_does_not_block_status(start_service, gates,
                                                               background):
    # Exporting the plugin's status runs its objects' code (__repr__, iteration):
    # that happens on the status call's own thread, within its bound.
    handle = start_service("svc", Reports({"value": BlocksInRepr(gates.new())}))
    status = background(handle.status).result(timeout=HANG)
    assert status.plugin_status is None
    assert json.loads(json.dumps(status.to_dict()))["name"] == "svc"


class StrInterrupts(Exception):
    def __str__(self) -> str:
        raise KeyboardInterrupt


def test_validate_exception_whose_str_raises_keyboard_interrupt_is_invalid_event(
        start_service):
    class ValidatorInterrupts(Validates):
        def __init__(self) -> None:
            def validate(payload: Any) -> bool:
                raise StrInterrupts()

            self.ingresses = [Ingress(INGRESS, validate=validate)]

    handle = start_service("svc", ValidatorInterrupts())
    with pytest.raises(errors.InvalidEvent) as raised:
        handle.submit(event())
    assert raised.value.reason == "validate raised StrInterrupts: <unprintable StrInterrupts>"
