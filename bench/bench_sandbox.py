"""The sandbox's own cost: starting a solution process with and without namespaces.

    python bench/bench_sandbox.py [--spawns 20]

Starts one zygote per isolation level (process, sandbox) and times, for each, the start
of a solution process up to its first reply (fork, namespaces, mounts, limits, importing
the reference foundations.softmax) and one call into it. Prints the medians and their
ratio (sandbox / process), measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def measure(isolation: str, spawns: int) -> tuple[float, float, float]:
    import torch

    from grader.remote import SolutionModule
    from grader.solutions import SandboxPlan, SolutionHandle, Zygote

    solutions = ROOT / "reference"
    started = time.perf_counter()
    zygote = Zygote(SandboxPlan(isolation, [solutions], [ROOT / "plugins"]))
    zygote.start()
    start_s = time.perf_counter() - started
    spawn, call = [], []
    x = torch.randn(4, 8)
    try:
        for _ in range(spawns):
            handle = SolutionHandle(zygote, solutions=solutions, track="foundations", name="softmax",
                                    display_root=ROOT, timeout=10, memory_mb=4096, preload=[])
            t0 = time.perf_counter()
            handle.ensure_started()
            t1 = time.perf_counter()
            SolutionModule(handle, "softmax.py").softmax(x)
            t2 = time.perf_counter()
            handle.close()
            spawn.append(t1 - t0)
            call.append(t2 - t1)
    finally:
        zygote.close()
    return start_s, statistics.median(spawn), statistics.median(call)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spawns", type=int, default=20)
    args = parser.parse_args()
    from grader.sandbox import jail

    ok, why = jail.available()
    if not ok:
        sys.exit(f"the sandbox is unavailable here: {why}")
    results = {level: measure(level, args.spawns) for level in ("process", "sandbox")}
    print(f"{args.spawns} solution processes per level (median)")
    print(f"  {'':10} {'zygote start':>13} {'spawn + import':>15} {'first call':>11}")
    for level, (z, s, c) in results.items():
        print(f"  {level:10} {z * 1000:11.0f} ms {s * 1000:13.1f} ms {c * 1000:9.2f} ms")
    (_, sp, cp), (_, ss, cs) = results["process"], results["sandbox"]
    print(f"  ratio sandbox / process: spawn {ss / sp:.2f}x, call {cs / cp:.2f}x")


if __name__ == "__main__":
    main()
