"""PNG and TIFF files in `fluxact denoise` (issue 16): what is read, what is written, many
files at once, and one line for every bad file, with no output destroyed."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from fluxact.cli import main
from fluxact.denoising import SignalError
from fluxact.images import read_image, write_image

PIL = pytest.importorskip("PIL.Image")
BASE = ["--name", "perona-malik", "--param", "lam=30", "--time", "2"]


def denoise(paths: list[str], capsys, *extra: str) -> tuple[int, str, str]:
    code = main(["denoise", *paths, *BASE, *extra])
    out, err = capsys.readouterr()
    return code, out, err


def _noisy(shape, top: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, top, shape[1])[None, :] * np.ones(shape[:2])
    if len(shape) == 3:
        ramp = ramp[..., None] * np.array([1.0, 0.5, 0.25])
    return np.clip(ramp + rng.normal(0, top / 20, size=shape), 0, top)


@pytest.mark.parametrize("suffix, dtype, top", [(".png", np.uint8, 255), (".png", np.uint16, 65535),
                                                (".tif", np.uint8, 255),
                                                (".tiff", np.uint16, 65535)])
def test_greyscale_keeps_its_type_and_range(tmp_path, capsys, suffix, dtype, top) -> None:
    pixels = np.rint(_noisy((20, 24), top)).astype(dtype)
    src, dst = tmp_path / f"in{suffix}", tmp_path / f"out{suffix}"
    PIL.fromarray(pixels).save(src)
    code, out, err = denoise([str(src), str(dst)], capsys)
    assert code == 0, err
    assert f"rounded to {np.dtype(dtype)}" in out
    got = np.asarray(PIL.open(dst))
    assert got.dtype == dtype and got.shape == pixels.shape
    assert pixels.min() <= got.min() and got.max() <= pixels.max()  # max-min principle
    # the file holds the filter's values, rounded: the same run on the array
    import fluxact

    truth = fluxact.denoise(pixels.astype(np.float64), "perona-malik", params={"lam": 30},
                            time=2.0)
    assert np.abs(got.astype(np.float64) - truth).max() <= 0.5


def test_rgb_is_filtered_with_one_diffusivity(tmp_path, capsys) -> None:
    pixels = np.rint(_noisy((16, 18, 3), 255)).astype(np.uint8)
    src, dst = tmp_path / "in.png", tmp_path / "out.png"
    PIL.fromarray(pixels).save(src)
    code, out, err = denoise([str(src), str(dst)], capsys)
    assert code == 0, err
    assert "3 channels sharing one diffusivity" in out
    got = np.asarray(PIL.open(dst))
    assert got.dtype == np.uint8 and got.shape == (16, 18, 3)


def test_many_files_into_a_folder(tmp_path, capsys) -> None:
    names = []
    for k in range(3):
        path = tmp_path / f"img{k}.png"
        PIL.fromarray(np.rint(_noisy((10, 12), 255, k)).astype(np.uint8)).save(path)
        names.append(str(path))
    np.save(tmp_path / "sig.npy", np.linspace(0, 1, 9))
    names.append(str(tmp_path / "sig.npy"))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, out, err = denoise([*names, "--out-dir", str(out_dir)], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out_dir.iterdir()) == ["img0.png", "img1.png", "img2.png",
                                                          "sig.npy"]
    assert np.load(out_dir / "sig.npy").dtype == np.float64
    code, _, err = denoise([*names[:2], "--out-dir", str(tmp_path / "missing")], capsys)
    assert code == 2 and "is not an existing folder" in err
    code, _, err = denoise(names[:3], capsys)
    assert code == 2 and "--out-dir" in err


def _corrupt(path: Path) -> None:
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + np.random.default_rng(7).bytes(40))


def _rgb16_png(path: Path, pixels: np.ndarray) -> None:
    """A 16-bit RGB PNG written by hand (Pillow cannot write one): IHDR with bit depth 16 and
    colour type 2, one unfiltered scanline per row, big-endian samples."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    h, w, _ = pixels.shape
    rows = b"".join(b"\x00" + pixels[i].astype(">u2").tobytes() for i in range(h))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2,
                                                                          0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("make, message", [
    (_corrupt, "cannot read"),
    (lambda p: PIL.new("RGBA", (6, 5)).save(p), "RGBA image"),
    (lambda p: PIL.new("P", (6, 5)).save(p), "P image"),
    (lambda p: p.write_bytes(b"GIF89a"), "cannot read"),
    (lambda p: _rgb16_png(p, np.full((4, 5, 3), 40000)), "RGB image of 16-bit samples"),
])
def test_bad_files_get_one_line_and_keep_the_output(tmp_path, capsys, make, message) -> None:
    src, dst = tmp_path / "in.png", tmp_path / "out.png"
    make(src)
    PIL.fromarray(np.zeros((4, 4), np.uint8)).save(dst)
    before = dst.read_bytes()
    code, out, err = denoise([str(src), str(dst)], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert dst.read_bytes() == before  # never destroyed
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_formats_that_cannot_hold_the_result_are_refused(tmp_path, capsys) -> None:
    np.save(tmp_path / "f.npy", np.linspace(0.0, 1.0, 16).reshape(4, 4))
    code, _, err = denoise([str(tmp_path / "f.npy"), str(tmp_path / "f.png")], capsys)
    assert code == 2 and "not to PNG" in err
    code, _, err = denoise([str(tmp_path / "f.npy"), str(tmp_path / "f.jpg")], capsys)
    assert code == 2 and "not .jpg" in err
    assert not (tmp_path / "f.png").exists()
    # float data to a float32 TIFF
    assert denoise([str(tmp_path / "f.npy"), str(tmp_path / "f.tif")], capsys)[0] == 0
    assert np.asarray(PIL.open(tmp_path / "f.tif")).dtype == np.float32


def test_read_and_write_in_python(tmp_path) -> None:
    pixels = np.arange(30, dtype=np.uint16).reshape(5, 6) * 1000
    PIL.fromarray(pixels).save(tmp_path / "a.png")
    image = read_image(tmp_path / "a.png")
    assert image.dtype == np.uint16 and not image.colour
    np.testing.assert_array_equal(image.values, pixels)
    assert write_image(tmp_path / "b.png", image.values + 0.4, image).startswith("rounded")
    np.testing.assert_array_equal(np.asarray(PIL.open(tmp_path / "b.png")), pixels)
    with pytest.raises(SignalError, match="greyscale image: it has no channel axis"):
        read_image(tmp_path / "a.png", channel_axis=-1)
    PIL.fromarray(np.zeros((1, 6), np.uint8)).save(tmp_path / "thin.png")
    with pytest.raises(SignalError, match="at least 2 pixels"):
        read_image(tmp_path / "thin.png")


def test_the_formula_follows_the_files(tmp_path, capsys) -> None:
    """Without --name the last positional argument is the formula, with or without --out-dir."""
    for k in range(2):
        PIL.fromarray(np.rint(_noisy((8, 9), 255, k)).astype(np.uint8)).save(tmp_path / f"{k}.png")
    (tmp_path / "out").mkdir()
    code = main(["denoise", str(tmp_path / "0.png"), str(tmp_path / "1.png"),
                 "1/(1 + r**2/900)", "--from", "diffusivity", "--time", "1",
                 "--out-dir", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0.png", "1.png"]
    code = main(["denoise", str(tmp_path / "0.png"), str(tmp_path / "x.png"),
                 "1/(1 + r**2/900)", "--from", "diffusivity", "--time", "1"])
    assert code == 0 and (tmp_path / "x.png").exists()


def test_colour_axis_and_bilevel_images(tmp_path, capsys) -> None:
    PIL.fromarray(np.zeros((6, 7, 3), np.uint8)).save(tmp_path / "rgb.tif")
    with pytest.raises(SignalError, match="its channel axis is -1"):
        read_image(tmp_path / "rgb.tif", channel_axis=0)
    assert read_image(tmp_path / "rgb.tif", channel_axis=2).colour
    bits = np.zeros((8, 8), bool)
    bits[:, 4:] = True
    PIL.fromarray(bits).save(tmp_path / "bw.png")
    code, out, err = denoise([str(tmp_path / "bw.png"), str(tmp_path / "grey.png")], capsys)
    assert code == 0, err
    grey = np.asarray(PIL.open(tmp_path / "grey.png"))
    assert grey.dtype == np.uint8 and grey.shape == (8, 8)
    assert len(np.unique(grey)) > 2  # the diffused edge is kept as grey levels (0/1 x 255)
    assert np.all(np.diff(grey[0].astype(int)) > 0) and grey[0, 0] < 128 < grey[0, -1]


def test_tensor_models_from_the_command_line(tmp_path, capsys) -> None:
    """--model eed / ced / catte on a PNG: the model, its scale and its Euclidean (tensor
    models) or linf (Catte) bound printed; one line and exit 2 where a model cannot run."""
    src = tmp_path / "in.png"
    PIL.fromarray(np.rint(_noisy((20, 24, 3), 255)).astype(np.uint8)).save(src)
    code, out, _ = denoise([str(src), str(tmp_path / "eed.png")], capsys, "--model", "eed",
                           "--sigma", "1.5")
    assert code == 0 and "EED, sigma 1.5, 3 channels sharing one diffusion tensor" in out
    assert "euclidean bound" in out and (tmp_path / "eed.png").exists()
    code, out, _ = denoise([str(src), str(tmp_path / "ced.png")], capsys, "--model", "ced",
                           "--rho", "2")
    assert code == 0 and "CED, sigma 1" in out
    code, out, _ = denoise([str(src), str(tmp_path / "catte.png")], capsys, "--model", "catte")
    assert code == 0 and "regularised Perona-Malik, sigma 1" in out and "linf bound" in out
    volume = tmp_path / "volume.npy"
    np.save(volume, np.random.default_rng(0).random((4, 5, 6)))
    code, out, err = denoise([str(volume), str(tmp_path / "v.npy")], capsys, "--model", "eed")
    assert code == 2 and err.count("\n") == 1 and "EED runs on 2D images" in err
    assert not (tmp_path / "v.npy").exists()
    code, _, err = denoise([str(src), str(tmp_path / "x.png")], capsys, "--model", "eed",
                           "--stability", "linf")
    assert code == 2 and "Euclidean stability notion only" in err


def test_glob_patterns_with_out_dir(tmp_path, capsys) -> None:
    """A quoted pattern is expanded by fluxact (sorted); one that matches nothing is refused
    with one line, before any file is written."""
    for k in range(3):
        PIL.fromarray(np.rint(_noisy((12, 14), 255, seed=k)).astype(np.uint8)).save(
            tmp_path / f"scan{k}.png")
    out = tmp_path / "out"
    out.mkdir()
    code, printed, err = denoise([str(tmp_path / "scan*.png"), "--out-dir", str(out)], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["scan0.png", "scan1.png", "scan2.png"]
    code, _, err = denoise([str(tmp_path / "nothing*.png"), str(tmp_path / "scan0.png"),
                            "--out-dir", str(out)], capsys)
    assert code == 2 and "no file matches" in err and err.count("\n") == 1


def test_rgb16_tiff_keeps_all_sixteen_bits(tmp_path, capsys) -> None:
    """A 16-bit RGB TIFF (Pillow reads it by dropping the low byte of every sample) is read
    and written through tifffile: the output is 16-bit RGB, each channel in its own input
    range, and it holds the filter's values rounded. Writing it as PNG is refused."""
    tifffile = pytest.importorskip("tifffile")
    pixels = np.rint(_noisy((14, 17, 3), 65535)).astype(np.uint16)
    pixels[0, 0] = (257, 258, 259)  # differ in the low byte only
    src, dst = tmp_path / "in.tif", tmp_path / "out.tif"
    tifffile.imwrite(src, pixels, photometric="rgb")
    image = read_image(src, channel_axis=-1)
    assert image.dtype == np.uint16 and image.colour
    np.testing.assert_array_equal(image.values, pixels)  # every bit, low bytes too
    code, out, err = denoise([str(src), str(dst)], capsys, "--channel-axis", "-1")
    assert code == 0, err
    assert "rounded to uint16" in out
    got = tifffile.imread(dst)
    assert got.dtype == np.uint16 and got.shape == pixels.shape
    import fluxact

    truth = fluxact.denoise(pixels.astype(np.float64), "perona-malik", params={"lam": 30},
                            time=2.0, channel_axis=-1)
    assert np.abs(got.astype(np.float64) - truth).max() <= 0.5
    for c in range(3):
        assert pixels[..., c].min() <= got[..., c].min() <= got[..., c].max() \
            <= pixels[..., c].max()
    code, _, err = denoise([str(src), str(tmp_path / "out.png"), "--channel-axis", "-1"],
                           capsys)
    assert code == 2 and "16-bit colour PNG is not supported; write a TIFF" in err
