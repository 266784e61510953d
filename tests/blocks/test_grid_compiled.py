"""GridDiffusion.run(compiled=True) (fluxact/grid.py): the fused step of torch.compile gives
the eager run's result, a run whose printed Phi leaves the dtype's range is computed again
eagerly, and the compiler's cache lives in a private folder (docs/files.md)."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

import fluxact
from fluxact import grid
from fluxact.activation import diffusivity_to_torch
from fluxact.files import private_compiler_cache
from fluxact.grid import GridDiffusion
from fluxact.runtime import StabilityError

torch = pytest.importorskip("torch")


def _block(coupling: str = "isotropic", **options) -> GridDiffusion:
    if coupling == "isotropic":
        act = diffusivity_to_torch("1/(1 + s2/lam**2)", params={"lam": 0.7})
    else:
        act = fluxact.to_torch(fluxact.catalogue["perona-malik"], params={"lam": 0.7})
    act.backend = "torch"
    return GridDiffusion(act.double(), coupling=coupling, **options)


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "fluxact" / "torchinductor"


def test_the_compiled_run_is_the_eager_run(private_cache) -> None:
    """One compile (a 2D colour image, isotropic flux coupled over channels, spacing, the
    max-min clamp): every value as the eager run's to 1e-12 of the range, and the compiler's
    cache in the private folder."""
    block = _block(spacing=(1.0, 0.5))
    u = torch.rand(1, 3, 12, 9, dtype=torch.float64)
    with torch.no_grad():
        want = block.run(u, 7)
        got = block.run(u, 7, compiled=True)
    assert torch.allclose(got, want, rtol=0, atol=1e-12)
    assert u.min() <= got.min() and got.max() <= u.max()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(private_cache)
    mode = os.lstat(private_cache).st_mode
    assert stat.S_ISDIR(mode) and stat.S_IMODE(mode) == 0o700


def test_a_run_that_is_not_finite_is_computed_again(monkeypatch) -> None:
    """Where the printed Phi makes NaN (here: a stand-in for the compiled step that returns
    NaN), the result is the eager run's, which repairs it."""
    block = _block("uncoupled")
    u = torch.rand(1, 1, 6, 5, dtype=torch.float64)
    calls = []

    def broken(v, *args):
        calls.append(1)
        return torch.full_like(v, float("nan"))

    monkeypatch.setattr(grid, "_compiled_step", lambda: broken)
    with torch.no_grad():
        got = block.run(u, 3, compiled=True)
        want = block.run(u, 3)
    assert len(calls) == 3 and torch.equal(got, want)


def test_compiled_runs_refuse_what_they_cannot_compute() -> None:
    block = _block()
    u = torch.rand(1, 1, 5, 5, dtype=torch.float64, requires_grad=True)
    with pytest.raises(StabilityError, match="without gradients"):
        block.run(u, 1, compiled=True)
    with torch.no_grad(), pytest.raises(StabilityError, match="float32 or float64"):
        block.run(u.detach().half(), 1, compiled=True)


def test_the_cache_folder_must_be_private(tmp_path, monkeypatch) -> None:
    """A folder another user could write, or a link planted in its place, is refused with
    one line; a folder the user chose is theirs; torch's shared default is not a choice."""
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    (tmp_path / "fluxact").mkdir(mode=0o700)
    shared = tmp_path / "fluxact" / "torchinductor"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(fluxact.FluxactError, match="not a private folder.*TORCHINDUCTOR"):
        private_compiler_cache()
    shared.rmdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    shared.symlink_to(elsewhere)
    with pytest.raises(fluxact.FluxactError, match="not a private folder"):
        private_compiler_cache()
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(elsewhere))
    assert private_compiler_cache() == str(elsewhere)
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())
    shared.unlink()
    assert private_compiler_cache() == str(shared)
    assert stat.S_IMODE(os.lstat(shared).st_mode) == 0o700


