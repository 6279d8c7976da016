"""Run the compiled lecture neuron (generated/neuron.py) at the lecture's point
and check its gradients against central differences.

    gradc compile examples/neuron.grad -o generated/neuron.py
    python examples/neuron_demo.py
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "generated"))

import neuron  # noqa: E402  (the generated module)

NAMES = ("w0", "x0", "w1", "x1", "w2")
point = [2.0, -1.0, -3.0, -2.0, -3.0]

L, grads = neuron.neuron_grad(*point)
print(f"L = neuron({', '.join(f'{n}={v:g}' for n, v in zip(NAMES, point))}) = {L:.4f}")
h = 1e-6
worst = 0.0
for i, (name, g) in enumerate(zip(NAMES, grads)):
    up, down = list(point), list(point)
    up[i] += h
    down[i] -= h
    numeric = (neuron.neuron(*up) - neuron.neuron(*down)) / (2 * h)
    worst = max(worst, abs(g - numeric) / max(abs(g), abs(numeric)))
    print(f"  grad_{name:<3} = {g:+.4f}   (central difference {numeric:+.4f})")
print(f"max relative error against central differences: {worst:.1e}")
sys.exit(0 if worst < 1e-6 else 1)
