"""A tiny, randomly initialised MiniMax M3 model directory (real safetensors from a fixed seed) for CPU tests.

Same architecture as M3's text backbone (vLLM's `MiniMaxM3SparseForCausalLM`, config `minimax_m3_vl` with a
`text_config`): dense and MSA sparse layers, a dense-MLP layer and MoE layers (sigmoid routing + bias, a shared
expert, SwiGLU-OAI), Gemma norms, per-head q/k norm, partial RoPE. Small dims so a 2-core CPU serves it.
Top-k is 2 blocks (M3: 16) so a prompt of a few 128-token blocks is already pruned by the indexer.
SmolLM2's tokenizer files are copied in (vocab 49152).
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt",
                   "chat_template.jinja", "generation_config.json")
DEFAULT_TOKENIZER_DIRS = (Path.home() / ".cache" / "m3lab" / "models" / "smollm2-135m-instruct",)


class TokenizerNotFound(FileNotFoundError):
    """No directory with SmolLM2's tokenizer.json was found (run scripts/setup/vllm.sh to convert the model)."""


@dataclass(frozen=True)
class TinyM3Config:
    """Dimensions of the tiny model; every field maps onto M3's `text_config`."""

    vocab_size: int = 49152
    hidden_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 128
    """vLLM's M3 backend only supports head size 128."""
    intermediate_size: int = 128
    """Per expert (and the shared expert: vLLM builds it as intermediate_size * n_shared_experts)."""
    dense_intermediate_size: int = 256
    num_local_experts: int = 4
    num_experts_per_tok: int = 2
    moe_layer_freq: tuple[int, ...] = (0, 1, 1, 1)
    sparse_attention_freq: tuple[int, ...] = (0, 1, 0, 1)
    sparse_topk_blocks: int = 2
    """M3 uses 16; 2 makes a 4-block prompt prune (top-k smaller than the block count)."""
    sparse_local_block: int = 1
    sparse_init_block: int = 0
    rope_theta: float = 10000.0
    max_position_embeddings: int = 4096
    rms_norm_eps: float = 1e-6
    routed_scaling_factor: float = 2.0
    seed: int = 1234


def text_config(cfg: TinyM3Config) -> dict[str, Any]:
    """M3 `text_config` for these dimensions (keys as in vLLM's MiniMaxM3TextConfig)."""
    sparse = [int(f) for f in cfg.sparse_attention_freq]
    return {
        "model_type": "minimax_m3_text",
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size, "dense_intermediate_size": cfg.dense_intermediate_size,
        "shared_intermediate_size": cfg.intermediate_size, "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads, "num_key_value_heads": cfg.num_key_value_heads,
        "head_dim": cfg.head_dim, "max_position_embeddings": cfg.max_position_embeddings,
        "rms_norm_eps": cfg.rms_norm_eps, "use_gemma_norm": True, "attention_output_gate": False,
        "rope_theta": cfg.rope_theta, "rotary_dim": cfg.head_dim // 2, "partial_rotary_factor": 0.5,
        "hidden_act": "swigluoai", "swiglu_alpha": 1.702, "swiglu_beta": 1.0, "swiglu_limit": 7.0,
        "use_qk_norm": True, "qk_norm_type": "per_head",
        "num_local_experts": cfg.num_local_experts, "num_experts_per_tok": cfg.num_experts_per_tok,
        "n_shared_experts": 1, "scoring_func": "sigmoid", "use_routing_bias": True,
        "routed_scaling_factor": cfg.routed_scaling_factor, "num_mtp_modules": 0,
        "moe_layer_freq": list(cfg.moe_layer_freq), "tie_word_embeddings": False,
        "sparse_attention_config": {
            "use_sparse_attention": True, "sparse_index_dim": cfg.head_dim,
            "sparse_num_index_heads": cfg.num_key_value_heads, "sparse_topk_blocks": cfg.sparse_topk_blocks,
            "sparse_block_size": 128, "sparse_disable_index_value": sparse, "sparse_score_type": "max",
            "sparse_init_block": cfg.sparse_init_block, "sparse_local_block": cfg.sparse_local_block,
            "sparse_attention_freq": sparse,
        },
    }


def model_config(cfg: TinyM3Config) -> dict[str, Any]:
    """Top-level config.json: M3's VL config wrapping the text backbone, served as the text-only architecture."""
    return {
        "model_type": "minimax_m3_vl",
        "architectures": ["MiniMaxM3SparseForCausalLM"],
        "text_config": text_config(cfg),
        "vision_config": None,
        "torch_dtype": "bfloat16",
        "tie_word_embeddings": False,
        "m3lab_tiny": asdict(cfg),
    }


