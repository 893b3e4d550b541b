"""The parent side of ``symbptt check``'s child process: the user's code never runs here.

:class:`UserProcess` starts :mod:`symbptt.check_runner` by path in a new session, sends it
requests and reads its replies (files written with ``torch.save``, read back with
``weights_only=True``). Each request has a time limit; the child stops itself with
``faulthandler`` when a call runs over it and leaves the stack it was in, which becomes the
error's detail, trimmed to the user's file.
"""

from __future__ import annotations

import linecache
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from .check_runner import FUNCTION
from .errors import SymbpttError

RUNNER = Path(__file__).with_name("check_runner.py")
START_GRACE = 120.0
"""Seconds the child may take to start (importing torch) on top of the first request's limit."""
GRACE = 10.0
"""Seconds the parent waits beyond the limit before it kills the child itself."""

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
        self.path = Path(path)
        self.display = display
        self.timeout = timeout
        self._requests = 0

    def __enter__(self) -> UserProcess:
        self._tmp = tempfile.TemporaryDirectory(prefix="symbptt-check-")
        tmp = Path(self._tmp.name)
        self._dump = tmp / "stack.txt"
        self._stderr = open(tmp / "stderr.txt", "wb")
        self._process = subprocess.Popen(
            [
                sys.executable,
                str(RUNNER),
                str(self.path),
                self.display,
                str(self._dump),
                repr(self.timeout),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            start_new_session=True,
        )
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            self._process.stdin.close()
            self._process.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self._kill()
        self._process.stdout.close()
        self._stderr.close()
        self._tmp.cleanup()

    def _kill(self) -> None:
        try:
            os.killpg(self._process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._process.wait()

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
        status = self._process.wait()
        dump = self._dump.read_text(errors="replace") if self._dump.exists() else ""
        stack = self._stack(dump)
        if dump.startswith("Timeout"):
            where = "; it was stopped in:" if stack else ""
            return UserCodeError(
                f"{self.display}: {FUNCTION} did not return within {self.timeout:g} s "
                f"(an endless loop?){where}",
                stack,
            )
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
