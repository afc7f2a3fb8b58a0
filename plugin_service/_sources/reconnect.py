"""How a source reconnects after a failure: a capped exponential backoff, by tenacity."""
from __future__ import annotations

from typing import Any, Optional

import attrs
import tenacity  # type: ignore[import-untyped, unused-ignore]  # 6.1 has no py.typed

from .._checks import non_negative

__all__ = ["ReconnectPolicy"]

_NO_RETRYING: Any = None


def _seconds(instance: Any, attribute: Any, value: Any) -> None:
    non_negative(attribute.name, value, optional=False, number=True, allow_nan=False,
                 phrase="a number of seconds >= 0")


def _multiplier(instance: Any, attribute: Any, value: Any) -> None:
    non_negative(attribute.name, value, optional=False, number=True, allow_nan=False,
                 phrase="a number >= 1")
    if value < 1:
        raise ValueError("multiplier must be a number >= 1, got %r" % (value,))


def _attempts(instance: Any, attribute: Any, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or value < 0):
        raise ValueError("max_attempts must be an int >= 0 or None, got %r" % (value,))


@attrs.frozen
class ReconnectPolicy:
    """When a source connects again after ``connect()`` or ``receive()`` raised.

    The wait after the *n*-th failure in a row is ``initial * multiplier ** (n -
    1)``, capped at ``max``, plus up to ``jitter`` seconds at random (so many
    sources that failed together do not reconnect together). A connection that
    delivered an item starts the count again. After ``max_attempts`` reconnects
    in a row without an item the source gives up: its state becomes ``failed``
    (None, the default: it reconnects forever; 0: never).
    """

    initial: float = attrs.field(default=0.1, validator=_seconds)
    multiplier: float = attrs.field(default=2.0, validator=_multiplier)
    max: float = attrs.field(default=30.0, validator=_seconds)
    jitter: float = attrs.field(default=0.1, validator=_seconds)
    max_attempts: Optional[int] = attrs.field(default=None, validator=_attempts)

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` (>= 1) failures in a row."""
        wait: Any = tenacity.wait_exponential(multiplier=self.initial, exp_base=self.multiplier,
                                         max=self.max)
        if self.jitter:
            wait = wait + tenacity.wait_random(0, self.jitter)
        # The waits read the attempt number alone: no Retrying is needed here.
        state = tenacity.RetryCallState(_NO_RETRYING, None, (), {})
        state.attempt_number = max(1, failures)
        return float(wait(state))

    def gives_up(self, failures: int) -> bool:
        """Whether ``failures`` failures in a row are more than it retries."""
        return self.max_attempts is not None and failures > self.max_attempts
