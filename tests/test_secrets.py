"""Secrets never leak through diagnostics (issue 6), tested end to end.

A handler raises with a message holding a secret in one of many usual shapes. The
secret must appear in none of: ``status().last_error.message``,
``status().diagnostics``, the JSON of ``status().to_dict()`` and of the host's
status, the dead letters' diagnostics, the message of the future's
``DispatchFailed``, and the loguru output of ``plugin_service`` (enabled with a
list sink for the test only). Each check also asserts that the non-secret part of
the message did arrive there, so a missing record cannot pass for a redacted one.

The dead letter's ``event`` keeps the user's payload as it was; only diagnostics
and messages are redacted.
"""
from __future__ import annotations

import json
import string
from typing import Any, Dict, List

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from loguru import logger
from support.timing import HANG

from plugin_service import Ingress, IngressEvent, PluginHost, ServiceConfig, ServicePlugin, errors

#: name -> (message the plugin raises with, the secret values in it)
SHAPES = {
    "authorization_bearer": ("upstream said 401 to Authorization: Bearer abc.def-BEARER42",
                             ["abc.def-BEARER42", "Bearer"]),
    "authorization_basic_dict": ("headers={'Authorization': 'Basic dXNlcjpCQVNJQzQy'}",
                                 ["dXNlcjpCQVNJQzQy"]),
    "x_api_key_header": ("request failed; X-Api-Key: APIKEY-42x", ["APIKEY-42x"]),
    "password_key_value": ("login refused user=bob password=hunter2-PW42 retry=3",
                           ["hunter2-PW42"]),
    "token_query": ("GET https://api.example/v1?token=TOK-42xyz&page=2 failed",
                    ["TOK-42xyz"]),
    "access_token_spaced": ("refresh failed: access_token = AT-SECRET-42", ["AT-SECRET-42"]),
    "json_secret": ('bad response {"secret": "s3-JSON-SECRET-42", "status": 500}',
                    ["s3-JSON-SECRET-42"]),
    "json_password_compact": ('config {"db_password":"DBPW-42-json"}', ["DBPW-42-json"]),
    "url_credentials": ("cannot reach https://alice-USER42:URLPASS-42@db.example/x",
                        ["alice-USER42", "URLPASS-42"]),
    "cookie_header": ("replay rejected, Cookie: session=COOKIE-42abc; theme=dark",
                      ["COOKIE-42abc"]),
    "set_cookie_header": ("Set-Cookie: sid=SETCOOKIE-42; Path=/; HttpOnly",
                          ["SETCOOKIE-42"]),
    "multi_line": ("first line\npassword: MULTILINE-PW-42\nlast line", ["MULTILINE-PW-42"]),
    "everything_at_once": (
        "Authorization: Bearer ALL-BEARER-42\n"
        "x-api-key=ALL-APIKEY-42 password=ALL-PW-42 "
        '{"token": "ALL-TOKEN-42"} https://u:ALL-URLPASS-42@h/ Cookie: c=ALL-COOKIE-42',
        ["ALL-BEARER-42", "ALL-APIKEY-42", "ALL-PW-42", "ALL-TOKEN-42", "ALL-URLPASS-42",
         "ALL-COOKIE-42"]),
}
#: Text every message carries besides its secret, to prove the record arrived.
MARKER = "marker-%s"


class Leaky(ServicePlugin):
    """Raises ``RuntimeError(payload)`` from every handler."""

    ingresses = [Ingress("in")]

    def handle_ingress(self, event: IngressEvent, ctx: Any) -> Any:
        raise RuntimeError(event.payload)


@pytest.fixture
def log_lines():
    """Everything ``plugin_service`` logs during the test, formatted with its extras
    and any exception; logging is disabled again afterwards."""
    lines: List[str] = []
    logger.enable("plugin_service")
    sink = logger.add(lines.append, level="TRACE", format="{level} {message} | {extra}",
                      filter="plugin_service")
    try:
        yield lines
    finally:
        logger.remove(sink)
        logger.disable("plugin_service")