def test_denoise_and_the_cli_take_compile(tmp_path, private_cache) -> None:
    """denoise(..., compile=True) and --compile give the eager result (uncoupled flux, one
    compile of its own)."""
    from fluxact.cli import main

    rng = np.random.default_rng(3)
    img = rng.random((10, 11))
    want = fluxact.denoise(img, "perona-malik", params={"lam": 0.5}, time=2.0,
                           coupling="uncoupled")
    got = fluxact.denoise(img, "perona-malik", params={"lam": 0.5}, time=2.0,
                          coupling="uncoupled", compile=True)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    src, out = tmp_path / "in.npy", tmp_path / "out.npy"
    np.save(src, img)
    assert main(["denoise", str(src), str(out), "--name", "perona-malik", "--param", "lam=0.5",
                 "--time", "2", "--coupling", "uncoupled", "--compile"]) == 0
    np.testing.assert_allclose(np.load(out), want, rtol=0, atol=1e-12)
    with pytest.raises(StabilityError, match="compile=True runs explicit steps"):
        fluxact.denoise(img, "perona-malik", params={"lam": 0.5}, time=2.0,
                        coupling="uncoupled", scheme="fsi", compile=True)


def test_the_cache_folder_needs_safe_parents(tmp_path, monkeypatch) -> None:
    """A folder above the cache that every user can write without the sticky bit (anyone
    could rename the cache away) is refused; a relative XDG_CACHE_HOME is ignored (XDG)."""
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv("XDG_CACHE_HOME", str(shared / "me"))
    with pytest.raises(fluxact.FluxactError, match="every user can write"):
        private_compiler_cache()
    shared.chmod(0o1777)  # as /tmp: the sticky bit keeps others from renaming what is ours
    assert private_compiler_cache() == str(shared / "me" / "fluxact" / "torchinductor")
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")
    assert private_compiler_cache() == str(tmp_path / "home" / ".cache" / "fluxact"
                                           / "torchinductor")


def test_denoise_in_float32(tmp_path) -> None:
    """precision='float32' (--precision float32): explicit steps on images and volumes in
    float32, the output float64 and within float32 rounding of the float64 run; refused with
    one line where it does not apply or the signal leaves float32's range."""
    from fluxact.cli import main
    from fluxact.denoising import SignalError, denoise_run

    rng = np.random.default_rng(4)
    img = rng.random((9, 8, 7)) * 255
    want = denoise_run(img, "perona-malik", params={"lam": 20.0}, time=3.0)
    got = denoise_run(img, "perona-malik", params={"lam": 20.0}, time=3.0,
                      precision="float32")
    assert got.output.dtype == np.float64 and got.steps == want.steps
    np.testing.assert_allclose(got.output, want.output, rtol=0, atol=255 * 1e-5)
    assert not np.array_equal(got.output, want.output)  # it did compute in float32
    assert img.min() <= got.output.min() and got.output.max() <= img.max()
    assert "computed in float32" in got.summary()
    with pytest.raises(StabilityError, match="precision='float32' runs explicit steps"):
        denoise_run(img[0, 0], "perona-malik", params={"lam": 20.0}, time=1.0,
                    precision="float32")
    with pytest.raises(StabilityError, match="unknown precision 'half'"):
        denoise_run(img, "perona-malik", params={"lam": 20.0}, time=1.0, precision="half")
    with pytest.raises(SignalError, match="beyond float32's range"):
        denoise_run(img * 1e300, "perona-malik", params={"lam": 20.0}, time=1.0,
                    precision="float32")
    src, out = tmp_path / "in.npy", tmp_path / "out.npy"
    np.save(src, img)
    assert main(["denoise", str(src), str(out), "--name", "perona-malik", "--param", "lam=20",
                 "--time", "3", "--precision", "float32", "--quiet"]) == 0
    np.testing.assert_array_equal(np.load(out), got.output)
