"""The parent side of ``symbptt check``'s child process: the user's code never runs here.

:class:`UserProcess` starts :mod:`symbptt.check.runner` by path in a new session, sends it
requests and reads its replies (files written with ``torch.save``, read back with
``weights_only=True``). Each request has a time limit; the child stops itself with
``faulthandler`` when a call runs over it and leaves the stack it was in, which becomes the
error's detail, trimmed to the user's file.

The child is bounded (:func:`symbptt.check.runner.bound`): its data to
``SYMBPTT_MAX_MEMORY_GB`` (:data:`symbptt.limits.MEMORY`), each file it writes (its output
included) to :data:`MAX_OUTPUT`, its CPU time to :data:`START_GRACE` + :data:`CPU_PER_TIMEOUT`
times the time limit. Its temporary files go to a folder of its own, removed at the end.
Whenever the parent leaves (a reply, an error, a time-out, Ctrl-C, SIGTERM), the child's whole
process group is killed, so nothing the user's code started outlives ``check``.
"""

from __future__ import annotations

import linecache
import math
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from ..errors import SpecError, SymbpttError
from ..limits import MEMORY, SECONDS, duration
from .runner import FUNCTION

RUNNER = Path(__file__).with_name("runner.py")
START_GRACE = 120.0
"""Seconds the child may take to start (importing torch) on top of the first request's limit."""
GRACE = 10.0
"""Seconds the parent waits beyond the limit before it kills the child itself."""
MAX_OUTPUT = 64 * 10**6
"""Bytes the child may write to any one file, its stderr (the user's prints) included."""
CPU_PER_TIMEOUT = 10
"""The child's CPU time, beyond :data:`START_GRACE`, in time limits (all its calls together)."""

_FRAME = re.compile(r'^\s*File "(?P<file>.+)", line (?P<line>\d+) in (?P<name>\S+)')


class UserCodeError(SymbpttError):
    """The user's file cannot be run: it raised, hung, crashed or lacks the function.

    ``details`` is the user's traceback (frames in their file only), or the stack a timed-out
    call was in; empty when there is none.
    """

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


