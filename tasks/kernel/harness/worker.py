"""A worker process: imports ONE model class (the target's `Model` or the candidate's `ModelNew`) and serves
the evaluator's requests over two pipe fds. The same code serves the reference and the candidate, so both
are timed through an identical path. Nothing here is trusted by the evaluator: it compares the data it gets.

Requests: init (build the model, load the reference weights), run (one correctness call: outputs, inputs as
left after the call, the aten ops dispatched), digest (a timing shape's checksum weights), stage (inputs onto the
device, this call's checksum shift, poison freed memory, flush L2), go (the timed call: run, synchronize the whole
device, keep the outputs; nothing about what will be checked is known yet), check (after the clock stopped: values at secret probe positions and a checksum of
each whole output), ping, quit.

Pre-started (`--prestart`, warm evaluators): the worker starts before its candidate is known (python up, torch
imported, the device initialised, no candidate code), says it is ready and waits; the evaluator then hands it ONE
candidate with a `load` request (module, folder, environment, log) and from there on it is that candidate's
worker, exactly as if started for it. It never takes a second `load`: each pre-started process serves
one candidate only."""
from __future__ import annotations

import os


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


def _orphaned(argv: list[str]) -> bool:
    """True when the evaluator that started us (`--parent-pid`) died before our parent-death signal was set:
    nothing would ever end us otherwise."""
    if "--parent-pid" not in argv[:-1]:
        return False
    return os.getppid() != int(argv[argv.index("--parent-pid") + 1])


if __name__ == "__main__":
    import sys

    # First thing, before the seconds of imports: a pre-started worker waits beside a running candidate of the
    # same uid, which must not be able to trace it or write its memory meanwhile.
    _set_nondumpable(die_with_parent=True)
    if _orphaned(sys.argv):
        os._exit(0)

import argparse  # noqa: E402
import contextlib  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402

from .compare import digest_weights, output_digest  # noqa: E402
from .protocol import Message, ProtocolError, dtype_name, recv, send  # noqa: E402

# Captured before any candidate code runs (a candidate that rebinds torch.cuda.synchronize afterwards does not
# change these; one that patches deeper only fools itself: the evaluator times with its own clock).
_CUDA_SYNC = torch.cuda.synchronize
L2_FLUSH_BYTES = 256 << 20
POISON_BYTES = 256 << 20


