"""Batch norm and layer norm as a user writes them, with mean and var: the generated
backward against the hand-written simplified formulas (issue 14, must-show 2).

Run by hand from the repository root:

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/norm.py     # ~3 minutes
    python benchmarks/norm.py --quick --dtypes f64

The layers are

    mu = mean(x, axis=A), sigma2 = var(x, axis=A), xhat = (x - mu) / sqrt(sigma2 + eps),
    out = gamma * xhat + beta

for x: [N, D], over A = 0 (batch norm, `bn_written`) and over A = 1 with keepdims
(layer norm, `ln_written`), at (N, D) = (64, 128) and (256, 512). gradc spots the
normalisation (rewrites.py) and differentiates it by the simplified formula, sharing
beta's and gamma's sums where batch norm allows.

The harness is benchmarks/conv.py's, with these layers (`--layers
bn_written,ln_written`): the hand-written references are conv_handwritten.py's
batchnorm_forward/backward (CS231n's batchnorm_backward_alt) and
layernorm_forward/backward (the same formula per row); the peers PyTorch eager
(F.batch_norm in training mode, F.layer_norm) and, when installed, JAX jit of the
written-out layer. Every implementation's output and gradients are checked against
the hand-written ones before timing; each is timed interleaved in one process and
alone in fresh processes, and the target, generated at most 1.2x the hand-written
time, is printed as a PASS/FAIL line for both. Any option of conv.py can be given.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import conv  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    return conv.main(["--layers", "bn_written,ln_written", *argv])


if __name__ == "__main__":
    sys.exit(main())
