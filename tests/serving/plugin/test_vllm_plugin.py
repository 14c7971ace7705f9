"""Plugin registration and selection against the installed vLLM (run in the vLLM venv by a subprocess)."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.serving.plugin.tiny_server import vllm_python

pytestmark = pytest.mark.vllm

REPO = Path(__file__).resolve().parents[3]
OURS = "serving.plugin.impls."
VLLM_MAIN = "vllm.models.minimax_m3.common.sparse_attention.MiniMaxM3SparseTritonImpl"
VLLM_INDEXER = "vllm.models.minimax_m3.common.indexer.MiniMaxM3IndexerTritonImpl"
VLLM_BACKEND = "vllm.models.minimax_m3.common.sparse_attention.MiniMaxM3SparseBackend"


def run_checks(mode: str, plugins: str | None, script: str = "vllm_checks.py") -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.pop("VLLM_PLUGINS", None)
    if plugins is not None:
        env["VLLM_PLUGINS"] = plugins
    proc = subprocess.run([str(vllm_python()), str(Path(__file__).with_name(script)), mode],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("M3LAB_JSON ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    return json.loads(lines[-1].removeprefix("M3LAB_JSON "))


@pytest.fixture(scope="module")
def enabled() -> dict:
    return run_checks("enabled", plugins=None)


def test_entry_point_and_lazy_activation(enabled: dict) -> None:
    assert enabled["entry_point"] == "serving.plugin:register"
    assert enabled["m3_imported_after_plugins"] is False  # nothing happens until M3's modules load
    assert enabled["main_hooked"] and enabled["indexer_hooked"]


def test_cpu_build_gets_the_missing_pieces(enabled: dict) -> None:
    assert enabled["cpu_ops_patched"] and enabled["cpu_moe_patched"] and enabled["cpu_norm_patched"]
    assert enabled["torchvision_stand_in"]


@pytest.mark.parametrize(
    ("case", "main", "indexer"),
    [
        ("cpu", OURS + "TorchMSASparseImpl", OURS + "TorchMSAIndexerImpl"),
        ("sm90_bf16", OURS + "TritonMSASparseImpl", OURS + "TritonMSAIndexerImpl"),
        ("sm90_bf16_no_kernels", VLLM_MAIN, VLLM_INDEXER),
        ("sm90_fp8", OURS + "TritonMSASparseImpl", OURS + "TritonMSAIndexerImpl"),  # v17 / v13r: e4m3 caches
        ("sm90_fp8_e5m2", VLLM_MAIN, VLLM_INDEXER),
        ("sm90_bf16_fp8_index", OURS + "TritonMSASparseImpl", OURS + "TritonMSAIndexerImpl"),
        # vLLM's own selector decides; on this CPU machine it refuses an fp8 index cache (no CUDA fp8)
        ("sm90_fp8_index_no_kernels", VLLM_MAIN, "NotImplementedError: indexer_kv_dtype='fp8' requires CUDA fp8 support."),
        ("sm100_bf16", VLLM_MAIN, VLLM_INDEXER),
        ("rocm", VLLM_MAIN, VLLM_INDEXER),
    ],
)
def test_selection_through_vllm_hook_points(enabled: dict, case: str, main: str, indexer: str) -> None:
    """The hooked vLLM selectors, as M3's layers call them. Off-CPU cases force the platform facts; "vLLM's own
    choice" is whatever vLLM's original selector returns on this (CPU) machine: its Triton impls."""
    chosen = enabled["select"][case]
    assert chosen["main"] == main
    assert chosen["indexer"] == indexer
    assert chosen["backend"] == VLLM_BACKEND  # we swap the impl only: vLLM's cache layout and metadata builder stay


def test_unsupported_vllm_version_fails_loudly(enabled: dict) -> None:
    assert enabled["version_error"] is not None
    assert "UnsupportedVllmVersion" in enabled["version_error"] and "0.33.0" in enabled["version_error"]


def test_allow_list_without_us_leaves_vllm_alone() -> None:
    result = run_checks("disabled", plugins="")
    if "import_error" in result:  # the CPU build cannot import M3 at all without our torchvision stand-in
        assert "torchvision" in result["import_error"]
    else:
        assert not result["main_hooked"] and not result["indexer_hooked"]


def test_impls_with_metadata_from_vllm_builders(tiny_dir: Path) -> None:
    """Mixed batch (2 decodes, chunked prefill with context, fresh prefill), shuffled pages, top-k 2 of 5 blocks,
    metadata from vLLM's own MiniMaxM3SparseMetadataBuilder / MiniMaxM3IndexerTritonMetadataBuilder."""
    result = run_checks(str(tiny_dir), plugins=None, script="vllm_builder_check.py")
    assert result["split"] == [2, 2, 2, 2]  # decode-first split agreed by both builders
    assert result["selection_mismatches"] == 0, result
    assert result["pruned_tokens"] > 100, result  # selection really prunes on most tokens
    assert result["max_abs_err"] < 2e-2, result  # bf16 output of an fp32 computation
    assert result["untouched_rows_ok"], result  # nothing written past the batch's rows
    # v17: an fp8 e4m3 cache (bytes + the layer's float scales) against the reference on the dequantised cache,
    # and the host-side page bound the sparse metadata carries for the widened copy
    assert result["max_abs_err_fp8"] < 2e-2, result
    assert result["total_kv_blocks"] == result["prefill_pages"], result
    # the profiling run reserves the workspace (whole 2 MiB granules, so at most one granule per buffer more)
    assert 0 <= result["reserved_bytes"] - result["expected_reserve_bytes"] < 3 * 2 ** 21, result
    # --additional-config '{"m3lab_msa": {"fp8_step": true}}' refused at model load where it cannot run
    refusals = result["option_refusals"]
    assert "fp8_step cannot run here: the KV cache is not fp8 e4m3" in refusals["bf16_cache"], refusals
    assert "kernels.msa.reference:sparse_attention has no FP8 step" in refusals["cpu_reference"], refusals
    assert "unknown option(s) fp8_stepp" in refusals["typo"], refusals
    assert "vLLM's own MSA impl serves here (CUDA capability (10, 0)" in refusals["vllm_impl"], refusals
    assert refusals["none_asked"] is None, refusals
