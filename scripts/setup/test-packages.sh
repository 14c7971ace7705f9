#!/usr/bin/env bash
# System packages only the tests need (the main job runs without them). Idempotent; safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/setup/apt.sh

# bubblewrap: the process-sandbox backend (tested on every machine; the main job uses Docker);
# chromium + driver: the viewer's browser tests; tesseract: OCR of scanned papers;
# pdflatex: the paper tests typeset real two-column papers.
apt_install \
  "bwrap bubblewrap" \
  "chromium chromium" \
  "chromedriver chromium-driver" \
  "tesseract tesseract-ocr tesseract-ocr-eng --no-install-recommends" \
  "pdflatex texlive-latex-base texlive-latex-recommended texlive-pictures --no-install-recommends"
