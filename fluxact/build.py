"""build: generate activation modules ahead of time from a spec file (``fluxact build``).

A spec is TOML with one ``[[activation]]`` table per nonlinearity:

    [[activation]]
    name = "perona_malik"             # module and function name (a Python identifier)
    formula = "exp(-s2/(2*lam**2))"   # or: catalogue = "perona-malik"
    kind = "diffusivity"              # diffusivity, regulariser, shrinkage, activation
    convention = "s2"                 # optional: "r" (default) or "s2"
    params = { lam = 1.0 }            # a value for every parameter
    trainable = ["lam"]               # optional: parameters with gradients

``build`` writes DIR/<name>.py for each entry and DIR/__init__.py importing them. The output
is deterministic (same spec and fluxact version, same bytes). Everything is read, translated,
rendered and checked first; the changed files are then written into a fresh private folder
beside DIR and renamed into DIR one by one, __init__.py last, so an import of DIR never sees an
__init__.py naming a module that is missing or half written. Unchanged files are not touched
(their timestamps move only when their content does); written files get 0o666 minus the umask,
or the mode of the file they replace (fluxact/files.py). ``check`` says which files are
missing or stale. A generated module imports torch, triton and fluxact.runtime only.
"""

from __future__ import annotations

import ast
import os
import shutil
import stat
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .activation import _version
from .codegen.prepare import ActivationSpec, prepare, python_name, require_defaults
from .codegen.render import render
from .files import replace as replace_file
from .files import write_new
from .translator.catalogue import lookup
from .translator.errors import FluxactError
from .translator.translation import translate

_KEYS = {"name", "formula", "catalogue", "kind", "convention", "params", "trainable", "tau",
         "alpha"}


class BuildError(FluxactError):
    """The build spec is not one fluxact can read."""


@dataclass(frozen=True, slots=True)
class BuildResult:
    written: tuple[Path, ...]  # files whose content changed
    unchanged: tuple[Path, ...]


def read_spec(path: str | Path) -> tuple[ActivationSpec, ...]:
    """Parse and translate every entry of a spec file (errors name the file and the entry)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BuildError(f"{path}: no such spec file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BuildError(f"{path}: not valid TOML ({exc})") from None
    except RecursionError:  # tomllib parses nested arrays and tables recursively
        raise BuildError(f"{path}: not valid TOML for a build spec (arrays or tables nested "
                         "too deeply to parse); a spec needs only [[activation]] tables with "
                         "params = { ... }") from None
    extra = sorted(set(data) - {"activation"})
    if extra:
        raise BuildError(f"{path}: unknown top-level key {extra[0]!r}; write [[activation]] "
                         "tables")
    entries = data.get("activation")
    if not isinstance(entries, list) or not entries:
        raise BuildError(f"{path}: no [[activation]] entries")
    specs: list[ActivationSpec] = []
    seen: set[str] = set()
    for k, entry in enumerate(entries, start=1):
        where = f"{path}: activation {k}"
        try:
            spec = _entry(entry, where)
        except BuildError:
            raise
        except FluxactError as exc:
            raise BuildError(f"{where} ({entry.get('name', '?')}): {exc}") from None
        if spec.name in seen:
            raise BuildError(f"{where}: the name {spec.name!r} is used twice")
        seen.add(spec.name)
        specs.append(spec)
    return tuple(specs)


def _entry(entry: object, where: str) -> ActivationSpec:
    if not isinstance(entry, dict):
        raise BuildError(f"{where}: must be a table")
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise BuildError(f"{where}: unknown key {unknown[0]!r}; use {', '.join(sorted(_KEYS))}")
    name = entry.get("name")
    if not isinstance(name, str) or python_name(name) != name:
        raise BuildError(f"{where}: 'name' must be a Python identifier in lower case, "
                         f"got {name!r}")
    params = entry.get("params", {})
    trainable = entry.get("trainable", [])
    if not isinstance(params, dict):
        raise BuildError(f"{where}: 'params' must be a table, e.g. params = {{ lam = 1.0 }}")
    if not isinstance(trainable, list) or not all(isinstance(p, str) for p in trainable):
        raise BuildError(f"{where}: 'trainable' must be a list of parameter names")
    options = {key: entry[key] for key in ("tau", "alpha") if key in entry}
    if ("formula" in entry) == ("catalogue" in entry):
        raise BuildError(f"{where}: give exactly one of 'formula' and 'catalogue'")
    if "catalogue" in entry:
        source: object = lookup(str(entry["catalogue"]))
        kind = entry.get("kind")
    else:
        source = entry["formula"]
        kind = entry.get("kind")
        if kind is None:
            raise BuildError(f"{where}: 'kind' is missing (diffusivity, regulariser, "
                             "shrinkage or activation)")
    t = translate(source, kind, params=params, convention=entry.get("convention"), **options)
    spec = prepare(t, name=name, trainable=trainable)
    require_defaults(spec)
    return spec


def render_all(specs: tuple[ActivationSpec, ...]) -> dict[str, str]:
    """File name -> content, for every module and the package's __init__.py."""
    version = _version()
    files = {f"{s.name}.py": render(s, "module", version) for s in specs}
    lines = [f"# generated by fluxact {version}, do not edit",
             '"""Activations generated by `fluxact build`."""', ""]
    lines += [f"from .{s.name} import {s.class_name} as {s.class_name}" for s in specs]
    lines += [f"from .{s.name} import {s.name} as {s.name}" for s in specs]
    files["__init__.py"] = "\n".join(lines) + "\n"
    return files


def build(spec_path: str | Path, out: str | Path) -> BuildResult:
    """Write the modules of a spec into ``out`` (created if needed); unchanged files are left
    alone, so their timestamps only move when their content does."""
    rendered = {name: text.encode("utf-8")
                for name, text in render_all(read_spec(spec_path)).items()}
    for name, data in rendered.items():  # render checks its modules; this checks __init__.py too
        ast.parse(data, filename=name)
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise BuildError(f"{folder} is a file; give a folder for the generated package "
                         "(--out DIR)")
    changed = {name: data for name, data in rendered.items() if not _same(folder / name, data)}
    for name in changed:
        if (folder / name).is_dir() and not (folder / name).is_symlink():
            raise BuildError(f"{folder / name} is a folder; remove it or choose another --out")
    unchanged = tuple(folder / name for name in sorted(rendered) if name not in changed)
    if not changed:
        return BuildResult((), unchanged)
    folder.mkdir(parents=True, exist_ok=True)  # mode 0o777 minus the umask
    # __init__.py last: until it moves, the package is the old one (or none), never one
    # whose __init__ imports a module that is not there yet. The staging folder is inside
    # DIR, so the renames never cross file systems (DIR may be a mount point or a link)
    order = sorted(changed, key=lambda name: (name == "__init__.py", name))
    staging = Path(tempfile.mkdtemp(prefix=".fluxact-build.", suffix=".tmp", dir=folder))
    try:
        for name in order:
            write_new(staging / name, changed[name], like=folder / name)
        for name in order:
            replace_file(staging / name, folder / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return BuildResult(tuple(folder / name for name in order), unchanged)


def _same(path: Path, data: bytes) -> bool:
    """``path`` is a regular file (not a link) holding exactly ``data``."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return False
        return path.read_bytes() == data
    except OSError:
        return False


def check(spec_path: str | Path, out: str | Path) -> tuple[str, ...]:
    """The files of ``out`` that are missing or differ from what the spec generates."""
    rendered = render_all(read_spec(spec_path))
    folder = Path(out)
    return tuple(name for name, text in sorted(rendered.items())
                 if not _same(folder / name, text.encode("utf-8")))
