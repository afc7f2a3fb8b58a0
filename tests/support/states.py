"""Short names for the lifecycle states the tests compare with."""
from __future__ import annotations

from plugin_service import LifecycleState

READY = LifecycleState.READY
STARTING = LifecycleState.STARTING
RUNNING = LifecycleState.RUNNING
STOPPING = LifecycleState.STOPPING
STOPPED = LifecycleState.STOPPED
FAILED = LifecycleState.FAILED
