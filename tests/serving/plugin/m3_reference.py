"""Plain-PyTorch forward of the tiny MiniMax M3 (test support): standard layers + the MSA reference (kernels/msa).

Written from the M3 description, not from vLLM's code paths: one sequence, no KV cache, fp32 math on the bf16
checkpoint weights. The few roundings vLLM's bf16 serving makes where they change results measurably are mirrored
(bf16 cos/sin table, bf16 q/k/index tensors after norm + RoPE, as the fused op stores them).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from kernels.msa import reference as msa


def _bf16(x: torch.Tensor) -> torch.Tensor:
    """Round to bf16 and back: vLLM stores activations in the model dtype between ops."""
    return x.bfloat16().float()


def _e4m3(x: torch.Tensor) -> torch.Tensor:
    """Through an fp8 e4m3 cache and back (saturating at +-448, no scale)."""
    return x.clamp(-448.0, 448.0).to(torch.float8_e4m3fn).float()


class TinyM3Reference:
    """Loads config.json + model.safetensors of a tiny M3 dir; `logprobs(ids)` gives [len(ids), vocab] log-softmax."""

    def __init__(self, model_dir: Path, *, prune: bool = True, kv_fp8: bool = False) -> None:
        """prune=False attends to every visible block in the sparse layers (negative control: no top-k); kv_fp8:
        K and V go through fp8 e4m3 as vLLM's `--kv-cache-dtype fp8` stores them (saturating cast, scale 1)."""
        from safetensors.torch import load_file

        self.prune = prune
        self.kv_fp8 = kv_fp8
        self.cfg = json.loads((model_dir / "config.json").read_text())["text_config"]
        self.w = {k: v.float() for k, v in load_file(str(model_dir / "model.safetensors")).items()}
        self.sparse = self.cfg["sparse_attention_config"]

    # --- standard layers -------------------------------------------------------------------------------------
    def _norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Gemma RMSNorm: x / rms(x) * (1 + w)."""
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.cfg["rms_norm_eps"]) * (1.0 + weight)

    def _rope(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Partial NeoX RoPE on [T, heads, D]: the first rotary_dim dims, halves paired."""
        rd = int(self.cfg["head_dim"] * self.cfg["partial_rotary_factor"])
        inv_freq = 1.0 / (self.cfg["rope_theta"] ** (torch.arange(0, rd, 2, dtype=torch.float32) / rd))
        freqs = positions.float()[:, None] * inv_freq[None, :]
        cos = freqs.cos().bfloat16().float()[:, None, :]  # vLLM keeps its cos/sin table in the model dtype
        sin = freqs.sin().bfloat16().float()[:, None, :]
        x1, x2 = x[..., : rd // 2], x[..., rd // 2 : rd]
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin, x[..., rd:]], dim=-1)

    def _heads(self, x: torch.Tensor, n: int, weight: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        d = self.cfg["head_dim"]
        y = self._rope(self._norm(x.view(x.shape[0], n, d), weight), positions)
        return y.bfloat16().float()

    def _swiglu_oai(self, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        """gate * sigmoid(alpha * gate) * (up + beta), gate clamped above, up clamped both sides."""
        limit, alpha, beta = self.cfg["swiglu_limit"], self.cfg["swiglu_alpha"], self.cfg["swiglu_beta"]
        gate = gate.clamp(max=limit)
        up = up.clamp(min=-limit, max=limit)
        return gate * torch.sigmoid(alpha * gate) * (up + beta)

    def _mlp(self, x: torch.Tensor, p: str) -> torch.Tensor:
        w = self.w
        act = self._swiglu_oai(_bf16(x @ w[f"{p}.gate_proj.weight"].T), _bf16(x @ w[f"{p}.up_proj.weight"].T))
        return _bf16(_bf16(act) @ w[f"{p}.down_proj.weight"].T)

    def _moe(self, x: torch.Tensor, p: str) -> torch.Tensor:
        """Sigmoid routing; experts chosen by score + bias, weighted by the unbiased scores, renormalised, scaled."""
        w, cfg = self.w, self.cfg
        scores = torch.sigmoid(x @ w[f"{p}.gate.weight"].T)
        chosen = torch.topk(scores + w[f"{p}.e_score_correction_bias"], cfg["num_experts_per_tok"], dim=-1).indices
        weights = scores.gather(1, chosen)
        weights = weights / weights.sum(-1, keepdim=True) * cfg["routed_scaling_factor"]
        out = torch.zeros_like(x)
        for e in range(cfg["num_local_experts"]):
            rows, slot = (chosen == e).nonzero(as_tuple=True)
            if rows.numel() == 0:
                continue
            xe = x[rows]
            act = self._swiglu_oai(_bf16(xe @ w[f"{p}.experts.{e}.w1.weight"].T),
                                   _bf16(xe @ w[f"{p}.experts.{e}.w3.weight"].T))
            out.index_add_(0, rows, _bf16(_bf16(act) @ w[f"{p}.experts.{e}.w2.weight"].T) * weights[rows, slot, None])
        return _bf16(_bf16(out) + self._mlp(x, f"{p}.shared_experts"))

    # --- attention -------------------------------------------------------------------------------------------
    def _attention(self, x: torch.Tensor, i: int, positions: torch.Tensor) -> torch.Tensor:
        cfg, w, p = self.cfg, self.w, f"model.layers.{i}.self_attn"
        nh, nkv, d = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
        q = self._heads(_bf16(x @ w[f"{p}.q_proj.weight"].T), nh, w[f"{p}.q_norm.weight"], positions)
        k = self._heads(_bf16(x @ w[f"{p}.k_proj.weight"].T), nkv, w[f"{p}.k_norm.weight"], positions)
        v = _bf16(x @ w[f"{p}.v_proj.weight"].T).view(-1, nkv, d)
        if self.kv_fp8:
            k, v = _e4m3(k), _e4m3(v)
        if self.sparse["sparse_attention_freq"][i] and self.prune:
            out = self._sparse(x, p, q, k, v, positions)
        else:
            out = self._dense(q, k, v)
        return _bf16(_bf16(out.reshape(x.shape[0], nh * d)) @ w[f"{p}.o_proj.weight"].T)

    def _dense(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        group = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        logits = torch.einsum("thd,shd->hts", q, k) / math.sqrt(q.shape[-1])
        t = q.shape[0]
        logits = logits.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
        return torch.einsum("hts,shd->thd", torch.softmax(logits, dim=-1), v)

    def _sparse(self, x, p, q, k, v, positions) -> torch.Tensor:  # noqa: ANN001
        """MSA: index q/k (norm + RoPE), block top-k (MSA reference), exact attention over the chosen blocks."""
        w, nkv, d = self.w, self.cfg["num_key_value_heads"], self.cfg["head_dim"]
        iq = self._heads(_bf16(x @ w[f"{p}.index_q_proj.weight"].T), nkv, w[f"{p}.index_q_norm.weight"], positions)
        ik = self._heads(_bf16(x @ w[f"{p}.index_k_proj.weight"].T), 1, w[f"{p}.index_k_norm.weight"], positions)[:, 0]
        t = x.shape[0]
        pages = math.ceil(t / msa.BLOCK_SIZE)
        pad = pages * msa.BLOCK_SIZE - t
        # One request laid out in consecutive pages: the reference's paged inputs with an identity block table.
        index_cache = torch.nn.functional.pad(ik, (0, 0, 0, pad)).view(pages, msa.BLOCK_SIZE, d)
        kv = torch.nn.functional.pad(torch.cat([k, v], dim=-1), (0, 0, 0, 0, 0, pad))
        kv_cache = kv.view(pages, msa.BLOCK_SIZE, nkv, 2 * d).transpose(1, 2).contiguous()
        block_table = torch.arange(pages, dtype=torch.int32)[None, :]
        qsl = torch.tensor([0, t], dtype=torch.int32)
        seq_lens = torch.tensor([t], dtype=torch.int32)
        selection = msa.msa_index_topk(
            iq, index_cache, block_table, qsl, seq_lens, top_k=self.sparse["sparse_topk_blocks"],
            init_blocks=self.sparse["sparse_init_block"], local_blocks=self.sparse["sparse_local_block"],
        )
        self.last_selection = selection
        return msa.sparse_attention(q, kv_cache, selection, block_table, qsl, seq_lens, d ** -0.5)

    # --- model -----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def logprobs(self, ids: list[int]) -> torch.Tensor:
        """log-softmax over the vocabulary after each position of `ids` ([len(ids), vocab], fp32)."""
        w, cfg = self.w, self.cfg
        positions = torch.arange(len(ids))
        h = w["model.embed_tokens.weight"][torch.tensor(ids)]
        for i in range(cfg["num_hidden_layers"]):
            p = f"model.layers.{i}"
            h = _bf16(h + self._attention(_bf16(self._norm(h, w[f"{p}.input_layernorm.weight"])), i, positions))
            y = _bf16(self._norm(h, w[f"{p}.post_attention_layernorm.weight"]))
            h = _bf16(h + (self._moe(y, f"{p}.block_sparse_moe") if cfg["moe_layer_freq"][i] else self._mlp(y, f"{p}.mlp")))
        logits = _bf16(_bf16(self._norm(h, w["model.norm.weight"])) @ w["lm_head.weight"].T)
        return torch.log_softmax(logits, dim=-1)
