"""The base class of a host-owned event source and what its methods are given.

A source is driven by the host on a thread of its own (one per source, named
``plugin_service-source-<name>``): the author writes no loop and no thread,
only the steps below. The host's loop, in outline::

    wait until the service is RUNNING
    connect()                              # raises: close(), backoff, connect again
    while not stopped:
        item = receive(ctx)                # None: nothing within ctx.remaining()
        event = to_event(item)             # raises: the item is rejected, counted
        submit event (overflow policy)     # on_outcome(event, future) once decided
    close()
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

from .. import errors
from .._context import CallContext
from .._events import IngressEvent

if TYPE_CHECKING:  # pragma: no cover
    from .._future import DispatchFuture

__all__ = ["IngressSource", "SourceContext", "SourceExhausted"]


class SourceExhausted(Exception):
    """Raised by a source's ``connect()`` or ``receive()`` when it has nothing more
    to give, ever (an iterable at its end). The host closes it and its state
    becomes ``stopped``; it is not reconnected and counts as no error."""


class SourceContext(CallContext):
    """What ``receive(ctx)`` is given: ``deadline`` (``time.monotonic()`` seconds)
    and ``remaining()``, the bound within which ``receive`` should return (None
    if nothing arrived); ``cancelled``, True once the host wants the thread back
    (a ``pause()``, a stop, ``close()``): return at once; and ``wait(seconds)``,
    a sleep that ends as soon as ``cancelled`` is set (True then).

    The bound is short (``RECEIVE_SLICE``, a fraction of a second) so that pause
    and close are answered promptly: a blocking read should use
    ``ctx.remaining()`` as its timeout rather than block without one.
    """

    __slots__ = ()


class IngressSource:
    """Base class of a source of events the host drives on a thread of its own.

    Subclass it and override :meth:`receive` (and, as needed, :meth:`connect`,
    :meth:`close`, :meth:`to_event`, :meth:`on_outcome`, :meth:`send`); attach an
    instance with ``host.add_source(name, source, service=..., ingress=...)``.

    Threads: ``connect``, ``receive``, ``to_event`` and ``close`` run on the
    source's thread, one at a time. ``on_outcome`` runs on whichever thread
    decides the event's outcome (the service's worker, mostly; the source's own
    thread for an event withdrawn by ``drop_oldest``): keep it short and
    thread-safe. ``send`` runs on the caller of ``SourceHandle.send``: the host
    serializes sends and never calls one concurrently with ``connect`` or
    ``close`` (it may run while ``receive`` does).

    Failures: anything ``connect`` or ``receive`` raises (but
    :class:`SourceExhausted`) is recorded in the source's ``last_error``,
    ``close()`` is called, and the host connects again after the backoff of its
    ``ReconnectPolicy``. Anything ``to_event`` raises rejects that item alone:
    the source goes on reading.

    ``name``, ``service`` and ``ingress`` are set by ``add_source`` before the
    first ``connect``: the source's name, and where its events go. An instance
    belongs to one host, attached once.
    """

    #: The source's name in its host (``add_source``'s ``name``); None until attached.
    name: Optional[str] = None
    #: The service its events go to; None until attached.
    service: Optional[str] = None
    #: The ingress of that service its events are addressed to; None until attached.
    ingress: Optional[str] = None
    # Set by add_source: the service's current declaration of that ingress (an
    # ``Ingress``), or None while it is not known (see ``accepts``).
    _declared: Optional[Callable[[], Any]] = None

    def connect(self) -> None:
        """Open the connection (or whatever the source reads from). Called on the
        source's thread when its service first runs, and again after each
        failure's backoff. May raise: a reconnect follows. The default does
        nothing."""

    def receive(self, ctx: SourceContext) -> Any:
        """Return the next item, or None when nothing arrived within
        ``ctx.remaining()`` seconds. Raise :class:`SourceExhausted` at the end of
        the source; anything else it raises means the connection is broken (the
        host closes it and reconnects after a backoff). Must be overridden."""
        raise NotImplementedError("%s must override receive(ctx)" % type(self).__name__)

    def close(self) -> None:
        """Release the connection. Called on the source's thread after a failure,
        at the end of the source and when the host stops it; it may be called
        after a ``connect`` that raised. Should not raise (what it raises is
        recorded and ignored). The default does nothing."""

    def to_event(self, item: Any) -> IngressEvent:
        """The event for one item ``receive`` returned. The default returns the
        item itself if it is an :class:`IngressEvent` and raises ``InvalidEvent``
        otherwise. Whatever it raises rejects this item alone (counted in
        ``rejected``, recorded as the source's ``last_error``)."""
        if isinstance(item, IngressEvent):
            return item
        raise errors.InvalidEvent(
            "source %r received a %s, not an IngressEvent: override to_event(item) to "
            "turn its items into events" % (self.name, type(item).__name__),
            service=self.service)

    def make_event(self, payload: Any = None, *, kind: str = "event") -> IngressEvent:
        """An event of ``kind`` carrying ``payload``, addressed to this source's
        ingress, with the source's name as its ``source``: what ``to_event``
        overrides mostly return."""
        return IngressEvent(self.ingress, self.name, payload,  # type: ignore[arg-type]
                            kind=kind)

    def accepts(self, kind: str) -> bool:
        """Whether the service's ingress, as declared by the plugin now running,
        takes events of ``kind`` (its ``event_kinds`` is empty or names it). False
        before the source is attached and while the service has not started: a
        source may use it to leave out optional events (a close notice, say)
        that would only be rejected. Thread-safe."""
        declared = self._declared
        ingress = declared() if declared is not None else None
        if ingress is None:
            return False
        kinds = getattr(ingress, "event_kinds", ())
        return not kinds or kind in kinds

    def on_outcome(self, event: IngressEvent, future: "DispatchFuture[Any]") -> None:
        """Called exactly once per submitted event, once its outcome is decided:
        ``future`` is done (a result, an exception, or cancelled when
        ``drop_oldest`` withdrew it). The acknowledgement hook of a source that
        can ack; the default does nothing (and costs nothing: the host only
        registers it when overridden). What it raises is recorded and ignored."""

    def send(self, data: Any) -> None:
        """Send ``data`` to the peer, for a source that can answer. Called through
        ``SourceHandle.send`` only, and only while the source is connected. A
        source that does not override it cannot send: ``SourceHandle.send``
        raises ``SourceUnavailable`` without calling it."""
        raise errors.SourceUnavailable(
            "source %r cannot send: %s does not implement send()"
            % (self.name, type(self).__name__), source=self.name, state=None)


def can_send(source: IngressSource) -> bool:
    """Whether ``source`` overrides :meth:`IngressSource.send`."""
    return type(source).send is not IngressSource.send


def acks(source: IngressSource) -> bool:
    """Whether ``source`` overrides :meth:`IngressSource.on_outcome`."""
    return type(source).on_outcome is not IngressSource.on_outcome
