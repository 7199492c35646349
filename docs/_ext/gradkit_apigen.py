"""Write one API page per registered built-in activation and loss, from the registries, at build time.

``gk.activations.names()`` and ``gk.losses.names()`` are the source of truth: each name gets
``api/generated/<kind>/<name>.rst`` (the class behind the name, its docstring with the math, its members) and
a row in ``api/generated/<kind>_table.rst`` (name, class, the docstring's first paragraph). A new built-in
registered in src/ gets its page and its row without any edit here. Files are rewritten only when their text
changes, so an incremental build re-reads nothing that did not change; pages of names that are gone are removed.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx

KINDS = {
    # kind: (registry attribute of gradkit, singular, its public methods, the base class that documents them)
    "activations": ("activations", "activation", "``forward``, ``vjp``, ``jvp`` and ``jacobian``", "gradkit.Activation"),
    "losses": ("losses", "loss", "``__call__``, ``grad`` and ``value_and_grad``", "gradkit.Loss"),
}


def public_path(cls: type) -> str:
    """The shortest public dotted path of ``cls``: ``gradkit.X`` when gradkit exports it, else its module's."""
    import gradkit

    if getattr(gradkit, cls.__name__, None) is cls:
        return f"gradkit.{cls.__name__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def summary(cls: type) -> str:
    """The first paragraph of the class docstring, on one line."""
    doc = inspect.getdoc(cls) or ""
    return " ".join(doc.split("\n\n", 1)[0].split())


def _title(text: str, char: str = "=") -> str:
    return f"{text}\n{char * len(text)}\n"


def _write(path: Path, text: str) -> None:
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)


def entries(kind: str) -> list[tuple[str, type, Any]]:
    """``(name, class, default instance)`` for every name in the registry of ``kind``, sorted by name."""
    import gradkit

    registry = getattr(gradkit, KINDS[kind][0])
    out = []
    for name in sorted(registry.names()):
        obj = registry.get(name)
        out.append((name, type(obj), obj))
    return out


def page(kind: str, name: str, cls: type, obj: Any, seen: set[type]) -> str:
    path = public_path(cls)
    registry, singular, methods, base = KINDS[kind]
    lines = [
        f".. _api-{kind}-{name}:",
        "",
        _title(f"``{name}``"),
        f"Registry name ``{name}``: ``gk.{registry}.get(\"{name}\")`` builds :class:`{path}` with its defaults,",
        f"``{obj!r}``; ``gk.{registry}.get(\"{name}\", **kwargs)`` with others.",
        f"Its {methods} are documented once, on :class:`{base}`; the math of this {singular} is below.",
        "",
        f".. autoclass:: {path}",
        "   :members:",
    ]
    if cls in seen:  # two names for one class: the second page shows it without a second index entry
        lines.append("   :no-index:")
    seen.add(cls)
    return "\n".join(lines) + "\n"


def table(kind: str, rows: list[tuple[str, type, Any]]) -> str:
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 18 18 64",
        "",
        "   * - name",
        "     - class",
        "     - definition",
    ]
    for name, cls, _ in rows:
        lines += [
            f"   * - :ref:`{name} <api-{kind}-{name}>`",
            f"     - :class:`~{public_path(cls)}`",
            f"     - {summary(cls)}",
        ]
    return "\n".join(lines) + "\n"


def generate(app: Sphinx) -> None:
    out = Path(app.srcdir) / "api" / "generated"
    for kind in KINDS:
        rows = entries(kind)
        seen: set[type] = set()
        wanted = set()
        for name, cls, obj in rows:
            target = out / kind / f"{name}.rst"
            wanted.add(target)
            _write(target, page(kind, name, cls, obj, seen))
        for stale in (out / kind).glob("*.rst"):
            if stale not in wanted:
                stale.unlink()
        _write(out / f"{kind}_table.rst", table(kind, rows))


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("builder-inited", generate)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