def random_weights(cfg: TinyM3Config) -> dict[str, torch.Tensor]:
    """Checkpoint tensors (HF names, bf16; router gate and bias fp32) drawn from `cfg.seed`."""
    gen = torch.Generator().manual_seed(cfg.seed)
    h, hd = cfg.hidden_size, cfg.head_dim

    def normal(*shape: int, std: float, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
        return (torch.randn(*shape, generator=gen) * std).to(dtype)

    def linear(out_f: int, in_f: int, gain: float = 1.0) -> torch.Tensor:
        return normal(out_f, in_f, std=gain / in_f ** 0.5)

    w: dict[str, torch.Tensor] = {"model.embed_tokens.weight": normal(cfg.vocab_size, h, std=1.0)}
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}"
        w[f"{p}.input_layernorm.weight"] = normal(h, std=0.1)
        w[f"{p}.post_attention_layernorm.weight"] = normal(h, std=0.1)
        a = f"{p}.self_attn"
        w[f"{a}.q_proj.weight"] = linear(cfg.num_attention_heads * hd, h)
        w[f"{a}.k_proj.weight"] = linear(cfg.num_key_value_heads * hd, h)
        w[f"{a}.v_proj.weight"] = linear(cfg.num_key_value_heads * hd, h)
        w[f"{a}.o_proj.weight"] = linear(h, cfg.num_attention_heads * hd)
        w[f"{a}.q_norm.weight"] = normal(hd, std=0.1)
        w[f"{a}.k_norm.weight"] = normal(hd, std=0.1)
        if cfg.sparse_attention_freq[i]:
            w[f"{a}.index_q_proj.weight"] = linear(cfg.num_key_value_heads * hd, h)
            w[f"{a}.index_k_proj.weight"] = linear(hd, h)
            w[f"{a}.index_q_norm.weight"] = normal(hd, std=0.1)
            w[f"{a}.index_k_norm.weight"] = normal(hd, std=0.1)
        if cfg.moe_layer_freq[i]:
            m = f"{p}.block_sparse_moe"
            w[f"{m}.gate.weight"] = normal(cfg.num_local_experts, h, std=1.0 / h ** 0.5, dtype=torch.float32)
            w[f"{m}.e_score_correction_bias"] = normal(cfg.num_local_experts, std=0.1, dtype=torch.float32)
            for e in range(cfg.num_local_experts):
                w[f"{m}.experts.{e}.w1.weight"] = linear(cfg.intermediate_size, h)
                w[f"{m}.experts.{e}.w3.weight"] = linear(cfg.intermediate_size, h)
                w[f"{m}.experts.{e}.w2.weight"] = linear(h, cfg.intermediate_size)
            _mlp(w, f"{m}.shared_experts", h, cfg.intermediate_size, linear)
        else:
            _mlp(w, f"{p}.mlp", h, cfg.dense_intermediate_size, linear)
    w["model.norm.weight"] = normal(h, std=0.1)
    # Logit spread ~4: clear argmax margins, so bf16 noise rarely decides the greedy token.
    w["lm_head.weight"] = linear(cfg.vocab_size, h, gain=4.0)
    return w


def _mlp(w: dict[str, torch.Tensor], prefix: str, h: int, inter: int, linear: Any) -> None:
    w[f"{prefix}.gate_proj.weight"] = linear(inter, h)
    w[f"{prefix}.up_proj.weight"] = linear(inter, h)
    w[f"{prefix}.down_proj.weight"] = linear(h, inter)


def find_tokenizer_dir(candidates: tuple[Path, ...] = DEFAULT_TOKENIZER_DIRS) -> Path:
    for path in candidates:
        if (path / "tokenizer.json").is_file():
            return path
    raise TokenizerNotFound(
        "no SmolLM2 tokenizer found in " + ", ".join(str(c) for c in candidates)
        + " (the serving setup, scripts/setup/vllm.sh, converts the embedded model there)"
    )


def write_tiny_m3(out_dir: Path, cfg: TinyM3Config = TinyM3Config(), tokenizer_dir: Path | None = None) -> Path:
    """Write config.json, model.safetensors and the tokenizer into out_dir (created); returns out_dir.

    Deterministic: the same cfg (seed) gives the same weights, so tests can rebuild the model they compare against.
    """
    from safetensors.torch import save_file

    src = tokenizer_dir if tokenizer_dir is not None else find_tokenizer_dir()
    if not (src / "tokenizer.json").is_file():
        raise TokenizerNotFound(f"{src} has no tokenizer.json")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(model_config(cfg), indent=2))
    save_file(random_weights(cfg), str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, out_dir / name)
    return out_dir
