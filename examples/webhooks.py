"""Webhooks over HTTP, routed to a service plugin: a WSGI app on the standard library.

``POST /hooks/<ingress>`` with a JSON body becomes an ``IngressEvent`` for one
service of a running ``PluginHost`` (``ingress`` from the path, the JSON body as
payload, ``kind`` and ``source`` from the optional ``X-Event-Kind`` and
``X-Event-Source`` headers). The app never waits for the handler: it answers

* 202 ``{"correlation_id": ...}`` once the event is queued,
* 400 for a body that is not JSON or an event the service refuses (``InvalidEvent``),
* 429 (with ``Retry-After``) when the service's queue is full (``QueueFull``),
* 503 (with ``Retry-After``) when the service is not running
  (``ServiceUnavailable``, ``ServiceStopped``, ``ServiceFailed``),
* 404 for a hook the app does not serve (``hooks``) and any other path, 405 for
  another method on a hook.

``GET /status`` (or ``HEAD``) answers the service's status as JSON. SIGTERM (as
sent by ``docker stop`` or systemd) or Ctrl-C stops the server and drains every
accepted event; a second one stops at once (see ``drain_on_signals``). Run it with::

    python examples/webhooks.py
    curl -i -H 'Content-Type: application/json' -d '{"id": 1, "total": 9.5}' \\
        http://127.0.0.1:8000/hooks/orders
"""
from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import make_server

from plugin_service import (
    DispatchContext,
    Ingress,
    IngressEvent,
    PluginHost,
    ServiceConfig,
    ServicePlugin,
    drain_on_signals,
    errors,
)

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

_REASONS = {200: "OK", 202: "Accepted", 400: "Bad Request", 404: "Not Found",
            405: "Method Not Allowed", 411: "Length Required", 413: "Payload Too Large",
            429: "Too Many Requests", 503: "Service Unavailable"}

#: What each refusal of ``submit`` answers, with ``Retry-After`` for the transient ones.
_STATUS_OF_ERROR: tuple[tuple[type, int], ...] = (
    (errors.QueueFull, 429),
    (errors.InvalidEvent, 400),
    (errors.ServiceUnavailable, 503),
    (errors.ServiceStopped, 503),
    (errors.ServiceFailed, 503),
    (errors.ServiceNotFound, 503),
)


def _error(type_name: str, message: str, kind: str | None = None) -> dict[str, Any]:
    return {"error": {"type": type_name, "kind": kind, "message": message}}


def make_app(host: PluginHost, service_name: str, *, hooks: Iterable[str] | None = None,
             max_body: int = 1 << 20) -> WSGIApp:
    """A WSGI app that routes ``POST /hooks/<ingress>`` to service ``service_name``.

    ``hooks`` names the ingresses served (any other is 404); None serves every
    name, leaving an undeclared one to the service (400). Submits never block the
    request thread; the handler runs later on the service's worker. Bodies over
    ``max_body`` bytes are refused with 413.
    """
    served = None if hooks is None else frozenset(hooks)

    def respond(start_response: StartResponse, status: int, body: dict[str, Any],
                extra: Iterable[tuple[str, str]] = (), head: bool = False) -> list[bytes]:
        data = json.dumps(body).encode("utf-8")
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
        start_response(f"{status} {_REASONS[status]}", headers + list(extra))
        return [] if head else [data]  # HEAD: the GET's headers, no body

    def read_json(environ: Environ) -> tuple[int | None, Any]:
        """``(None, payload)``, or ``(status, error body)`` when the body is unusable."""
        try:
            length = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            return 411, _error("LengthRequired", "send the body with a Content-Length")
        if length < 0 or length > max_body:
            return 413, _error("PayloadTooLarge", f"the body exceeds {max_body} bytes")
        raw = environ["wsgi.input"].read(length)
        try:
            return None, json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            return 400, _error("MalformedJSON", f"the body is not JSON: {exc}")
        except RecursionError:  # a small body can nest deeper than the decoder recurses
            return 400, _error("MalformedJSON", "the body is not JSON this app reads: "
                                                "nested too deeply")

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        head = method == "HEAD"
        if path == "/status" and method in ("GET", "HEAD"):
            try:
                status = host.service(service_name).status().to_dict()
            except errors.ServiceNotFound as exc:
                return respond(start_response, 503, _error(type(exc).__name__, str(exc)),
                               head=head)
            return respond(start_response, 200, status, head=head)
        parts = path.split("/")
        if len(parts) != 3 or parts[:2] != ["", "hooks"] or not parts[2] \
                or (served is not None and parts[2] not in served):
            return respond(start_response, 404, _error("NotFound", f"no route for {path}"),
                           head=head)
        if method != "POST":
            return respond(start_response, 405, _error("MethodNotAllowed", "POST a hook"),
                           [("Allow", "POST")], head=head)
        problem, payload = read_json(environ)
        if problem is not None:
            return respond(start_response, problem, payload)
        event = IngressEvent(parts[2], environ.get("HTTP_X_EVENT_SOURCE") or "webhook",
                             payload, kind=environ.get("HTTP_X_EVENT_KIND") or "webhook")
        try:
            host.submit(service_name, event)
        except errors.PluginServiceError as exc:
            code = next((c for t, c in _STATUS_OF_ERROR if isinstance(exc, t)), 503)
            retry = [("Retry-After", "1")] if code in (429, 503) else []
            return respond(start_response, code,
                           _error(type(exc).__name__, str(exc), exc.kind.value), retry)
        return respond(start_response, 202, {"correlation_id": event.correlation_id})

    return app


class OrderPrinter(ServicePlugin):
    """The example service: prints each order and each GitHub ping it is sent."""

    ingresses = (Ingress("orders", validate=lambda payload: isinstance(payload, dict)),
                 Ingress("github"))

    def handle_ingress(self, event: IngressEvent, ctx: DispatchContext) -> None:
        payload = json.dumps(event.payload)
        print(f"{event.ingress} {event.kind} event {event.correlation_id}: {payload}",
              flush=True)


def _say_draining(name: str, forced: bool) -> None:
    if forced:
        print(f"{name} again: stopping now, dropping queued events", file=sys.stderr,
              flush=True)
    else:
        print(f"{name}: draining accepted events (again to stop now)", file=sys.stderr,
              flush=True)


def main(port: int = 8000) -> int:
    """Serve the example on 127.0.0.1:``port`` until SIGTERM or Ctrl-C, then stop
    taking requests and drain every accepted event."""
    with PluginHost() as host:
        host.add_service("webhooks", OrderPrinter, ServiceConfig(queue_size=100, fail_after=None))
        host.start_all(timeout=5)
        hooks = [ingress.name for ingress in OrderPrinter.ingresses]
        with make_server("127.0.0.1", port, make_app(host, "webhooks", hooks=hooks)) as server, \
                drain_on_signals(host, on_signal=_say_draining) as stop:
            # The server runs on a thread so that the main thread can wait for a stop
            # signal; leaving the block closes the host on the main thread, draining.
            serving = threading.Thread(target=server.serve_forever, name="http",
                                       daemon=True)
            serving.start()
            print(f"POST JSON to http://127.0.0.1:{server.server_port}/hooks/orders "
                  "(Ctrl-C stops)", flush=True)
            stop.wait()
            server.shutdown()  # no new request from here on; the accepted ones drain
            serving.join()
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 8000))
