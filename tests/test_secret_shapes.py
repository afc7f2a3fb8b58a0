"""Every secret shape is redacted in every place a host shows it (issue 20).

One table of shapes, each checked through the public API in each place a secret
handed to a plugin can come back out:

* ``status``: the diagnostics and ``last_error`` messages, ``status().to_dict()``
  (which carries the plugin's own ``status()``) and ``host.status().to_dict()``;
* ``dead_letter``: a dead letter's ``to_dict()`` (its payload is the shape) and repr;
* ``error``: the ``DispatchFailed`` and the ``InvalidEvent`` raised to the caller;
* ``log``: every line ``plugin_service`` logs, with its extras, to a loguru sink
  added after ``logger.enable("plugin_service")``.

The plugin receives the shape as its payload, raises it from ``handle_ingress`` and
from the ingress's ``validate``, and returns it from ``status()``. Each place must
also show the row's marker, so a record that never arrived cannot pass for a
redacted one; the negative rows (``tokenizer``, ``max_tokens``, ``author``...)
must arrive intact.
"""
from __future__ import annotations

import json
from typing import Any, Dict, List

import pytest
from loguru import logger
from support.timing import HANG

from plugin_service import Ingress, IngressEvent, PluginHost, ServiceConfig, ServicePlugin, errors

S = "SEKRIT"  # every secret below contains it; nothing else does

#: id -> (what the plugin receives, the secrets in it)
SHAPES: Dict[str, Any] = {
    # issue 20: these slipped through
    "authorization_list": ({"Authorization": ["Bearer %s-LIST"], "n": 1}, ["%s-LIST"]),
    "secret_object": ({"secret": {"value": "%s-NEST"}}, ["%s-NEST"]),
    "folded_header": ("Authorization:\n Bearer %s-FOLD\nHost: h", ["%s-FOLD"]),
    "tokens": ("tokens=%s-TOKENS", ["%s-TOKENS"]),
    "pwd": ("Server=db;Uid=app;pwd=%s-PWD;", ["%s-PWD"]),
    "passphrase": ("passphrase=%s-PHRASE", ["%s-PHRASE"]),
    "bare_bearer": ("upstream rejected Bearer %s-BARE", ["%s-BARE"]),
    "bare_basic": ("sent Basic dXNlcjpTRUtSSVQtQkFTSUM= upstream",
                   ["dXNlcjpTRUtSSVQtQkFTSUM="]),
    "private_key": ({"private_key": "%s-PK", "kid": 7}, ["%s-PK"]),
    "pem_block": ("key -----BEGIN RSA PRIVATE KEY-----\nMIIE%sPEM\nAbC\n"
                  "-----END RSA PRIVATE KEY----- end", ["MIIE%sPEM", "AbC"]),
    "url_encoded": ("body client_secret%%3D%s-URLENC%%26grant_type%%3Dcode", ["%s-URLENC"]),
    "sessionid": ("sessionid=%s-SID; theme=dark", ["%s-SID"]),
    "x_amz_signature": ("GET /o?X-Amz-Signature=%s-SIG&X-Amz-Date=1", ["%s-SIG"]),
    "credentials": ("credentials=%s-CRED used", ["%s-CRED"]),
    "auth": ("auth=%s-AUTH&next=1", ["%s-AUTH"]),
    # these already passed; kept so they stay passing
    "x_auth_token": ("X-Auth-Token: %s-XAT", ["%s-XAT"]),
    "aws_secret_access_key": ("aws_secret_access_key = %s-AWS", ["%s-AWS"]),
    "private_token": ("PRIVATE-TOKEN: %s-GL", ["%s-GL"]),
    "proxy_authorization": ("Proxy-Authorization: Basic %s-PROXY", ["%s-PROXY"]),
    "set_cookie": ("set-cookie: sid=%s-SC; Path=/", ["%s-SC"]),
    "access_token_query": ("GET /cb?access_token=%s-AT&state=1", ["%s-AT"]),
    "api_key_camel": ('{"apiKey": "%s-AK"}', ["%s-AK"]),
    "x_goog_api_key": ("x-goog-api-key: %s-GOOG", ["%s-GOOG"]),
    "kubeconfig_token": ("users:\n- name: admin\n  user:\n    token: %s-KUBE\n", ["%s-KUBE"]),
    "jdbc_password": ("jdbc:postgresql://db/app?user=app&password=%s-JDBC", ["%s-JDBC"]),
    "url_token_userinfo": ("https://ghp_%s@github.com/o/r.git", ["ghp_%s"]),
    "url_user_password": ("https://alice:%s-URLPW@db.example/x", ["%s-URLPW"]),
    "authorization_bearer": ("Authorization: Bearer %s.abc-def", ["%s.abc-def"]),
    "cookie": ("Cookie: session=%s-CK; theme=dark", ["%s-CK"]),
    "json_password": ('{"password": "%s-JSONPW", "user": "bob"}', ["%s-JSONPW"]),
    "dict_password": ({"password": "%s-DICTPW", "user": "bob"}, ["%s-DICTPW"]),
    "client_secret": ("client_secret=%s-CS", ["%s-CS"]),
}

