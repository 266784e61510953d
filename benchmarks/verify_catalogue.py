"""Time `fluxact.verify` over the whole catalogue on one core (issue 3: target < 10 s).

Each entry's parameters are set to 1. Two figures per entry: `translate` (cold, the symbolic
translation including the regulariser integral) and `verify` alone (its cache cleared
first). Not a test: run it by hand,

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
        rows.append((name, translated - start, done - translated))
    print(f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, "
          f"python {platform.python_version()}")
    print(f"{'entry':<24}{'translate (s)':>14}{'verify (s)':>12}")
    for name, a, b in rows:
        print(f"{name:<24}{a:>14.2f}{b:>12.2f}")
    total_t = sum(a for _, a, _ in rows)
    total_v = sum(b for _, _, b in rows)
    print(f"{'total':<24}{total_t:>14.2f}{total_v:>12.2f}")


if __name__ == "__main__":
    main()
