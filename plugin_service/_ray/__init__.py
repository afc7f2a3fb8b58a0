"""The Ray backend: each service plugin runs in its own Ray actor process.

Everything the host promises stays on the host side, unchanged: the bounded
ingress queue, validation, serial dispatch, the watchdog's timeouts, counters,
diagnostics, dead letters, lifecycle and restart policy. What moves into the actor
is the plugin itself: a proxy plugin on the service's worker thread (``proxy``)
forwards ``start``, ``stop`` and ``status`` to the actor (``actor``), and the
``PipelineDispatcher`` (``pipeline``) hands it the queued events. At a deadline
the proxy cancels the actor task (``ray.cancel``) and tells the actor, so
``ctx.cancelled`` turns True inside it. A dead actor process is a
``PluginCrashed``: the in-flight event fails with ``DispatchFailed`` and the
service fails at once, so a ``RestartPolicy`` brings up a fresh actor.

Imports run one way: this package builds on ``plugin_service._service``, which
knows nothing of it. Nothing of Ray is imported until a ``RayBackend`` is used.
"""
from .backend import RayBackend

__all__ = ["RayBackend"]
