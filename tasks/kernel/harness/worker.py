"""A worker process: imports ONE model class (the target's `Model` or the candidate's `ModelNew`) and serves
the evaluator's requests over two pipe fds. The same code serves the reference and the candidate, so both
are timed through an identical path. Nothing here is trusted by the evaluator: it compares the data it gets.

Requests: init (build the model, load the reference weights), run (one correctness call: outputs, inputs as
left after the call, the aten ops dispatched), stage (inputs onto the device, poison freed memory, flush L2),
go (the timed call: run, synchronize the whole device, return values at secret probe positions), ping, quit."""
from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import torch

from .protocol import Message, ProtocolError, dtype_name, recv, send

# Captured before any candidate code runs (a candidate that rebinds torch.cuda.synchronize afterwards does not
# change these; one that patches deeper only fools itself: the evaluator times with its own clock).
_CUDA_SYNC = torch.cuda.synchronize
L2_FLUSH_BYTES = 256 << 20
POISON_BYTES = 256 << 20


def _set_nondumpable(die_with_parent: bool = False) -> None:
    """No other process of the same user may ptrace us or read /proc/<pid>/mem (PR_SET_DUMPABLE = 4); a worker
    also dies when its evaluator dies (PR_SET_PDEATHSIG = 1, SIGKILL), so a killed evaluation leaves nothing."""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.prctl(4, 0, 0, 0, 0)
        if die_with_parent:
            libc.prctl(1, 9, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class Worker:
    def __init__(self, cls: type, device: str, target_path: str) -> None:
        self.cls = cls
        self.device = device
        self.target_path = target_path
        self.target: Any = None
        self.model: Any = None
        self.staged: list[torch.Tensor] = []
        self.flush = torch.empty(L2_FLUSH_BYTES, dtype=torch.uint8, device=device) if device == "cuda" else None

    def sync(self) -> None:
        if self.device == "cuda":
            _CUDA_SYNC()

    def poison(self) -> None:
        # CUDA: fill a large block with 0xFF (NaN in every float format) and free it back to the caching allocator,
        # so an uninitialised torch.empty sees garbage. CPU: glibc's MALLOC_PERTURB_ (set by the evaluator) does it.
        if self.device == "cuda":
            junk = torch.empty(POISON_BYTES, dtype=torch.uint8, device="cuda")
            junk.fill_(0xFF)
            del junk

    def init(self, msg: Message) -> Message:
        self.model = None
        with torch.no_grad():
            model = self.cls(*msg.header["init_args"])
            names = msg.header["state_keys"]
            if names:
                model.load_state_dict(dict(zip(names, msg.tensors, strict=False)), strict=True)
            self.model = model.to(self.device).eval()
        return Message({"ok": True})

    def _call(self, inputs: list[torch.Tensor]) -> list[Any]:
        with torch.no_grad():
            out = self.model(*inputs)
        return list(out) if isinstance(out, (tuple, list)) else [out]

    def run(self, msg: Message) -> Message:
        inputs = [t.to(self.device) for t in msg.tensors]
        self.poison()
        self.sync()
        ops: set[str] = set()
        if msg.header.get("trace"):
            from torch.utils._python_dispatch import TorchDispatchMode

            class _Recorder(TorchDispatchMode):
                def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
                    ops.add(str(func.overloadpacket))
                    return func(*args, **(kwargs or {}))

            with _Recorder():
                outs = self._call(inputs)
        else:
            outs = self._call(inputs)
        self.sync()
        infos, tensors = [], []
        for o in outs:
            is_tensor = isinstance(o, torch.Tensor)
            infos.append({
                "type": f"{type(o).__module__}.{type(o).__qualname__}",
                "dtype": dtype_name(o.dtype) if is_tensor else None,
                "shape": list(o.shape) if is_tensor else None,
                "stride": list(o.stride()) if is_tensor else None,
                "device_type": o.device.type if is_tensor else None,
            })
            tensors.append(o.detach().to("cpu").as_subclass(torch.Tensor) if is_tensor else torch.empty(0))
        return Message({"ok": True, "outputs": infos, "ops": sorted(ops)}, tensors + [t.to("cpu") for t in inputs])

    def stage(self, msg: Message) -> Message:
        # Timing inputs are generated here from a seed (no 64 MB pipe transfers per call); a worker that generates
        # anything else computes the wrong outputs, which the probes of the timed call catch.
        if self.target is None:
            from .spec import load_module

            self.target = load_module(Path(self.target_path), "m3lab_target_inputs")
        for key, value in msg.header["shape"].items():
            setattr(self.target, key, value)
        from .spec import generate_inputs

        self.staged = generate_inputs(self.target, int(msg.header["seed"]), self.device)
        self.poison()
        if self.flush is not None:
            self.flush.zero_()  # evict L2 so every timed call starts cold
        self.sync()
        return Message({"ok": True})

    def go(self, msg: Message) -> Message:
        outs = self._call(self.staged)
        self.sync()
        vals = []
        for o, idx in zip(outs, msg.tensors, strict=False):
            # Gathered on the default stream after a whole-device sync: work left on a side stream or thread
            # shows up as wrong values here.
            vals.append(o.reshape(-1)[idx.to(o.device)].to("cpu"))
        return Message({"ok": True}, vals)


def _serve(worker: Worker, fd_in: int, fd_out: int) -> None:
    handlers = {"init": worker.init, "run": worker.run, "stage": worker.stage, "go": worker.go,
                "ping": lambda msg: Message({"ok": True})}  # a warm reference is asked before each evaluation
    while True:
        msg = recv(fd_in)
        cmd = msg.header.get("cmd")
        if cmd == "quit":
            return
        try:
            reply = handlers[str(cmd)](msg)
        except Exception as exc:  # candidate failures are reported to the evaluator, not raised
            reply = Message({"ok": False, "error": f"{type(exc).__name__}: {exc}",
                             "traceback": traceback.format_exc()[-4000:]})
        send(fd_out, reply)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--module", required=True)
    p.add_argument("--cls", required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--target", required=True, help="target file, for generating timing inputs from a seed")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--fd-in", type=int, required=True)
    p.add_argument("--fd-out", type=int, required=True)
    p.add_argument("--ext-build", help="private folder for C++/CUDA extension builds")
    p.add_argument("--ext-cache", action="append", default=[], help="read-only folder of earlier builds")
    p.add_argument("--compile-only", action="store_true", help="the compile stage: import (build), report, exit")
    args = p.parse_args(argv)
    _set_nondumpable(die_with_parent=True)
    torch.set_num_threads(args.threads)
    hooks = None
    if args.ext_build:
        from pathlib import Path

        from .extensions import ExtensionHooks

        hooks = ExtensionHooks(Path(args.ext_build), [Path(c) for c in args.ext_cache])
        hooks.install()  # before any candidate code: its load_inline/load calls go through the cache
    try:
        from .spec import load_module

        sys.path.insert(0, os.path.dirname(os.path.abspath(args.module)))
        module = load_module(args.module, "m3lab_model_under_test")
        worker = None if args.compile_only else Worker(getattr(module, args.cls), args.device,
                                                       os.path.abspath(args.target))
        hello = Message({"ok": True, "pid": os.getpid()})
    except BaseException as exc:  # import/compile errors are the producer's feedback
        hello = Message({"ok": False, "error": f"{type(exc).__name__}: {exc}",
                         "traceback": traceback.format_exc()[-4000:]})
        worker = None
    if hooks is not None:
        hello.header["compile"] = hooks.report.to_json()
    send(args.fd_out, hello)
    if worker is not None:
        try:
            _serve(worker, args.fd_in, args.fd_out)
        except ProtocolError:
            return 1
    return 0


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)  # no interpreter or CUDA teardown (and no candidate atexit hooks): the evaluator waits for it
