"""Sphinx configuration for gradkit's documentation site (``make docs``).

Stack: Sphinx + ``sphinx.ext.autodoc`` / ``sphinx.ext.napoleon`` (NumPy-style docstrings, as written in src/)
+ ``sphinx.ext.mathjax`` with MathJax 3 bundled from the ``django-static-mathjax`` wheel (served from ``_static``:
the site builds and renders math offline, no CDN) + MyST (Markdown pages that include the README's sections and
CHANGELOG.md, so no text is written twice) + the Furo theme. The API pages of the activations and losses are
generated from the registries at build time by ``_ext/gradkit_apigen.py``.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# the source tree next to this file comes first (a worktree or a fresh clone documents itself, not an installed copy)
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(HERE / "_ext"))

import gradkit

project = "gradkit"
author = "The gradkit developers"
copyright = "the gradkit developers"
release = gradkit.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_parser",
    "gradkit_apigen",
    "gradkit_mathjax",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
# package_description.md is the README as a package index shows it (tools/package_description.py), not a page
exclude_patterns = ["_build", "**/.ipynb_checkpoints", "package_description.md"]
templates_path: list[str] = []

# the README's sections are included into the guides as they stand: their own heading levels (## / ###) sit under a
# page title, so a level may be skipped inside an included section; that is a style note, not a broken page
suppress_warnings = ["myst.header"]

# autodoc: members in source order, type hints in the description (the signatures stay readable)
autodoc_member_order = "bysource"
# a method documents itself or not at all: an override without a docstring (extra_repr of a torch Module, a
# hook an activation overrides) is documented once, where its docstring is, not again under every subclass
autodoc_inherit_docstrings = False
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
# torch and jax are real imports here (the docs extra is installed on top of the test extra, as in `make docs`);
# nothing is mocked, so a page whose module cannot be imported fails the build instead of going blank
autodoc_mock_imports: list[str] = []

napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_ivar = True

myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3

html_theme = "furo"
html_title = f"gradkit {release}"
html_static_path: list[str] = []  # gradkit_mathjax appends the bundled MathJax
html_show_sourcelink = False


def _skip_member(app: object, what: str, name: str, obj: object, skip: bool, options: object) -> bool | None:
    # scikit-learn adds set_<method>_request to every estimator (metadata routing); its docstrings cite
    # scikit-learn's own glossary, which this site does not have
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def _class_signature(app: object, what: str, name: str, obj: object, options: object, signature: str | None,
                     return_annotation: str | None) -> tuple[str, str | None] | None:
    # Activation and Loss define __new__(cls, *args, **kwargs) (it records the constructor's arguments), which
    # autodoc would show for every class; inspect.signature follows __init__, as help() does. Types are in the
    # description (autodoc_typehints), so the signature shows names and defaults only.
    if what != "class" or not isinstance(obj, type):
        return None
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    params = [p.replace(annotation=inspect.Parameter.empty) for p in sig.parameters.values()]
    return str(sig.replace(parameters=params, return_annotation=inspect.Signature.empty)), None


def setup(app: object) -> None:
    app.connect("autodoc-skip-member", _skip_member)  # type: ignore[attr-defined]
    app.connect("autodoc-process-signature", _class_signature)  # type: ignore[attr-defined]
