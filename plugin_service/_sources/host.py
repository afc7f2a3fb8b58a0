"""The sources part of ``PluginHost``: ``add_source`` and ``source``."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from .. import errors
from .base import IngressSource
from .handle import SourceHandle
from .reconnect import ReconnectPolicy
from .registry import SourceRegistry

if TYPE_CHECKING:  # pragma: no cover
    from .._service import ServiceHandle

__all__ = ["HostSources"]


class HostSources:
    """What ``PluginHost`` offers for sources (a part of it, as the service's
    parts are of ``ServiceHandle``); the host makes ``_sources``, stops them
    first in ``close()`` and reports them in ``status()``."""

    _sources: SourceRegistry
    _forked: bool
    _closed: bool

    if TYPE_CHECKING:  # pragma: no cover
        def service(self, name: str) -> "ServiceHandle[Any]": ...

        def _forked_error(self) -> errors.HostForked: ...

    def add_source(self, name: str, source: IngressSource, *, service: str, ingress: str,
                   overflow: str = "block",
                   reconnect: Optional[ReconnectPolicy] = None) -> SourceHandle:
        """Attach ``source``: the host reads it on a thread of its own and submits
        its events to ``ingress`` of ``service`` while that service is RUNNING
        (before or after the service starts; see the README's Sources).

        ``overflow`` says what a full queue does to a new item: ``"block"`` (stop
        reading until there is room), ``"drop_newest"`` (drop it) or
        ``"drop_oldest"`` (withdraw the source's oldest queued event, then queue
        it). ``reconnect`` is the backoff after a failure (default: reconnect
        forever with capped exponential backoff).

        Raises ``ValueError`` for a duplicate or blank name, a bad ``overflow``
        or a source attached already; ``TypeError`` for something that is not an
        ``IngressSource``; ``ServiceNotFound``; ``InvalidEvent`` for an ingress
        the service does not declare (when its plugin says before it starts);
        ``HostClosed`` after :meth:`close`, ``HostForked`` in a forked child.
        """
        if self._forked:
            raise self._forked_error()
        if self._closed:
            raise errors.HostClosed("host is closed; cannot add source %r" % (name,))
        return self._sources.add(name, source, self.service(service), ingress, overflow,
                                 reconnect)

    def source(self, name: str) -> SourceHandle:
        """The handle of source ``name``; raises ``SourceNotFound`` (``HostForked``
        in a forked child)."""
        if self._forked:
            raise self._forked_error()
        return self._sources.get(name)
