"""Bundled kernel targets (our own code, KernelBench format), their honest candidates and planted cheats."""
from __future__ import annotations

from pathlib import Path

TARGETS_DIR = Path(__file__).resolve().parent
BUNDLED = ("softmax", "layernorm", "matmul_bias_gelu", "fp8_gemm")
HONEST: dict[str, list[str]] = {
    "softmax": ["softmax_torch.py", "softmax_triton.py"],
    "layernorm": ["layernorm_torch.py", "layernorm_triton.py"],
    "matmul_bias_gelu": ["matmul_bias_gelu_torch.py", "matmul_bias_gelu_triton.py"],
    "fp8_gemm": ["fp8_gemm_scaled_mm.py"],
}


def resolve_target(name_or_path: str) -> Path:
    """A bundled target name or a path to a target file."""
    if name_or_path in BUNDLED:
        return TARGETS_DIR / f"{name_or_path}.py"
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no target {name_or_path!r}: not a bundled name ({', '.join(BUNDLED)}) nor a file")
    return path.resolve()


def honest_candidate(target: str, name: str) -> Path:
    return TARGETS_DIR / "candidates" / name
