"""v11 policy of the tile-outer step (``sparse_attention_triton(tile_impl="auto")``, ``kernels.msa.cuda.choose``):
the CUDA kernel where it can run and is already built, else Triton with one logged line saying why — nvcc or the
CUTLASS headers missing, a device that is not sm_90, a failed build, inputs it does not take; no build inside a
call; ``python -m kernels.msa.cuda build`` builds ahead. CPU only: the real nvcc is replaced where a test needs it
missing or failing, the device capability where it needs a GPU."""
from __future__ import annotations

import logging
import os
import stat

import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported: the prefill test runs the kernels on the CPU

from kernels.msa import cuda
from kernels.msa.cuda.__main__ import main as cuda_cli

pytestmark = pytest.mark.usefixtures("fresh_policy")


def m3_inputs(dtype=torch.bfloat16):
    """q, kv cache and partials at M3's shapes (16 query heads per KV head, d = 128) that the kernel takes."""
    q = torch.zeros(8, 64, 128, dtype=dtype)
    kv = torch.zeros(3, 4, 128, 256, dtype=dtype)
    po = torch.zeros(4, 8, 16, 16, 128, dtype=dtype)
    return q, kv, po


def no_nvcc(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setenv("CUDA_HOME", str(tmp_path / "no-cuda"))
    monkeypatch.delenv("CUDA_PATH", raising=False)
    monkeypatch.setattr(cuda, "find_nvcc", _raise(cuda.CudaBuildError("nvcc not found (PATH, CUDA_HOME, /usr/local/cuda)")))


def _raise(exc):
    def fn(*_args, **_kwargs):
        raise exc
    return fn


def test_missing_nvcc_falls_back_with_its_reason(monkeypatch, tmp_path, caplog):
    no_nvcc(monkeypatch, tmp_path)
    assert "nvcc not found" in cuda.library_reason()
    monkeypatch.setattr(cuda, "device_reason", lambda _device: None)  # as on an H200
    with caplog.at_level(logging.WARNING, logger="kernels.msa.cuda"):
        for _ in range(3):
            reason = cuda.choose(*m3_inputs(), tile_t=8)
    assert reason and "nvcc not found" in reason and "\n" not in reason
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "Triton" in lines[0] and "nvcc not found" in lines[0]  # logged once, not per call


def test_missing_cutlass_headers_fall_back_with_their_reason(monkeypatch):
    monkeypatch.setattr(cuda, "find_nvcc", lambda: cuda.Path("/usr/bin/true"))
    monkeypatch.setattr(cuda, "cutlass_include", _raise(cuda.CudaBuildError("CUTLASS headers not found: pip install nvidia-cutlass (extra 'gpu-kernels')")))
    monkeypatch.setattr(cuda, "device_reason", lambda _device: None)
    reason = cuda.choose(*m3_inputs(), tile_t=8)
    assert reason and "CUTLASS headers not found" in reason


def test_toolchain_present_but_not_built_never_builds_in_a_call(monkeypatch):
    monkeypatch.setattr(cuda, "find_nvcc", lambda: cuda.Path("/usr/bin/true"))
    monkeypatch.setattr(cuda, "cutlass_include", lambda *_a: cuda.Path("/"))
    monkeypatch.setattr(cuda, "build", _raise(AssertionError("a call must not build")))
    monkeypatch.setattr(cuda, "device_reason", lambda _device: None)
    reason = cuda.choose(*m3_inputs(), tile_t=8)
    assert reason and "python -m kernels.msa.cuda build" in reason


def test_device_that_is_not_sm90_is_named(monkeypatch):
    assert "not CUDA" in cuda.device_reason(torch.device("cpu"))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda _device=None: (8, 0))
    assert "sm_80" in cuda.device_reason(torch.device("cuda", 0))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda _device=None: (9, 0))
    assert cuda.device_reason(torch.device("cuda", 0)) is None
    assert "not CUDA" in cuda.choose(*m3_inputs(), tile_t=8)  # CPU tensors: Triton (the interpreter)


