"""What the command line writes (atomically, in the output's folder, never through a planted
link, with the umask's mode) and the one-line errors of issue 14: grid sizes and ||K||^2 whose
time steps leave the floats, .npz and forged .npy input."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fluxact.translator.errors import ParameterError

from fluxact.cli import main
from fluxact.denoising import SignalError, denoise, load_signal
from fluxact.files import open_atomic, write_atomic

ROOT = Path(__file__).resolve().parents[2]
LINEAR = ["--name", "linear", "--time", "1"]
posix_only = pytest.mark.skipif(os.name != "posix", reason="links, modes and FIFOs of POSIX")


@pytest.fixture
def umask() -> Iterator[int]:
    """Run the test under umask 0o027 (the process-wide umask is restored afterwards)."""
    old = os.umask(0o027)
    try:
        yield 0o027
    finally:
        os.umask(old)


@pytest.fixture
def signal(tmp_path: Path) -> Path:
    path = tmp_path / "in.npy"
    np.save(path, np.random.default_rng(0).normal(size=16))
    return path


def one_line_error(capsys: pytest.CaptureFixture[str], code: int) -> str:
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("fluxact: error:") and err.count("\n") == 1, err
    assert "please report it" not in err and "Traceback" not in err
    return err


def strays(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# --- item 1: the denoise output -------------------------------------------------------------

@posix_only
def test_denoise_never_writes_through_a_planted_link(signal: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out.npy"
    (tmp_path / ".out.npy.tmp.npy").symlink_to(victim)  # the old predictable temporary name
    assert main(["denoise", str(signal), str(out), *LINEAR, "--quiet"]) == 0
    assert victim.read_text() == "precious"
    expected = denoise(np.load(signal), "linear", time=1.0)
    np.testing.assert_array_equal(np.load(out), expected)
    out.unlink()
    out.symlink_to(victim)  # a link at OUT itself is replaced, not followed
    assert main(["denoise", str(signal), str(out), *LINEAR, "--quiet"]) == 0
    assert victim.read_text() == "precious" and not out.is_symlink()
    np.testing.assert_array_equal(np.load(out), expected)
    assert strays(tmp_path) == [".out.npy.tmp.npy"]  # nothing of ours left behind


@posix_only
def test_written_files_respect_the_umask(signal: Path, tmp_path: Path, umask: int) -> None:
    out = tmp_path / "out.npy"
    assert main(["denoise", str(signal), str(out), *LINEAR, "--quiet"]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask
    out.chmod(0o604)  # an existing file keeps its mode
    assert main(["denoise", str(signal), str(out), *LINEAR, "--quiet"]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o604
    code = tmp_path / "act.py"
    assert main(["emit", "--name", "linear", "-o", str(code)]) == 0
    assert stat.S_IMODE(code.stat().st_mode) == 0o666 & ~umask


def test_denoise_in_place(signal: Path, tmp_path: Path) -> None:
    before = np.load(signal)
    assert main(["denoise", str(signal), str(signal), *LINEAR, "--quiet"]) == 0
    np.testing.assert_array_equal(np.load(signal), denoise(before, "linear", time=1.0))
    assert strays(tmp_path) == []


def test_failed_write_keeps_the_old_file(signal: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.npy"
    out.write_bytes(b"old")

    def full_disk(file: object, arr: object) -> None:
        file.write(b"\x93NUMPY half")  # type: ignore[attr-defined]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "save", full_disk)
    err = one_line_error(capsys, main(["denoise", str(signal), str(out), *LINEAR]))
    assert "No space left" in err and str(out) in err
    assert out.read_bytes() == b"old" and strays(tmp_path) == []


KILLED = r"""
import os, signal, sys
import numpy as np
from fluxact.cli import main
def killed(file, arr):
    file.write(b"\x93NUMPY half a file")
    file.flush()
    os.kill(os.getpid(), signal.SIGKILL)
