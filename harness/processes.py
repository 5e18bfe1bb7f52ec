"""Real processes on loopback: free ports, readiness by polling, cleanup always.

Every process the suites start goes through :class:`ManagedProcess`. It runs in
its own process group so that stopping it also stops whatever it spawned, and a
module-level registry stops anything still alive when the interpreter exits, so
a failing or interrupted run leaves no server behind.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

LOOPBACK = "127.0.0.1"

_live: set[ManagedProcess] = set()


class StartupError(RuntimeError):
    """A component did not become ready; the message carries the tail of its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def run_command(
    argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], log: Path, timeout: float = 120.0
) -> None:
    """Run a setup command to completion; fail with its output if it fails."""
    with log.open("ab") as out:
        out.write(f"$ {' '.join(argv)}\n".encode())
        out.flush()
        try:
            result = subprocess.run(
                list(argv),
                cwd=cwd,
                env=dict(env),
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
        except FileNotFoundError as exc:
            raise StartupError(f"setup command not found: {argv[0]} ({exc})") from None
        except subprocess.TimeoutExpired:
            raise StartupError(f"setup command timed out after {timeout}s: {argv}") from None
    if result.returncode != 0:
        raise StartupError(
            f"setup command {list(argv)} exited with {result.returncode}:\n{tail(log)}"
        )


def tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log file, for error messages."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


class ManagedProcess:
    """A server process started by the suite, logged to a file and always stopped."""

    def __init__(
        self, name: str, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], log: Path
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.cwd = cwd
        self.env = dict(env)
        self.log = log
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None, f"{self.name} was not started"
        return self._proc.pid

    def start(self) -> ManagedProcess:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = self.log.open("ab")
        try:
            self._proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except FileNotFoundError as exc:
            raise StartupError(f"{self.name}: command not found: {self.argv[0]} ({exc})") from None
        finally:
            out.close()
        _live.add(self)
        return self

    def poll(self) -> int | None:
        """The exit code, or None while it runs."""
        return None if self._proc is None else self._proc.poll()

    def wait_exit(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` seconds for the process to exit by itself."""
        assert self._proc is not None
        try:
            return self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def wait_ready(self, url: str, *, timeout: float = 30.0) -> None:
        """Poll ``url`` until it answers 200, the process dies, or the deadline passes."""
        deadline = time.monotonic() + timeout
        last_error = "no answer yet"
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while time.monotonic() < deadline:
                code = self.poll()
                if code is not None:
                    raise StartupError(
                        f"{self.name} exited with {code} before it was ready:\n{tail(self.log)}"
                    )
                try:
                    response = client.get(url)
                    if response.status_code == 200:
                        return
                    last_error = f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    last_error = type(exc).__name__
                time.sleep(0.05)  # poll interval, not synchronisation
        self.stop()
        raise StartupError(
            f"{self.name} not ready at {url} after {timeout}s ({last_error}):\n{tail(self.log)}"
        )

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the process group."""
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, sig)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the process group, then SIGKILL after ``timeout``; return the exit code."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                proc.wait(timeout=timeout)
        # Reap anything left in the group (a worker the server forked).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        _live.discard(self)
        return proc.returncode


@atexit.register
def _stop_everything() -> None:
    for process in list(_live):
        process.stop(timeout=5.0)
