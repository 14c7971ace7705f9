"""Units of the compile stage and the C++/CUDA static scan (no compiler needed)."""
from __future__ import annotations

import os
from pathlib import Path

from tasks.kernel.harness.extensions import NATIVE_SUFFIXES, build_key, parse_diagnostics, uses_extensions
from tasks.kernel.harness.static_checks import check_native, imported_helpers, native_texts
from tasks.kernel.harness.verdict import Verdict
from tasks.kernel.runner import EXT_BUILD, harvest_builds, toolchain_path
from tasks.kernel.targets import TARGETS_DIR

GCC_AND_NVCC = """[1/3] c++ -MMD -MF main.o.d ...
/tmp/e/ext-build/ab12/main.cpp:7:12: error: 'tw0' was not declared in this scope; did you mean 'tw'?
    7 |     return x * tw0;
      |            ^~~
/tmp/e/ext-build/ab12/cuda.cu(33): error: identifier "blockDimx" is undefined
/tmp/e/ext-build/ab12/cuda.cu(40): warning #177-D: variable "y" was declared but never referenced
/tmp/e/ext-build/ab12/main.cpp:3:5: warning: unused variable 'k' [-Wunused-variable]
ninja: build stopped: subcommand failed.
"""


def test_compiler_errors_parsed_to_file_line_message() -> None:
    errors, warnings, excerpt = parse_diagnostics(GCC_AND_NVCC)
    assert [(e.file, e.line) for e in errors] == [("main.cpp", 7), ("cuda.cu", 33)]
    assert "tw0" in errors[0].message and "blockDimx" in errors[1].message
    assert [(w.file, w.line) for w in warnings] == [("cuda.cu", 40), ("main.cpp", 3)]
    assert excerpt.startswith("/tmp/e/ext-build/ab12/main.cpp:7:12: error") and "ninja" in excerpt


def test_linker_error_is_an_error() -> None:
    errors, _, _ = parse_diagnostics("main.o: in function `f':\nmain.cpp:(.text+0x1): undefined reference to `g()'\n"
                                     "collect2: error: ld returned 1 exit status\n")
    assert errors and "undefined reference" in errors[0].message


def test_build_key_changes_with_sources_flags_and_arch(monkeypatch) -> None:  # noqa: ANN001
    base = {"name": "x", "cpp_sources": "int f();", "extra_cflags": ["-O2"], "build_directory": "/a"}
    k = build_key("load_inline", base)
    assert build_key("load_inline", {**base, "build_directory": "/b", "verbose": True}) == k  # not part of the key
    assert build_key("load_inline", {**base, "cpp_sources": "int g();"}) != k
    assert build_key("load_inline", {**base, "extra_cflags": ["-O3"]}) != k
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "9.0")
    assert build_key("load_inline", base) != k


def test_load_key_hashes_file_contents(tmp_path: Path) -> None:
    src = tmp_path / "k.cpp"
    src.write_text("int f() { return 1; }")
    k1 = build_key("load", {"name": "k", "sources": [str(src)]})
    src.write_text("int f() { return 2; }")
    assert build_key("load", {"name": "k", "sources": [str(src)]}) != k1


def test_uses_extensions(tmp_path: Path) -> None:
    assert uses_extensions("from torch.utils.cpp_extension import load_inline", tmp_path)
    assert not uses_extensions("import torch", tmp_path)
    (tmp_path / "k.cu").write_text("__global__ void k() {}")
    assert uses_extensions("import torch", tmp_path)


