"""Whether kernels/msa ships the Triton entry points the GPU impls call (found, not imported: Triton stays unloaded)."""
from __future__ import annotations

import importlib.util


def available() -> bool:
    """True when Triton and the modules of all three `msa_calls.TRITON` entry points can be found."""
    from serving.plugin.msa_calls import TRITON

    modules = {path.split(":")[0] for path in (TRITON.index_topk, TRITON.attention, TRITON.decode)}
    try:
        return importlib.util.find_spec("triton") is not None and all(
            importlib.util.find_spec(name) is not None for name in modules
        )
    except (ImportError, ValueError):
        return False
