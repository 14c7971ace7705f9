"""Tiny M3 end to end on an fp8 e4m3 KV cache (`--kv-cache-dtype fp8`): the CPU build of vLLM serves it through our
plugin (the fused op's torch twin writes e4m3 K/V; our sparse impl reads them with the layer's per-tensor scales)
and stays close to the plain-PyTorch bf16 forward.

Before v17 the plugin refused fp8 caches at model load. The bound is looser than the bf16 test's (every layer's K/V
carry e4m3's 3-bit mantissa; vLLM's own CPU kernels run the dense layers' fp8 path), but a cache read with the wrong
dtype, layout or scale gives log-probabilities off by whole units, which it catches.
"""
from __future__ import annotations

import math
import threading
from pathlib import Path

import pytest
import torch

from tests.serving.plugin.m3_reference import TinyM3Reference
from tests.serving.plugin.test_tiny_m3_e2e import LONG, SHORT, prompt_ids
from tests.serving.plugin.tiny_server import RunningServer, agreement, complete, start_server, vllm_python

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.slow,
    pytest.mark.skipif(not (torch.cpu._is_avx512_supported() or torch.cpu._is_amx_tile_supported()),
                       reason="vLLM's CPU attention takes an fp8 KV cache only with AVX-512 or AMX"),
]


@pytest.fixture(scope="module")
def server(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> RunningServer:
    running = start_server(vllm_python(), tiny_dir, tmp_path_factory.mktemp("vllm_fp8") / "server.log",
                           extra_args=("--kv-cache-dtype", "fp8"))
    yield running
    running.stop()


def test_fp8_cache_served_through_our_impl(server: RunningServer, tiny_dir: Path) -> None:
    prompts = {"long": prompt_ids(LONG, 7), "short": prompt_ids(SHORT, 8)}
    results: dict[str, dict] = {}

    def run(name: str, max_tokens: int) -> None:
        results[name] = complete(server.base_url, prompts[name], max_tokens, prompt_logprobs=True)

    threads = [threading.Thread(target=run, args=("short", 16)), threading.Thread(target=run, args=("long", 6))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log = server.log()
    assert set(results) == {"long", "short"}, log[-3000:]
    assert "kv_cache_dtype=fp8" in log
    assert "m3lab MSA plugin: main impl serving.plugin.impls.TorchMSASparseImpl" in log
    ref = TinyM3Reference(tiny_dir)
    for name, choice in results.items():
        ours = agreement(choice, prompts[name], ref.logprobs(prompts[name] + choice["token_ids"]))
        print(f"fp8 {name}: {ours.summary()}")
        assert all(math.isfinite(x) for x in ours.generated_abs_diff), ours.summary()
        # measured (this machine): mean |d| 0.09 / 0.12, top-1 agree 0.90 / 0.85 (long / short)
        assert float(ours.top1_abs_diff.mean()) < 0.25, f"{name}: {ours.summary()}"
        assert float(ours.top1_same_token.float().mean()) > 0.7, f"{name}: {ours.summary()}"
