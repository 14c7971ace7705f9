"""The typed verdict of one evaluation. Nothing unparsable is ever a pass: `from_json` on a malformed dict raises,
and callers turn that into an error verdict."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Stage = Literal["setup", "static", "compile", "import", "quick", "full", "timing", "sanitize", "done"]


@dataclass
class ShapeTiming:
    shape: dict[str, Any]
    ref_ms: float
    cand_ms: float
    aa_ratio: float
    speedup: float
    floor_ms: float | None
    samples: int


@dataclass
class Verdict:
    correct: bool = False
    speedup: float | None = None
    ref_ms: float | None = None
    cand_ms: float | None = None
    aa_spread: float | None = None
    """|reference vs itself - 1|, the worst over timing shapes: the noise floor of `speedup`."""
    cheats: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    """The harness or the candidate failed to run (import error, exception, timeout, crash)."""
    failures: list[str] = field(default_factory=list)
    """Wrong results: mismatches, modified inputs, wrong dtype/shape/strides, NaN/Inf."""
    warnings: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    """Not rejections but reasons for a human/agent to look (e.g. a > 10x speed-up)."""
    stage: Stage = "setup"
    device: str = "cpu"
    device_name: str = ""
    max_rel_err: float | None = None
    checked_calls: int = 0
    timings: list[ShapeTiming] = field(default_factory=list)
    eval_s: float = 0.0
    stage_s: dict[str, float] = field(default_factory=dict)
    """Wall seconds of each stage the evaluator ran (setup, static, compile, import, correctness, timing, sanitize)."""
    compile: dict[str, Any] | None = None
    """The compile stage (C++/CUDA extensions): seconds, cached, extensions, errors, warnings; None when the
    candidate builds none."""
    sanitizer: dict[str, Any] | None = None
    """compute-sanitizer results per tool (memcheck, racecheck) when that stage ran."""

    @property
    def accepted(self) -> bool:
        return self.correct and not self.cheats and not self.errors

    @property
    def score(self) -> float:
        return float(self.speedup or 0.0) if self.accepted else 0.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["accepted"] = self.accepted
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Verdict:
        data = dict(data)
        data.pop("accepted", None)
        timings = [ShapeTiming(**t) for t in data.pop("timings", [])]
        verdict = cls(**data)
        verdict.timings = timings
        if not isinstance(verdict.correct, bool) or not isinstance(verdict.cheats, list):
            raise ValueError("malformed verdict")
        return verdict

    def summary(self) -> str:
        if self.errors:
            # First lines only: a traceback belongs in the error list, shown once.
            return f"ERROR at {self.stage}: " + "; ".join(e.splitlines()[0] for e in self.errors if e)[:600]
        if self.cheats:
            return "REJECTED (cheat): " + "; ".join(self.cheats)[:600]
        if not self.correct:
            return f"INCORRECT at {self.stage}: " + "; ".join(self.failures)[:600]
        if self.speedup is None:
            return "correct (not timed)"
        return (f"correct, speed-up {self.speedup:.3f}x (ref {self.ref_ms:.4g} ms, candidate {self.cand_ms:.4g} ms, "
                f"A/A spread {self.aa_spread:.3f})")