def places_after_failed_dispatch(shape: str, log_lines: List[str]) -> Dict[str, str]:
    """Every place a dispatch failure with ``shape``'s message is reported, as text."""
    message = "%s %s" % (MARKER % shape, SHAPES[shape][0])
    with PluginHost() as host:
        handle = host.add_service("leaky", Leaky, ServiceConfig(fail_after=None))
        handle.start(timeout=HANG)
        future = handle.submit(IngressEvent("in", "test", message))
        error = future.exception(timeout=HANG)
        assert type(error) is errors.DispatchFailed
        status = handle.status()
        letters = host.dead_letters()
        assert [letter.event.payload for letter in letters] == [message]  # kept as is
        return {
            "last_error": status.last_error.message,
            "diagnostics": "\n".join(d.message for d in status.diagnostics),
            "status_json": json.dumps(status.to_dict()),
            "host_status_json": json.dumps(host.status().to_dict()),
            "dead_letters": "\n".join(json.dumps(letter.diagnostic.to_dict())
                                      for letter in letters),
            "dispatch_failed": str(error),
            "log": "\n".join(log_lines),
        }


PLACES = ["last_error", "diagnostics", "status_json", "host_status_json", "dead_letters",
          "dispatch_failed", "log"]


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_secret_in_handler_exception_is_redacted(shape, place, log_lines):
    text = places_after_failed_dispatch(shape, log_lines)[place]
    assert MARKER % shape in text
    for secret in SHAPES[shape][1]:
        assert secret not in text


def test_redacted_message_keeps_its_non_secret_context(log_lines):
    text = places_after_failed_dispatch("password_key_value", log_lines)["last_error"]
    assert text == ("handler raised RuntimeError: %s login refused user=bob password=*** "
                    "retry=3" % (MARKER % "password_key_value"))


# --------------------------------------- the other places user text reaches
SECRET_MESSAGE, SECRETS = SHAPES["everything_at_once"]


def assert_redacted(text: str) -> None:
    assert "marker-other" in text
    for secret in SECRETS:
        assert secret not in text


class FailsToStart(Leaky):
    def start(self) -> None:
        raise RuntimeError("marker-other " + SECRET_MESSAGE)


class FailsToStop(Leaky):
    def stop(self) -> None:
        raise RuntimeError("marker-other " + SECRET_MESSAGE)


def test_secret_in_start_failure_is_redacted_in_failure_error_and_log(log_lines):
    with PluginHost() as host:
        handle = host.add_service("leaky", FailsToStart)
        with pytest.raises(errors.ServiceFailed) as raised:
            handle.start(timeout=HANG)
        status = handle.status()
        for text in (status.failure.message, json.dumps(status.to_dict()),
                     str(raised.value), "\n".join(log_lines)):
            assert_redacted(text)


def test_secret_in_stop_failure_is_redacted_in_failure_error_and_log(log_lines):
    with PluginHost() as host:
        handle = host.add_service("leaky", FailsToStop)
        handle.start(timeout=HANG)
        with pytest.raises(errors.ServiceFailed) as raised:
            handle.stop(timeout=HANG)
        status = handle.status()
        for text in (status.failure.message, json.dumps(status.to_dict()),
                     str(raised.value), "\n".join(log_lines)):
            assert_redacted(text)


def test_secret_in_validate_exception_is_redacted_in_diagnostics_and_log(log_lines):
    def validate(payload: Any) -> bool:
        raise ValueError("marker-other " + SECRET_MESSAGE)

    class Validated(Leaky):
        ingresses = [Ingress("in", validate=validate)]

    with PluginHost() as host:
        handle = host.add_service("leaky", Validated)
        handle.start(timeout=HANG)
        with pytest.raises(errors.InvalidEvent):
            handle.submit(IngressEvent("in", "test"))
        status = handle.status()
        assert_redacted(status.last_error.message)
        assert_redacted(json.dumps(status.to_dict()))
        assert_redacted("\n".join(log_lines))


