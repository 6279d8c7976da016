"""examples/newton_logreg.py: Newton-CG on the generated f_hvp converges in at most 15
steps (issue 16), and README's numbers for it are what the example prints."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _example():
    spec = importlib.util.spec_from_file_location(
        "newton_logreg_example", ROOT / "examples" / "newton_logreg.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_newton_converges_in_at_most_15_steps_and_readme_says_how(capsys):
    example = _example()
    assert example.main([]) == 0
    printed = capsys.readouterr().out
    steps, products = map(int, re.search(r"newton: (\d+) steps, (\d+) Hessian", printed).groups())
    assert steps <= 15
    descent = float(re.search(r"gradient descent: \d+ steps, \|grad\| = (\S+)", printed).group(1))
    assert descent > example.TOLERANCE  # descent is still far from it
    readme = (ROOT / "README.md").read_text()
    assert f"in {steps} Newton steps ({products} Hessian-vector" in readme
    assert f"still at {descent:.0e}".replace("e-0", "e-") in readme


def test_newton_step_count_is_the_example_s_own(tmp_path):
    """The convergence test above can fail: with the Hessian-vector product
    replaced by a scaled identity, Newton-CG is gradient descent and does not
    converge in 15 steps."""
    example = _example()
    model = example.load_model()
    X, t = example.data()

    class Identity:
        logreg_grad = staticmethod(model.logreg_grad)

        @staticmethod
        def logreg_hvp(X, t, w, b, vw, vb):
            return 0.05 * vw, 0.05 * vb

    history, _ = example.newton(Identity, X, t)
    assert history[-1] > example.TOLERANCE
