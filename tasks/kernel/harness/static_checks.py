"""Static (AST) checks on candidate source: the cheat patterns that are easier to see than to catch running.

Findings are `cheats` (the candidate is rejected) or `warnings` (shown to the verifier agent). The dynamic checks
catch most of these too; the static layer turns them into a clear message for the producer."""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

# Modules with no business in a kernel: introspection, threads/processes, raw memory, files, networking.
_BANNED_IMPORTS = {
    "gc": "introspects the heap (reading expected outputs)",
    "inspect": "stack inspection",
    "ctypes": "raw memory access",
    "threading": "background threads (work outside the timed window)",
    "_thread": "background threads (work outside the timed window)",
    "__main__": "reaches into the harness's worker (its __main__ module)",
    "multiprocessing": "background processes",
    "concurrent": "background threads",
    "subprocess": "spawns processes",
    "signal": "signals other processes",
    "socket": "network access",
    "pickle": "replays serialized results",
    "shelve": "replays stored results",
    "mmap": "shared memory",
    "importlib": "dynamic imports (loading the reference)",
    "builtins": "patching builtins",
    "time": "timer access",
    "timeit": "timer access",
}
_BANNED_CALLS = {
    "open": "file access", "exec": "dynamic code", "eval": "dynamic code", "compile": "dynamic code",
    "__import__": "dynamic imports", "setattr": "monkey-patching", "delattr": "monkey-patching",
    "globals": "frame introspection", "id": "caching keyed by object id",
}
_BANNED_ATTRS = {
    "_getframe": "stack inspection", "f_back": "stack inspection", "f_locals": "stack inspection",
    "get_objects": "heap introspection", "get_referrers": "heap introspection",
    "Stream": "work on another stream", "_exit": "early exit", "exit": "early exit", "kill": "signals",
    "fork": "background processes", "system": "spawns processes", "popen": "spawns processes",
    "manual_seed": "guesses the input seed", "seed": "guesses the input seed",
    "elapsed_time": "timer access", "perf_counter": "timer access", "perf_counter_ns": "timer access",
    "__torch_function__": "tensor subclass (lazy results)", "__torch_dispatch__": "tensor subclass (lazy results)",
    "_make_subclass": "tensor subclass (lazy results)", "_make_wrapper_subclass": "tensor subclass (lazy results)",
    "shared_memory": "shared memory", "sched_setaffinity": "moves itself to another CPU core",
    "setpriority": "changes its scheduling priority", "nice": "changes its scheduling priority", "from_file": "replays results from files", "load": None,
    "killpg": "signals", "pidfd_send_signal": "signals", "sched_setscheduler": "changes scheduling",
    "sched_setparam": "changes scheduling",
    **dict.fromkeys(("posix_spawn", "posix_spawnp", "spawnv", "spawnve", "spawnvp", "spawnvpe", "spawnl", "spawnle",
                     "spawnlp", "spawnlpe", "execv", "execve", "execvp", "execvpe", "execl", "execle", "execlp",
                     "execlpe", "forkpty"), "spawns processes"),
    **dict.fromkeys(("f_globals", "tb_frame", "walk_stack", "extract_stack", "__globals__", "gi_frame", "cr_frame"),
                    "stack inspection (reaches the harness's frames)"),
    **dict.fromkeys(("_get_current_dispatch_mode", "_len_torch_dispatch_stack", "_get_dispatch_mode",
                     "_python_dispatch", "_get_torch_function_mode", "_is_torch_function_mode_enabled"),
                    "looks for the harness's op trace (behaves differently when observed)"),
    **dict.fromkeys(("write_text", "write_bytes", "unlink", "rmtree", "symlink_to", "hardlink_to"),
                    "writes files (its own source, the target or the harness copy)"),
}
# Attributes of `os` that open, write or move files (`os.open` etc.: the builtin `open` is banned as a call).
_OS_FILE_ATTRS = {"open", "write", "rename", "replace", "remove", "unlink", "symlink", "link", "chmod", "truncate",
                  "ftruncate", "mkfifo", "dup2", "makedirs", "mkdir"}
_TORCH_HOOKS = {"__torch_function__", "__torch_dispatch__"}
_PATCHABLE_ROOTS = {"torch", "time", "triton", "F", "nn", "np", "numpy", "math", "os", "sys"}
_TARGET_NAMES = {"Model", "m3lab_target", "target", "reference"}


