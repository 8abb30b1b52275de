"""Start-up cost of the CLI: `grade --help` (which must not import torch), against a bare
`python -c pass` measured in the same run.

    python bench/bench_help.py [--repeat 10]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def timed(cmd: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    bare, help_ = [], []
    for _ in range(args.repeat):
        bare.append(timed([sys.executable, "-c", "pass"]))
        help_.append(timed([sys.executable, "-c", "from grader.cli import main; main(['--help'])"]))
    b, h = statistics.median(bare), statistics.median(help_)
    print(f"{args.repeat} runs each (median wall time)")
    print(f"  python -c pass:  {b * 1000:6.0f} ms")
    print(f"  grade --help:    {h * 1000:6.0f} ms")
    print(f"  ratio:           {h / b:6.2f}x")


if __name__ == "__main__":
    main()
