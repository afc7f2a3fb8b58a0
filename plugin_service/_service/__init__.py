"""One service: its lifecycle, bounded ingress queue, worker thread and accounting.

Data flows one way: ``submit`` (caller's thread) -> mailbox -> worker thread ->
dispatcher -> plugin; outcomes come back through the future and the ledger.
Timeouts, bounds and restarts are timers on the host's single watchdog thread.
Start reading at ``core`` (the lock and what it guards) and ``handle``.
"""
from .breaker import BreakerDispatcher
from .core import DIAGNOSTICS_KEPT, Runtime
from .dispatch import Dispatcher, PluginSession, SerialDispatcher
from .handle import ServiceHandle
from .ledger import Failure
from .retry import Redelivery, RetryCutShort
from .status import PLUGIN_STATUS_BOUND

__all__ = ["BreakerDispatcher", "DIAGNOSTICS_KEPT", "PLUGIN_STATUS_BOUND", "Dispatcher",
           "Failure", "PluginSession", "Redelivery", "RetryCutShort", "Runtime", "SerialDispatcher",
           "ServiceHandle"]
