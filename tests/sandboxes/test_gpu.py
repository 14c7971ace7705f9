"""GPU access through the process backend (the kernel task's path on GPU hosts without nvidia-container-
toolkit). Runs only on a CUDA machine (device tool), never in CI."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sandboxes import SandboxSpec, inside_path, open_sandbox

pytestmark = pytest.mark.gpu


def _python_paths() -> tuple[Path, ...]:
    """The running interpreter's installation, so the sandbox can run the host's own python and torch."""
    paths = {Path(sys.prefix), Path(sys.base_prefix)}
    return tuple(sorted(p for p in paths if not str(p).startswith("/usr")))


@pytest.fixture
def cuda_host() -> None:
    if shutil.which("nvidia-smi") is None or subprocess.run(["nvidia-smi"], capture_output=True).returncode:
        pytest.skip("no CUDA GPU on this host")
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap missing")


def test_process_sandbox_sees_the_gpu(cuda_host: None, tmp_path: Path) -> None:
    spec = SandboxSpec(workspace=tmp_path, gpu=True, memory_mb=16384, host_paths=_python_paths(),
                       exec_timeout_s=300)
    probe = ("import torch; x = torch.ones(1024, device='cuda'); "
             "print(torch.cuda.is_available(), torch.cuda.get_device_name(0), float(x.sum()))")
    with open_sandbox(spec, backend="process") as sb:
        res = sb.exec([inside_path(sys.executable), "-c", probe])
        assert res.ok, res
        assert res.stdout.startswith("True ") and res.stdout.strip().endswith("1024.0"), res.stdout
        blocked = sb.exec("timeout 3 bash -c 'echo > /dev/tcp/1.1.1.1/443' && echo CONNECTED")
        assert "CONNECTED" not in blocked.stdout


def test_no_gpu_without_the_flag(cuda_host: None, tmp_path: Path) -> None:
    with open_sandbox(SandboxSpec(workspace=tmp_path), backend="process") as sb:
        assert sb.exec("ls /dev/nvidia* 2>/dev/null | wc -l").stdout.strip() == "0"
