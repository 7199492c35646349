"""The sdist and wheel as an index receives them: `python -m build` makes both, `twine check --strict` passes,
and the long description an index page shows has no relative link or image (they break there)."""

from __future__ import annotations

import email
import importlib.util
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "package_description.py"

pytestmark = pytest.mark.skipif(not TOOL.exists(), reason="tools/package_description.py is not in this tree")


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("package_description", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_description_is_the_readme_as_the_tool_writes_it() -> None:
    tool = _tool()
    expected = tool.describe((ROOT / "README.md").read_text(encoding="utf-8"))
    written = (ROOT / "docs" / "package_description.md").read_text(encoding="utf-8")
    assert written == expected, "docs/package_description.md is stale: run python tools/package_description.py"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["readme"]["file"] == "docs/package_description.md"


def test_the_rewrite_leaves_no_relative_target_and_keeps_code() -> None:
    tool = _tool()
    readme = (
        "See [the guide](docs/guides/training.md), [`x.py`](x.py) and [a site](https://example.org/a).\n"
        "![curves](docs/training.png)\n[top](#gradkit)\n"
        "```python\nprint('[not](a/link.md)')\n```\n"
    )
    assert tool.relative_targets(readme) == ["docs/guides/training.md", "x.py", "docs/training.png"]
    plain = tool.describe(readme)
    assert tool.relative_targets(plain) == []
    assert "the guide (`docs/guides/training.md` in the source distribution)" in plain
    assert "`x.py` in the source distribution" in plain
    assert "[a site](https://example.org/a)" in plain and "[top](#gradkit)" in plain
    assert "print('[not](a/link.md)')" in plain
    absolute = tool.describe(readme, base_url="https://example.org/gk/blob/main/")
    assert "[the guide](https://example.org/gk/blob/main/docs/guides/training.md)" in absolute
    assert "![curves](https://example.org/gk/blob/main/docs/training.png)" in absolute
    assert tool.relative_targets(absolute) == []
    # the shipped description holds none either (the README itself links to files next to it)
    assert tool.relative_targets((ROOT / "README.md").read_text(encoding="utf-8"))
    assert tool.relative_targets((ROOT / "docs" / "package_description.md").read_text(encoding="utf-8")) == []


def _copy_tree(dest: Path) -> None:
    ignore = shutil.ignore_patterns(
        ".venv*", "__pycache__", "*.egg-info", "_build", "generated", "build", "dist", "out", ".*_cache"
    )
    for name in ("pyproject.toml", "README.md", "MANIFEST.in", "LICENSE", "CHANGELOG.md", "Makefile"):
        shutil.copy2(ROOT / name, dest / name)
    for name in ("src", "docs", "tests", "examples", "tools"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)


def test_build_makes_an_sdist_and_a_wheel_that_twine_check_passes(tmp_path: Path) -> None:
    pytest.importorskip("build", reason="needs the test extra (build)")
    pytest.importorskip("twine", reason="needs the test extra (twine)")
    tree, dist = tmp_path / "tree", tmp_path / "dist"
    tree.mkdir()
    _copy_tree(tree)
    # no isolation: the test extra brings setuptools >= 77, so the build needs no download
    built = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(tree)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in dist.iterdir())
    checked = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(wheels[0]), str(sdists[0])],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("PASSED") == 2, checked.stdout

    with zipfile.ZipFile(wheels[0]) as wheel:
        metadata_name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = email.message_from_bytes(wheel.read(metadata_name))
        names = wheel.namelist()
    assert metadata["Description-Content-Type"] == "text/markdown"
    description = metadata.get_payload()
    assert isinstance(description, str) and description.startswith("<!-- Written by tools/package_description.py")
    assert _tool().relative_targets(description) == []
    assert "gradkit/py.typed" in names and "gradkit/kernels/__main__.py" in names
    assert not [n for n in names if n.startswith("tests/")]

    # the sdist can run the tests and regenerate the description: tests, tools, docs and examples travel with it
    with tarfile.open(sdists[0]) as sdist:
        members = {m.name.split("/", 1)[1] for m in sdist.getmembers() if "/" in m.name}
    for needed in (
        "docs/package_description.md", "docs/training.png", "tools/package_description.py",
        "tests/test_packaging.py", "examples/softmax_bug.py", "README.md", "LICENSE",
    ):
        assert needed in members, needed
