"""The software 2^x of the KV-outer kernel's variant 8 (v13t, FA4's partial exp2 on the FMA pipe): its coefficients,
how they were fitted, and an fp32 emulation of the kernel's instruction sequence, so that its accuracy is checked on
a CPU (tests/kernels/msa/test_cuda_kv_outer.py) before any device time.

Cody-Waite range reduction, as ``ex2_poly`` in kv_outer_sm90.cu does it in fp32:
    x = max(x, -127)                      (masked keys are -inf: 2^-127 below comes out as +0 exactly)
    j = x + 1.5 * 2^23                    (round to nearest: j's low mantissa bits hold n = rint(x))
    f = x - (j - 1.5 * 2^23)              (exact: f in [-0.5, 0.5])
    p = 1 + f (c1 + f (c2 + f (c3 + f (c4 + f c5))))   (Horner, FFMA; p(0) = 1 so the row maximum gives exactly 1)
    2^x = bits(p) + (bits(j) << 23)       (n << 23 added into the exponent field: bits(1.5 * 2^23) << 23 is 0 mod 2^32)
Relative error <= 2.5e-7 for x in [-126, 0] (ex2.approx.ftz: ~2^-22); results under 2^-126 are in [0, 2^-125)
(ex2.approx.ftz flushes those to 0; next to the row maximum's 1 both are nothing).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

MAGIC = np.float32(12582912.0)
"""1.5 * 2^23: adding it rounds an fp32 of magnitude < 2^22 to an integer kept in the low mantissa bits."""
CLAMP = np.float32(-127.0)
COEFFS = (0.6931470036506653, 0.24022242426872253, 0.05550733953714371, 0.009671509265899658,
          0.0013264698209241033)
"""c1..c5 of p(f) = 1 + c1 f + ... + c5 f^5 ~ 2^f on [-0.5, 0.5] (fp32 values; ``fit_coefficients(5)`` rounded to
fp32). Degree 3 / 4 reach only 1.0e-4 / 2.8e-6 (NOTES.md v13t): 5 is the least that matches ex2.approx."""
SOURCE = Path(__file__).resolve().parent / "kv_outer_sm90.cu"


def fit_coefficients(degree: int, points: int = 20001, iters: int = 200) -> np.ndarray:
    """c1..c_degree minimising the maximum relative error of 1 + f q(f) against 2^f on [-0.5, 0.5] (Lawson's
    iteratively reweighted least squares, float64; p(0) = 1 fixed)."""
    f = np.linspace(-0.5, 0.5, points)
    t = np.exp2(f)
    a = np.stack([f**k for k in range(1, degree + 1)], axis=1) / t[:, None]  # relative error: (p - t) / t
    b = (t - 1.0) / t
    w = np.full(points, 1.0 / points)
    coeffs = np.zeros(degree)
    for _ in range(iters):
        sw = np.sqrt(w)
        coeffs = np.linalg.lstsq(a * sw[:, None], b * sw, rcond=None)[0]
        w = w * np.abs(a @ coeffs - b)
        w /= w.sum()
    return coeffs


def _fma32(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """fp32 fused multiply-add: the product of two fp32 is exact in float64, the sum rounded once to float64 and
    then to fp32 (a double rounding can differ from FFMA by one ulp in rare ties: far under the bound checked)."""
    return (np.float64(a) * np.float64(b) + np.float64(c)).astype(np.float32)


def exp2_emulated(x: np.ndarray, coeffs: tuple[float, ...] = COEFFS) -> np.ndarray:
    """2^x as the kernel computes it, step by step in fp32 (x: fp32, <= 0 in the kernel, -inf for masked keys)."""
    x = np.maximum(np.asarray(x, dtype=np.float32), CLAMP)
    j = (x + MAGIC).astype(np.float32)  # fp32 adds round to nearest, as __fadd_rn
    f = (x - (j - MAGIC).astype(np.float32)).astype(np.float32)
    c = [np.float32(v) for v in coeffs]
    p = np.full_like(f, c[-1])
    for ck in reversed(c[:-1]):
        p = _fma32(p, f, np.full_like(f, ck))
    p = _fma32(p, f, np.ones_like(f))
    bits = p.view(np.uint32) + (j.view(np.uint32) << np.uint32(23))  # wraps mod 2^32 like the integer add
    return bits.view(np.float32)


def relative_error(x: np.ndarray, coeffs: tuple[float, ...] = COEFFS) -> float:
    """Largest |emulated / 2^x - 1| over ``x`` (the exact 2^x in float64)."""
    x = np.asarray(x, dtype=np.float32)
    return float(np.max(np.abs(exp2_emulated(x, coeffs).astype(np.float64) / np.exp2(x.astype(np.float64)) - 1.0)))


def coefficients_in_source(path: Path = SOURCE) -> tuple[float, ...]:
    """c1..c5 as written in the kernel (``kExp2C1`` ... ``kExp2C5``), to check they are ``COEFFS``."""
    text = path.read_text()
    found = dict(re.findall(r"kExp2C(\d)\s*=\s*([-+0-9.eE]+)f", text))
    return tuple(float(found[str(k)]) for k in range(1, len(found) + 1))