def test_secret_in_tool_exception_is_redacted_in_tool_status_and_error(log_lines):
    def tool(request: Any, ctx: Any) -> Any:
        raise RuntimeError("marker-other " + SECRET_MESSAGE)

    with PluginHost() as host:
        host.add_tool("leaky-tool", tool)
        with pytest.raises(errors.ToolFailed) as raised:
            host.call_tool("leaky-tool", None, timeout=HANG)
        assert_redacted(str(raised.value))
        assert_redacted(json.dumps(host.status().to_dict()))


# ------------------------------------------- generated shapes, end to end
TOKEN_CHARS = string.ascii_letters + string.digits + "._~+/=-"
URL_PASSWORD_CHARS = string.ascii_letters + string.digits + "._~+=-!$*"
KEY_WORDS = ["password", "passwd", "token", "secret", "api_key", "api-key", "apikey",
             "x-api-key", "access_token", "client_secret", "db_password", "auth-token"]


def secrets_of(alphabet: str) -> st.SearchStrategy:
    # Upper-case "S3CR" never occurs in the surrounding (lower-case) text.
    return st.text(alphabet=alphabet, min_size=6, max_size=40).map(lambda t: "S3CR" + t)


keys = st.sampled_from(KEY_WORDS).flatmap(
    lambda word: st.sampled_from([word, word.upper(), word.title()]))
secret_shapes = st.one_of(
    st.tuples(keys, secrets_of(TOKEN_CHARS), st.sampled_from(["=", " = ", ": "])).map(
        lambda t: (t[0] + t[2] + t[1], t[1])),
    st.tuples(keys, secrets_of(TOKEN_CHARS)).map(
        lambda t: ('{"%s": "%s", "n": 1}' % t, t[1])),
    st.tuples(keys, secrets_of(TOKEN_CHARS)).map(lambda t: ("{'%s': '%s'}" % t, t[1])),
    st.tuples(keys, secrets_of(TOKEN_CHARS + " ")).map(lambda t: ('%s="%s"' % t, t[1])),
    st.tuples(st.sampled_from(["Authorization", "authorization", "Proxy-Authorization"]),
              st.sampled_from(["Bearer", "Basic", "Token", "Digest"]),
              secrets_of(TOKEN_CHARS)).map(lambda t: ("%s: %s %s" % t, t[2])),
    st.tuples(st.sampled_from(["https", "postgres", "redis", "amqp"]),
              st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=8),
              secrets_of(URL_PASSWORD_CHARS)).map(
        lambda t: ("%s://%s:%s@db.example:5432/x" % t, t[2])),
    secrets_of(TOKEN_CHARS).map(lambda s: ("Cookie: sid=%s; theme=dark" % s, s)),
)
surrounding = st.text(alphabet=string.ascii_lowercase + string.digits + " .:()[]<>|!",
                      max_size=60)
RUN = {"examples": 0}


def test_generated_secret_shapes_are_redacted_end_to_end(log_lines, capsys):
    with PluginHost() as host:
        handle = host.add_service("leaky", Leaky, ServiceConfig(fail_after=None))
        handle.start(timeout=HANG)

        @settings(max_examples=300, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow])
        @given(before=surrounding, shape=secret_shapes, after=surrounding)
        def check(before: str, shape: Any, after: str) -> None:
            text, secret = shape
            RUN["examples"] += 1
            del log_lines[:]
            message = "marker-generated %s %s%s" % (before, text, after)
            error = handle.submit(IngressEvent("in", "test", message)).exception(timeout=HANG)
            places = [str(error), handle.status().last_error.message,
                      host.dead_letters()[-1].diagnostic.message, "\n".join(log_lines)]
            for place in places:
                assert "marker-generated" in place
                assert secret not in place

        check()
    with capsys.disabled():
        print("\ntest_secrets: %d hypothesis examples of generated secret shapes"
              % RUN["examples"])
