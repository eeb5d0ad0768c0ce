"""The results store: SQLite in the user data directory (``$LLMBENCH_HOME``)."""

from llmbench.store._store import Repetition, RunRecord, Store, SweepRecord, finite

__all__ = ["Repetition", "RunRecord", "Store", "SweepRecord", "finite"]
