"""Who holds a lease: one id per gateway process, and whether a holder on this machine is gone.

Work one process does that others must not repeat (running a plan, executing an approved
request) is held under a lease its owner renews. A lease that runs out is what tells any
process, on any machine, that its holder died. On the holder's own machine a dead process
can be told at once: the same boot, the same PID namespace, and no process with its PID.
That check only ever shortens the wait for a holder that is provably gone: a PID that
exists (perhaps reused by another program) counts as alive until the lease runs out, and
an owner from another machine or container is never judged here.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
from dataclasses import dataclass
from functools import cache


@cache
def _machine() -> str:
    """This boot of this kernel and this PID namespace, hashed; empty where that cannot be told (not Linux)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as file:
            boot = file.read().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""
    return hashlib.sha256(f"{boot}/{namespace}".encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Owner:
    """A lease holder's id: `host:pid:machine:random` (the host and PID for people, the rest for `gone`)."""

    id: str

    @classmethod
    def new(cls) -> Owner:
        """A fresh id for this process (a gateway's start): unique across hosts, processes and restarts."""
        return cls(f"{socket.gethostname()}:{os.getpid()}:{_machine() or '-'}:{secrets.token_hex(4)}")

    def gone(self) -> bool:
        """True only if this owner ran on this machine and its process no longer exists."""
        parts = self.id.rsplit(":", 3)
        if len(parts) != 4 or not _machine() or parts[2] != _machine() or not parts[1].isdigit():
            return False
        pid = int(parts[1])
        if pid == os.getpid():
            return False  # this process is alive; an earlier gateway in it leaves its runs to their leases
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False  # a process with that PID exists (another user's)
        return False

    def __str__(self) -> str:
        return self.id