def fake_nvcc(tmp_path, body: str):
    """An executable standing in for nvcc (a shell script): ``body`` decides what the build does."""
    path = tmp_path / "nvcc"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_failed_build_gives_one_line_reason_once_and_no_crash(monkeypatch, tmp_path, caplog):
    nvcc = fake_nvcc(tmp_path, 'echo "tile_outer_sm90.cu(12): error: identifier \\"wgmma\\" is undefined" >&2; exit 2')
    monkeypatch.setattr(cuda, "find_nvcc", lambda: nvcc)
    monkeypatch.setattr(cuda, "cutlass_include", lambda *_a: tmp_path)
    with caplog.at_level(logging.WARNING, logger="kernels.msa.cuda"):
        reason = cuda.prepare()
        assert cuda.prepare() == reason  # recorded: the build is not retried in this process
    assert reason.startswith("CudaBuildError: nvcc failed (2):") and "is undefined" in reason and "\n" not in reason
    assert len(caplog.records) == 1
    monkeypatch.setattr(cuda, "device_reason", lambda _device: None)
    assert cuda.choose(*m3_inputs(), tile_t=8) == reason  # auto: Triton, same reason
    assert not list((tmp_path / "cache").glob("*.so"))  # no half-written library left behind


def test_build_ahead_then_auto_takes_cuda(monkeypatch, tmp_path):
    out_arg = 'while [ $# -gt 0 ]; do if [ "$1" = "-o" ]; then shift; echo lib > "$1"; fi; shift; done'
    monkeypatch.setattr(cuda, "find_nvcc", lambda: fake_nvcc(tmp_path, out_arg))
    monkeypatch.setattr(cuda, "cutlass_include", lambda *_a: tmp_path)
    assert cuda_cli(["build"]) == 0  # python -m kernels.msa.cuda build: the library lands in the cache
    assert (tmp_path / "cache" / cuda.library_name()).is_file()
    loaded = []
    monkeypatch.setattr(cuda, "load", lambda *_a: loaded.append(1) or cuda._LIB.append("lib"))
    monkeypatch.setattr(cuda, "device_reason", lambda _device: None)
    assert cuda.choose(*m3_inputs(), tile_t=8) is None  # cached build: auto runs the CUDA step
    assert loaded == [1] and cuda.choose(*m3_inputs(), tile_t=8) is None and loaded == [1]  # loaded once


def test_inputs_the_kernel_does_not_take_go_to_triton(monkeypatch):
    monkeypatch.setattr(cuda, "device_reason", lambda _device: None)
    monkeypatch.setattr(cuda, "library_reason", lambda *_a: None)
    assert cuda.choose(*m3_inputs(), tile_t=8) is None
    assert "bf16" in cuda.choose(*m3_inputs(torch.float16), tile_t=8)
    q, kv, po = m3_inputs()
    assert cuda.choose(q, kv, po.to(torch.int8), tile_t=8) is None  # v12m: int8 partials go to the CUDA step too
    assert "bf16" in cuda.choose(q, kv, po.to(torch.float16), tile_t=8)
    assert "scales" in cuda.choose(q, kv, po, tile_t=8, k_scale=0.5)


def test_cli_build_failure_is_one_clear_error(monkeypatch, capsys):
    monkeypatch.setattr(cuda, "find_nvcc", _raise(cuda.CudaBuildError("nvcc not found (PATH, CUDA_HOME, /usr/local/cuda)")))
    assert cuda_cli(["build"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: nvcc not found") and "Traceback" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU tensors under the interpreter (the GPU tests cover auto)")
def test_prefill_auto_on_cpu_runs_triton_and_rejects_unknown_impl():
    from kernels.msa.inputs import local_selection, make_case
    from kernels.msa.prefill import sparse_attention_triton

    case = make_case([40], [40], 4, 2, 32, torch.float32, "cpu", seed=1)
    sel = local_selection(case.query_start_loc, case.seq_lens, 2, 1.0, seed=2)
    args = (case.q, case.kv_cache, sel, case.block_table, case.query_start_loc, case.seq_lens)
    auto = sparse_attention_triton(*args)
    assert torch.equal(auto, sparse_attention_triton(*args, tile_impl="triton"))  # not sm_90: the Triton path
    with pytest.raises(ValueError, match="tile_impl must be one of"):
        sparse_attention_triton(*args, tile_impl="cutlass")
