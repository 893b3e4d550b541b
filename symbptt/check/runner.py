"""The child process of ``symbptt check``: imports the user's file and calls its function.

Run by path (``python check_runner.py FILE DISPLAY DUMP TIMEOUT MEMORY OUTPUT CPU``), never
imported by symbptt's own process and never importing symbptt: only the standard library and
torch. The user's code lives in this process alone, held to the parent's limits before torch is
imported (:func:`bound`): MEMORY bytes of data (heap and anonymous mappings), files of at most
OUTPUT bytes (its stderr included: a write beyond fails with ``EFBIG``), CPU seconds of CPU
time (then ``SIGXCPU`` ends it), no core files; 0 leaves one unbounded. On Linux it is also
killed when the parent dies.

Protocol: each line on stdin is the path of a request written with ``torch.save``; the reply is
written with ``torch.save`` to that path + ``.out`` and announced by one line on the original
stdout. The user's own prints go to stderr (fd 1 is pointed there), so they cannot break the
protocol. Each request arms ``faulthandler.dump_traceback_later(TIMEOUT, exit=True)``: a call
that runs too long leaves its stack in DUMP and ends the process, which the parent reports.

Requests:
    {"kind": "load"}: import FILE; reply {"error": trimmed traceback} or {"missing": message}
        or {"ok": True}.
    {"kind": "call", "groups": [[args, ...], ...], "stop_on_ok": bool}: call the function on
        every argument tuple (cloned first), group by group; with stop_on_ok, stop after the
        first group in which some call returned usable gradients. Reply {"groups": [[result,
        ...], ...]}, each result {"status": "ok" | "error" | "bad", "values": {key: float64
        tensor}, "low_precision": bool, "ignored": [key, ...], "message": str}.
"""

from __future__ import annotations

import errno
import faulthandler
import importlib.util
import os
import resource
import signal
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path

FUNCTION = "manual_gradients"
ARGS = ("x", "h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh", "grad_h_n")
"""Its arguments, in order."""
SIGNATURE = f"{FUNCTION}({', '.join(ARGS)})"
KEYS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "h0")
"""The gradients it may return, by the names of its arguments."""
ALIASES = {
    "weight_ih_l0": "weight_ih",
    "weight_hh_l0": "weight_hh",
    "bias_ih_l0": "bias_ih",
    "bias_hh_l0": "bias_hh",
    "W_ih": "weight_ih",
    "W_hh": "weight_hh",
    "b_ih": "bias_ih",
    "b_hh": "bias_hh",
    "h_0": "h0",
    "hx": "h0",
}
"""Other names people give the gradients, mapped to the keys ``check`` documents."""


class _User:
    def __init__(self, path: str, display: str) -> None:
        self.path = str(Path(path).resolve())
        self.display = display
        self.function = None

    def trimmed(self, exc: BaseException) -> str:
        """The traceback of ``exc`` with only the frames in the user's file (or, for a write
        over the output limit, what happened)."""
        if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
            limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
            return f"{self.display} wrote more than {limit // 10**6} MB of output, the limit"
        frames = [
            traceback.FrameSummary(self.display, f.lineno, f.name, line=f.line)
            for f in traceback.extract_tb(exc.__traceback__)
            if _same_file(f.filename, self.path)
        ]
        lines = []
        if frames:
            lines.append(f"Traceback (most recent call last; frames in {self.display} only):\n")
            lines.extend(traceback.format_list(frames))
        lines.extend(traceback.format_exception_only(type(exc), exc))
        return "".join(lines).replace(self.path, self.display).rstrip("\n")

    def load(self) -> dict:
        name = Path(self.path).stem
        if not name.isidentifier() or name in sys.modules:
            name = "manual_gradients_file"
        sys.path[0] = str(Path(self.path).parent)
        spec = importlib.util.spec_from_file_location(name, self.path)
        if spec is None or spec.loader is None:
            return {"missing": f"{self.display} cannot be imported as Python source"}
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # the user's SystemExit is reported too
            return {"error": self.trimmed(exc)}
        function = getattr(module, FUNCTION, None)
        if not callable(function):
            return {"missing": f"{self.display} defines no function {FUNCTION}"}
        self.function = function
        return {"ok": True}

    def call(self, args: tuple) -> dict:
        import torch

        try:
            result = self.function(*(a.clone() for a in args))
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            return {"status": "error", "message": self.trimmed(exc)}
        shape = shapes(args[2].shape[1], args[3].shape[0])
        if not isinstance(result, Mapping):
            return _bad(f"{FUNCTION} returned a {type(result).__name__}, not a dict")
        values, ignored, low = {}, [], False
        for key, value in result.items():
            name = ALIASES.get(key, key) if isinstance(key, str) else None
            if name not in KEYS:
                ignored.append(repr(key))
                continue
            if value is None:  # "not computed"
                continue
            try:
                tensor = torch.as_tensor(value).detach()
            except Exception:
                return _bad(f"{key!r} is a {type(value).__name__}, not a tensor")
            if tensor.is_complex():
                return _bad(f"{key!r} is complex")
            low = low or (tensor.is_floating_point() and tensor.dtype != torch.float64)
            tensor = tensor.to("cpu", torch.float64)
            if _squeezed(tensor.shape) != _squeezed(shape[name]):
                return _bad(
                    f"{key!r} has shape {tuple(tensor.shape)}, the gradient of {name} "
                    f"has {shape[name]}"
                )
            values[name] = tensor.reshape(shape[name]).clone()
        if not values:
            return _bad(f"{FUNCTION} returned none of the keys {', '.join(KEYS)}")
        return {"status": "ok", "values": values, "low_precision": low, "ignored": ignored}


