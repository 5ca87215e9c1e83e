"""Naming the process that holds a lease, and telling when that process is gone.

Leases (a token refresh, a running run) outlive their holder when it is killed.
Each names its holder as ``host|pid``; a process on the same machine that finds
the holder's pid gone (or a zombie) can finish the holder's work at once instead
of waiting the lease out. Holders on other machines are waited for.
"""

from __future__ import annotations

import os
import socket

__all__ = ["holder", "holder_dead", "set_label"]

_HOST = socket.gethostname()[:24]
_LABEL = {"text": ""}


def set_label(label: str) -> None:
    """Name what this process belongs to (a worker's pool process: its worker), so a
    lease it holds says whose it is."""
    _LABEL["text"] = label


def holder(labelled: bool = True) -> str:
    """This process, as a lease names it (read each time: a fork has a new pid), with
    its label after a second ``|`` when it has one; at most 64 characters."""
    label = _LABEL["text"] if labelled else ""
    return f"{_HOST}|{os.getpid()}|{label}"[:64] if label else f"{_HOST}|{os.getpid()}"


def holder_dead(name: str) -> bool:
    """True when ``name`` (``host|pid…``) is a process of this machine that no longer
    runs; False for other machines, this process, or a name it cannot read."""
    parts = name.split("|")
    if len(parts) < 2 or parts[0] != _HOST or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists, owned by another user
        return False
    try:  # a killed child its parent has not reaped yet
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False
