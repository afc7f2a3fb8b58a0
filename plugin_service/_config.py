"""Per-service configuration and the retry and restart policies."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, Optional, Tuple, Type

import attrs

from ._breaker import BreakerPolicy
from ._checks import non_negative, positive_int

if TYPE_CHECKING:  # pragma: no cover
    from ._diagnostics import Diagnostic

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


def _number(name: str, value: Any, phrase: str, at_least: float, *,
            optional: bool = True, strictly: bool = False) -> None:
    """A finite int or float >= ``at_least`` (> it when ``strictly``), or None
    when ``optional``; else ``ValueError`` naming ``name`` and ``phrase``."""
    non_negative(name, value, optional=optional, number=True, allow_nan=False, phrase=phrase)
    if value is not None and (math.isinf(value) or value < at_least
                              or (strictly and value == at_least)):
        raise ValueError("%s must be %s, got %r" % (name, phrase, value))


def _multiplier(instance: Any, attribute: Any, value: Any) -> None:
    _number(attribute.name, value, "a finite number >= 1", 1.0, optional=False)


def _max_backoff(instance: Any, attribute: Any, value: Any) -> None:
    backoff = instance.backoff  # attrs validates once every field is set
    floor = backoff if isinstance(backoff, (int, float)) and not math.isnan(backoff) else 0.0
    _number(attribute.name, value, "a finite number >= backoff (%r) or None" % (backoff,),
            floor)


def _reset_after(instance: Any, attribute: Any, value: Any) -> None:
    _number(attribute.name, value, "a finite number of seconds > 0 or None", 0.0,
            strictly=True)


def _on_give_up(instance: Any, attribute: Any, value: Any) -> None:
    if value is not None and not callable(value):
        raise TypeError("on_give_up must be a callable(name, diagnostic) or None, got %r"
                        % (value,))


@attrs.frozen
class RestartPolicy:
    """Restart a FAILED running service automatically, at most ``max_restarts``
    times within any ``window`` seconds.

    Automatic restart *n* (counted from 0) waits ``backoff * multiplier ** n``
    seconds, capped at ``max_backoff``; *n* starts over once the service has run
    ``reset_after`` seconds without failing (never, with None), and whenever the
    host restarts it by hand (``restart()``). The defaults wait ``backoff`` every
    time.

    When a failure finds the ``window`` already holding ``max_restarts``
    automatic restarts, the service stays FAILED and ``on_give_up(name,
    diagnostic)`` is called (``diagnostic`` is ``status().failure``), once per
    give-up, on a new daemon thread of its own, never under a lock; what it
    raises is logged.
    """

    max_restarts: int = attrs.field(default=3, validator=_positive_int)
    window: Optional[float] = attrs.field(default=60.0, validator=_non_negative)
    backoff: float = attrs.field(default=0.5, validator=_non_negative)
    multiplier: float = attrs.field(default=1.0, kw_only=True, validator=_multiplier)
    max_backoff: Optional[float] = attrs.field(default=None, kw_only=True,
                                               validator=_max_backoff)
    reset_after: Optional[float] = attrs.field(default=None, kw_only=True,
                                               validator=_reset_after)
    on_give_up: Optional[Callable[[str, "Diagnostic"], Any]] = attrs.field(
        default=None, kw_only=True, validator=_on_give_up)


def _max_queue_age(instance: Any, attribute: Any, value: Any) -> None:
    _number(attribute.name, value, "a finite number of seconds > 0 or None", 0.0,
            strictly=True)


def _stack_after(instance: Any, attribute: Any, value: Any) -> None:
    _number(attribute.name, value, "a finite number of seconds >= 0 or None", 0.0)


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
    #: Pause dispatch while the events keep failing (README: Circuit breaker).
    breaker: Optional[BreakerPolicy] = attrs.field(
        default=None,
        validator=attrs.validators.optional(attrs.validators.instance_of(BreakerPolicy)))
    #: Seconds an event may wait in the queue before it expires (README: Event
    #: deadlines); None: no limit.
    max_queue_age: Optional[float] = attrs.field(default=None, kw_only=True,
                                                 validator=_max_queue_age)
    #: ``status().handler_stack`` once the handler has run this many seconds
    #: (README: Where is the stuck handler?); an overdue handler's always, and
    #: with None only that.
    stack_after: Optional[float] = attrs.field(default=None, kw_only=True,
                                               validator=_stack_after)
