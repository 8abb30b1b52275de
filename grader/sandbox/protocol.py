"""The protocol between the judge and the sandbox: operations, and the data-only wire.

Both sides import this module and nothing else of each other. It names every operation
the judge may ask of a solution process (`Op`) and of the zygote (`ZygoteOp`), and frames
the values that cross.

A frame is a JSON header plus raw byte buffers:

    u32 header length | u32 buffer count | header (UTF-8 JSON) | (u64 length | bytes)*

Values are encoded as tagged JSON. Tensors and arrays travel as dtype, shape and raw bytes
and are rebuilt as plain `torch.Tensor` / `numpy.ndarray`, never subclasses, in memory
followed by ZERO_TAIL zero bytes (so a read just past the end is defined). Nothing is
ever unpickled: a value that is not data stays where it was made and the other side gets
a reference (`{"$ref": id}`). Decoding checks every limit (sizes, nesting, dtypes), since
the solution side is untrusted.
"""

from __future__ import annotations

import json
import math
import select
import socket
import struct
import time
from collections.abc import Callable
from functools import cache
from typing import Any

MAX_HEADER = 64 << 20
MAX_BUFFERS = 1 << 16
DEFAULT_MAX_FRAME = 256 << 20  # bytes of buffers in one frame; per exercise: max_frame_mb
MAX_DEPTH = 64
ZERO_TAIL = 64
"""Bytes of zeros that follow, in memory, every tensor and array a side receives. A kernel
that reads a few elements past the end (a mask off by one) then reads zeros, on every run,
instead of whatever the allocator left there; a check that builds its inputs with
`grader.checks.zero_tail` gives a known mistake the same zeros in the judge."""
_ZEROS = bytes(ZERO_TAIL)


class WireError(Exception):
    """A frame on the wire was malformed or broke a limit (size, depth, dtype)."""


class FrameTooLarge(WireError):
    """A frame's buffers add up to more than the receiver accepts."""

    def __init__(self, size: int, limit: int):
        self.size, self.limit = size, limit
        super().__init__(f"a value of at least {size / (1 << 20):.0f} MiB, over the {limit / (1 << 20):.0f} MiB limit")


class Op:
    """What the judge asks of a solution process (the "op" of a request)."""

    CALL = "call"  # target(.path...)(*args, **kwargs)
    GETATTR = "getattr"
    SETATTR = "setattr"
    OPERATOR = "operator"  # one of server.OPERATORS on data and references
    PROBE = "probe"  # a trusted probe from grader.sandbox.probes, by name


class Reply:
    """Keys of what a solution process sends back."""

    READY = "ready"  # first message: {"names": {name: "callable" | "data"}}
    IMPORT_ERROR = "import_error"
    OK = "ok"
    ERROR = "error"  # {"type", "message", "traceback"}
    OUTPUT = "output"  # what the student printed during the request


class ZygoteOp:
    """Requests on the zygote's control socket (JSON lines, file descriptors attached)."""

    SPAWN = "spawn"  # fork a solution process; fds: the wire, the capture file
    WAIT = "wait"  # {"pid", "timeout"} -> {"status": int | None}
    KILL = "kill"  # {"pid"}: kill a solution process and everything it started
    DUMP_STACK = "dump_stack"  # {"pid"}: have a solution process write its threads' stacks to its capture
    EXIT = "exit"

@cache
def _libs() -> tuple[Any, Any, dict[str, Any], dict[Any, str]]:
    """numpy, torch and the tensor dtypes the wire carries, imported on first use, so
    that naming the operations (the judge starting its zygote) does not wait for torch."""
    import numpy as np
    import torch

    dtypes = {
        name: getattr(torch, name)
        for name in (
            "float64", "float32", "float16", "bfloat16", "complex64", "complex128",
            "int64", "int32", "int16", "int8", "uint8", "bool",
            "uint16", "uint32", "uint64", "float8_e4m3fn", "float8_e5m2",
        )
        if hasattr(torch, name)
    }
    return np, torch, dtypes, {v: k for k, v in dtypes.items()}


NUMPY_KINDS = set("biufc")


class Ref:
    """A reference to an object living on the other side, as decoded from the wire."""

    __slots__ = ("id", "type", "callable")

    def __init__(self, id: int, type: str = "object", callable: bool = False):
        self.id, self.type, self.callable = id, type, callable


# --- encoding ----------------------------------------------------------------------------


