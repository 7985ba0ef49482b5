"""The wire between the grader and the processes that run student code (both sides import it).

Frame (both directions): 8 bytes (header length, payload length, big-endian), a JSON header, then
the raw bytes of the arrays the header lists (dtype, shape). Never pickle: a record from a worker is
data the grader parses, not code it runs. Standalone (numpy only): it is also loaded inside the sandbox.
"""
from __future__ import annotations

import json
import math
import socket
import struct

import numpy as np

PREFIX = struct.Struct(">II")
ALLOWED_DTYPES = ("float32", "float64", "int64")
MAX_DIMENSIONS, MAX_DIMENSION_SIZE = 32, 1 << 40  # numpy's own limits are 64 and the address space


def encode_frame(header: dict, arrays: list[np.ndarray] = ()) -> bytes:
    arrays = [np.asarray(a) for a in arrays]
    arrays = [a if a.flags.c_contiguous else a.copy(order="C") for a in arrays]  # keeps 0-d arrays 0-d
    header = dict(header, arrays=[{"dtype": a.dtype.name, "shape": list(a.shape)} for a in arrays])
    head = json.dumps(header).encode()
    payload = b"".join(a.tobytes() for a in arrays)
    return PREFIX.pack(len(head), len(payload)) + head + payload


def decode_frame(head: bytes, payload: bytes) -> tuple[dict, list[np.ndarray]]:
    """Parse a frame; ValueError if it is not one we could have sent."""
    try:
        header = json.loads(head)
    except (ValueError, RecursionError) as error:  # bad JSON or text, digits past the limit, nesting too deep
        raise ValueError(f"unreadable header: {type(error).__name__}") from None
    if not isinstance(header, dict) or not isinstance(header.get("arrays"), list):
        raise ValueError("header is not a frame header")
    arrays, offset = [], 0
    for spec in header["arrays"]:
        if not isinstance(spec, dict) or spec.get("dtype") not in ALLOWED_DTYPES:
            raise ValueError("bad array spec")
        shape = spec.get("shape")
        if not isinstance(shape, list) or len(shape) > MAX_DIMENSIONS or not all(
                type(d) is int and 0 <= d <= MAX_DIMENSION_SIZE for d in shape):
            raise ValueError("bad array shape")
        dtype = np.dtype(spec["dtype"])
        nbytes = math.prod(shape) * dtype.itemsize  # Python ints: a forged shape cannot overflow it
        if offset + nbytes > len(payload):
            raise ValueError("payload shorter than its arrays")
        arrays.append(np.frombuffer(payload, dtype, nbytes // dtype.itemsize, offset).reshape(shape))
        offset += nbytes
    if offset != len(payload):
        raise ValueError("payload longer than its arrays")
    return header, arrays


def read_frame_blocking(sock: socket.socket) -> tuple[dict, list[np.ndarray]] | None:
    """The worker's side: wait for the grader's next frame (trusted); None when the grader is gone."""
    prefix = recv_exactly(sock, PREFIX.size)
    if prefix is None:
        return None
    head_len, payload_len = PREFIX.unpack(prefix)
    head = recv_exactly(sock, head_len)
    payload = recv_exactly(sock, payload_len)
    if head is None or payload is None:
        return None
    return decode_frame(head, payload)


def recv_exactly(sock: socket.socket, size: int) -> bytes | None:
    """Exactly `size` bytes from a blocking socket, or None once the other end hangs up."""
    chunks, remaining = [], size
    while remaining:
        chunk = sock.recv(min(remaining, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


