"""Claims: a run of a sweep is taken by one process before it starts, so that it runs once.

Two invocations of the same sweep (two terminals, three machines resuming it on one store) each
ask the store for every run before starting it. The claim is one row of ``claims`` per
``(sweep_id, key)``, written under the database's write lock (``BEGIN IMMEDIATE``) after checking,
inside that lock, that the run is neither stored yet nor held by someone alive:

* stored (``ok`` or ``failed``): ``finished``, nothing to do;
* held by another claimant whose lease runs and who is alive: ``held``, it will store the run;
* otherwise (no row, this very process, an expired lease, or a claimant on this host whose
  process is gone): ``claimed``, the row is (re)written with this process as its claimant.

The claimant renews its lease while the run runs (:func:`renew`) and deletes the row once the
record is stored (:func:`release`). A claimant on another host cannot be checked for life, so its
claim lasts until its lease runs out: a machine that dies holds its runs for one lease at most.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal

from llmbench.store._migrations import immediate

ClaimState = Literal["claimed", "finished", "held"]
LEASE_S = 60.0
"""How long a claim holds without renewal; the claimant renews it every third of that."""


@dataclass(frozen=True)
class Claimant:
    """A process, told apart from a later one that got the same pid by its start time."""

    pid: int
    host: str
    started: float

    def alive(self) -> bool | None:
        """Whether the process still runs; None on another host, where it cannot be told."""
        if self.host != _host():
            return None
        return _start_time(self.pid) == self.started


def this_process() -> Claimant:
    pid = os.getpid()
    return Claimant(pid, _host(), _start_time(pid) or 0.0)


def _host() -> str:
    """The host name, and on Linux the pid namespace: two containers may share a name, not pids."""
    name = socket.gethostname()
    try:
        return f"{name} (pid namespace {os.stat('/proc/self/ns/pid').st_ino})"
    except OSError:
        return name


def _start_time(pid: int) -> float | None:
    import psutil

    try:
        return round(psutil.Process(pid).create_time(), 2)
    except psutil.Error:
        return None


def claim(db: sqlite3.Connection, sweep_id: str, key: str, lease_s: float = LEASE_S) -> ClaimState:
    """Claim the run ``key`` of ``sweep_id`` for this process (see the module's rules)."""
    me = this_process()
    now = time.time()
    with immediate(db):
        stored = db.execute(
            "SELECT 1 FROM runs WHERE sweep_id = ? AND key = ? AND status IN ('ok', 'failed')", (sweep_id, key)
        ).fetchone()
        if stored:
            return "finished"
        row = db.execute(
            "SELECT pid, host, started, lease_expires FROM claims WHERE sweep_id = ? AND key = ?", (sweep_id, key)
        ).fetchone()
        if row is not None:
            holder = Claimant(int(row[0]), str(row[1]), float(row[2]))
            if holder != me and float(row[3]) > now and holder.alive() is not False:
                return "held"
        db.execute(
            "INSERT OR REPLACE INTO claims (sweep_id, key, pid, host, started, claimed_at, lease_expires)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (sweep_id, key, me.pid, me.host, me.started, datetime.now(timezone.utc).isoformat(), now + lease_s),
        )
    return "claimed"


def renew(db: sqlite3.Connection, sweep_id: str, keys: Iterable[str], lease_s: float = LEASE_S) -> set[str]:
    """Extend this process's claims on ``keys``; return those it no longer holds (taken over)."""
    me = this_process()
    keys = list(keys)
    lost = set()
    with db:
        for key in keys:
            cursor = db.execute(
                "UPDATE claims SET lease_expires = ? WHERE sweep_id = ? AND key = ? AND pid = ? AND host = ?"
                " AND started = ?",
                (time.time() + lease_s, sweep_id, key, me.pid, me.host, me.started),
            )
            if cursor.rowcount == 0:
                lost.add(key)
    return lost


def release(db: sqlite3.Connection, sweep_id: str, key: str) -> None:
    """Drop this process's claim on ``key`` (its record is stored, or it will not run here)."""
    me = this_process()
    with db:
        db.execute(
            "DELETE FROM claims WHERE sweep_id = ? AND key = ? AND pid = ? AND host = ? AND started = ?",
            (sweep_id, key, me.pid, me.host, me.started),
        )
