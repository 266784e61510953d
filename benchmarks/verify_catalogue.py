"""Time `fluxact.verify` over the whole catalogue on one core (issue 3: target < 10 s).

Each entry's parameters are set to 1. Three figures per entry: `translate` (cold, the symbolic
translation including the regulariser integral), `verify` alone (its cache cleared first),
and `symbolic`: verify with the parameters left symbolic (the closed form through
scaling.py). Not a test: run it by hand,

    OMP_NUM_THREADS=1 taskset -c 0 .venv/bin/python benchmarks/verify_catalogue.py
"""

from __future__ import annotations

import platform
import time

from fluxact.translator.verify import _verify_cached

import fluxact


def main() -> None:
    rows = []
    for name, entry in fluxact.catalogue.items():
        start = time.perf_counter()
        free = fluxact.translate(entry).free_parameters  # cold: the symbolic translation
        t = fluxact.translate(entry, params={p: 1 for p in free})
        translated = time.perf_counter()
        _verify_cached.cache_clear()
        fluxact.verify(t)
        done = time.perf_counter()
        _verify_cached.cache_clear()
        fluxact.verify(entry)  # parameters symbolic
        rows.append((name, translated - start, done - translated, time.perf_counter() - done))
    print(f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, "
          f"python {platform.python_version()}")
    print(f"{'entry':<24}{'translate (s)':>14}{'verify (s)':>12}{'symbolic (s)':>14}")
    for name, a, b, c in rows:
        print(f"{name:<24}{a:>14.2f}{b:>12.2f}{c:>14.2f}")
    totals = [sum(row[i] for row in rows) for i in (1, 2, 3)]
    print(f"{'total':<24}{totals[0]:>14.2f}{totals[1]:>12.2f}{totals[2]:>14.2f}")


if __name__ == "__main__":
    main()
