"""Framed messages between the evaluator and a worker: a JSON header plus raw tensor bytes.

Data only: nothing the worker sends is unpickled or executed by the evaluator, so a candidate can lie about
values (which the evaluator then compares against its own reference) but cannot run code in the evaluator.
Frame layout: 8-byte big-endian header length, header JSON, then each tensor's bytes in order."""
from __future__ import annotations

import json
import os
import select
import struct
import time
from dataclasses import dataclass, field
from typing import Any

import torch

MAX_HEADER_BYTES = 1 << 20
MAX_TENSOR_BYTES = 1 << 32

# Only plain numeric dtypes travel; the name is looked up in this table, never with getattr on user text.
_DTYPES: dict[str, torch.dtype] = {
    str(d).removeprefix("torch."): d
    for d in (
        torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.int16,
        torch.int8, torch.uint8, torch.bool, torch.float8_e4m3fn, torch.float8_e5m2,
    )
}


class ProtocolError(RuntimeError):
    """The peer sent something that is not a well-formed frame, or went silent/closed the channel."""


class PeerTimeout(ProtocolError):
    """The peer did not answer in time (a hung or endless call)."""


@dataclass
class Message:
    """One frame: a JSON-able header and a list of CPU tensors."""

    header: dict[str, Any]
    tensors: list[torch.Tensor] = field(default_factory=list)


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _tensor_meta(t: torch.Tensor) -> dict[str, Any]:
    return {"dtype": dtype_name(t.dtype), "shape": list(t.shape), "nbytes": t.numel() * t.element_size()}


def _parts(msg: Message) -> list[memoryview]:
    """The frame as buffers: length + header, then each tensor's bytes viewed in place (no copies: a 4096² float32
    input is 64 MB, and a correctness call sends it out and twice back)."""
    tensors = [t.detach().to("cpu").contiguous() for t in msg.tensors]
    header = dict(msg.header, _tensors=[_tensor_meta(t) for t in tensors])
    head = json.dumps(header).encode()
    parts = [memoryview(struct.pack(">Q", len(head)) + head)]
    for t in tensors:
        # Byte view so every dtype (fp8 and bool included) travels the same way.
        if t.numel():
            parts.append(t.reshape(-1).view(torch.uint8).numpy().data)
    return parts


def encode(msg: Message) -> bytes:
    """The whole frame as one bytes object (encoded once, sent to several workers)."""
    return b"".join(_parts(msg))


def send(fd: int, msg: Message) -> None:
    for data in _parts(msg):
        while data:
            n = os.write(fd, data)
            data = data[n:]


def _read_exact(fd: int, n: int, deadline: float | None) -> bytearray:
    """Exactly n bytes, read straight into one buffer (no chunk list to join, no second copy)."""
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        if deadline is not None:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                raise PeerTimeout(f"peer timed out (waiting for {n - got} of {n} bytes)")
        k = os.readv(fd, [view[got:]])
        if not k:
            raise ProtocolError("peer closed the channel")
        got += k
    return buf


def _decode_tensor(meta: Any, raw: bytearray) -> torch.Tensor:
    if not isinstance(meta, dict) or meta.get("dtype") not in _DTYPES or not isinstance(meta.get("shape"), list):
        raise ProtocolError(f"bad tensor metadata: {str(meta)[:200]}")
    dtype = _DTYPES[meta["dtype"]]
    shape = [int(s) for s in meta["shape"]]
    flat = torch.frombuffer(raw, dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)
    t = flat.view(dtype)
    if t.numel() != (torch.Size(shape).numel()):
        raise ProtocolError(f"tensor byte count does not match its shape {shape}")
    return t.reshape(shape)


def recv(fd: int, timeout_s: float | None = None) -> Message:
    """Read one frame; raises ProtocolError on anything malformed, oversized, late or closed."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    (hlen,) = struct.unpack(">Q", _read_exact(fd, 8, deadline))
    if hlen > MAX_HEADER_BYTES:
        raise ProtocolError(f"header too large ({hlen} bytes)")
    try:
        header = json.loads(_read_exact(fd, hlen, deadline))
    except ValueError as exc:
        raise ProtocolError(f"header is not JSON: {exc}") from None
    if not isinstance(header, dict) or not isinstance(header.get("_tensors", []), list):
        raise ProtocolError("header is not a JSON object with a tensor list")
    tensors = []
    for meta in header.pop("_tensors", []):
        nbytes = int(meta.get("nbytes", -1)) if isinstance(meta, dict) else -1
        if not 0 <= nbytes <= MAX_TENSOR_BYTES:
            raise ProtocolError(f"bad tensor size {nbytes}")
        tensors.append(_decode_tensor(meta, _read_exact(fd, nbytes, deadline)))
    return Message(header, tensors)
