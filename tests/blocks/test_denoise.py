"""fluxact.denoise and `fluxact denoise`: step counts, the three schemes, 1D and 2D, and
one-line errors with exit status 2."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fluxact
from fluxact.cli import main
from fluxact.denoising import _fsi_plan, denoise, denoise_run
from fluxact.runtime import StabilityError

torch = pytest.importorskip("torch")


def noisy(n: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.repeat([10.0, 80.0, 40.0, 60.0], n // 4) + rng.normal(0, 5, n)


def heat(f: np.ndarray, time: float) -> np.ndarray:
    """Linear diffusion with reflecting boundaries, exactly (eigen-decomposition)."""
    n = len(f)
    lap = np.diag(np.full(n, -2.0)) + np.diag(np.ones(n - 1), 1) + np.diag(np.ones(n - 1), -1)
    lap[0, 0] = lap[-1, -1] = -1.0
    w, v = np.linalg.eigh(lap)
    return v @ (np.exp(time * w) * (v.T @ f))


def test_explicit_steps_and_max_min_principle() -> None:
    f = noisy()
    run = denoise_run(f, "perona-malik", params={"lam": 10.0}, time=20.0)
    assert run.steps == 40 and run.tau == 0.5 and run.bound == 0.5
    assert f.min() <= run.output.min() and run.output.max() <= f.max()
    assert np.abs(np.diff(run.output)).sum() < np.abs(np.diff(f)).sum()  # smoother
    run = denoise_run(f, "perona-malik", params={"lam": 10.0}, time=20.0, tau=0.3)
    assert run.steps == math.ceil(20 / 0.3) and run.tau == pytest.approx(20 / 67)
    with pytest.raises(StabilityError, match="breaks the linf bound tau <= 0.5"):
        denoise(f, "perona-malik", params={"lam": 10.0}, time=20.0, tau=0.6)


@pytest.mark.parametrize("scheme", ["explicit", "fsi", "implicit"])
@pytest.mark.parametrize("time", [10.0, 100.0])
def test_schemes_approximate_linear_diffusion(scheme: str, time: float) -> None:
    n = 64
    x = (np.arange(n) + 0.5) / n
    f = 50 + 30 * np.cos(np.pi * x) + 10 * np.cos(3 * np.pi * x)  # smooth: Neumann modes
    exact = heat(f, time)
    got = denoise(f, "linear", time=time, scheme=scheme)
    err = np.abs(got - exact).max() / np.abs(f - exact).max()
    # measured (T = 10 / 100): explicit 0.37% / 0.11%, FSI 3.3% (1 cycle of 8) / 1.6%
    # (6 cycles of 10), implicit 0.09% / 0.03%
    assert err < {"explicit": 0.01, "fsi": 0.05, "implicit": 0.005}[scheme]


def test_fsi_uses_fewer_evaluations() -> None:
    f = noisy()
    fsi = denoise_run(f, "charbonnier", params={"lam": 5.0}, time=200.0, scheme="fsi")
    explicit = denoise_run(f, "charbonnier", params={"lam": 5.0}, time=200.0)
    assert fsi.steps < explicit.steps / 3
    assert fsi.tau <= fsi.bound and fsi.cycle <= 10
    assert np.abs(fsi.output - explicit.output).max() < 0.05 * np.ptp(f)
    long = denoise_run(f, "charbonnier", params={"lam": 5.0}, time=200.0, scheme="fsi",
                       max_cycle=40)
    assert long.steps < fsi.steps and long.cycle <= 40
    for time, tau, most in ((1.0, 0.5, 10), (200.0, 0.5, 10), (1e5, 0.25, 50), (7.0, 1.0, 3)):
        cycles, cycle = _fsi_plan(time, tau, most)
        assert 1 <= cycle <= most and cycles * cycle * (cycle + 1) / 3 * tau >= time
        assert (cycles - 1) * most * (most + 1) / 3 * tau < time  # no spare cycle


def test_two_dimensions() -> None:
    rng = np.random.default_rng(1)
    img = np.zeros((24, 20))
    img[6:18, 5:15] = 100.0
    img += rng.normal(0, 10, img.shape)
    run = denoise_run(img, "perona-malik", params={"lam": 20.0}, time=5.0)
    assert run.output.shape == img.shape and run.bound == 0.25  # h^2 / (4 g_max) in 2D
    assert img.min() <= run.output.min() and run.output.max() <= img.max()
    periodic = denoise(img, "linear", time=3.0, boundary="periodic", stability="euclidean")
    assert periodic.sum() == pytest.approx(img.sum(), rel=1e-12)  # mass is conserved
    with pytest.raises(StabilityError, match="1D notion"):
        denoise(img, "linear", time=1.0, stability="sign")


def test_formulas_and_translations() -> None:
    f = noisy(32)
    a = denoise(f, "exp(-r**2/(2*lam**2))", "diffusivity", params={"lam": 8.0}, time=3.0)
    t = fluxact.translate(fluxact.lookup("perona-malik"), params={"lam": 8.0})
    b = denoise(f, t, time=3.0)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    with pytest.raises(StabilityError, match="1D, 2D or 3D"):  # volumes: tests/blocks/test_grid.py
        denoise(np.zeros((2, 2, 2, 2)), "linear", time=1.0)
    with pytest.raises(StabilityError, match="NaN"):
        denoise(np.array([1.0, np.nan, 2.0]), "linear", time=1.0)
    with pytest.raises(StabilityError, match="time"):
        denoise(f, "linear", time=0.0)


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_denoise(tmp_path, capsys) -> None:
    src, dst = tmp_path / "in.npy", tmp_path / "out.npy"
    f = noisy()
    np.save(src, f)
    code, out, err = run_cli([
        "denoise", str(src), str(dst), "--name", "perona-malik", "--param", "lam=10",
        "--time", "20"], capsys)
    assert code == 0, err
    assert "40 explicit steps of tau = 0.5; linf bound tau <= 0.5" in out
    np.testing.assert_allclose(np.load(dst), denoise(f, "perona-malik",
                                                     params={"lam": 10.0}, time=20.0))
    code, out, err = run_cli([
        "denoise", str(src), str(dst), "x/sqrt(1 + x**2)", "--from", "activation",
        "--variable", "x", "--time", "5", "--scheme", "fsi", "--quiet"], capsys)
    assert code == 0 and out == ""


@pytest.mark.parametrize("args, message", [
    (["--name", "perona-malik", "--param", "lam=1", "--time", "5", "--tau", "0.6"],
     "breaks the linf bound"),
    (["sin(r)", "--from", "activation", "--time", "5"], "no time step is safe"),
    (["--name", "perona-malik", "--time", "5"], "has no value"),
    (["--name", "perona-malik", "--param", "lam=1", "--time", "-1"], "positive"),
    (["--name", "hard", "--param", "th=1", "--time", "5", "--scheme", "implicit"],
     "Lipschitz"),
    (["--name", "nope", "--time", "5"], "catalogue"),
    (["__import__('os').system('echo pwned')", "--from", "activation", "--time", "5"],
     "only calls of named functions"),
    (["--name", "linear", "--time", "5", "--tau", "1e-300"], "more than 1e+07"),
    (["--name", "linear", "--time", "5", "--scheme", "fsi", "--stability", "linf"],
     "no linf guarantee"),
    (["--name", "linear", "--time", "5", "--max-cycle", "0"], "max_cycle"),
])
def test_cli_denoise_errors(tmp_path, capfd, args: list[str], message: str) -> None:
    src, dst = tmp_path / "in.npy", tmp_path / "out.npy"
    np.save(src, noisy(16))
    code = main(["denoise", str(src), str(dst), *args])
    out, err = capfd.readouterr()  # file descriptors: output of a child process shows too
    assert code == 2
    assert err.startswith("fluxact: error:") and err.count("\n") == 1 and message in err
    assert "pwned" not in out + err and not dst.exists()


def test_time_step_never_above_the_bound(tmp_path, capsys) -> None:
    f = noisy(32)
    h = 0.015384615384615385  # T / ceil(T / bound) is an ulp above the bound here
    run = denoise_run(f, "perona-malik", params={"lam": 1.0}, time=0.1, h=h)
    assert run.tau <= run.bound
    fsi = denoise_run(f, "linear", time=1.32, tau=1.32 / 376 * 3, scheme="fsi")
    assert fsi.tau <= fsi.bound and "euclidean bound" in fsi.summary()
    huge = np.array([1e308, -1e308, 1e308, 0.0])
    with pytest.raises(StabilityError, match="not finite"):
        denoise(huge, "linear", time=1.0)
    src = tmp_path / "in.npy"
    np.save(src, f)
    code, _, err = run_cli(["denoise", str(src), str(tmp_path / "no" / "out.npy"), "--name",
                            "linear", "--time", "1"], capsys)
    assert code == 2 and "folder" in err and str(tmp_path / "no") in err


def test_cli_denoise_bad_files(tmp_path, capsys) -> None:
    dst = tmp_path / "out.npy"
    obj = tmp_path / "obj.npy"
    np.save(obj, np.array([object()]), allow_pickle=True)
    text = tmp_path / "text.npy"
    text.write_text("not numpy")
    strings = tmp_path / "str.npy"
    np.save(strings, np.array(["a", "b"]))
    for path, message in ((obj, "not a numeric .npy"), (text, "not a numeric .npy"),
                          (strings, "numeric array is needed"),
                          (tmp_path / "missing.npy", "No such file")):
        code, _, err = run_cli(["denoise", str(path), str(dst), "--name", "linear",
                                "--time", "1"], capsys)
        assert code == 2 and message in err and err.count("\n") == 1


def test_progress_bar(capsys) -> None:
    f = noisy(16)
    quiet = denoise(f, "linear", time=10.0, progress=False)
    shown = denoise(f, "linear", time=10.0, progress=True)
    np.testing.assert_array_equal(quiet, shown)
    assert "fluxact denoise" in capsys.readouterr().err  # tqdm writes to stderr


# issue 14: the Python function checks its signal exactly as the command line checks a file
@pytest.mark.parametrize("signal, message", [
    (np.ones(8) + 1j, "complex128"),
    (np.array(["1", "2", "3", "4"]), "<U1"),
    (np.array([1.0, 2.0, 3.0, 4.0], dtype=object), "object"),
    ([1.0, 2.0, "3", 4.0], "<U32"),
    ([[1.0, 2.0], [3.0]], "numeric array"),
    (np.zeros(4, dtype="datetime64[s]"), "datetime64"),
])
def test_python_signal_dtypes_as_the_cli(signal: object, message: str, tmp_path) -> None:
    from fluxact.denoising import SignalError

    with pytest.raises(SignalError, match=message):
        denoise(signal, "linear", time=1.0)
    a = np.asarray(signal, dtype=object) if isinstance(signal, list) else signal
    path = tmp_path / "in.npy"
    np.save(path, a, allow_pickle=True)
    code = main(["denoise", str(path), str(tmp_path / "out.npy"), "--name", "linear",
                 "--time", "1"])
    assert code == 2 and not (tmp_path / "out.npy").exists()


def test_tensor_signals() -> None:
    f = np.array([0.0, 1.0, 1.0, 0.0, 1.0, 0.0])
    expected = denoise(f, "linear", time=1.0)
    # bools are 0 and 1 (documented), for numpy and torch alike
    for signal in (f.astype(bool), torch.tensor(f.astype(bool)), torch.tensor(f),
                   torch.tensor(f, requires_grad=True), torch.tensor(f, dtype=torch.bfloat16)):
        np.testing.assert_array_equal(denoise(signal, "linear", time=1.0), expected)
    from fluxact.denoising import SignalError

    with pytest.raises(SignalError, match="complex64"):
        denoise(torch.ones(8, dtype=torch.complex64), "linear", time=1.0)
    with pytest.raises(SignalError, match="to_dense"):
        denoise(torch.ones(4, 4).to_sparse(), "linear", time=1.0)
