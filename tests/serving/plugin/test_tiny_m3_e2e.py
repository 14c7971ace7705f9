"""Tiny M3 end to end: the CPU build of vLLM serves a random M3 through our plugin and matches a plain-PyTorch forward.

One server (chunked prefill: 256 tokens a step, so the 4-block prompt is prefilled in two chunks, the second with
context), two concurrent requests (a short one decodes while the long one is still prefilling: mixed batches).
The long prompt spans 4 blocks with top-k 2, so the indexer prunes from position 256 on; a reference that does NOT
prune must disagree there (the comparison can fail).
"""
from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from tests.serving.plugin.m3_reference import TinyM3Reference
from tests.serving.plugin.tiny_server import RunningServer, agreement, complete, start_server, vllm_python

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

LONG, SHORT = 460, 40
PRUNED_FROM = 2 * 128  # top-k 2 blocks: positions >= 256 see 3+ blocks, one is dropped


@pytest.fixture(scope="module")
def server(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> RunningServer:
    running = start_server(vllm_python(), tiny_dir, tmp_path_factory.mktemp("vllm") / "server.log")
    yield running
    running.stop()


def prompt_ids(n: int, seed: int) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(100, 49000, (n,), generator=g).tolist()  # ordinary tokens, no specials


@pytest.fixture(scope="module")
def completions(server: RunningServer) -> dict[str, tuple[list[int], dict]]:
    prompts = {"long": prompt_ids(LONG, 7), "short": prompt_ids(SHORT, 8)}
    results: dict[str, tuple[list[int], dict]] = {}

    def run(name: str, max_tokens: int) -> None:
        results[name] = (prompts[name], complete(server.base_url, prompts[name], max_tokens, prompt_logprobs=True))

    threads = [threading.Thread(target=run, args=("short", 16)), threading.Thread(target=run, args=("long", 6))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(results) == {"long", "short"}, server.log()[-3000:]
    return results


def test_plugin_chose_our_cpu_implementations(server: RunningServer) -> None:
    log = server.log()
    assert "m3lab MSA plugin: main impl serving.plugin.impls.TorchMSASparseImpl" in log
    assert "m3lab MSA plugin: indexer impl serving.plugin.impls.TorchMSAIndexerImpl" in log


def test_matches_plain_pytorch_forward(completions: dict, tiny_dir: Path) -> None:
    ref = TinyM3Reference(tiny_dir)
    control = TinyM3Reference(tiny_dir, prune=False)
    for name, (prompt, choice) in completions.items():
        full = prompt + choice["token_ids"]
        ours = agreement(choice, prompt, ref.logprobs(full))
        print(f"{name}: {ours.summary()}")  # shown with -s / -rP: the numbers behind the thresholds
        # bf16 logits of magnitude ~16 carry ~0.06-0.12 of rounding: the floor of |d| per position.
        assert float(ours.top1_abs_diff.mean()) < 0.06, f"{name}: {ours.summary()}"
        assert float((ours.top1_abs_diff > 0.15).float().mean()) < 0.08, f"{name}: {ours.summary()}"
        assert float(ours.top1_same_token.float().mean()) > 0.9, f"{name}: {ours.summary()}"
        assert all(ours.generated_ok), f"{name}: {ours.summary()}"
        assert max(ours.generated_abs_diff) < 0.25, f"{name}: {ours.summary()}"
        if name == "long":
            pruned = ours.top1_abs_diff[PRUNED_FROM - 1:]
            unpruned = agreement(choice, prompt, control.logprobs(full)).top1_abs_diff[PRUNED_FROM - 1:]
            print(f"pruned region: mean |d| {float(pruned.mean()):.4f} (>0.15: {int((pruned > 0.15).sum())}), "
                  f"no-pruning reference {float(unpruned.mean()):.4f} (>0.15: {int((unpruned > 0.15).sum())}) "
                  f"of {pruned.numel()}")
            # Without top-k the reference must be clearly further away where pruning happens.
            assert float(unpruned.mean()) > max(0.1, 2 * float(pruned.mean())), (
                f"control too close: pruned-region mean |d| ours {float(pruned.mean()):.4f}, "
                f"no-pruning reference {float(unpruned.mean()):.4f}"
            )