def encode(value: Any, as_ref: Callable[[Any], dict[str, Any]]) -> tuple[Any, list[bytes]]:
    """Turn `value` into (JSON-able header, buffers). `as_ref(obj)` handles non-data objects."""
    np, torch, _, TENSOR_DTYPE_NAMES = _libs()
    buffers: list[bytes] = []

    def enc(v: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise WireError(f"value nested more than {MAX_DEPTH} levels deep")
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, int):
            return v if -(1 << 63) <= v < (1 << 63) else {"$int": str(v)}
        if isinstance(v, float):
            return v if math.isfinite(v) else {"$float": repr(v)}
        if isinstance(v, complex):
            return {"$complex": [enc(v.real, depth + 1), enc(v.imag, depth + 1)]}
        if isinstance(v, torch.Tensor):
            return enc_tensor(v)
        if isinstance(v, np.ndarray) and v.dtype.kind in NUMPY_KINDS:
            return enc_array(v, scalar=False)
        if isinstance(v, np.generic) and np.dtype(type(v)).kind in NUMPY_KINDS:
            return enc_array(np.asarray(v), scalar=True)
        if isinstance(v, torch.dtype) and v in TENSOR_DTYPE_NAMES:
            return {"$dtype": TENSOR_DTYPE_NAMES[v]}
        if isinstance(v, torch.device):
            return {"$device": str(v)}
        if isinstance(v, (bytes, bytearray)):
            buffers.append(bytes(v))
            return {"$bytes": len(buffers) - 1}
        if isinstance(v, slice):
            return {"$slice": [enc(v.start, depth + 1), enc(v.stop, depth + 1), enc(v.step, depth + 1)]}
        if isinstance(v, list):
            return [enc(x, depth + 1) for x in v]
        if isinstance(v, tuple):  # torch.Size and named tuples travel as plain tuples
            return {"$tuple": [enc(x, depth + 1) for x in v]}
        if isinstance(v, dict):
            return {"$dict": [[enc(k, depth + 1), enc(x, depth + 1)] for k, x in v.items()]}
        return as_ref(v)

    def enc_tensor(t: Any) -> Any:
        t = torch.Tensor.detach(t)
        if t.layout != torch.strided or t.device.type == "meta":
            raise WireError(f"cannot send a {t.layout} tensor on device {t.device}")
        if t.dtype not in TENSOR_DTYPE_NAMES:
            raise WireError(f"cannot send a tensor of dtype {t.dtype}")
        t = t.to("cpu").contiguous()
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        buffers.append(raw)
        return {
            "$tensor": len(buffers) - 1,
            "dtype": TENSOR_DTYPE_NAMES[t.dtype],
            "shape": list(t.shape),
        }

    def enc_array(a: Any, scalar: bool) -> Any:
        buffers.append(a.tobytes(order="C"))
        return {"$ndarray": len(buffers) - 1, "dtype": a.dtype.str, "shape": list(a.shape), "scalar": scalar}

    return enc(value, 0), buffers


# --- decoding ----------------------------------------------------------------------------


