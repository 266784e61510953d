"""Time translate + verify over the catalogue and the 28 nonlinearities from the literature
(issue 13: each verify under 10 s on one core; the catalogue's translate + verify under 10 s).

Catalogue entries get every parameter 1; the literature cases their values in
tests/translator/literature.py, whose hand-derived truths are checked too (a row says
"WRONG" where a verdict or bound disagrees). Each figure is CPU time in a fresh process state
for that formula (the verifier's report cache is cleared; SymPy's own caches stay, as in any
process that verifies more than one formula). Not a test: run it by hand from the repository
root,

    OMP_NUM_THREADS=1 taskset -c 0 .venv/bin/python benchmarks/verify_catalogue.py
"""

from __future__ import annotations

import importlib
import math
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fluxact  # noqa: E402
from tests.translator.literature import CASES  # noqa: E402

verify_module = importlib.import_module("fluxact.translator.verify")


def timed(step):
    start = time.process_time()
    out = step()
    return out, time.process_time() - start


def right(rep, case) -> bool:
    def close(value: float, truth: float) -> bool:
        return math.isinf(value) if math.isinf(truth) else (
            truth * (1 - 1e-7) <= value <= truth * (1 + 1e-6) + 1e-12)

    return (close(rep.lipschitz, case.L) and close(rep.g_max, case.g_max)
            and rep.nonnegative_diffusivity is case.nonnegative
            and rep.monotone is case.monotone and rep.antisymmetric is case.antisymmetric)


def main() -> None:
    print(f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, "
          f"python {platform.python_version()}; CPU seconds")
    print(f"{'catalogue entry':<24}{'translate':>10}{'verify':>9}")
    totals = [0.0, 0.0]
    for name, entry in fluxact.catalogue.items():
        def both(e=entry):  # cold: the symbolic translation, then the one with numbers
            free = fluxact.translate(e).free_parameters
            return fluxact.translate(e, params={p: 1 for p in free})

        t, a = timed(both)
        verify_module._CACHE.clear()
        _, b = timed(lambda t=t: fluxact.verify(t))
        totals[0] += a
        totals[1] += b
        print(f"{name:<24}{a:>10.2f}{b:>9.2f}")
    print(f"{'total':<24}{totals[0]:>10.2f}{totals[1]:>9.2f}  (translate + verify "
          f"{sum(totals):.2f} s)")
    print()
    print(f"{'literature':<24}{'translate':>10}{'verify':>9}  verdicts")
    slowest = 0.0
    for case in CASES:
        t, a = timed(lambda c=case: fluxact.translate(c.formula, c.kind, params=c.params,
                                                      convention=c.convention))
        verify_module._CACHE.clear()
        rep, b = timed(lambda t=t: fluxact.verify(t))
        slowest = max(slowest, b)
        print(f"{case.name:<24}{a:>10.2f}{b:>9.2f}  {'right' if right(rep, case) else 'WRONG'}")
    print(f"slowest verify: {slowest:.2f} s")


if __name__ == "__main__":
    main()
