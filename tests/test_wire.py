"""The wire carries data only, rebuilds plain tensors and arrays, and rejects bad frames."""

from __future__ import annotations

import ctypes
import socket

import numpy as np
import pytest
import torch

from grader.sandbox import protocol as wire
from grader.sandbox.protocol import WireError


def roundtrip(value):
    header, buffers = wire.encode(value, lambda obj: {"$ref": 7, "type": type(obj).__name__})
    return wire.decode(header, buffers, lambda ref: ("ref", ref.id, ref.type))


def test_data_roundtrips_exactly():
    value = {
        "t": torch.randn(3, 4, dtype=torch.bfloat16),
        "empty": torch.empty(0, 5),
        "scalar": torch.tensor(2.5, dtype=torch.float64),
        "a": np.arange(6, dtype=np.int16).reshape(2, 3).T,  # not contiguous
        "np_scalar": np.float32(1.5),
        "nums": (1, -2.5, float("nan"), float("inf"), 10**40, True, None, "s", b"raw"),
        "nested": [[{"k": slice(1, None)}]],
        "dtype": torch.int8,
        5: complex(1, 2),
    }
    out = roundtrip(value)
    assert torch.equal(out["t"], value["t"]) and out["t"].dtype == torch.bfloat16
    assert out["empty"].shape == (0, 5)
    assert out["scalar"].shape == () and float(out["scalar"]) == 2.5
    assert np.array_equal(out["a"], value["a"])
    assert out["np_scalar"] == np.float32(1.5) and isinstance(out["np_scalar"], np.float32)
    assert out["nums"][2] != out["nums"][2] and out["nums"][3] == float("inf") and out["nums"][4] == 10**40
    assert out["nums"][5:] == (True, None, "s", b"raw")
    assert out["nested"] == [[{"k": slice(1, None)}]]
    assert out["dtype"] is torch.int8 and out[5] == complex(1, 2)


def _bytes_after(data_ptr: int, nbytes: int) -> bytes:
    return ctypes.string_at(data_ptr + nbytes, wire.ZERO_TAIL)


@pytest.mark.parametrize("received", [False, True], ids=["bytes", "from a socket"])
def test_what_arrives_is_followed_by_zeros(received):
    """A kernel reading just past the end of what it was sent (a mask off by one) reads
    zeros on every run: the same as a check's `zero_tail` inputs give a known mistake."""
    value = [torch.randn(5, 37), torch.tensor([True, False, True]), torch.randn(3, 3).to(torch.float16),
             np.arange(7, dtype=np.int32)]
    header, buffers = wire.encode(value, None)
    if received:
        buffers = [bytearray(b) for b in buffers]
    out = wire.decode(header, buffers, None)
    for t, sent in zip(out[:3], value[:3]):
        assert torch.equal(t, sent)
        assert _bytes_after(t.data_ptr(), t.numel() * t.element_size()) == bytes(wire.ZERO_TAIL)
    assert np.array_equal(out[3], value[3]) and _bytes_after(out[3].ctypes.data, out[3].nbytes) == bytes(wire.ZERO_TAIL)


def test_subclasses_arrive_as_plain_tensors():
    class Sneaky(torch.Tensor):
        pass

    t = torch.randn(3).as_subclass(Sneaky)
    out = roundtrip(t)
    assert type(out) is torch.Tensor


def test_objects_that_are_not_data_become_references():
    class Anything:
        def __eq__(self, other):
            return True

    assert roundtrip([Anything()]) == [("ref", 7, "Anything")]


@pytest.mark.parametrize(
    "header, buffers, complaint",
    [
        ({"$tensor": 0, "dtype": "float32", "shape": [3]}, [b"\0" * 8], "byte count"),
        ({"$tensor": 0, "dtype": "object", "shape": [1]}, [b"\0" * 8], "dtype"),
        ({"$ndarray": 0, "dtype": "|O", "shape": [1]}, [b"\0" * 8], "not data"),
        ({"$tensor": 3, "dtype": "float32", "shape": [1]}, [b"\0" * 4], "buffer index"),
        ({"$tensor": 0, "dtype": "float32", "shape": [-1]}, [b""], "shape"),
        ({"$pickle": "x"}, [], "unknown tag"),
        ({"$float": "1e999999"}, [], "bad float"),
    ],
)
def test_malformed_values_are_rejected(header, buffers, complaint):
    with pytest.raises(WireError, match=complaint):
        wire.decode(header, buffers, lambda ref: None)


def test_deep_nesting_is_rejected():
    deep = []
    for _ in range(wire.MAX_DEPTH + 5):
        deep = [deep]
    with pytest.raises(WireError, match="nested"):
        wire.encode(deep, lambda obj: {})


def test_frames_cross_a_socket_and_time_out():
    a, b = socket.socketpair()
    header, buffers = wire.encode({"x": torch.ones(1000)}, lambda o: {})
    wire.send_frame(a, header, buffers)
    got_header, got_buffers = wire.recv_frame(b, wire.Deadline(5))
    assert torch.equal(wire.decode(got_header, got_buffers, lambda r: None)["x"], torch.ones(1000))
    with pytest.raises(wire.FrameTimeout):
        wire.recv_frame(b, wire.Deadline(0.05))
    a.close()
    with pytest.raises(wire.PeerClosed):
        wire.recv_frame(b, wire.Deadline(1))


def test_oversized_header_is_rejected():
    a, b = socket.socketpair()
    a.sendall((wire.MAX_HEADER + 1).to_bytes(4, "little") + (0).to_bytes(4, "little"))
    with pytest.raises(WireError, match="size limit"):
        wire.recv_frame(b, wire.Deadline(1))
