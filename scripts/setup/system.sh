#!/usr/bin/env bash
# System packages and the project's virtual environment (.venv). Idempotent; safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/../.."

need_apt=()
for pair in dockerd:docker.io bwrap:bubblewrap debootstrap:debootstrap chromium:chromium chromedriver:chromium-driver git:git; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need_apt+=("${pair#*:}")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "[setup] apt-get install ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# torch is pinned to the CPU wheel that lies on the project's machines (a bare "torch" would pull a CUDA build).
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/pip install -q torch==2.13.0
fi
stamp=.venv/.m3lab-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "[setup] pip install -e .[kernels,dev]"
  .venv/bin/pip install -q -e ".[kernels,dev]"
  touch "$stamp"
fi