np.save = killed
main(["denoise", sys.argv[1], sys.argv[2], "--name", "linear", "--time", "1"])
"""


@posix_only
def test_sigkill_during_the_write_loses_no_file(signal: Path) -> None:
    before = signal.read_bytes()
    run = subprocess.run([sys.executable, "-c", KILLED, str(signal), str(signal)],
                         capture_output=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert run.returncode == -9, run.stderr
    assert signal.read_bytes() == before  # IN = OUT: the input is still whole
    assert all(name.endswith(".tmp") for name in strays(signal.parent))


def test_write_atomic_helpers(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    write_atomic(path, "one\n")
    with pytest.raises(RuntimeError), open_atomic(path) as f:
        f.write(b"two")
        raise RuntimeError("interrupted")
    assert path.read_text() == "one\n" and strays(tmp_path) == []
    with pytest.raises(IsADirectoryError):
        write_atomic(tmp_path, b"x")
    with pytest.raises(FileNotFoundError, match="f.txt"):  # names the target, not the temp
        write_atomic(tmp_path / "missing" / "f.txt", b"x")


# --- item 3: one line, exit 2 -----------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["verify", "--name", "linear", "--h", "1e-300"],
    ["verify", "--name", "linear", "--h", "1e300"],
    ["verify", "--name", "linear", "--norm-K2", "1e-320"],
    ["verify", "--name", "linear", "--norm-K2", "1e320"],
    ["denoise", "IN", "OUT", *LINEAR, "--h", "1e-300"],
    ["denoise", "IN", "OUT", *LINEAR, "--h", "1e300"],
])
def test_grid_sizes_whose_time_steps_leave_the_floats(args: list[str], signal: Path,
                                                      tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.npy"
    args = [str(signal) if a == "IN" else str(out) if a == "OUT" else a for a in args]
    err = one_line_error(capsys, main(args))
    assert "between 1e-" in err and not out.exists()  # the valid range is in the message


def test_time_step_underflow_is_no_step(capsys: pytest.CaptureFixture[str]) -> None:
    # g_max = 1e304 at h = 1e-150: tau = h^2/(2 g_max) = 5e-605 is no float64: no step, and why
    assert main(["verify", "r*exp(700)", "--h", "1e-150", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["tau_linf"] is None
    assert "below the smallest positive float64" in report["reasons"]["tau_linf"]
    assert main(["verify", "r*exp(700)", "--h", "1e-150", "--require", "linf"]) == 1


def test_python_denoise_refuses_grid_sizes() -> None:
    f = np.linspace(0.0, 1.0, 8)
    for h in (1e-300, 1e300, float("nan"), True):
        with pytest.raises(ParameterError, match="between 1e-150 and 1e\\+150"):
            denoise(f, "linear", time=1.0, h=h)
    with pytest.raises(ValueError, match="not a positive finite float64"):
        denoise(np.ones((4, 4)), "lam*r", "activation", params={"lam": 1e10}, h=1e-150,
                time=1.0)  # g_max ||K||^2 = 1e10 * 8e300 overflows: tau = 0


def _npy_with_header(path: Path, header: dict[str, object], data: bytes, pad: int = 0) -> None:
    text = repr(header) + " " * pad
    text += " " * (63 - (len(text) + 12) % 64) + "\n"
    path.write_bytes(b"\x93NUMPY\x02\x00" + len(text).to_bytes(4, "little") + text.encode()
                     + data)


def test_bad_input_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.npy"
    npz = tmp_path / "in.npz"
    np.savez(npz, a=np.ones(8))
    big = tmp_path / "big.npy"
    _npy_with_header(big, {"descr": "<f8", "fortran_order": False, "shape": (4,)},
                     np.ones(4).tobytes(), pad=20000)
    forged = tmp_path / "forged.npy"  # says 10^12 values, holds 4: no 8 TB allocation
    _npy_with_header(forged, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)},
                     np.ones(4).tobytes())
    cplx = tmp_path / "complex.npy"
    np.save(cplx, np.ones(8) + 1j)
    cases = [(npz, ".npz archive"), (big, "header is 200"), (forged, "truncated"),
             (cplx, "complex128")]
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "fifo.npy"
        os.mkfifo(fifo)  # no writer: opening it for reading would block
        cases.append((fifo, "not a regular file"))
    for path, message in cases:
        err = one_line_error(capsys, main(["denoise", str(path), str(out), *LINEAR]))
        assert message in err and str(path) in err, err
        with pytest.raises(SignalError, match=message):
            load_signal(path)
    assert not out.exists()


def test_output_folder_is_refused_before_the_run(signal: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    err = one_line_error(capsys, main(["denoise", str(signal), str(folder), *LINEAR]))
    assert "is a folder" in err and list(folder.iterdir()) == []
