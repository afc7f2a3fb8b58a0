"""Dead letters beyond the host's memory: the sink a host hands each one to
(``sink``), the SQLite file that keeps them (``sqlite``, ``stored``), and
re-drive (``redrive``)."""
from .redrive import HostRedrive, Letters
from .sink import DeadLetterSinkStatus
from .sqlite import SQLiteDeadLetterSink
from .stored import StoredDeadLetter

__all__ = ["HostRedrive", "Letters", "DeadLetterSinkStatus", "SQLiteDeadLetterSink",
           "StoredDeadLetter"]