def _recorder(ops: set[str]) -> Any:
    """A dispatch mode that adds the name of every aten op dispatched inside it to `ops` (the quick check's trace)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class _Recorder(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            ops.add(str(func.overloadpacket))
            return func(*args, **(kwargs or {}))

    return _Recorder()


class Worker:
    def __init__(self, cls: type, device: str, target_path: str, flush: torch.Tensor | None = None) -> None:
        self.cls = cls
        self.device = device
        self.target_path = target_path
        self.target: Any = None
        self.model: Any = None
        self.staged: list[torch.Tensor] = []
        self.weights: list[torch.Tensor] = []
        self.shifts: list[int] = []
        self.last: list[Any] = []
        if flush is None and device == "cuda":
            flush = torch.empty(L2_FLUSH_BYTES, dtype=torch.uint8, device=device)
        self.flush = flush

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
        # Copies: fresh tensors like the timed calls' (a view of the message buffer would tell the two apart).
        inputs = [t.to(self.device, copy=True) for t in msg.tensors]
        self.poison()
        self.sync()
        ops: set[str] = set()
        # The trace also covers describing and copying the outputs: work a lazy result defers until it is first
        # touched is dispatched there, not in the call.
        with _recorder(ops) if msg.header.get("trace") else contextlib.nullcontext():
            outs = self._call(inputs)
            self.sync()
            infos, tensors = [], []
            for o in outs:
                is_tensor = isinstance(o, torch.Tensor)
                exact = type(o) is torch.Tensor  # not the type's name: a subclass can call itself anything
                infos.append({
                    "type": "torch.Tensor" if exact else f"{type(o).__module__}.{type(o).__qualname__}"
                    + (" (a torch.Tensor subclass)" if is_tensor else ""),
                    "dtype": dtype_name(o.dtype) if is_tensor else None,
                    "shape": list(o.shape) if is_tensor else None,
                    "stride": list(o.stride()) if is_tensor else None,
                    "device_type": o.device.type if is_tensor else None,
                })
                tensors.append(o.detach().to("cpu").as_subclass(torch.Tensor) if is_tensor else torch.empty(0))
        return Message({"ok": True, "outputs": infos, "ops": sorted(ops)}, tensors + [t.to("cpu") for t in inputs])

    def load_target(self) -> None:
        """The target module that generates timing inputs, loaded at start (a reference worker loads nothing from
        the evaluation folder once candidate code may have run)."""
        if self.target is None:
            from .spec import load_module

            self.target = load_module(Path(self.target_path), "m3lab_target_inputs")

    def stage(self, msg: Message) -> Message:
        # Timing inputs are generated here from a seed (no 64 MB pipe transfers per call); a worker that generates
        # anything else computes the wrong outputs, which the checks after the timed call catch. The checksum's
        # weights are rotated by a fresh shift per call, given here (nothing could be precomputed for it before).
        self.load_target()
        for key, value in msg.header["shape"].items():
            setattr(self.target, key, value)
        from .spec import generate_inputs

        self.staged = generate_inputs(self.target, int(msg.header["seed"]), self.device)
        self.shifts = [int(s) for s in msg.header["shifts"]]
        self.last = []
        self.poison()
        if self.flush is not None:
            self.flush.zero_()  # evict L2 so every timed call starts cold
        self.sync()
        return Message({"ok": True})

    def go(self, msg: Message) -> Message:
        """The timed call. It learns nothing about what will be checked (positions, checksum), so a worker that
        rewrote this method cannot compute only that: whatever it leaves for `check` is charged to it."""
        ops: set[str] = set()
        if msg.header.get("trace"):  # a secret few timed-looking calls are traced (and not timed)
            with _recorder(ops):
                outs = self._call(self.staged)
                self.sync()
                outs = [o.detach().as_subclass(torch.Tensor) if isinstance(o, torch.Tensor) else o for o in outs]
        else:
            outs = self._call(self.staged)
            self.sync()
        self.last = outs
        return Message({"ok": True, "ops": sorted(ops)})

    def digest(self, msg: Message) -> Message:
        """A timing shape's checksum weights (untimed, once per shape); each call rotates them (`stage`)."""
        seed = int(msg.header["seed"])
        self.weights = [digest_weights(seed + i, int(n), self.device) for i, n in enumerate(msg.header["numels"])]
        return Message({"ok": True})

    def check(self, msg: Message) -> Message:
        """After the clock stopped: each output's values at the secret probe positions, then its checksums, then the
        inputs' values at their secret positions (as the call left them)."""
        n = int(msg.header.get("outputs", len(msg.tensors)))
        vals, digests = [], []
        for o, idx, w, shift in zip(self.last, msg.tensors[:n], self.weights, self.shifts, strict=False):
            # Read on the default stream: work left on a side stream or thread shows up as wrong values here.
            flat = o.reshape(-1)
            vals.append(flat[idx.to(flat.device)].to("cpu"))
            digests.append(output_digest(flat, w, shift))
        kept = [x.reshape(-1)[idx.to(x.device)].to("cpu") for x, idx in zip(self.staged, msg.tensors[n:], strict=False)]
        self.last = []
        return Message({"ok": True}, vals + digests + kept)


