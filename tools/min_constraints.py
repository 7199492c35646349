"""Write pip constraints that pin each lower bound of pyproject.toml: ``name==lowest``, one a line.

``make test-min`` installs gradkit against this file, so its tests run on exactly the oldest versions
that pyproject.toml claims to support (the core dependencies and the extras named on the command line).
A requirement with a ``>=`` bound becomes ``name==bound`` (its environment marker kept, its extras dropped:
constraints take none); one with an exact ``==`` pin is kept as it is; one without a lower bound is an
error, as is anything this small parser does not understand (so a new kind of requirement fails loudly
rather than going untested). ``gradkit[...]`` self-references are followed.

    python tools/min_constraints.py [--pyproject pyproject.toml] [EXTRA ...] > constraints.txt
    python tools/min_constraints.py --check [EXTRA ...]   # exit 1 unless this Python has exactly those versions

``--check`` compares with what the running interpreter has installed (``importlib.metadata``): every
pinned distribution must be there at its pin, except one whose environment marker may exclude it here.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

#: name, optional [extras], version specifiers, optional ; marker (PEP 508, without URLs)
_REQ = re.compile(
    r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[(?P<extras>[^\]]*)\])?\s*(?P<spec>[^;]*?)\s*(?:;\s*(?P<marker>.+))?$"
)
_CLAUSE = re.compile(r"^(?P<op>>=|==|<=|<|>|!=|~=)\s*(?P<version>[A-Za-z0-9.*+!_-]+)$")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _lowest(req: str) -> tuple[str, str]:
    """``(canonical name, constraint line)`` for one requirement string."""
    m = _REQ.match(req)
    if m is None:
        raise SystemExit(f"min_constraints: cannot parse requirement {req!r}")
    name, spec, marker = m["name"], m["spec"].strip(), m["marker"]
    lows, pins = [], []
    for clause in filter(None, (c.strip() for c in spec.split(","))):
        c = _CLAUSE.match(clause)
        if c is None:
            raise SystemExit(f"min_constraints: cannot parse {clause!r} in {req!r}")
        if c["op"] in (">=", "~="):
            lows.append(c["version"])
        elif c["op"] == "==":
            pins.append(c["version"])
    if pins:
        version = pins[0]
    elif len(lows) == 1:
        version = lows[0]
    else:
        raise SystemExit(f"min_constraints: {req!r} needs exactly one lower bound (>=) or an exact pin (==)")
    line = f"{name}=={version}" + (f"; {marker.strip()}" if marker else "")
    return _canonical(name), line


def constraints(pyproject: dict, extras: list[str]) -> list[str]:
    """The constraint lines for the core dependencies and ``extras`` (``gradkit[...]`` followed)."""
    project = pyproject["project"]
    optional = project.get("optional-dependencies", {})
    self_name = _canonical(project["name"])
    lines: dict[str, str] = {}
    seen: set[str] = set()
    todo = list(project.get("dependencies", []))
    pending = list(extras)
    while pending:
        extra = pending.pop()
        if extra in seen:
            continue
        if extra not in optional:
            raise SystemExit(f"min_constraints: no extra {extra!r} in pyproject.toml (have {', '.join(optional)})")
        seen.add(extra)
        todo.extend(optional[extra])
    while todo:
        req = todo.pop(0)
        m = _REQ.match(req)
        if m is not None and _canonical(m["name"]) == self_name:  # gradkit[train,fast]: follow those extras
            for extra in filter(None, (e.strip() for e in (m["extras"] or "").split(","))):
                if extra not in seen:
                    seen.add(extra)
                    todo.extend(optional[extra])
            continue
        key, line = _lowest(req)
        if key in lines and lines[key] != line:
            raise SystemExit(f"min_constraints: {key} has two lower bounds: {lines[key]!r} and {line!r}")
        lines[key] = line
    return [lines[k] for k in sorted(lines)]


def _release(version: str) -> tuple[str, ...]:
    """``1.26`` and ``1.26.0`` alike (PEP 440 pads releases with zeros)."""
    parts = version.split(".")
    while len(parts) > 1 and parts[-1] == "0":
        parts.pop()
    return tuple(parts)


def check(lines: list[str]) -> list[str]:
    """What differs between the constraint ``lines`` and this interpreter's installed distributions."""
    problems = []
    for line in lines:
        pin, _, marker = line.partition(";")
        name, _, version = pin.strip().partition("==")
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            if not marker:  # with a marker it may be excluded on this platform
                problems.append(f"{name}: not installed (pinned {version})")
            continue
        if _release(installed) != _release(version):
            problems.append(f"{name}: {installed} installed, the lower bound is {version}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pyproject", default="pyproject.toml", type=Path)
    parser.add_argument("--check", action="store_true", help="check the installed versions instead of printing")
    parser.add_argument("extras", nargs="*", help="extras whose requirements are pinned too")
    args = parser.parse_args(argv)
    data = tomllib.loads(args.pyproject.read_text(encoding="utf-8"))
    lines = constraints(data, args.extras)
    if not args.check:
        sys.stdout.write("".join(line + "\n" for line in lines))
        return 0
    problems = check(lines)
    for problem in problems:
        print(f"min_constraints: {problem}", file=sys.stderr)
    if not problems:
        print(f"min_constraints: the {len(lines)} lower bounds are what is installed")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
