"""The documentation site: it builds with zero warnings, every registry name has its page, every link resolves.

The build needs the ``docs`` extra (Sphinx, MyST, Furo, the bundled MathJax); without it the build test is
skipped and ``make docs-check`` is where CI runs it. The checker itself is tested on small generated sites.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

import gradkit as gk

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
# docs/check_site.py is a script of the site, not a module of gradkit: loaded by path, sys.path untouched
_spec = importlib.util.spec_from_file_location("gradkit_docs_check_site", DOCS / "check_site.py")
assert _spec is not None and _spec.loader is not None
check_site = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_site)

DOCS_DEPS = ("sphinx", "myst_parser", "furo", "mathjax")


def _missing_docs_deps() -> list[str]:
    return [m for m in DOCS_DEPS if importlib.util.find_spec(m) is None]


def _site(tmp_path: Path, pages: dict[str, str]) -> Path:
    for rel, text in pages.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    return tmp_path


def test_checker_finds_broken_links_and_anchors(tmp_path: Path) -> None:
    root = _site(tmp_path, {
        "index.html": '<p id="top"><a href="a/b.html#here">ok</a> <a href="a/b.html#gone">bad anchor</a>'
                      '<a href="missing.html">bad page</a> <a href="#top">self</a> <a href="#nowhere">self bad</a>'
                      '<img src="_static/x.png"> <a href="https://example.org/x">external</a>'
                      '<a href="../../etc/passwd">outside</a></p>',
        "a/b.html": '<h1 id="here">b</h1><a href="../index.html#top">back</a>',
    })
    problems = check_site.check_links(root)
    text = "\n".join(problems)
    assert len(problems) == 5, text
    assert "no anchor #gone in a/b.html" in text
    assert "missing.html does not exist" in text
    assert "no anchor #nowhere in index.html" in text
    assert "_static/x.png does not exist" in text
    assert "points outside the site" in text


def test_checker_finds_missing_registry_pages(tmp_path: Path) -> None:
    root = _site(tmp_path, {
        "index.html": "<p>home</p>",
        "api/activations.html": '<a href="generated/activations/softmax.html#x">softmax</a>',
        "api/generated/activations/softmax.html": '<dt id="gradkit.Softmax"></dt><span class="math">x</span>',
        "api/generated/activations/relu.html": '<dt id="gradkit.Sigmoid"></dt>',
    })
    problems = check_site.check_registry_pages(root)
    text = "\n".join(problems)
    assert not any("'softmax'" in p for p in problems), text
    assert "activations name 'relu': its page does not document ReLU" in text
    assert "activations name 'relu': its page has no math" in text
    n_missing = len(gk.activations.names()) + len(gk.losses.names()) - 2
    assert sum("has no page" in p for p in problems) == n_missing, text
    assert "activations name 'relu' is not linked from the table in api/activations.html" in text
    assert "losses name 'mse' is not linked from the table in api/losses.html" in text
    assert "mathjax/tex-svg.js is missing" in text


@pytest.mark.skipif(bool(_missing_docs_deps()),
                    reason=f"the docs extra is not installed (missing {', '.join(_missing_docs_deps())}): "
                           "pip install -e '.[docs]', or run make docs-check")
def test_site_builds_without_warnings_and_checks(tmp_path: Path) -> None:
    out = tmp_path / "html"
    build = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(DOCS), str(out)],
        check=False, capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert build.returncode == 0, build.stdout[-5000:] + build.stderr[-5000:]
    assert "WARNING" not in build.stderr, build.stderr[-5000:]
    # the checker in a process of its own: the registries hold the built-in names only, as in the build
    check = subprocess.run([sys.executable, str(DOCS / "check_site.py"), str(out)],
                           check=False, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert check.returncode == 0, check.stdout[-5000:] + check.stderr[-5000:]
    assert check.stdout.rstrip().endswith(": OK"), check.stdout[-2000:]


def test_the_functions_guide_has_a_row_for_every_registry_name():
    """The guide's hand-written table (forward, VJP, conventions side by side) cannot fall behind the
    registries: every built-in name has its row, and no row names something that is not registered."""
    import re
    from pathlib import Path

    import gradkit as gk

    text = (Path(__file__).resolve().parents[1] / "docs" / "guides" / "functions.md").read_text()
    rows = set(re.findall(r"^\| `(\w+)`", text, flags=re.MULTILINE))
    names = set(gk.activations.builtin_names()) | set(gk.losses.builtin_names())
    assert names - rows == set(), f"names without a row in docs/guides/functions.md: {sorted(names - rows)}"
    assert rows - names == set(), f"rows for unknown names: {sorted(rows - names)}"
