"""Serve MathJax 3 from the site itself, so that math renders offline and without a CDN.

The MathJax build comes from the ``django-static-mathjax`` wheel on PyPI (MathJax 3.2.2, Apache-2.0; the wheel
has no dependencies and holds only MathJax's own files). ``tex-svg.js`` is MathJax's single-file TeX-to-SVG
component: it needs no web fonts, so copying that one file (about 2 MB) is enough. It is copied into the built
site when the build ends and served as ``_static/mathjax/tex-svg.js`` (with MathJax's LICENSE beside it).
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.errors import ExtensionError

COMPONENT = "tex-svg.js"


def _source() -> Path:
    try:
        root = resources.files("mathjax") / "static" / "mathjax"
    except ModuleNotFoundError as exc:
        raise ExtensionError("the docs need MathJax from the 'docs' extra: pip install -e '.[docs]' "
                             "(package django-static-mathjax)") from exc
    path = Path(str(root))
    if not (path / "es5" / COMPONENT).is_file():
        raise ExtensionError(f"MathJax's {COMPONENT} was not found under {path}: reinstall django-static-mathjax")
    return path


def _configure(app: Sphinx, config: Config) -> None:
    _source()  # fail at the start of the build, not after it
    config.mathjax_path = f"mathjax/{COMPONENT}"  # relative: served from the site's _static/


def _copy(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    src = _source()
    dest = Path(app.outdir) / "_static" / "mathjax"
    dest.mkdir(parents=True, exist_ok=True)
    for name, origin in ((COMPONENT, src / "es5" / COMPONENT), ("LICENSE", src / "LICENSE")):
        target = dest / name
        if not target.is_file() or target.stat().st_size != origin.stat().st_size:
            shutil.copyfile(origin, target)


def setup(app: Sphinx) -> dict[str, Any]:
    app.setup_extension("sphinx.ext.mathjax")
    app.connect("config-inited", _configure)
    app.connect("build-finished", _copy)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
