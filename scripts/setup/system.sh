#!/usr/bin/env bash
# System packages and the project's virtual environment (.venv). Idempotent; safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/../.."

# Each entry: a command that shows the package is there, the packages, and whether apt may add recommends.
# tesseract: OCR of scanned papers; pdflatex: the paper tests typeset real two-column papers.
packages=(
  "dockerd docker.io"
  "bwrap bubblewrap"
  "debootstrap debootstrap"
  "chromium chromium"
  "chromedriver chromium-driver"
  "git git"
  "setfacl acl"
  "tesseract tesseract-ocr tesseract-ocr-eng --no-install-recommends"
  "pdflatex texlive-latex-base texlive-latex-recommended texlive-pictures --no-install-recommends"
)
updated=0
for entry in "${packages[@]}"; do
  read -r probe rest <<<"$entry"
  command -v "$probe" >/dev/null 2>&1 && continue
  [ "$updated" = 1 ] || { apt-get update -qq; updated=1; }
  echo "[setup] apt-get install $rest"
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $rest >/dev/null
done

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
