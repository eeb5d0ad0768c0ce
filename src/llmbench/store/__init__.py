"""The results store: SQLite in the user data directory (``$LLMBENCH_HOME``)."""

from llmbench.store._store import RunRecord, Store

__all__ = ["RunRecord", "Store"]
