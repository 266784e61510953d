"""names: every identifier of generated code, and the rules that keep the user's apart.

A generated module holds two kinds of names:

- the user's: the activation's name (module, function and class) and the parameters' names.
  These are public: the class and the function take the parameters as keywords named as in
  the formula (``PeronaMalik(lam=1.5)``), and ``PARAMS``, ``DEFAULTS``, the state_dict and
  ``fluxact.Activation`` use them too;
- fluxact's own: what the templates bind or read (kernel arguments, constexprs, locals,
  imports, module constants, builtins) and what the printers bind (temporaries t0, t1, ...,
  the outputs phi, dphi, dphi_<p>).

Inside kernels and torch functions a parameter whose name is one of fluxact's is bound under
another identifier (``p_`` prefixed): ``identifiers``. Only internal identifiers are renamed;
the public keywords never are. The set of fluxact's names is read from the templates
themselves (``TEMPLATE_NAMES``), so a template that starts using a new local protects it
without a second list to keep in step.

A handful of names cannot be a parameter of generated code at all and are refused with one
line (``check_parameter_names``): Python keywords, names that are not ASCII identifiers, names
starting with '_', and the keywords the generated class and function take besides the
parameters (``API_NAMES``).
"""

from __future__ import annotations

import builtins
import keyword
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from importlib.resources import files

from ..translator.errors import ParameterError
from ..translator.parse import check_name
from .errors import CodegenError
from .printers import RESERVED_NAMES as PRINTED_MODULES

#: the keywords the generated class and function take besides the parameters
API_NAMES = ("trainable", "backend")

#: names bound at the top of a generated module (imports and constants): an activation's
#: function or class named so would shadow them
MODULE_CONSTANTS = frozenset({
    "torch", "triton", "tl", "annotations", "_rt", "NAME", "FORMULA", "KIND", "CONVENTION",
    "PARAMS", "DEFAULTS", "TRAINABLE", "DIGEST", "STABILITY", "OPS", "_OPS", "_FORMULA",
    # the Triton functions, under the names fluxact/kernels/formula.py binds kernels to
    "_phi", "_dphi", "_phi_wide", "_dphi_wide",
})

# Jinja2 tags, then Python strings and comments: what is left is code
_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_STRINGS = re.compile(r'"""(?:.|\n)*?"""|\'\'\'(?:.|\n)*?\'\'\'|"[^"\n]*"|\'[^\'\n]*\'')
_COMMENT = re.compile(r"#[^\n]*")
# an identifier that is not an attribute (tl.load: tl, not load)
_WORD = re.compile(r"(?<![\w.])[A-Za-z_]\w*")


def template_sources() -> Iterator[tuple[str, str]]:
    """(file name, text) of every Jinja2 template of fluxact.templates."""
    folders = [files("fluxact.templates")]
    while folders:
        for entry in folders.pop().iterdir():
            if entry.is_dir():
                folders.append(entry)
            elif entry.name.endswith(".j2"):
                yield entry.name, entry.read_text(encoding="utf-8")


def _template_names() -> frozenset[str]:
    """Every identifier in the code of every template (Jinja2 tags, strings and comments
    removed). It over-approximates (keyword-argument names such as mask= count too), which
    only renames a parameter inside the generated code, never in its public keywords."""
    names: set[str] = set()
    for _, text in template_sources():
        code = _COMMENT.sub(" ", _STRINGS.sub(" ", _JINJA.sub(" ", text)))
        names.update(_WORD.findall(code))
    return frozenset(names - set(keyword.kwlist))


#: identifiers the templates use themselves
TEMPLATE_NAMES = _template_names()
#: identifiers of generated code a parameter must not take inside kernels and torch functions:
#: the templates', the positional arguments self and x (their names come from
#: ``positional``), and the printers' (the outputs phi, dphi; dphi_<p>, printer temporaries
#: and names starting with '_' are _RESERVED_PATTERN). The kernels of fluxact.kernels never
#: see a parameter's name: _phi and _dphi read the parameters by index from p_ptr.
RESERVED = TEMPLATE_NAMES | PRINTED_MODULES | {"self", "x", "gy", "phi", "dphi"}
_RESERVED_PATTERN = re.compile(r"t\d+|_.*|dphi.*")
#: names bound at the top (constants) and builtins the templates read: an activation's
#: function or class named so would shadow them
MODULE_NAMES = MODULE_CONSTANTS | (TEMPLATE_NAMES & set(dir(builtins)))


def is_reserved(name: str) -> bool:
    """Whether ``name`` is one of the generated code's own identifiers."""
    return name in RESERVED or bool(_RESERVED_PATTERN.fullmatch(name))


def check_parameter_names(params: Iterable[str]) -> None:
    """Refuse, with one line, a parameter name that generated code cannot take as a keyword."""
    for p in params:
        check_name(p, "parameter name")
        if p in API_NAMES:
            raise ParameterError(
                f"parameter {p!r} has the name of a keyword of the generated class and function "
                f"({', '.join(f'{a}=' for a in API_NAMES)}); rename it in the formula "
                f"(e.g. {p + '_'!r})")


def identifiers(params: Sequence[str]) -> dict[str, str]:
    """Parameter name -> its identifier inside kernels and torch functions: the name itself,
    or, where that is one of fluxact's own, the name with 'p_' prefixed (again until it is
    free and unlike every other parameter's name and identifier)."""
    out: dict[str, str] = {}
    for p in params:
        ident = p
        while is_reserved(ident) or (ident != p and ident in params) or ident in out.values():
            ident = f"p_{ident}"
        out[p] = ident
    return out


def positional(name: str, public: Iterable[str]) -> str:
    """The identifier of a positional-only argument (self, x) that must not take one of the
    ``public`` keywords: ``name``, or '_'-prefixed (no parameter starts with '_')."""
    taken = set(public)
    while name in taken:
        name = "_" + name
    return name


def class_name(ident: str) -> str:
    """The generated class of the activation ``ident``: perona_malik -> PeronaMalik."""
    return "".join(part.capitalize() or "_" for part in ident.split("_"))


def python_name(text: str) -> str:
    """A valid, lower-case ASCII Python identifier from a catalogue or user name.

    The text is normalised as Python's parser normalises identifiers (NFKC: a fullwidth
    'ｔｏｒｃｈ' is 'torch') before anything is checked, so two spellings of one identifier
    give one name; other characters that are not ASCII letters or digits are refused. A
    keyword, or a name whose function or class would shadow a name of the generated module
    (torch, OPS, ...), gets a trailing '_'.
    """
    normal = unicodedata.normalize("NFKC", str(text)).strip().lower()
    foreign = sorted({c for c in normal if not c.isascii() and (c.isalnum() or c == "_")})
    if foreign:
        raise CodegenError(
            f"the name {text!r} has characters that are not ASCII ({''.join(foreign)}); "
            "generated modules, functions and classes have ASCII names: give one such as "
            "'perona_malik'")
    name = re.sub(r"[^a-z0-9_]+", "_", normal).strip("_") or "activation"
    if name[0].isdigit():
        name = "a_" + name
    while (keyword.iskeyword(name) or name in MODULE_NAMES
           or keyword.iskeyword(class_name(name)) or class_name(name) in MODULE_NAMES):
        name += "_"
    return name
