"""Capture the benchmark models once each and plan them at several budgets: the issue-6 table.

    python bench_models/plan_models.py [--solver NAME] [--budgets 50%,25%] [MODEL ...]

MODEL is a file stem in bench_models/models/ (default: resnet50 vit_base gpt2 llama_small).
Prints one markdown row per model; ``recompile plan`` gives the same numbers per run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "models"))
import _env  # noqa: E402,F401 - this machine's torchvision quirk

from recompiler.budget import format_bytes  # noqa: E402
from recompiler.frontend.capture import capture, reachable_floor  # noqa: E402
from recompiler.frontend.modelfile import load_model_file  # noqa: E402
from recompiler.simulate import baseline  # noqa: E402
from recompiler.solvers import DEFAULT_SOLVER, solve  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="*", default=["resnet50", "vit_base", "gpt2", "llama_small"])
    ap.add_argument("--solvers", default=None, help="comma-separated; default: the default solver")
    ap.add_argument("--budgets", default="50%,25%")
    ap.add_argument("--time-limit", type=float, default=None)
    ap.add_argument("--device-profile", default="cpu")
    args = ap.parse_args(argv)
    budgets = args.budgets.split(",")
    solvers = args.solvers.split(",") if args.solvers else [DEFAULT_SOLVER]
    print(f"profile: {args.device_profile}; floor = max(local bound, inputs + outputs)", flush=True)
    head = "| model | solver | nodes | capture s | baseline peak | floor | " + " | ".join(
        f"{b}: peak (% base), overhead, solve s" for b in budgets) + " |"
    print(head)
    print("|" + "---|" * (6 + len(budgets)))
    for name in args.models:
        t0 = time.perf_counter()
        spec = load_model_file(HERE / "models" / f"{name}.py")
        cap = capture(spec.model, spec.example_inputs, loss_fn=spec.loss_fn, name=name,
                      device_profile=args.device_profile)
        secs = time.perf_counter() - t0
        g = cap.graph
        base = baseline(g).peak_bytes
        floor = reachable_floor(g)
        for solver in solvers:
            cells = []
            for b in budgets:
                p = solve(g, b, solver, time_limit=args.time_limit)
                mark = "" if p.feasible else " (missed)"
                cells.append(f"{format_bytes(p.peak_bytes)} ({100 * p.peak_fraction:.1f}%){mark}, "
                             f"{100 * p.overhead:.1f}%, {p.solve_seconds:.1f}")
            print(f"| {name} | {solver} | {g.n} | {secs:.1f} | {format_bytes(base)} | {format_bytes(floor)} "
                  f"({100 * floor / base:.1f}%) | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
