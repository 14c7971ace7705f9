"""The vLLM stand-in loads files that import the three vLLM names, in a child process (it installs a fake
``vllm`` package in sys.modules, which must not leak into other tests)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]

_FAKE_OP = """
from vllm.platforms import current_platform
from vllm.triton_utils import tl, triton
{extra}
def probe():
    return callable(current_platform.is_arch_support_pdl), tl.constexpr is not None, triton.cdiv(5, 2)
"""


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


def test_standin_provides_the_imported_names(tmp_path):
    (tmp_path / "sparse_attn.py").write_text(_FAKE_OP.format(extra=""))
    (tmp_path / "index_topk.py").write_text(_FAKE_OP.format(extra="from vllm.utils.math_utils import round_up\n"
                                                                  "assert round_up(130, 128) == 256\n"))
    done = _run(f"""
        from pathlib import Path
        from kernels.bench.vllm_standin import load_vllm_ops
        sparse, index = load_vllm_ops(Path({str(tmp_path)!r}))
        print(sparse.probe(), index.probe())
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(True, True, 3) (True, True, 3)"


def test_missing_files_are_named(tmp_path):
    from kernels.bench.vllm_standin import load_vllm_ops

    with pytest.raises(FileNotFoundError, match="sparse_attn.py"):
        load_vllm_ops(tmp_path)
