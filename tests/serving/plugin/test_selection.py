"""Selection rules and version checks of the MSA plugin (pure logic, no vLLM)."""
import pytest

from serving.plugin.selection import (
    Implementation,
    PlatformFacts,
    UnsupportedVllmVersion,
    check_vllm_version,
    parse_version,
    select_implementation,
)


def facts(device="cuda", capability=(9, 0), kv="bfloat16", triton=True) -> PlatformFacts:
    return PlatformFacts(device, capability, kv, triton)


@pytest.mark.parametrize(
    ("f", "expected"),
    [
        (facts(), Implementation.M3LAB_TRITON),
        (facts(kv="bf16"), Implementation.M3LAB_TRITON),
        (facts(capability=(9, 0), kv="fp8"), Implementation.M3LAB_TRITON),  # v17: e4m3 KV cache with K/V scales
        (facts(capability=(9, 0), kv="fp8_e4m3"), Implementation.M3LAB_TRITON),
        (facts(capability=(9, 0), kv="fp8_e5m2"), Implementation.VLLM),
        (facts(capability=(10, 0), kv="fp8"), Implementation.VLLM),
        (facts(device="cpu", capability=None, kv="fp8"), Implementation.M3LAB_TORCH_CPU),
        (facts(capability=(10, 0)), Implementation.VLLM),
        (facts(capability=(8, 0)), Implementation.VLLM),
        (facts(capability=None), Implementation.VLLM),
        (facts(triton=False), Implementation.VLLM),
        (facts(device="rocm", capability=None), Implementation.VLLM),
        (facts(device="cpu", capability=None), Implementation.M3LAB_TORCH_CPU),
        (facts(device="xpu", capability=None), Implementation.VLLM),
    ],
)
def test_selection_matrix(f: PlatformFacts, expected: Implementation) -> None:
    selection = select_implementation(f)
    assert selection.implementation is expected
    assert selection.reason


@pytest.mark.parametrize(
    ("f", "expected"),
    [
        (facts(kv="bf16"), Implementation.M3LAB_TRITON),
        (facts(kv="fp8"), Implementation.M3LAB_TRITON),  # v13r: e4m3 index cache -> our FP8-MMA indexer
        (facts(kv="fp8_e4m3"), Implementation.M3LAB_TRITON),
        (facts(kv="fp8_e5m2"), Implementation.VLLM),
        (facts(kv="fp8", triton=False), Implementation.VLLM),  # vLLM's own fallback where we cannot run
        (facts(kv="fp8", capability=(10, 0)), Implementation.VLLM),
        (facts(kv="fp8", capability=(8, 9)), Implementation.VLLM),
        (facts(device="rocm", capability=None, kv="fp8"), Implementation.VLLM),
        (facts(device="cpu", capability=None, kv="fp8"), Implementation.M3LAB_TORCH_CPU),  # as before v13r
    ],
)
def test_indexer_selection_matrix(f: PlatformFacts, expected: Implementation) -> None:
    selection = select_implementation(f, "indexer")
    assert selection.implementation is expected
    assert selection.reason


def test_fp8_index_cache_reason_names_it() -> None:
    assert "fp8" in select_implementation(facts(kv="fp8"), "indexer").reason
    assert "fp8" in select_implementation(facts(kv="fp8"), "main").reason
    assert "not bfloat16" in select_implementation(facts(kv="fp8_e5m2"), "main").reason  # vLLM's own for e5m2


def test_sm90_without_our_kernels_says_why() -> None:
    assert "no Triton kernels" in select_implementation(facts(triton=False)).reason


@pytest.mark.parametrize("version", ["0.32.0", "0.32.1rc1+cpu", "0.32.0.dev12"])
def test_supported_versions_pass(version: str) -> None:
    check_vllm_version(version)


@pytest.mark.parametrize("version", ["0.31.9", "0.33.0", "1.0.0"])
def test_unsupported_versions_fail_loudly(version: str) -> None:
    with pytest.raises(UnsupportedVllmVersion, match=r"not supported.*m3lab_msa"):
        check_vllm_version(version)


def test_unparsable_version() -> None:
    with pytest.raises(UnsupportedVllmVersion, match="cannot parse"):
        parse_version("dev")