@dataclass
class StaticReport:
    cheats: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _root_name(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _const_str(node: ast.AST) -> str | None:
    """The value of a string expression built from constants only ("a" + "b", f"{'a'}b", "".join(["a", "b"])),
    else None: names hidden in pieces are checked like plain ones."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _const_str(node.left), _const_str(node.right)
        return left + right if left is not None and right is not None else None
    if isinstance(node, ast.JoinedStr):
        parts = [_const_str(v.value if isinstance(v, ast.FormattedValue) else v) for v in node.values]
        return "".join(parts) if all(part is not None for part in parts) else None  # type: ignore[arg-type]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "join" \
            and len(node.args) == 1 and isinstance(node.args[0], (ast.List, ast.Tuple)):
        sep = _const_str(node.func.value)
        parts = [_const_str(e) for e in node.args[0].elts]
        return sep.join(parts) if sep is not None and all(part is not None for part in parts) else None  # type: ignore[arg-type]
    return None


def _call_name(node: ast.Call) -> str | None:
    f = node.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None


class _Visitor(ast.NodeVisitor):
    def __init__(self, forbidden_ops: list[str], docstrings: set[int]) -> None:
        self.report = StaticReport()
        self.docstrings = docstrings
        self.forbidden = [op.lower() for op in forbidden_ops]

    def cheat(self, node: ast.AST, text: str) -> None:
        self.report.cheats.append(f"line {getattr(node, 'lineno', '?')}: {text}")

    def warn(self, node: ast.AST, text: str) -> None:
        self.report.warnings.append(f"line {getattr(node, 'lineno', '?')}: {text}")

    def _module(self, node: ast.AST, name: str) -> None:
        top = name.split(".")[0]
        if top in _BANNED_IMPORTS:
            self.cheat(node, f"imports {name}: {_BANNED_IMPORTS[top]}")
        if top in _TARGET_NAMES or name.endswith("target"):
            self.cheat(node, f"imports {name}: calls the reference instead of optimizing it")

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._module(node, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self._module(node, node.module or "")
        for alias in node.names:
            if alias.name in ("Model", "get_inputs") and node.module not in ("torch", "torch.nn"):
                self.cheat(node, f"imports {alias.name} from {node.module}: reuses the reference")
            if alias.name in _BANNED_ATTRS and _BANNED_ATTRS[alias.name]:
                self.cheat(node, f"imports {alias.name}: {_BANNED_ATTRS[alias.name]}")
            if node.module == "os" and alias.name in _OS_FILE_ATTRS:
                self.cheat(node, f"imports os.{alias.name}: file access")
            if node.module == "sys" and alias.name == "modules":
                self.cheat(node, "imports sys.modules: reaches into the harness's own modules")

    def _named(self, node: ast.AST, text: str) -> None:
        """A name reached through a string (getattr, hasattr): checked like an attribute written out."""
        if _BANNED_ATTRS.get(text):
            self.cheat(node, f"reaches .{text} through a string: {_BANNED_ATTRS[text]}")
        elif text in _OS_FILE_ATTRS | _TORCH_HOOKS | {"modules", "_make_subclass"}:
            self.cheat(node, f"reaches .{text} through a string (files, the harness's modules or a tensor subclass)")
        if any(op in text.lower() for op in self.forbidden):
            self.cheat(node, f"reaches {text!r} through a string: the target forbids this library op")

    def visit_Call(self, node: ast.Call) -> None:
        name = _call_name(node)
        if isinstance(node.func, ast.Name) and name in _BANNED_CALLS:
            self.cheat(node, f"calls {name}(): {_BANNED_CALLS[name]}")
        if isinstance(node.func, ast.Name) and name in ("getattr", "hasattr") and len(node.args) >= 2:
            text = _const_str(node.args[1])
            if text is None:
                self.warn(node, f"{name}() with a computed name: check what it reaches")
            else:
                self._named(node, text)
        if name and any(op in name.lower() for op in self.forbidden):
            self.cheat(node, f"calls {name}: the target forbids this library op")
        if name == "Model":
            self.cheat(node, "instantiates the reference Model")
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        why = _BANNED_ATTRS.get(node.attr)
        if why:
            self.cheat(node, f"uses .{node.attr}: {why}")
        root = _root_name(node.value) if isinstance(node.value, (ast.Attribute, ast.Name)) else None
        if root == "os" and node.attr in _OS_FILE_ATTRS:
            self.cheat(node, f"uses os.{node.attr}: file access")
        if root == "sys" and node.attr == "modules":
            self.cheat(node, "uses sys.modules: reaches into the harness's own modules")
        if node.attr == "data_ptr":
            self.warn(node, "uses data_ptr(): fine for kernel launches, suspicious as a cache key")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if id(node) in self.docstrings:
            return
        if isinstance(node.value, str) and ("/proc" in node.value or "/dev/shm" in node.value):
            self.cheat(node, f"mentions {node.value[:40]!r}: reads process memory or shared memory")

    def visit_BinOp(self, node: ast.BinOp) -> None:
        text = _const_str(node)
        if text is not None and ("/proc" in text or "/dev/shm" in text):
            self.cheat(node, f"builds {text[:40]!r}: reads process memory or shared memory")
        self.generic_visit(node)

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        parts = "".join(v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
        if "/proc" in parts or "/dev/shm" in parts or ("/pr" in parts and "oc" in parts):
            self.cheat(node, f"builds {parts[:40]!r}: reads process memory or shared memory")
        self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        if node.name in _TORCH_HOOKS:
            self.cheat(node, f"defines {node.name}: a tensor subclass (lazy/deferred results)")
        self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_Try(self, node: ast.Try) -> None:
        self.cheat(node, "try/except: a silent fallback path (kernels must fail loudly)")
        self.generic_visit(node)

    def _assign_targets(self, node: ast.AST, targets: list[ast.expr]) -> None:
        for t in targets:
            if isinstance(t, ast.Attribute) and _root_name(t) in _PATCHABLE_ROOTS:
                self.cheat(node, f"assigns {ast.unparse(t)}: monkey-patches a library (timers, reference ops)")

    def visit_Assign(self, node: ast.Assign) -> None:
        self._assign_targets(node, node.targets)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._assign_targets(node, [node.target])
        self.generic_visit(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for base in node.bases:
            if ast.unparse(base) in ("torch.Tensor", "Tensor"):
                self.cheat(node, f"class {node.name} subclasses torch.Tensor (lazy/deferred results)")
        self.generic_visit(node)

    def visit_Global(self, node: ast.Global) -> None:
        self.warn(node, f"global state {node.names}: check it is not a result cache")

    def visit_Compare(self, node: ast.Compare) -> None:
        text = ast.unparse(node)
        if ".shape" in text and any(isinstance(c, (ast.Tuple, ast.Constant)) for c in node.comparators):
            self.warn(node, f"compares a shape with a constant ({text[:60]}): special-cased shapes?")
        self.generic_visit(node)


def syntax_error(source: str, filename: str = "candidate.py") -> str | None:
    """Why `source` is not valid Python ("candidate.py line 3: invalid syntax ..."), or None. Parsing runs
    nothing, so the host checks this before any sandbox or worker starts."""
    try:
        ast.parse(source, filename=filename)
    except SyntaxError as exc:
        where = f" line {exc.lineno}" + (f", column {exc.offset}" if exc.offset else "") if exc.lineno else ""
        code = f": {exc.text.strip()}" if exc.text and exc.text.strip() else ""
        return f"{filename}{where}: {exc.msg}{code}"
    except (ValueError, RecursionError, MemoryError) as exc:  # null bytes, absurd nesting
        return f"{filename}: not parsable Python ({type(exc).__name__}: {str(exc)[:200]})"
    return None


def check_source(source: str, forbidden_ops: list[str] | None = None) -> StaticReport:
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        return StaticReport(cheats=[], warnings=[f"syntax error: {exc}"])
    docstrings = {
        id(n.body[0].value) for n in ast.walk(tree)
        if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and n.body
        and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)
    }
    visitor = _Visitor(forbidden_ops or [], docstrings)
    visitor.visit(tree)
    if not any(isinstance(n, ast.ClassDef) and n.name == "ModelNew" for n in tree.body):
        visitor.report.warnings.append("no top-level class ModelNew")
    return visitor.report


# ---- C++ / CUDA sources (load_inline strings, .cu/.cpp files next to the candidate) ----
# (pattern, text, cheat?) Cheats reject; warnings go to the verifier. Comments are stripped first.
_NATIVE_RULES: list[tuple[re.Pattern[str], str, bool]] = [
    (re.compile(r"\bcudaStreamCreate\w*\s*\("), "creates a CUDA stream in C++ (work on a private stream escapes "
     "the caller's ordering; launch on at::cuda::getCurrentCUDAStream())", True),
    (re.compile(r"\bcudaEvent(?:Create\w*|ElapsedTime)\s*\("), "creates/reads CUDA events in C++ (timer access)", True),
    (re.compile(r"\bcudaMemcpy\w*\s*\([^;]*cudaMemcpyDeviceToHost"), "copies device memory to the host inside the "
     "extension (result replay or a hidden sync)", True),
    (re.compile(r"\bstatic\s+(?:thread_local\s+)?(?:std::)?(?:unordered_map|map|vector|set|unordered_set|deque|list|"
                r"array|optional|pair|tuple)\s*<"), "static container in C++ (a result cache across calls)", True),
    (re.compile(r"\bstatic\s+(?:thread_local\s+)?(?:at|torch|c10)::Tensor\b"), "static tensor in C++ (a cached "
     "result)", True),
    (re.compile(r"\bstatic\s+(?!constexpr\b|inline\b|__|struct\b|class\b|const\b[^;=(*]*[=;\[{])(?:[\w:<>]+[\s*&]+)+"
                r"(?P<name>\w+)\s*(?:=|;|\[|\{)"), "mutable static variable in C++ (state kept between calls, e.g. "
     "skipping work when a pointer repeats)", True),
    (re.compile(r"M3LAB-VERDICT"), "mentions the harness's verdict tag (printing a forged verdict)", True),
    (re.compile(r"\bstd::(?:thread|async|jthread)\b|\bpthread_create\b"), "background threads in C++", True),
    (re.compile(r"\b(?:fork|vfork|system|popen|execv\w*|dlopen|fopen|kill|_exit|exit|abort)\s*\(|std::[io]?fstream|"
                r"/proc/|/dev/shm"), "process, file or early-exit access from C++", True),
    (re.compile(r"\bcublasSetStream\w*\s*\((?![^;]*getCurrentCUDAStream)[^;]*\)"),
     "cuBLAS handle put on a stream other than the current one (work escapes the caller's ordering)", True),
    (re.compile(r"\bcublas(?:Lt)?Create\s*\("), "creates its own cuBLAS handle (prefer "
     "at::cuda::getCurrentCUDABlasHandle(), which follows the current stream)", False),
    (re.compile(r"\b(?:__half|half2|__nv_bfloat16|(?:at|c10)::(?:Half|BFloat16)|__float2half\w*|__float2bfloat16\w*|kHalf|kBFloat16|kFloat16|"
                r"wmma::|tf32)\b"), "reduced precision inside the kernel (the target's dtype tolerance decides)", False),
    (re.compile(r"\b(?:printf|fprintf|puts|std::cout|std::cerr)\b"), "prints from C++/CUDA", False),
]
_COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)


def check_native(texts: list[tuple[str, str]]) -> StaticReport:
    """Static findings in C++/CUDA source texts, each given as (where, text)."""
    report = StaticReport()
    for where, text in texts:
        code = _COMMENTS.sub(" ", text)
        starts: set[int] = set()  # one finding per construct (a static map is not also a "static variable")
        for pattern, why, is_cheat in _NATIVE_RULES:
            m = pattern.search(code)
            if m and m.start() not in starts:
                starts.add(m.start())
                line = code.count("\n", 0, m.start()) + 1
                found = f"{where} (C++ line {line}): {m.group(0).strip()[:60]!r}: {why}"
                (report.cheats if is_cheat else report.warnings).append(found)
    return report


def native_texts(sources: list[str], candidate_dir: Path, suffixes: set[str]) -> list[tuple[str, str]]:
    """Every string constant of the candidate that looks like C++ (load_inline sources are strings) and every
    native source file next to it."""
    texts: list[tuple[str, str]] = []
    trees = []
    for source in sources:
        try:
            trees.append(ast.parse(source))
        except SyntaxError:
            continue
    for node in (n for tree in trees for n in ast.walk(tree)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and (
                "M3LAB-VERDICT" in node.value or re.search(r"[;{}]|#include", node.value)):
            texts.append((f"string at line {node.lineno}", node.value))
    for path in sorted(candidate_dir.iterdir()):
        if path.suffix in suffixes and path.is_file():
            texts.append((path.name, path.read_text(errors="replace")))
    return texts


def imported_helpers(source: str, candidate_dir: Path) -> list[Path]:
    """Helper modules next to the candidate that it imports (their code runs as the candidate's: checked too)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return [candidate_dir / f"{n}.py" for n in sorted(names) if (candidate_dir / f"{n}.py").is_file()]
