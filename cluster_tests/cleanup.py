"""Undo a run, also one that crashed: the teardown stack and the sweep of leftovers.

A run owns things named after its pid (``pxc<pid>``): namespaces, links, its temp dir
``/tmp/pxc<pid>-*`` (PostgreSQL's data, Redis's socket, nginx's prefix). A run killed
with SIGKILL cannot clean up, so the next run sweeps what a *dead* pid left behind:
the processes started from those directories or marked with its pid (the ``socat``
forwarders to the machine's own Redis/PostgreSQL), the directories, the namespaces
(with whatever still runs inside) and the links. A live run's things are never touched.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cluster_tests import netns
from cluster_tests.netns import PREFIX, owner_pid, pid_alive

#: At most this many processes are scanned (bounds the /proc walk).
_MAX_PROCESSES = 100_000
#: The pid of the run that started a process, in its environment: the run's forwarders
#: (servers.py) start before ``$CLUSTER_TOPOLOGY`` exists, and rewrite no directory.
OWNER_ENV = "CLUSTER_RUN_OWNER"


def run_temp_dir(owner: int | None = None) -> Path:
    """A private temp dir named after the run's pid; others may traverse it (postgres)."""
    path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{owner or os.getpid()}-"))
    path.chmod(0o711)
    return path


def stale_temp_dirs() -> list[Path]:
    """``/tmp/pxc<pid>-*`` of runs whose pid is dead."""
    found = []
    for path in Path(tempfile.gettempdir()).glob(f"{PREFIX}*-*"):
        pid = owner_pid(path.name)
        if path.is_dir() and pid is not None and not pid_alive(pid):
            found.append(path)
    return found


def _processes() -> Iterator[tuple[int, str]]:
    """Each process's command line and working directory, as one string to search."""
    for count, entry in enumerate(os.listdir("/proc")):
        if count > _MAX_PROCESSES:
            return
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            raw = Path(f"/proc/{entry}/cmdline").read_bytes()
            cwd = os.readlink(f"/proc/{entry}/cwd")
            yield int(entry), raw.replace(b"\0", b" ").decode(errors="replace") + " " + cwd


def processes_using(paths: list[Path]) -> list[int]:
    """Pids whose command line or working directory is under one of ``paths``.

    Redis rewrites its command line (``redis-server ADDR:PORT``) but runs in its
    directory; postgres and nginx name theirs (``-D``, ``-p``) and run there too.
    """
    needles = [str(p) for p in paths]
    me = os.getpid()
    return [pid for pid, text in _processes() if pid != me and any(n in text for n in needles)]


def orphans_of_dead_runs() -> list[int]:
    """Pids started for a run whose owner is dead: their ``$CLUSTER_TOPOLOGY`` names it,
    or their ``$CLUSTER_RUN_OWNER`` (:data:`OWNER_ENV`) is its pid.

    The harness's processes (the fakes, the launchers) inherit the variable from the
    suite, the forwarders get the other; only ``atexit`` stops them, which a SIGKILLed
    suite never reaches.
    """
    found = []
    for count, entry in enumerate(os.listdir("/proc")):
        if count > _MAX_PROCESSES:
            break
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            owners = [_owner_of(item) for item in environ]
            if any(pid is not None and not pid_alive(pid) for pid in owners):
                found.append(int(entry))
    return found


def _owner_of(item: bytes) -> int | None:
    """The run pid one ``NAME=value`` of a process's environment names, if any."""
    name, _, value = item.decode(errors="replace").partition("=")
    if name == "CLUSTER_TOPOLOGY":
        return _run_pid(Path(value))
    if name == OWNER_ENV and value.isdigit():
        return int(value)
    return None


def _run_pid(topology_file: Path) -> int | None:
    """The owner pid in a run directory's name (``<stamp>-pxc<pid>/topology.json``)."""
    match = re.search(rf"-{PREFIX}(\d+)$", topology_file.parent.name)
    return int(match.group(1)) if match else None


def kill_and_wait(pids: list[int], timeout: float = 5.0) -> None:
    """SIGKILL ``pids`` (their process groups too) and wait until they are gone."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            group = os.getpgid(pid)
            if group != os.getpgrp():  # never our own group
                os.killpg(group, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.05)  # poll interval


def sweep() -> list[str]:
    """Remove every leftover of dead runs; returns what it removed (for the log)."""
    removed: list[str] = []
    dirs = stale_temp_dirs()
    pids = sorted(set(orphans_of_dead_runs()) | set(processes_using(dirs) if dirs else []))
    kill_and_wait(pids)
    removed += [f"process {pid}" for pid in pids]
    removed += netns.sweep()
    for path in dirs:
        shutil.rmtree(path, ignore_errors=True)
        removed.append(f"dir {path}")
    return removed


class Teardown(contextlib.ExitStack):
    """An ExitStack that also runs at interpreter exit (once): for what a fixture builds.

    ``pytest`` runs fixture teardown on failures and Ctrl-C; ``atexit`` covers the
    rest (an exception outside a test, SIGTERM turned into KeyboardInterrupt).
    """

    def __enter__(self) -> Teardown:
        atexit.register(self.close)
        return super().__enter__()

    def __exit__(self, *exc: Any) -> bool:
        atexit.unregister(self.close)
        return super().__exit__(*exc)

    def later(self, callback: Callable[..., object], *args: object) -> None:
        """Run ``callback(*args)`` at teardown, errors logged and ignored, so others still run."""

        def safe() -> None:
            try:
                callback(*args)
            except Exception as exc:  # teardown must go on
                print(f"cluster teardown: {getattr(callback, '__qualname__', callback)}: {exc!r}")

        self.callback(safe)
