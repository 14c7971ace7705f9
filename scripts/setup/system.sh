#!/usr/bin/env bash
# What the main job needs from the system, and the project's virtual environment (.venv). Idempotent.
# Test-only packages (browser, OCR, LaTeX, bubblewrap) are in scripts/setup/test-packages.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/setup/apt.sh

# docker.io: the sandbox engine; debootstrap: builds the sandbox image offline (no registry needed);
# acl: setfacl lets the sandbox's uid write the workspace; git: one commit per iteration.
apt_install \
  "dockerd docker.io" \
  "debootstrap debootstrap" \
  "git git" \
  "setfacl acl"

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# torch is pinned to the CPU wheel that lies on the project's machines (a bare "torch" would pull a CUDA build).
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "[setup] pip install torch==2.13.0 (CPU)"
  .venv/bin/pip install -q torch==2.13.0
fi
stamp=.venv/.m3lab-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "[setup] pip install -e .[kernels,dev]"
  .venv/bin/pip install -q -e ".[kernels,dev]"
  touch "$stamp"
fi
# CUTLASS/CuTe headers for the sm_90a MSA tile-outer kernel (kernels/msa/cuda, the `gpu-kernels` extra): only the
# headers are used, so the wheel goes in without its Python dependencies; the CPU tests compile the kernel with nvcc.
if ! .venv/bin/python -c "import cutlass_library" 2>/dev/null; then
  echo "[setup] pip install --no-deps nvidia-cutlass==4.2.0.0 (headers)"
  .venv/bin/pip install -q --no-deps "nvidia-cutlass==4.2.0.0"
fi
