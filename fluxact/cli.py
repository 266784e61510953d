"""The command line: `fluxact translate`, `verify`, `emit`, `build`, `denoise`, `inpaint`, `plot`,
`catalogue`, `demo`.

Bad input prints one line on stderr (what, where, how to fix) and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Sequence

from .translator import FluxactError, Translation, catalogue, lookup, translate
from .translator.errors import FluxactWarning
from .translator.nonlinearity import KINDS, normalise_kind
from .translator.verify import REQUIREMENTS, STEP_OF, StabilityReport, verify_translation

EXIT_OK = 0
EXIT_REQUIREMENT_FAILED = 1
EXIT_BAD_INPUT = 2


class UsageError(Exception):
    """Raised instead of argparse's print-usage-and-exit, so that errors stay on one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _param(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"--param wants NAME=VALUE (e.g. lam=1.5), got {text!r}")
    return name.strip(), value.strip()


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _grid_size(text: str) -> float:
    """--h: a grid size within the range where the time steps stay floats (GRID_RANGE of
    translator/verify.py, the one home of the check)."""
    from .translator.verify import check_grid_size

    try:
        return check_grid_size(_number(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _spacing(text: str) -> tuple[float, ...]:
    """--spacing: one grid size, or one per axis separated by commas (first axis first)."""
    parts = text.split(",")
    if not 1 <= len(parts) <= 3:
        raise argparse.ArgumentTypeError(f"give 1 to 3 grid sizes separated by commas, got "
                                         f"{text!r}")
    return tuple(_grid_size(p.strip()) for p in parts)


#: --norm-K2 accepted: the time steps 2/(g ||K||^2) stay normal float64 numbers for moderate g
#: (as 4/h^2 over the grid sizes of --h)
NORM_K2_RANGE = (1e-300, 1e300)


def _norm_K2(text: str) -> float:
    value = _number(text)
    low, high = NORM_K2_RANGE
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(
            f"||K||^2 must be between {low:g} and {high:g} (the time step 2/(g_max ||K||^2) "
            f"must stay a positive finite float64), got {text}")
    return value


def _kind(text: str) -> str:
    try:
        return normalise_kind(text)
    except FluxactError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_formula_options(p: argparse.ArgumentParser, table: str = "") -> None:
    """The formula options shared by every command that takes a nonlinearity. ``table``
    prefixes Table 1's --tau/--alpha where the command uses --tau itself (denoise)."""
    p.add_argument("expr", nargs="?", metavar="EXPR",
                   help="formula text, e.g. 'exp(-r**2/(2*lam**2))'")
    p.add_argument("--from", "--as", dest="kind", type=_kind, metavar="KIND",
                   help=f"what EXPR is: {', '.join(KINDS)} (or g, Psi, S, Phi)")
    p.add_argument("--name", help="a catalogue entry instead of EXPR (see `fluxact catalogue`)")
    p.add_argument("--param", action="append", type=_param, default=[], metavar="NAME=VALUE",
                   help="give a parameter a value (repeatable); others stay symbolic")
    p.add_argument("--convention", choices=("r", "s2"), default=None,
                   help="diffusivity argument: r (paper 001) or s2 = s^2 (papers 002-004)")
    p.add_argument("--variable", default="r", help="name of the variable (default r)")
    p.add_argument(f"--{table}tau", dest="table_tau", default="1/4",
                   help="time step of Table 1 (default 1/4)")
    p.add_argument(f"--{table}alpha", dest="table_alpha", default="1/4",
                   help="regularisation weight of Table 1 (default 1/4)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fluxact",
        description="A compiler for nonlinearities: diffusivity g, regulariser Psi, "
        "wavelet shrinkage S, activation Phi.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"fluxact {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    p = sub.add_parser("translate", help="translate a formula into all four forms")
    _add_formula_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    v = sub.add_parser("verify", help="stability of the activation: L, g_max, safe time steps")
    _add_formula_options(v)
    v.add_argument("--h", type=_grid_size, default=1.0,
                   help="grid size h, 1e-150 to 1e150 (default 1)")
    v.add_argument("--norm-K2", dest="norm_K2", type=_norm_K2, default=None,
                   help="||K||^2 of the operator, 1e-300 to 1e300 (default 4/h^2: 1D forward "
                   "differences)")
    v.add_argument("--require", choices=REQUIREMENTS,
                   help="exit with status 1 unless this stability notion has a safe time step")
    v.add_argument("--json", action="store_true", help="print the report as one JSON object")
    e = sub.add_parser("emit", help="print the generated code (Triton kernels, torch, module)")
    _add_formula_options(e)
    e.add_argument("--target", choices=("module", "triton", "torch"), default="module",
                   help="what to print: the whole module (default), the Triton kernels only, "
                   "or the torch functions only")
    e.add_argument("--trainable", action="append", default=[], metavar="PARAM",
                   help="a parameter whose gradient the backward computes (repeatable)")
    e.add_argument("--module-name", dest="ident", default=None, metavar="IDENT",
                   help="name of the generated function/module (default: the catalogue name "
                   "or 'activation')")
    e.add_argument("-o", "--output", default=None, metavar="FILE",
                   help="write to FILE (atomically) instead of standard output")
    b = sub.add_parser("build", help="generate modules ahead of time from a TOML spec")
    b.add_argument("spec", metavar="SPEC.toml", help="the build spec ([[activation]] tables)")
    b.add_argument("--out", required=True, metavar="DIR", help="folder of the generated package")
    b.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 when files in DIR are missing or stale")
    d = sub.add_parser("denoise", help="nonlinear diffusion of a .npy signal, image or volume, "
                       "stably")
    d.add_argument("paths", nargs="+", metavar="FILE",
                   help="IN OUT, or several IN (or glob patterns such as 'scans/*.png', "
                   "expanded by fluxact) with --out-dir, then EXPR unless --name is "
                   "given: .npy (a 1D signal, 2D image or 3D volume), PNG or TIFF (greyscale "
                   "8/16-bit, RGB 8-bit); the output keeps an integer image's type (values "
                   "rounded), .npy is float64")
    d.add_argument("--out-dir", dest="out_dir", default=None, metavar="DIR",
                   help="write each IN to DIR under its own name")
    _add_formula_options(d, table="table-")
    d.add_argument("--time", type=_positive, required=True, metavar="T",
                   help="diffusion time: ceil(T/tau) steps are run")
    d.add_argument("--tau", type=_positive, default=None, metavar="TAU",
                   help="time step (default: the stability bound; a larger one is refused)")
    d.add_argument("--stability", choices=REQUIREMENTS, default=None,
                   help="the guarantee the time step keeps (default linf, the max-min "
                   "principle; euclidean for --scheme fsi, --coupling anisotropic and the "
                   "eed and ced models)")
    d.add_argument("--scheme", choices=("explicit", "fsi", "implicit"), default="explicit",
                   help="explicit steps (P2 11, default), fast semi-iterative cycles (P2 21), "
                   "or implicit steps by fixed-point iteration (P2 23)")
    d.add_argument("--boundary", choices=("reflect", "periodic"), default="reflect",
                   help="reflect: zero flux across the ends (default); periodic: the signal "
                   "wraps around")
    d.add_argument("--h", type=_grid_size, default=None,
                   help="grid size h of every axis, 1e-150 to 1e150 (default 1)")
    d.add_argument("--spacing", type=_spacing, default=None, metavar="H[,H,H]",
                   help="grid size per axis, first axis first (as ITK's and medpy's voxel "
                   "spacing), or one for all; instead of --h")
    d.add_argument("--channel-axis", dest="channel_axis", type=int, default=None, metavar="AXIS",
                   help="the axis of colour or other channels (e.g. -1 for an H x W x 3 "
                   "image): the isotropic flux takes one diffusivity from all channels")
    d.add_argument("--coupling", choices=("isotropic", "uncoupled", "anisotropic"),
                   default=None,
                   help="images and volumes: isotropic flux g(|grad u|^2) grad u (default for "
                   "explicit steps; rotation invariant), uncoupled, per axis (medpy's "
                   "scheme; the one FSI and implicit steps run), or anisotropic, g(J) grad u "
                   "with J the structure tensor over the channels (P3 30; Euclidean bound)")
    i = sub.add_parser("inpaint", help="fill in an image from the pixels a mask marks as known "
                       "(EED or homogeneous diffusion inpainting, P2 29)")
    i.add_argument("image", metavar="IMAGE", help=".npy, PNG or TIFF (2D, greyscale or RGB)")
    i.add_argument("mask", metavar="MASK", help="the same size: 1 (or 255 in an 8-bit, 65535 "
                   "in a 16-bit image) where IMAGE is known, 0 where it is filled in; known "
                   "where >= 1/2 (of the type's maximum)")
    i.add_argument("out", metavar="OUT", help="the inpainted image (IMAGE's format and type)")
    _add_formula_options(i)
    i.add_argument("--model", choices=("eed", "homogeneous"), default="eed",
                   help="eed: D = g(grad u_sigma grad u_sigma^T), the formula (default: "
                   "Charbonnier with lam = 0.93, P2 7.2.1) its diffusivity; homogeneous: D = I")
    i.add_argument("--sigma", type=_positive, default=0.97, metavar="SIGMA",
                   help="EED's pre-smoothing scale (default 0.97, P2 7.2.1)")
    i.add_argument("--solver", choices=("cg", "multigrid"), default="cg",
                   help="cg: lagged diffusivity with conjugate gradients (the reference, "
                   "default); multigrid: FAS with a full multigrid start and V-cycles")
    i.add_argument("--tol", type=_positive, default=1e-8, metavar="TOL",
                   help="relative tolerance of the solver (default 1e-8)")
    i.add_argument("--levels", type=int, default=None, metavar="N",
                   help="multigrid: the number of grids (default: coarsest at least 8 pixels)")
    i.add_argument("--quiet", action="store_true", help="print nothing on success")
    d.add_argument("--model", choices=("pm", "catte", "eed", "ced"), default="pm",
                   help="pm: Perona-Malik with --coupling (default); catte: regularised "
                   "Perona-Malik, g(|grad u_sigma|^2) grad u (max-min principle kept); eed, ced: "
                   "edge- and coherence-enhancing diffusion on 2D images (tensor models: "
                   "Euclidean stability only); the formula is their diffusivity")
    d.add_argument("--sigma", type=_positive, default=None, metavar="SIGMA",
                   help="catte, eed, ced: the Gaussian pre-smoothing scale (default 1)")
    d.add_argument("--rho", type=_positive, default=None, metavar="RHO",
                   help="ced: the structure tensor's integration scale (default 4)")
    d.add_argument("--compile", action="store_true",
                   help="images and volumes, explicit steps: fuse each step with torch.compile "
                   "(compiles for seconds on first use; faster for large or long runs)")
    d.add_argument("--precision", choices=("float64", "float32"), default="float64",
                   help="what images and volumes are computed in (explicit steps; float32 is "
                   "faster; the output is written as with float64)")
    d.add_argument("--max-cycle", dest="max_cycle", type=int, default=10, metavar="L",
                   help="longest FSI cycle (default 10; longer is faster and less accurate)")
    d.add_argument("--quiet", action="store_true", help="print nothing on success")
    pl = sub.add_parser("plot", help="plot g, Psi, S and Phi side by side (P1 Table 2)")
    _add_formula_options(pl)
    pl.add_argument("-o", "--output", required=True, metavar="FILE",
                    help="the image to write (.png, .pdf or .svg)")
    pl.add_argument("--range", dest="r_max", type=_positive, default=None, metavar="R",
                    help="plot r in [-R, R] (default 4 x the largest parameter value, >= 4)")
    c = sub.add_parser("catalogue", help="list the built-in nonlinearities")
    c.add_argument("--json", action="store_true", help="print a JSON list")
    sub.add_parser("demo", help="the four forms of every catalogue entry")
    return parser


def translation_from_args(args: argparse.Namespace, default_kind: str | None = None
                          ) -> Translation:
    """The Translation named by the shared formula options."""
    params = dict(args.param)
    options = dict(params=params, tau=args.table_tau, alpha=args.table_alpha,
                   variable=args.variable)
    if args.name is not None:
        if args.expr is not None:
            raise UsageError("give either EXPR or --name, not both")
        entry = lookup(args.name)
        return translate(entry, kind=args.kind, convention=args.convention, **options)
    if args.expr is None:
        raise UsageError("give a formula EXPR with --from KIND, or --name NAME")
    if args.kind is None and default_kind is not None:
        args.kind = default_kind
    if args.kind is None:
        raise UsageError(
            "say what EXPR is with --from KIND (diffusivity, regulariser, shrinkage, activation)"
        )
    return translate(args.expr, args.kind, convention=args.convention or "r", **options)


def _verdicts(t: Translation) -> str:
    """The stability report's lines (closed forms for symbolic parameters), or why there are
    none."""
    try:
        return str(verify_translation(t))
    except FluxactError as exc:
        return f"  stability: not verified: {_one_line(str(exc))}"


def _cmd_translate(args: argparse.Namespace) -> int:
    t = translation_from_args(args)
    if args.json:
        print(t.to_json())
    else:
        print(t)
        print(_verdicts(t))
    return EXIT_OK


def _cmd_verify(args: argparse.Namespace) -> int:
    t = translation_from_args(args, default_kind="activation")
    report: StabilityReport = verify_translation(t, h=args.h, norm_K2=args.norm_K2)
    if args.json:
        print(report.to_json())
    else:
        print(f"{t.input.name or t.input.text}  (activation Phi(r) = {t.activation})")
        print(report)
    if args.require and not report.holds(args.require):
        reason = dict(report.reasons).get(STEP_OF[args.require], "no guarantee")
        print(f"fluxact: requirement {args.require!r} fails: {reason}", file=sys.stderr)
        return EXIT_REQUIREMENT_FAILED
    return EXIT_OK


def _cmd_emit(args: argparse.Namespace) -> int:
    from pathlib import Path

    from . import __version__
    from .codegen.prepare import prepare
    from .codegen.render import render
    from .files import write_atomic

    t = translation_from_args(args, default_kind="activation")
    spec = prepare(t, name=args.ident, trainable=args.trainable)
    source = render(spec, args.target, __version__)
    if args.output:
        write_atomic(Path(args.output), source)
    else:
        sys.stdout.write(source)
    return EXIT_OK


def _cmd_build(args: argparse.Namespace) -> int:
    from .build import build, check

    if args.check:
        stale = check(args.spec, args.out)
        if stale:
            print(f"fluxact: files in {args.out} are missing or stale for {args.spec}: "
                  f"{', '.join(stale)}; run `fluxact build {args.spec} --out {args.out}`",
                  file=sys.stderr)
            return EXIT_REQUIREMENT_FAILED
        print(f"{args.out} is up to date")
        return EXIT_OK
    result = build(args.spec, args.out)
    for path in result.written:
        print(f"wrote {path}")
    if result.unchanged:
        print(f"{len(result.unchanged)} file(s) unchanged")
    return EXIT_OK


def _cmd_denoise(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .denoising import denoise_run
    from .images import read_image, suffix_of, write_image

    paths = list(args.paths)
    # the files take every positional argument; without --name the last one is the formula
    if args.name is None and args.expr is None and len(paths) > (1 if args.out_dir else 2):
        args.expr = paths.pop()
    if args.out_dir is None:
        if len(paths) != 2:
            raise UsageError(f"give IN OUT, or several inputs with --out-dir DIR (got "
                             f"{len(paths)} files)")
        jobs = [(Path(paths[0]), Path(paths[1]))]
    else:
        folder = Path(args.out_dir)
        if not folder.is_dir():
            raise UsageError(f"--out-dir {folder} is not an existing folder")
        paths = _expand(paths)
        jobs = [(Path(p), folder / Path(p).name) for p in paths]
        names = [out for _, out in jobs]
        if len(set(names)) != len(names):
            raise UsageError("two inputs have the same name; --out-dir would write one over the "
                             "other")
    for source, out in jobs:  # every name first
        suffix_of(source)
        suffix_of(out)
        if not out.parent.is_dir():
            raise UsageError(f"cannot write {out}: folder {out.parent} does not exist")
        if out.is_dir() and not out.is_symlink():
            raise UsageError(f"cannot write {out}: it is a folder; give a file name, e.g. "
                             f"{out / 'out.npy'}")
    # the first file before the formula: its errors are found in milliseconds, the
    # formula's in seconds
    first = read_image(jobs[0][0], args.channel_axis)
    t = translation_from_args(args, default_kind="activation")
    bar = None
    if len(jobs) > 1 and not args.quiet and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), unit="file", desc="fluxact denoise", leave=False)
    for k, (source, out) in enumerate(jobs):
        # every error is a FluxactError: one line, exit status 2, from main
        image = first if k == 0 else read_image(source, args.channel_axis)
        axis = -1 if image.colour and args.channel_axis is None else args.channel_axis
        run = denoise_run(image.values, t, time=args.time, tau=args.tau,
                          stability=args.stability, scheme=args.scheme,
                          boundary=args.boundary, h=args.h, spacing=args.spacing,
                          coupling=args.coupling, channel_axis=axis,
                          max_cycle=args.max_cycle, progress=False if bar else None,
                          compile=args.compile, precision=args.precision,
                          model=args.model, sigma=args.sigma, rho=args.rho)
        # OUT may be IN: the input is read whole, and the new file is renamed over it
        note = write_image(out, run.output, image)
        if bar is not None:
            bar.update()
        elif not args.quiet:
            print(f"{run.summary()}; wrote {out}{f' ({note})' if note else ''}")
    if bar is not None:
        bar.close()
        print(f"{len(jobs)} files filtered ({run.summary()}); wrote {args.out_dir}")
    return EXIT_OK


def _expand(paths: list[str]) -> list[str]:
    """The inputs of --out-dir with glob patterns (*, ?, [...]) expanded by fluxact, each in
    sorted order (for shells that do not, and for quoted patterns); a name that exists as
    it is stays itself; a pattern that matches no file is refused."""
    import glob

    out: list[str] = []
    for p in paths:
        if glob.has_magic(p) and not os.path.exists(p):
            found = sorted(glob.glob(p))
            if not found:
                raise UsageError(f"no file matches {p!r}")
            out += found
        else:
            out.append(p)
    return out


def _cmd_inpaint(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .denoising import load_signal
    from .images import read_image, suffix_of, write_image
    from .inpainting import inpaint_run

    source, mask_path, out = Path(args.image), Path(args.mask), Path(args.out)
    for path in (source, mask_path, out):
        suffix_of(path)
    if not out.parent.is_dir():
        raise UsageError(f"cannot write {out}: folder {out.parent} does not exist")
    if args.levels is not None and args.solver != "multigrid":
        raise UsageError("--levels is the number of multigrid grids: use it with "
                         "--solver multigrid")
    image = read_image(source)
    if suffix_of(mask_path) == ".npy":  # its own dtype: as_mask reads 8/16-bit masks
        mask = load_signal(mask_path)
    else:
        marks = read_image(mask_path)
        if marks.colour:
            raise UsageError(f"the mask {mask_path} is a colour image; save it as greyscale")
        mask = marks.values.astype(marks.dtype)  # the file's pixel type (exact integers)
    if args.model == "homogeneous" and (args.expr or args.name or args.param):
        raise UsageError("--model homogeneous has D = I: give no formula, --name or --param")
    formula: object = "charbonnier"
    if args.expr is not None or args.name is not None:
        formula = translation_from_args(args, default_kind="diffusivity")
    elif args.param:
        raise UsageError("--param needs a formula or --name (the default Charbonnier takes "
                         "lam = 0.93: give --name charbonnier --param lam=VALUE to change it)")
    run = inpaint_run(image.values, mask, formula, model=args.model, sigma=args.sigma,
                      solver=args.solver, tol=args.tol, levels=args.levels,
                      channel_axis=-1 if image.colour else None,
                      progress=False if args.quiet else None)
    note = write_image(out, run.output, image)
    if not args.quiet:
        print(f"{run.summary()}; wrote {out}{f' ({note})' if note else ''}")
    return EXIT_OK


def _cmd_plot(args: argparse.Namespace) -> int:
    from .plotting import plot, plot_format

    plot_format(args.output, where="-o ")  # before the translation: fails at once
    plot(translation_from_args(args), out=args.output, r_max=args.r_max)
    print(f"wrote {args.output}")
    return EXIT_OK


def _cmd_catalogue(args: argparse.Namespace) -> int:
    rows = [
        {"name": e.name, "title": e.title, "kind": e.kind, "formula": e.formula,
         "convention": e.convention, "aliases": list(e.aliases), "source": e.source}
        for e in catalogue.values()
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"{r['name']:<{width}}  {r['kind']:<11}  {r['formula']}")
        print(f"{'':<{width}}  {r['title']}; {r['source']}")
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    print("fluxact demo: the four forms of every catalogue entry (P1 Table 1, h = 1),")
    print("its stability verdicts with every parameter set to 1, and generated kernels\n")
    for entry in catalogue.values():
        t = translate(entry)
        print(t)
        values = {name: 1 for name in t.free_parameters}
        print(_verdicts(translate(entry, params=values)))
        print()
    from . import __version__
    from .codegen import prepare, render

    print("Generated Triton kernels for perona-malik with lam trainable "
          "(`fluxact emit --name perona-malik --param lam=1 --trainable lam --target triton`):\n")
    t = translate(lookup("perona-malik"), params={"lam": 1})
    print(render(prepare(t, trainable=("lam",)), "triton", __version__))
    return EXIT_OK


COMMANDS = {"translate": _cmd_translate, "verify": _cmd_verify, "emit": _cmd_emit,
            "build": _cmd_build, "denoise": _cmd_denoise, "inpaint": _cmd_inpaint,
            "plot": _cmd_plot,
            "catalogue": _cmd_catalogue, "demo": _cmd_demo}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", FluxactWarning)
            warnings.showwarning = _show_warning
            args = parser.parse_args(argv)
            if args.command is None:
                raise UsageError(f"give a command: {', '.join(COMMANDS)}")
            code = COMMANDS[args.command](args)
            sys.stdout.flush()
            return code
    except BrokenPipeError:  # `fluxact ... | head`: the reader has all it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except (UsageError, FluxactError) as exc:
        print(f"fluxact: error: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:  # a file the user named: cannot be read or written
        print(f"fluxact: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "),
              file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("fluxact: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a formula fluxact cannot handle: one line, not a traceback
        print(f"fluxact: error: cannot handle this input ({type(exc).__name__}: "
              f"{_one_line(str(exc))[:200]}); please report it", file=sys.stderr)
        return EXIT_BAD_INPUT


def _one_line(message: str) -> str:
    return " ".join(message.split())


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"fluxact: warning: {_one_line(str(message))}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
