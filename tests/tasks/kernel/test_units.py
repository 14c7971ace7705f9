"""Unit tests of the harness pieces that need no worker process: frames, static checks, comparisons, verdicts."""
from __future__ import annotations

import json
import os

import pytest
import torch

from tasks.kernel.harness.compare import check_probes, compare_one, inputs_unchanged
from tasks.kernel.harness.protocol import Message, ProtocolError, encode, recv, send
from tasks.kernel.harness.static_checks import check_source
from tasks.kernel.harness.verdict import Verdict
from tasks.kernel.runner import EvalFailed, parse_verdict
from tasks.kernel.targets import BUNDLED, HONEST, TARGETS_DIR

CHEATS = TARGETS_DIR / "cheats"


def test_frame_roundtrip_all_dtypes() -> None:
    tensors = [torch.randn(3, 4), torch.randn(2).to(torch.bfloat16), torch.arange(5),
               torch.randn(4).to(torch.float8_e4m3fn), torch.zeros(0), torch.tensor(True)]
    r, w = os.pipe()
    send(w, Message({"cmd": "x", "n": 1}, tensors))
    got = recv(r, timeout_s=5)
    assert got.header == {"cmd": "x", "n": 1}
    for a, b in zip(tensors, got.tensors, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert torch.equal(a.view(torch.uint8) if a.numel() else a, b.view(torch.uint8) if b.numel() else b)


@pytest.mark.parametrize("payload", [b"\x00\x00\x00\x00\x00\x00\x00\x05notjs",
                                     b"\x00\x00\x00\x00\xff\xff\xff\xff",
                                     b"\x00\x00\x00\x00\x00\x00\x00\x02[]"])
def test_malformed_frames_raise(payload: bytes) -> None:
    r, w = os.pipe()
    os.write(w, payload)
    os.close(w)
    with pytest.raises(ProtocolError):
        recv(r, timeout_s=2)


def test_frame_rejects_unknown_dtype_and_timeout() -> None:
    data = encode(Message({}, [torch.ones(2)])).replace(b'"float32"', b'"object!"')
    r, w = os.pipe()
    os.write(w, data)
    with pytest.raises(ProtocolError, match="bad tensor metadata"):
        recv(r, timeout_s=2)
    r2, _w2 = os.pipe()
    with pytest.raises(ProtocolError, match="timed out"):
        recv(r2, timeout_s=0.2)


@pytest.mark.parametrize("name", sorted(p.name for p in CHEATS.glob("c[0-9]*.py")))  # Python cheats (cx/cu: C++)
def test_static_flags_or_leaves_to_dynamic(name: str) -> None:
    """Cheats the static layer is meant to catch are caught; the rest are caught dynamically (test_cheats)."""
    if name == "c19_escape_core.py":
        assert check_source((CHEATS / name).read_text()).cheats
        return
    dynamic_only = {"c01_reuse_freed_memory.py", "c02_mutate_inputs.py", "c06_cache_results.py",
                    "c07b_known_shapes.py", "c08_precision_downgrade.py",
                    "c10_nan_wildcard.py", "c29_inplace_when_timed.py", "c12_warmup_vs_timed.py", "c13_collapse_shape.py", "c15_oob_read.py"}
    report = check_source((CHEATS / name).read_text(), ["layer_norm"])
    assert bool(report.cheats) != (name in dynamic_only), report.cheats


@pytest.mark.parametrize("target", BUNDLED)
def test_honest_candidates_pass_static(target: str) -> None:
    from tasks.kernel.harness.spec import read_meta_static

    forbidden = read_meta_static(TARGETS_DIR / f"{target}.py").get("forbidden_ops", [])
    for name in HONEST[target]:
        report = check_source((TARGETS_DIR / "candidates" / name).read_text(), forbidden)
        assert report.cheats == [], (name, report.cheats)


def test_static_forbidden_op_and_docstrings() -> None:
    src = '"""mentions /proc in a docstring only"""\nimport torch.nn.functional as F\n\nclass ModelNew:\n' \
          '    def forward(self, x):\n        return F.layer_norm(x, x.shape[-1:])\n'
    report = check_source(src, ["layer_norm"])
    assert len(report.cheats) == 1 and "forbids" in report.cheats[0]


def _info(t: torch.Tensor, **over: object) -> dict:
    info = {"type": "torch.Tensor", "dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape),
            "stride": list(t.stride()), "device_type": "cpu"}
    return {**info, **over}


def test_compare_accepts_close_and_rejects_wrong() -> None:
    ref = torch.randn(8, 16)
    ok = compare_one(ref + 1e-7, _info(ref), ref, 1e-5, 1e-5, "cpu")
    assert ok.ok
    assert not compare_one(ref + 1e-2, _info(ref), ref, 1e-5, 1e-5, "cpu").ok
    nan = ref.clone()
    nan[0, 0] = float("nan")
    assert any("NaN" in p for p in compare_one(nan, _info(ref), ref, 1e-5, 1e-5, "cpu").problems)
    assert not compare_one(ref, _info(ref, stride=[1, 8]), ref, 1e-5, 1e-5, "cpu").ok
    assert not compare_one(ref, _info(ref, type="x.Lazy"), ref, 1e-5, 1e-5, "cpu").ok
    assert not compare_one(ref, _info(ref, dtype="bfloat16"), ref, 1e-5, 1e-5, "cpu").ok


def test_inputs_unchanged_and_probes() -> None:
    x = torch.randn(4, 4)
    assert inputs_unchanged([x], [x.clone()]) == []
    assert inputs_unchanged([x], [torch.zeros(4, 4)]) != []
    idx = torch.tensor([0, 5, 15])
    assert check_probes([x.reshape(-1)[idx]], [idx], [x], [(1e-6, 1e-6)]) == []
    assert check_probes([torch.zeros(3)], [idx], [x], [(1e-6, 1e-6)]) != []


def test_verdict_roundtrip_and_nonce() -> None:
    v = Verdict(correct=True, speedup=2.0, ref_ms=2.0, cand_ms=1.0, aa_spread=0.01)
    line = "M3LAB-VERDICT abc " + json.dumps(v.to_json())
    forged = 'M3LAB-VERDICT zzz {"correct": true, "speedup": 1000}'
    got = parse_verdict("noise\n" + forged + "\n" + line + "\n", "abc")
    assert got.accepted and got.speedup == 2.0 and got.score == 2.0
    with pytest.raises(EvalFailed):
        parse_verdict(forged, "abc")
    assert Verdict(correct=True, speedup=3.0, cheats=["x"]).score == 0.0


def test_whole_output_checksum_needs_the_whole_output() -> None:
    """The checksum asked for after each timed call: a correct output passes at any rotation of the weights; half an
    output, or the right output under another rotation, does not."""
    from tasks.kernel.harness.compare import check_digests, digest_weights, output_digest

    ref = torch.randn(64, 100)
    w = digest_weights(7, ref.numel(), "cpu")
    assert torch.equal(w, digest_weights(7, ref.numel(), "cpu"))  # the same in every process
    tol = [(1e-4, 1e-4)]
    for shift in (0, 1, 4321):
        close = ref + 1e-5 * torch.randn_like(ref)
        assert check_digests([output_digest(close, w, shift)], [ref], [w], [shift], tol) == []
        half = ref.clone()
        half[32:] = 0
        assert check_digests([output_digest(half, w, shift)], [ref], [w], [shift], tol)
        assert check_digests([output_digest(ref, w, shift + 1)], [ref], [w], [shift], tol)
    flat = ref.reshape(-1).double()
    rolled = torch.stack([torch.dot(flat, torch.roll(w, -5)), torch.dot(flat * flat, torch.roll(w, -5))])
    assert torch.allclose(output_digest(ref, w, 5), rolled)
    assert check_digests([torch.tensor([float("nan"), 0.0])], [ref], [w], [0], tol)


@pytest.mark.parametrize("line", [
    "f = getattr(torch.nn.functional, 'layer' + '_norm')",
    "m = sys.modules['__main__']",
    "import __main__",
    "fd = os.open('x', os.O_RDONLY)",
    "os.killpg(123, 19)",
    "os.posix_spawn('/bin/true', ['true'], {})",
    "import _thread",
    "p = '/pr' + 'oc/self/task'",
    "Path(__file__).write_text('')",
    "m = torch.utils._python_dispatch._get_current_dispatch_mode()",
    "s = getattr(os, 'sched_' + 'setaffinity')",
    "class L(T):\n    def __torch_function__(cls, func, types, args=(), kwargs=None):\n        return func(*args)",
])
def test_static_sees_through_pieces_and_aliases(line: str) -> None:
    assert check_source(f"import os, sys, torch\nfrom pathlib import Path\n{line}\n", ["layer_norm"]).cheats


def test_static_leaves_ordinary_code_alone() -> None:
    src = ("import torch\n\nclass ModelNew(torch.nn.Module):\n    def forward(self, x):\n"
           "        n = sum(1 for _ in self.modules())\n        return getattr(torch, 'relu')(x) * n\n\n"
           "if __name__ == '__main__':\n    print(ModelNew()(torch.ones(2)))\n")
    report = check_source(src, ["layer_norm"])
    assert report.cheats == [], report.cheats
    assert check_source("import torch\nname = 'relu'\nf = getattr(torch, name)\n").warnings