class UserProcess:
    """A child process that imports ``path`` and calls its function on request."""

    def __init__(self, path: Path, display: str, timeout: float) -> None:
        """Raises :class:`SpecError` for a ``timeout`` that is not a positive number of
        seconds within ``SYMBPTT_MAX_SECONDS``."""
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise SpecError(f"--timeout must be a number of seconds, got {timeout!r}")
        if not (math.isfinite(timeout) and timeout > 0):
            raise SpecError(f"--timeout must be a positive number of seconds, got {timeout:g}")
        if timeout > SECONDS.maximum():
            raise SpecError(
                f"--timeout {timeout:g} is over the limit of {duration(SECONDS.maximum())}; "
                f"set {SECONDS.variable}={math.ceil(timeout)} to allow it"
            )
        self.path = Path(path)
        self.display = display
        self.timeout = timeout
        self._requests = 0

    def __enter__(self) -> UserProcess:
        self._tmp = tempfile.TemporaryDirectory(prefix="symbptt-check-")
        tmp = Path(self._tmp.name)
        self._dump = tmp / "stack.txt"
        self._stderr = open(tmp / "stderr.txt", "wb")
        memory = MEMORY.maximum()
        self.cpu = math.ceil(START_GRACE + CPU_PER_TIMEOUT * self.timeout)
        self._terminate = None
        if threading.current_thread() is threading.main_thread():
            self._terminate = signal.signal(signal.SIGTERM, _terminated)
        try:
            self._process = subprocess.Popen(
                [
                    sys.executable,
                    str(RUNNER),
                    str(self.path),
                    self.display,
                    str(self._dump),
                    repr(self.timeout),
                    str(int(memory) if math.isfinite(memory) else 0),
                    str(MAX_OUTPUT),
                    str(self.cpu),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                start_new_session=True,
                env={**os.environ, "TMPDIR": str(tmp)},
            )
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(self, exc_type, *exc_info) -> None:
        try:
            if exc_type is None:  # done: the child ends on its own when stdin closes
                try:
                    self._process.stdin.close()
                    select.select([self._process.stdout], [], [], 5)  # EOF: it has ended
                except OSError:
                    pass
            self._kill()  # the group: whatever the user's code started, and a child that hangs
            self._process.stdout.close()
        finally:
            self._release()

    def _release(self) -> None:
        """Close the child's stderr file, remove the folder, restore SIGTERM's handler."""
        self._stderr.close()
        self._tmp.cleanup()
        if self._terminate is not None:
            signal.signal(signal.SIGTERM, self._terminate)

    def _kill(self) -> int:
        """Kill the child's process group, then reap the child; return its exit status.

        The group goes first: until the child is reaped its id cannot be taken by another
        process group, so the signal reaches no one else.
        """
        if self._process.returncode is None:
            try:
                os.killpg(self._process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        return self._process.wait()

    def request(self, payload: dict) -> dict:
        """Send one request; return the child's reply, or raise :class:`UserCodeError`."""
        import torch

        self._requests += 1
        path = Path(self._tmp.name) / f"request{self._requests}.pt"
        torch.save(payload, path)
        limit = self.timeout + GRACE + (START_GRACE if self._requests == 1 else 0.0)
        try:
            self._process.stdin.write(f"{path}\n".encode())
            self._process.stdin.flush()
        except BrokenPipeError:
            raise self._died() from None
        ready, _, _ = select.select([self._process.stdout], [], [], limit)
        line = self._process.stdout.readline() if ready else b""
        if not ready:
            self._kill()
            raise UserCodeError(
                f"{self.display}: {FUNCTION} did not return within {self.timeout:g} s "
                "and was killed"
            )
        if line.strip() != b"done":
            raise self._died()
        return torch.load(f"{path}.out", weights_only=True)

    def _died(self) -> UserCodeError:
        """Why the child ended before replying: the timeout, a crash, or an exit of its own."""
        status = self._kill()
        dump = self._dump.read_text(errors="replace") if self._dump.exists() else ""
        stack = self._stack(dump)
        if dump.startswith("Timeout"):
            where = "; it was stopped in:" if stack else ""
            return UserCodeError(
                f"{self.display}: {FUNCTION} did not return within {self.timeout:g} s "
                f"(an endless loop?){where}",
                stack,
            )
        if -status in self._SIGNALS:
            reason = self._SIGNALS[-status].format(cpu=self.cpu)
            return UserCodeError(f"{self.display}: the process running it {reason}", stack)
        if "Fatal Python error" in dump:
            first = dump.strip().splitlines()[0]
            return UserCodeError(f"{self.display}: the process running it crashed: {first}", stack)
        self._stderr.flush()
        tail = (Path(self._tmp.name) / "stderr.txt").read_text(errors="replace").splitlines()
        return UserCodeError(
            f"{self.display}: the process running it exited with status {status} before "
            f"{FUNCTION} returned",
            "\n".join(tail[-15:]),
        )

    _SIGNALS = {
        signal.SIGXCPU: "used more than {cpu} s of CPU time, the limit, and was stopped",
        signal.SIGKILL: "was killed (out of memory, or more than {cpu} s of CPU time?)",
    }
    """How the child was ended, by the signal that ended it."""

    def _stack(self, dump: str) -> str:
        """The frames of a faulthandler dump that are in the user's file, innermost last."""
        resolved = str(self.path.resolve())
        frames = []
        lines = dump.splitlines()
        starts = [i for i, line in enumerate(lines) if "(most recent call first)" in line]
        for line in lines[starts[0] + 1 :] if starts else []:
            if not line.strip():
                break  # the first thread listed is the one that was running
            match = _FRAME.match(line)
            if match and match["file"] == resolved:
                number = int(match["line"])
                source = linecache.getline(resolved, number).strip()
                frames.append(
                    f'  File "{self.display}", line {number}, in {match["name"]}\n    {source}'
                )
        return "\n".join(reversed(frames))


def _terminated(signum: int, frame: object) -> None:
    """SIGTERM while a child runs: leave through the ``with`` block, which kills it."""
    raise SystemExit(128 + signum)