#: id -> (what the plugin receives, what must arrive intact)
LOOKALIKES: Dict[str, Any] = {
    "text": ("tokenizer=bpe-v2 max_tokens=4096 author=alice authority=ca.example",
             ["tokenizer=bpe-v2", "max_tokens=4096", "author=alice", "authority=ca.example"]),
    "mapping": ({"tokenizer": "bpe-v2", "max_tokens": 4096, "author": "alice",
                 "authority": "ca.example"}, ["bpe-v2", "4096", "alice", "ca.example"]),
    "prose": ("bearer token required; Basic setup failed; PWD=/home/app",
              ["bearer token required", "Basic setup failed", "PWD=/home/app"]),
}


def fill(value: Any) -> Any:
    """``value`` with ``%s`` replaced by the secret marker, recursively."""
    if isinstance(value, str):
        return value.replace("%s", S).replace("%%", "%")
    if isinstance(value, dict):
        return {k: fill(v) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v) for v in value]
    return value


def as_text(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


class Exposes(ServicePlugin):
    """Raises its payload from ``handle_ingress`` and from ``validate`` of the
    ``checked`` ingress, and returns ``shape`` from ``status()``."""

    def __init__(self, marker: str, shape: Any) -> None:
        self.marker = marker
        self.shape = shape
        self.ingresses = [Ingress("in"), Ingress("checked", validate=self.validate)]

    def validate(self, payload: Any) -> bool:
        raise ValueError("%s %s" % (self.marker, as_text(payload)))

    def handle_ingress(self, event: IngressEvent, ctx: Any) -> Any:
        raise RuntimeError("%s %s" % (self.marker, as_text(event.payload)))

    def status(self) -> Dict[str, Any]:
        return {"marker": self.marker, "shape": self.shape}


PLACES = ["status", "dead_letter", "error", "log"]
_SEEN: Dict[str, Dict[str, str]] = {}


def observe(row: str, value: Any) -> Dict[str, str]:
    """Every place ``value`` comes back out of a host, as text (computed once a row)."""
    if row in _SEEN:
        return _SEEN[row]
    marker = "marker-%s" % row
    lines: List[str] = []
    logger.enable("plugin_service")
    sink = logger.add(lines.append, level="TRACE", format="{level} {message} | {extra}",
                      filter="plugin_service")
    try:
        with PluginHost() as host:
            handle = host.add_service("exposes", Exposes(marker, value),
                                      ServiceConfig(fail_after=None))
            handle.start(timeout=HANG)
            failed = handle.submit(IngressEvent("in", "test", value)).exception(timeout=HANG)
            assert type(failed) is errors.DispatchFailed
            with pytest.raises(errors.InvalidEvent) as invalid:
                handle.submit(IngressEvent("checked", "test", value))
            status = handle.status()
            [letter] = host.dead_letters()
            assert letter.event.payload is value  # the original is kept to act on
            seen = {
                "status": "\n".join(
                    [d.message for d in status.diagnostics]
                    + [status.last_error.message, json.dumps(status.to_dict()),
                       json.dumps(host.status().to_dict())]),
                "dead_letter": json.dumps(letter.to_dict()) + "\n" + repr(letter),
                "error": "\n".join([str(failed), str(invalid.value), invalid.value.reason]),
            }
    finally:
        logger.remove(sink)
        logger.disable("plugin_service")
    seen["log"] = "\n".join(lines)
    _SEEN[row] = seen
    return seen


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("row", sorted(SHAPES))
def test_secret_shape_is_redacted(row: str, place: str) -> None:
    value, secrets = SHAPES[row]
    text = observe(row, fill(value))[place]
    assert "marker-%s" % row in text
    for secret in secrets:
        assert fill(secret) not in text


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("row", sorted(LOOKALIKES))
def test_lookalike_is_not_redacted(row: str, place: str) -> None:
    value, survivors = LOOKALIKES[row]
    text = observe("lookalike-" + row, value)[place]
    assert "marker-lookalike-%s" % row in text
    for survivor in survivors:
        assert survivor in text