def shapes(input_size: int, hidden_size: int) -> dict[str, tuple[int, ...]]:
    """torch's shape of each gradient."""
    return {
        "weight_ih": (hidden_size, input_size),
        "weight_hh": (hidden_size, hidden_size),
        "bias_ih": (hidden_size,),
        "bias_hh": (hidden_size,),
        "h0": (hidden_size,),
    }


def _bad(message: str) -> dict:
    return {"status": "bad", "message": message}


def _squeezed(shape) -> tuple[int, ...]:
    return tuple(int(n) for n in shape if n != 1)


def _same_file(filename: str, path: str) -> bool:
    try:
        return str(Path(filename).resolve()) == path
    except (OSError, ValueError):
        return False


def _calls(user: _User, request: dict) -> dict:
    groups = []
    for group in request["groups"]:
        results = [user.call(args) for args in group]
        groups.append(results)
        if request["stop_on_ok"] and any(r["status"] == "ok" for r in results):
            break
    return {"groups": groups}


def bound(memory: int, output: int, cpu: int) -> None:
    """Hold this process to ``memory`` bytes of data, files of ``output`` bytes and ``cpu``
    seconds of CPU time (0: that one unbounded), without core files; die with the parent."""
    limits = (
        (resource.RLIMIT_DATA, memory, 0),
        (resource.RLIMIT_FSIZE, output, 0),
        (resource.RLIMIT_CPU, cpu, 5),  # SIGXCPU at the soft limit, SIGKILL 5 s later
        (resource.RLIMIT_CORE, 0, 0),
    )
    for which, value, grace in limits:
        if value or which == resource.RLIMIT_CORE:
            hard = resource.getrlimit(which)[1]
            top = value + grace if hard == resource.RLIM_INFINITY else min(value + grace, hard)
            resource.setrlimit(which, (min(value, top), top))
    if sys.platform == "linux":
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def main(argv: list[str]) -> None:
    path, display, dump_path, timeout = argv[0], argv[1], argv[2], float(argv[3])
    bound(*(int(value) for value in argv[4:7]))
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # the user's prints go to stderr
    dump = open(dump_path, "w")
    faulthandler.enable(file=dump)
    import torch

    torch.set_default_dtype(torch.float64)
    user = _User(path, display)
    for line in sys.stdin:
        request_path = line.strip()
        request = torch.load(request_path, weights_only=True)
        faulthandler.dump_traceback_later(timeout, exit=True, file=dump)
        try:
            reply = user.load() if request["kind"] == "load" else _calls(user, request)
        finally:
            faulthandler.cancel_dump_traceback_later()
        torch.save(reply, request_path + ".out")
        protocol.write("done\n")


if __name__ == "__main__":
    main(sys.argv[1:])