def _serve(worker: Worker, fd_in: int, fd_out: int) -> None:
    handlers = {"init": worker.init, "run": worker.run, "digest": worker.digest, "stage": worker.stage, "go": worker.go,
                "check": worker.check,
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


def _prepare_device(device: str) -> torch.Tensor | None:
    """What every worker does before its first request, done ahead by a pre-started one: initialise the device
    and run the harness's own kernels once (L2 flush, poison fill, input generation, probe gather, copies), so
    neither start-up nor first-use loading lands in the candidate's evaluation. Returns the L2 flush buffer."""
    flush = None
    if device == "cuda":
        torch.cuda.init()
        flush = torch.empty(L2_FLUSH_BYTES, dtype=torch.uint8, device=device)
        flush.zero_()
        Worker(torch.nn.Identity, device, "", flush).poison()
    with torch.no_grad(), _recorder(set()):  # the first traced call pays the dispatch mode's one-time set-up
        x = torch.randn(64, 64, device=device)
        (x * 2).sum(dim=1).reshape(-1)[torch.arange(8).to(device)].to("cpu")
    if device == "cuda":
        _CUDA_SYNC()
    return flush


LOADED_ENV = ("HOME", "TMPDIR", "TRITON_CACHE_DIR", "TORCH_EXTENSIONS_DIR", "TORCH_CUDA_ARCH_LIST")


def _await_candidate(fd_in: int, fd_out: int) -> dict[str, Any] | None:
    """A pre-started worker's wait (ready, said so): pings are answered; the ONE `load` request (None on quit or a
    closed channel) makes it that candidate's worker: its folder, its environment paths, its log on fds 1 and 2."""
    while True:
        try:
            msg = recv(fd_in)
        except ProtocolError:
            return None
        cmd = msg.header.get("cmd")
        if cmd == "ping":
            send(fd_out, Message({"ok": True}))
            continue
        if cmd != "load":
            return None
        load = msg.header
        os.chdir(load["cwd"])
        for key in LOADED_ENV:
            os.environ.pop(key, None)
        os.environ.update({k: str(v) for k, v in load["env"].items() if k in LOADED_ENV})
        tempfile.tempdir = None  # re-read TMPDIR
        log = os.open(load["log"], os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        return load


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--module")
    p.add_argument("--cls")
    p.add_argument("--device", default="cpu")
    p.add_argument("--target", help="target file, for generating timing inputs from a seed")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--fd-in", type=int, required=True)
    p.add_argument("--fd-out", type=int, required=True)
    p.add_argument("--ext-build", help="private folder for C++/CUDA extension builds")
    p.add_argument("--ext-cache", action="append", default=[], help="read-only folder of earlier builds")
    p.add_argument("--compile-only", action="store_true", help="the compile stage: import (build), report, exit")
    p.add_argument("--prestart", action="store_true", help="start before the candidate is known; one `load` later")
    p.add_argument("--parent-pid", type=int, help="the evaluator: exit at once if it is already gone")
    p.add_argument("--reference", action="store_true",
                   help="a reference worker: everything loaded at start, the evaluation folder off sys.path after")
    args = p.parse_args(argv)
    _set_nondumpable(die_with_parent=True)
    torch.set_num_threads(args.threads)
    flush = None
    if args.prestart:
        from torch.utils import cpp_extension  # noqa: F401  (the compile hooks of every candidate import it)

        from . import spec  # noqa: F401  (timing inputs)

        flush = _prepare_device(args.device)
        send(args.fd_out, Message({"ok": True, "pid": os.getpid(), "prestarted": True}))
        load = _await_candidate(args.fd_in, args.fd_out)
        if load is None:
            return 0
        args.module, args.target, args.cls = load["module"], load["target"], load["cls"]
        args.ext_build, args.ext_cache = load.get("ext_build"), list(load.get("ext_cache", []))
    if not (args.module and args.target and args.cls):
        p.error("--module, --target and --cls are required (or --prestart and a load request)")
    hooks = None
    if args.ext_build:
        from .extensions import ExtensionHooks

        hooks = ExtensionHooks(Path(args.ext_build), [Path(c) for c in args.ext_cache])
        hooks.install()  # before any candidate code: its load_inline/load calls go through the cache
    try:
        from .spec import load_module

        sys.path.insert(0, os.path.dirname(os.path.abspath(args.module)))
        module = load_module(args.module, "m3lab_model_under_test")
        worker = None if args.compile_only else Worker(getattr(module, args.cls), args.device,
                                                       os.path.abspath(args.target), flush)
        if worker is not None and args.reference:
            from .spec import seal_import_path

            worker.load_target()
            seal_import_path(Path.cwd())
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
