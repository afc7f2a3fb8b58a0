"""Per-service configuration and the retry and restart policies."""
from __future__ import annotations

from typing import Any, Optional, Tuple, Type

import attrs

from ._checks import non_negative, positive_int

__all__ = ["ServiceConfig", "RetryPolicy", "RestartPolicy"]


# attrs validators over the checks every number of the library goes through.
def _non_negative(instance: Any, attribute: Any, value: Any) -> None:
    non_negative(attribute.name, value)


def _positive_int(instance: Any, attribute: Any, value: Any) -> None:
    positive_int(attribute.name, value)


def _optional_positive_int(instance: Any, attribute: Any, value: Any) -> None:
    positive_int(attribute.name, value, optional=True)


def _exception_types(value: Any) -> Tuple[Type[BaseException], ...]:
    if isinstance(value, type):
        value = (value,)
    types: Tuple[Type[BaseException], ...] = tuple(value)
    for item in types:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise TypeError("retry_on takes exception classes, got %r" % (item,))
    return types


@attrs.frozen
class RetryPolicy:
    """Redeliver a failed event inline on the worker, keeping order.

    Up to ``max_attempts`` deliveries in all; the wait before retry *n* is
    ``backoff * 2 ** (n - 1)`` capped at ``max_backoff``. Only exceptions matching
    ``retry_on`` are retried; timeouts never are.
    """

    max_attempts: int = attrs.field(default=3, validator=_positive_int)
    backoff: float = attrs.field(default=0.1, validator=_non_negative)
    max_backoff: float = attrs.field(default=5.0, validator=_non_negative)
    retry_on: Tuple[Type[BaseException], ...] = attrs.field(
        default=(Exception,), converter=_exception_types
    )


@attrs.frozen
class RestartPolicy:
    """Restart a FAILED running service after ``backoff`` seconds, at most
    ``max_restarts`` times within any ``window`` seconds."""

    max_restarts: int = attrs.field(default=3, validator=_positive_int)
    window: Optional[float] = attrs.field(default=60.0, validator=_non_negative)
    backoff: float = attrs.field(default=0.5, validator=_non_negative)


@attrs.frozen
class ServiceConfig:
    """How one service is run. ``None`` disables a timeout or threshold."""

    queue_size: int = attrs.field(default=32, validator=_positive_int)
    dispatch_timeout: Optional[float] = attrs.field(default=30.0, validator=_non_negative)
    cancel_grace: Optional[float] = attrs.field(default=5.0, validator=_non_negative)
    start_timeout: Optional[float] = attrs.field(default=30.0, validator=_non_negative)
    stop_timeout: Optional[float] = attrs.field(default=30.0, validator=_non_negative)
    fail_after: Optional[int] = attrs.field(default=1, validator=_optional_positive_int)
    retry: Optional[RetryPolicy] = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(RetryPolicy))
    )
    restart: Optional[RestartPolicy] = attrs.field(
        default=None,
        validator=attrs.validators.optional(attrs.validators.instance_of(RestartPolicy)),
    )
    #: Keep the ``queue_wait`` and ``handler_time`` histograms (off by default:
    #: three clock reads and two observations per event, see the README's Metrics).
    latency_histograms: bool = attrs.field(
        default=False, validator=attrs.validators.instance_of(bool))
