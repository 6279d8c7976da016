"""How long `gradc graph` takes to draw each example (the issue's budget: 2 s).

Run by hand from the repository root (needs Graphviz's `dot`):

    python benchmarks/graph_render.py               # every example, 5 repeats
    python benchmarks/graph_render.py --repeat 3 --format png

Each example's default def (its last) is drawn three ways: its structure
alone, with values and gradients (`--at`), and with the generated gradient
graph too (`--at --backward`). Scalar inputs take the lecture's points for
add_mul and neuron and 0.5 elsewhere; named dims are 4 (`--dims`), so arrays
are random. "command" is the real `gradc graph ... -o out.svg` in a fresh
process, as a user runs it (Python start-up and imports included); "build" is
the DOT text alone (`graph_dot`, in this process) and "dot" is Graphviz
rendering it. Each is the median of `--repeat` runs.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run from a checkout without installing: the repository root beside this file.
sys.path.insert(0, str(ROOT))

from gradc.graph import graph_dot, render  # noqa: E402
from gradc.parse import parse  # noqa: E402

BUDGET_SECONDS = 2.0
LECTURE_POINTS = {
    "add_mul": "x=-2,y=5,z=-4",
    "neuron": "w0=2,x0=-1,w1=-3,x1=-2,w2=-3",
}
GRADC = Path(sys.executable).parent / "gradc"


def point_of(path: Path) -> tuple[str, str]:
    """`--at` and `--dims` for the last def of an example."""
    d = parse(path.read_text(), str(path)).defs[-1]
    if path.stem in LECTURE_POINTS:
        return LECTURE_POINTS[path.stem], ""
    scalars = [p.name for p in d.params if p.type is None or not p.type.dims]
    dims = sorted({dim for p in d.params if p.type for dim in p.type.dims if isinstance(dim, str)})
    return ",".join(f"{s}=0.5" for s in scalars), ",".join(f"{n}=4" for n in dims)


def run_command(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stderr}")


def median_seconds(run, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--format", default="svg", choices=("svg", "png"))
    args = parser.parse_args()
    if shutil.which("dot") is None:
        print("needs Graphviz's dot (apt install graphviz)", file=sys.stderr)
        return 2
    command = [str(GRADC)] if GRADC.exists() else [sys.executable, "-m", "gradc"]

    print(f"median of {args.repeat} runs, seconds; budget {BUDGET_SECONDS} s per picture")
    print(f"{'example':22} {'variant':18} {'command':>8} {'build':>8} {'dot':>8}")
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for path in sorted((ROOT / "examples").glob("*.grad")):
            at, dims = point_of(path)
            text = path.read_text()
            point = dict(
                at={k: float(v) for k, v in (kv.split("=") for kv in at.split(",") if kv)},
                dims={k: int(v) for k, v in (kv.split("=") for kv in dims.split(",") if kv)},
            )
            variants = {
                "structure": ([], {}),
                "--at": (["--at", at] + (["--dims", dims] if dims else []), point),
                "--at --backward": (
                    ["--at", at, "--backward"] + (["--dims", dims] if dims else []),
                    {**point, "backward": True},
                ),
            }
            for variant, (options, kwargs) in variants.items():
                out = Path(tmp) / f"{path.stem}.{args.format}"
                argv = [*command, "graph", str(path), *options, "-o", str(out)]
                dot_text = graph_dot(text, str(path), **kwargs)
                seconds = median_seconds(partial(run_command, argv), args.repeat)
                built = median_seconds(partial(graph_dot, text, str(path), **kwargs), args.repeat)
                drawn = median_seconds(partial(render, dot_text, args.format), args.repeat)
                worst = max(worst, seconds)
                print(
                    f"{path.stem:22} {variant:18} {seconds:8.3f} {built:8.3f} {drawn:8.3f}",
                    flush=True,
                )
    verdict = "within" if worst < BUDGET_SECONDS else "OVER"
    print(f"slowest picture: {worst:.3f} s, {verdict} the {BUDGET_SECONDS} s budget")
    return 0 if worst < BUDGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
