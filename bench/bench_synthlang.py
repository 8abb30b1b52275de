"""Speed of the synthetic-language generator: 1 MB of text, against a baseline measured in
the same run (1 MB of i.i.d. words drawn with numpy and joined: no chain, no grammar).

    python bench/bench_synthlang.py [--repeat 5] [--mb 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from grader.synthlang import SyntheticLanguage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--mb", type=float, default=1.0)
    args = parser.parse_args()
    n_bytes = int(args.mb * (1 << 20))
    lang = SyntheticLanguage(seed=0)
    words = np.array(lang.tokens[6:])
    n_tokens = int(n_bytes / lang.bytes_per_token) + 1
    ours, base = [], []
    for i in range(args.repeat):
        t = time.perf_counter()
        text = lang.text(n_bytes, seed=i)
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        " ".join(np.random.default_rng(i).choice(words, size=n_tokens).tolist())
        base.append(time.perf_counter() - t)
    o, b = statistics.median(ours), statistics.median(base)
    print(f"{len(text.encode()) / 1e6:.2f} MB of text, median of {args.repeat} runs")
    print(f"  synthetic language (Markov chain + rendering): {o * 1000:7.1f} ms")
    print(f"  baseline (i.i.d. numpy words, joined):         {b * 1000:7.1f} ms")
    print(f"  ratio:                                         {o / b:7.2f}x")


if __name__ == "__main__":
    main()