NATIVE_CASES = {
    "cudaStream_t s; cudaStreamCreate(&s); k<<<1, 1, 0, s>>>();": "creates a CUDA stream",
    "cublasSetStream(handle, my_stream);": "cuBLAS handle put on a stream",
    "cudaMemcpy(h, d, n, cudaMemcpyDeviceToHost);": "copies device memory to the host",
    "static std::unordered_map<int64_t, torch::Tensor> cache;": "static container",
    "static const void* last = nullptr;": "mutable static variable",
    "printf(\"M3LAB-VERDICT 0 {}\\n\");": "verdict tag",
    "std::thread t(work); t.detach();": "background threads",
    "FILE* f = fopen(\"/tmp/x\", \"r\");": "file or early-exit",
}
HONEST_NATIVE = """
static const int kThreads = 256;
static __global__ void k(const float* x, float* y) { y[threadIdx.x] = x[threadIdx.x]; }
static inline float sq(float v) { return v * v; }
void launch(torch::Tensor x) {
    // cudaStreamCreate in a comment does not count
    cublasSetStream(handle, at::cuda::getCurrentCUDAStream());
    k<<<1, kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(x.data_ptr<float>(), x.data_ptr<float>());
}
"""


def test_native_cheats_found_and_honest_code_passes() -> None:
    for code, why in NATIVE_CASES.items():
        report = check_native([("src", code)])
        assert any(why in c for c in report.cheats), (code, report)
    assert check_native([("src", HONEST_NATIVE)]).cheats == []
    assert any("reduced precision" in w for w in check_native([("s", "__half h = __float2half(v);")]).warnings)


def test_native_texts_reads_strings_files_and_imported_helpers(tmp_path: Path) -> None:
    (tmp_path / "kern.cu").write_text("static int calls = 0;")
    (tmp_path / "helper.py").write_text('SRC = "static std::vector<int> v;"')
    (tmp_path / "unused.py").write_text('SRC = "static std::vector<int> v;"')
    source = 'import helper\nSRC = r"""#include <torch/extension.h>\nint f();"""\n'
    helpers = imported_helpers(source, tmp_path)
    assert [h.name for h in helpers] == ["helper.py"]
    texts = native_texts([source] + [h.read_text() for h in helpers], tmp_path, NATIVE_SUFFIXES)
    assert {where for where, _ in texts} >= {"kern.cu"} and len(texts) == 3
    assert len(check_native(texts).cheats) == 2


def test_bundled_cuda_candidates_pass_the_static_scan() -> None:
    cands = TARGETS_DIR / "candidates"
    for name in ("softmax_cuda.py", "layernorm_cuda.py", "matmul_bias_gelu_cuda.py", "softmax_cpp.py"):
        src = (cands / name).read_text()
        helpers = [h.read_text() for h in imported_helpers(src, cands)]
        report = check_native(native_texts([src, *helpers], cands, NATIVE_SUFFIXES))
        assert report.cheats == [], (name, report.cheats)


def _verdict(key: str, name: str = "ext") -> Verdict:
    return Verdict(compile={"extensions": [{"name": name, "key": key, "cached": False, "ok": True, "seconds": 1}]})


def test_harvest_copies_regular_files_only(tmp_path: Path) -> None:
    eval_dir, cache = tmp_path / "eval", tmp_path / "cache"
    good, linked = "a" * 64, "b" * 64
    (eval_dir / EXT_BUILD / good).mkdir(parents=True)
    (eval_dir / EXT_BUILD / good / "ext.so").write_bytes(b"\x7fELF")
    (eval_dir / EXT_BUILD / linked).mkdir(parents=True)
    secret = tmp_path / "host-secret"
    secret.write_text("host file")
    os.symlink(secret, eval_dir / EXT_BUILD / linked / "ext.so")  # the sandbox points at a host file
    assert harvest_builds(eval_dir, cache, _verdict(good)) == [good]
    assert (cache / good / "ext.so").read_bytes() == b"\x7fELF" and (cache / good / "complete").is_file()
    assert harvest_builds(eval_dir, cache, _verdict(linked)) == []
    assert not (cache / linked).exists()
    assert harvest_builds(eval_dir, cache, _verdict("../" + "c" * 61)) == []  # not a key: never a path


def test_toolchain_path_has_system_compiler() -> None:
    parts = toolchain_path().split(":")
    assert parts[-3:] == ["/usr/local/bin", "/usr/bin", "/bin"]
