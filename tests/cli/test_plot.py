"""`fluxact plot` and fluxact.plot: the four forms drawn with the verifier's annotations, and
bad input -> one line, status 2."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import fluxact
from fluxact.cli import main
from fluxact.plotting import PlotError, annotations

pytest.importorskip("matplotlib")


def test_plot_writes_an_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pm.png"
    assert main(["plot", "exp(-r**2/(2*lam**2))", "--from", "g", "--param", "lam=1.5",
                 "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {out}" in capsys.readouterr().out
    svg = tmp_path / "soft.svg"
    assert main(["plot", "--name", "huber", "--param", "th=2", "--range", "10",
                 "-o", str(svg)]) == 0
    text = svg.read_text()
    assert "monotone, L = 1" in text and "g_max = 1" in text  # the verifier's annotations


def test_plot_annotations_follow_the_verifier() -> None:
    fig = fluxact.plot("r*exp(-r**2/(2*lam**2))", "activation", params={"lam": 1})
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[3].endswith("nonmonotone, L = 1") and titles[1].endswith("nonconvex")
    rep = fluxact.translate("Piecewise((1, Abs(r) <= sqrt(2)*th), (0, True))", "diffusivity",
                            params={"th": 1}).report
    assert annotations(rep)["activation"] == "nonmonotone, L = inf"  # hard shrinkage jumps


@pytest.mark.parametrize("args, message", [
    (["exp(-r**2/lam**2)", "--from", "g", "-o", "x.png"], "parameter 'lam' needs a value"),
    (["exp(-r**2)", "--from", "g", "-o", "x.txt"], "must end in .png, .pdf or .svg"),
    (["exp(-r**2)", "--from", "g"], "-o/--output"),
    (["exp(-r**2)", "--from", "g", "-o", "x.png", "--range", "-1"], "positive"),
])
def test_plot_bad_input(args: list[str], message: str, tmp_path: Path,
                        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
                        ) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["plot", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.png").exists()


def test_plot_without_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(PlotError, match="pip install matplotlib"):
        fluxact.plot("1", "diffusivity")
    with pytest.raises(PlotError, match="pip install matplotlib"):  # the suffix check too
        fluxact.plot("1", "diffusivity", out="g.png")


def test_plot_output_is_written_atomically(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A link at the output is replaced, never followed; a drawing that fails half-way keeps
    the old file whole and leaves no temporary file (fluxact/files.py)."""
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    out = tmp_path / "pm.png"
    out.symlink_to(victim)
    assert main(["plot", "--name", "huber", "--param", "th=2", "-o", str(out)]) == 0
    assert victim.read_text() == "keep me"
    assert not out.is_symlink() and out.read_bytes()[:4] == b"\x89PNG"
    old = out.read_bytes()

    from matplotlib.figure import Figure

    def broken(self, stream, **kwargs):
        stream.write(b"half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", broken)
    assert main(["plot", "--name", "huber", "--param", "th=2", "-o", str(out)]) == 2
    assert out.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pm.png", "victim.txt"]


def test_plot_api_formats_and_streams(tmp_path: Path) -> None:
    """fluxact.plot writes any format matplotlib writes (by the suffix, atomically) and an open
    stream; a suffix no format has fails before anything is translated or drawn."""
    import io

    fig = fluxact.plot(fluxact.lookup("huber"), out=tmp_path / "h.eps", params={"th": 2})
    assert (tmp_path / "h.eps").read_bytes()[:4] == b"%!PS"
    stream = io.BytesIO()
    fluxact.plot(fluxact.lookup("huber"), out=stream, params={"th": 2})
    assert stream.getvalue()[:4] == b"\x89PNG"
    with pytest.raises(PlotError, match=r"must end in \.png, \.pdf, \.svg or another"):
        fluxact.plot("no such formula ((", out=tmp_path / "h.xyz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.eps"]
    del fig
