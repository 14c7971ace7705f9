"""Load vLLM's M3 Hopper Triton ops (sparse_attn.py, index_topk.py) where vLLM is not installed.

The two files import only torch, ``vllm.platforms.current_platform``, ``vllm.triton_utils`` (tl, triton) and, for
the indexer, ``vllm.utils.math_utils.round_up``. We build a throw-away package in a temp folder that provides just
those names with vLLM's own meaning on CUDA, copy the two files in, and import them. The vLLM files are never
committed: the benchmark is pointed at a folder holding copies taken from the installed wheel.
"""
from __future__ import annotations

import importlib
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType

_PLATFORMS = '''
import torch


class _CudaPlatform:
    """The few current_platform methods the M3 ops call, as vLLM's CudaPlatform answers them."""

    def is_cuda(self) -> bool:
        return torch.cuda.is_available()

    def is_device_capability(self, capability) -> bool:
        return torch.cuda.get_device_capability() == tuple(capability)

    def is_arch_support_pdl(self) -> bool:
        return torch.cuda.get_device_capability()[0] >= 9


current_platform = _CudaPlatform()
'''
_TRITON_UTILS = "import triton\nimport triton.language as tl\n"
_MATH_UTILS = "def round_up(x: int, y: int) -> int:\n    return ((x + y - 1) // y) * y\n"
OPS_FILES = ("sparse_attn.py", "index_topk.py")


def load_vllm_ops(ops_dir: Path) -> tuple[ModuleType, ModuleType]:
    """(sparse_attn, index_topk) modules from copies of vLLM's files in ``ops_dir``."""
    missing = [f for f in OPS_FILES if not (ops_dir / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{ops_dir} lacks {missing}; copy them from vllm/models/minimax_m3/common/ops/")
    if "vllm" in sys.modules and not getattr(sys.modules["vllm"], "__m3lab_standin__", False):
        raise RuntimeError("a real vllm is already imported; the stand-in would shadow it")
    root = Path(tempfile.mkdtemp(prefix="vllm-standin-"))
    files = {
        "vllm/__init__.py": "__m3lab_standin__ = True\n",
        "vllm/platforms/__init__.py": _PLATFORMS,
        "vllm/triton_utils/__init__.py": _TRITON_UTILS,
        "vllm/utils/__init__.py": "",
        "vllm/utils/math_utils.py": _MATH_UTILS,
        "vllm/models/__init__.py": "",
        "vllm/models/minimax_m3/__init__.py": "",
        "vllm/models/minimax_m3/common/__init__.py": "",
        "vllm/models/minimax_m3/common/ops/__init__.py": "",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    for name in OPS_FILES:
        shutil.copy(ops_dir / name, root / "vllm/models/minimax_m3/common/ops" / name)
    sys.path.insert(0, str(root))
    sparse = importlib.import_module("vllm.models.minimax_m3.common.ops.sparse_attn")
    index = importlib.import_module("vllm.models.minimax_m3.common.ops.index_topk")
    return sparse, index
