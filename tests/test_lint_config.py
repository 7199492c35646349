"""The lint step of ``make test``: pinned tools, an explicit rule set, and ``test`` running ``lint`` first.

CI installs ``gradkit[test]`` on a clean machine and runs ``make test``; these tests keep that honest:
the tools CI installs are the versions pinned here, ruff checks (at least) what its pinned version
checks by default, and the Makefile runs both tools before the tests.
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
EXTRAS = PYPROJECT["project"]["optional-dependencies"]


def _pins() -> dict[str, str]:
    pins = {}
    for spec in EXTRAS["lint"]:
        name, sep, version = spec.partition("==")
        assert sep, f"lint extra: {spec!r} is not pinned with =="
        pins[name.strip()] = version.strip()
    return pins


def test_lint_extra_pins_ruff_and_mypy_and_test_pulls_it_in():
    assert _pins().keys() == {"ruff", "mypy"}
    assert _pins()["ruff"] == "0.17.6"
    test_self = [spec for spec in EXTRAS["test"] if spec.startswith("gradkit[")]
    assert len(test_self) == 1, EXTRAS["test"]
    assert "lint" in re.findall(r"[a-z]+", test_self[0].split("[", 1)[1])


@pytest.mark.parametrize("tool", ["ruff", "mypy"])
def test_installed_tool_is_the_pinned_version(tool):
    try:
        installed = importlib.metadata.version(tool)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"{tool} is not installed (the lint extra is absent)")
    assert installed == _pins()[tool], f"{tool} {installed} installed; pyproject.toml pins {_pins()[tool]}"


def _enabled(*args: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", "check", *args, "--show-settings"],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    block = proc.stdout.split("linter.rules.enabled = [", 1)[1].split("\n]", 1)[0]
    return set(re.findall(r"\(([A-Z]+[0-9]+)\)", block))


def test_ruff_config_states_at_least_the_pinned_default_rules():
    pytest.importorskip("ruff")
    lint = PYPROJECT["tool"]["ruff"]["lint"]
    ignored = set(lint.get("ignore", []))
    default = _enabled("--isolated")
    configured = _enabled()
    assert len(default) > 100  # the parse found the list
    missing = default - ignored - configured
    assert not missing, f"rules ruff checks by default but pyproject.toml drops without an ignore entry: {sorted(missing)}"
    # the rules are listed by code, not by prefix: a newer ruff adding rules to a prefix changes nothing
    assert all(re.fullmatch(r"[A-Z]+[0-9]{3,4}", code) for code in lint["select"]), lint["select"]
    assert configured == set(lint["select"]) - ignored


def test_every_ignored_rule_carries_a_reason():
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    block = re.search(r"^ignore = \[(.*?)^\]|^ignore = \[\]", text, flags=re.MULTILINE | re.DOTALL)
    assert block is not None, "[tool.ruff.lint] ignore = [...] not found"
    for line in (block.group(1) or "").splitlines():
        if line.strip().startswith('"'):
            assert "#" in line and line.split("#", 1)[1].strip(), f"ignored rule without a reason: {line.strip()}"


def test_mypy_settings_name_each_untyped_module():
    mypy = PYPROJECT["tool"]["mypy"]
    assert mypy["python_version"] == "3.11"
    assert mypy["files"] == ["src"]
    assert "ignore_missing_imports" not in mypy, "a global ignore_missing_imports hides typos in every import"
    named = {m for o in mypy["overrides"] if o.get("ignore_missing_imports") for m in o["module"]}
    for module in ("sklearn", "scipy", "jax", "cupy", "cupyx", "numba", "llvmlite", "dask", "distributed", "zarr",
                   "tqdm", "torch"):
        assert {module, module + ".*"} <= named, module


def test_make_test_runs_lint_first():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = dict(re.findall(r"^([a-z]+):[ \t]*([^\n]*)$", makefile, flags=re.MULTILINE))
    assert targets["test"].split()[0] == "lint", targets["test"]
    recipe = re.search(r"^lint:[^\n]*\n((?:\t[^\n]*\n)+)", makefile, flags=re.MULTILINE)
    assert recipe is not None
    commands = [line.strip() for line in recipe.group(1).splitlines()]
    assert "$(BIN)/ruff check src tests" in commands and "$(BIN)/mypy" in commands, commands