def decode(header: Any, buffers: list[bytes], from_ref: Callable[[Ref], Any]) -> Any:
    """Rebuild a value from the wire; every object is a plain builtin, tensor or array."""
    np, torch, TENSOR_DTYPES, _ = _libs()

    def buf(i: Any) -> bytes:
        if type(i) is not int or not 0 <= i < len(buffers):
            raise WireError(f"bad buffer index {i!r}")
        return buffers[i]

    def tailed(raw: bytes) -> bytearray:
        """`raw` followed by ZERO_TAIL zeros; a received buffer grows in place (no copy for a
        large one: realloc moves pages), and a frame names each buffer once."""
        if isinstance(raw, bytearray):
            raw.extend(_ZEROS)
            return raw
        out = bytearray(len(raw) + ZERO_TAIL)
        out[: len(raw)] = raw
        return out

    def shape_of(s: Any) -> tuple[int, ...]:
        if type(s) is not list or len(s) > 32 or not all(type(n) is int and n >= 0 for n in s):
            raise WireError(f"bad shape {s!r}")
        return tuple(s)

    def dec(v: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise WireError(f"value nested more than {MAX_DEPTH} levels deep")
        if v is None or type(v) in (bool, int, float, str):
            return v
        if type(v) is list:
            return [dec(x, depth + 1) for x in v]
        if type(v) is not dict or len(v) == 0:
            raise WireError(f"unexpected value {type(v).__name__}")
        tag = next(iter(v))
        if tag == "$tuple":
            return tuple(dec(x, depth + 1) for x in _list(v[tag]))
        if tag == "$dict":
            out = {}
            for pair in _list(v[tag]):
                if type(pair) is not list or len(pair) != 2:
                    raise WireError("bad dict item")
                key = dec(pair[0], depth + 1)
                if isinstance(key, (list, dict, torch.Tensor, np.ndarray)):
                    raise WireError("unhashable dict key")
                out[key] = dec(pair[1], depth + 1)
            return out
        if tag == "$tensor":
            dtype = TENSOR_DTYPES.get(v.get("dtype"))
            if dtype is None:
                raise WireError(f"unknown tensor dtype {v.get('dtype')!r}")
            shape = shape_of(v.get("shape"))
            raw = buf(v[tag])
            itemsize = torch.empty((), dtype=dtype).element_size()
            if len(raw) != math.prod(shape) * itemsize:
                raise WireError("tensor byte count does not match its shape and dtype")
            if not raw:
                return torch.empty(shape, dtype=dtype)
            if dtype == torch.bool:  # any byte but 0 or 1 would be an invalid bool: compare
                flags = torch.frombuffer(bytearray(len(raw) + ZERO_TAIL), dtype=torch.bool, count=len(raw))
                raw = raw if isinstance(raw, bytearray) else bytearray(raw)  # frombuffer wants it writable
                return torch.ne(torch.frombuffer(raw, dtype=torch.uint8), 0, out=flags).reshape(shape)
            return torch.frombuffer(tailed(raw), dtype=dtype, count=math.prod(shape)).reshape(shape)
        if tag == "$ndarray":
            try:
                dtype = np.dtype(v.get("dtype"))
            except TypeError:
                raise WireError(f"unknown array dtype {v.get('dtype')!r}") from None
            if dtype.kind not in NUMPY_KINDS or dtype.hasobject:
                raise WireError(f"array dtype {dtype} is not data")
            shape = shape_of(v.get("shape"))
            raw = buf(v[tag])
            if len(raw) != math.prod(shape) * dtype.itemsize:
                raise WireError("array byte count does not match its shape and dtype")
            a = np.frombuffer(tailed(raw), dtype=dtype, count=math.prod(shape)).reshape(shape)
            return a[()] if v.get("scalar") else a
        if tag == "$float":
            if v[tag] not in ("nan", "inf", "-inf"):
                raise WireError("bad float")
            return float(v[tag])
        if tag == "$int":
            s = v[tag]
            if type(s) is not str or len(s) > 5000:
                raise WireError("bad int")
            return int(s)
        if tag == "$complex":
            re, im = (dec(x, depth + 1) for x in _list(v[tag]))
            return complex(re, im)
        if tag == "$dtype":
            if v[tag] not in TENSOR_DTYPES:
                raise WireError("bad dtype")
            return TENSOR_DTYPES[v[tag]]
        if tag == "$device":
            return torch.device(str(v[tag]))
        if tag == "$bytes":
            return bytes(buf(v[tag]))
        if tag == "$slice":
            return slice(*(dec(x, depth + 1) for x in _list(v[tag])))
        if tag == "$ref":
            if type(v[tag]) is not int:
                raise WireError("bad reference")
            return from_ref(Ref(v[tag], str(v.get("type", "object"))[:200], bool(v.get("callable"))))
        raise WireError(f"unknown tag {tag!r}")

    return dec(header, 0)


def _list(v: Any) -> list[Any]:
    if type(v) is not list:
        raise WireError("expected a list")
    return v


# --- framing -------------------------------------------------------------------------------


class Deadline:
    def __init__(self, seconds: float | None):
        self.end = None if seconds is None else time.monotonic() + seconds

    def remaining(self) -> float | None:
        return None if self.end is None else max(0.0, self.end - time.monotonic())


class FrameTimeout(Exception):
    pass


class PeerClosed(Exception):
    pass


def send_frame(sock: socket.socket, header: Any, buffers: list[bytes], deadline: Deadline | None = None) -> None:
    head = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    parts = [struct.pack("<II", len(head), len(buffers)), head]
    for b in buffers:
        parts.append(struct.pack("<Q", len(b)))
        parts.append(b)
    deadline = deadline or Deadline(None)
    for part in parts:
        view = memoryview(part)
        while view:
            _wait(sock, deadline, write=True)
            try:
                n = sock.send(view)
            except (BrokenPipeError, ConnectionResetError):
                raise PeerClosed() from None
            view = view[n:]


def recv_frame(
    sock: socket.socket, deadline: Deadline | None = None, max_bytes: int = DEFAULT_MAX_FRAME
) -> tuple[Any, list[bytes]]:
    """Receive one frame. Raises FrameTooLarge, before reading the data, when its buffers
    add up to more than `max_bytes`."""
    deadline = deadline or Deadline(None)
    head_len, n_buffers = struct.unpack("<II", _recv_exact(sock, 8, deadline))
    if head_len > MAX_HEADER or n_buffers > MAX_BUFFERS:
        raise WireError("frame header over the size limit")
    try:
        header = json.loads(_recv_exact(sock, head_len, deadline))
    except ValueError:
        raise WireError("frame header is not valid JSON") from None
    buffers, total = [], 0
    for _ in range(n_buffers):
        (n,) = struct.unpack("<Q", _recv_exact(sock, 8, deadline))
        total += n
        if total > max_bytes:
            raise FrameTooLarge(total, max_bytes)
        buffers.append(_recv_exact(sock, n, deadline))
    return header, buffers


def _wait(sock: socket.socket, deadline: Deadline, write: bool = False) -> None:
    remaining = deadline.remaining()
    if remaining is None:
        return
    poller = select.poll()
    poller.register(sock, select.POLLOUT if write else select.POLLIN)
    if not poller.poll(remaining * 1000):
        raise FrameTimeout()


def _recv_exact(sock: socket.socket, n: int, deadline: Deadline) -> bytearray:
    out = bytearray(n)
    with memoryview(out) as view:  # released on return: the decoder may grow `out`
        got = 0
        while got < n:
            _wait(sock, deadline)
            try:
                k = sock.recv_into(view[got:], min(n - got, 1 << 24))
            except ConnectionResetError:
                k = 0
            if not k:
                raise PeerClosed()
            got += k
    return out


