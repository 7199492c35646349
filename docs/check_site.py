"""Check a built gradkit site: every registry name has its page, and every internal link and anchor resolves.

Run after ``sphinx-build`` (``make docs-check`` does both)::

    python docs/check_site.py docs/_build/html

Exit status 0 when the site passes; otherwise every problem is printed, one a line, and the status is 1.
Only the standard library and gradkit are used, so the check runs wherever the site was built.
"""

from __future__ import annotations

import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

# the registries whose every name must have an API page, and where the generator puts it
KINDS = ("activations", "losses")


class _Page(HTMLParser):
    """Collect the ids (anchors) a page defines and the links (href/src) it makes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[tuple[str, str]] = []
        self.math = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if value is None:
                continue
            if key == "id" or (tag == "a" and key == "name"):
                self.ids.add(value)
            elif (key == "href" and tag in ("a", "link", "area")) or (key == "src" and tag in ("img", "script")):
                self.links.append((tag, value))
            elif key == "class" and "math" in value.split():
                self.math += 1


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8", errors="replace"))
    page.close()
    return page


def check_links(root: Path) -> list[str]:
    """Return one line per internal link or anchor of the site under ``root`` that does not resolve."""
    root = root.resolve()
    pages = {p.resolve(): _parse(p) for p in sorted(root.rglob("*.html"))}
    problems = []
    for path, page in pages.items():
        where = path.relative_to(root)
        for tag, link in page.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith(("mailto:", "javascript:", "data:")):
                continue  # external: not this check's business (the site must not need it to render)
            target = path if not parts.path else (path.parent / unquote(parts.path)).resolve()
            if parts.path.endswith("/"):
                target = target / "index.html"
            if not (target == root or root in target.parents):
                problems.append(f"{where}: <{tag}> {link!r} points outside the site")
                continue
            if not target.is_file():
                problems.append(f"{where}: <{tag}> {link!r}: {target.relative_to(root)} does not exist")
                continue
            frag = unquote(parts.fragment)
            if frag and target.suffix == ".html":
                ids = pages[target].ids if target in pages else _parse(target).ids
                if frag not in ids:
                    problems.append(f"{where}: <{tag}> {link!r}: no anchor #{frag} in {target.relative_to(root)}")
    return problems


def check_registry_pages(root: Path) -> list[str]:
    """Return one line per registry name without its API page (or whose page documents no class, no math).

    The names are those of the registries in this process: run it where only the built-ins are registered
    (as the script does), not after a user's ``register``.
    """
    import gradkit

    problems = []
    for kind in KINDS:
        registry = getattr(gradkit, kind)
        table = root / "api" / f"{kind}.html"
        table_links = {urlsplit(link).path for _, link in _parse(table).links} if table.is_file() else set()
        for name in sorted(registry.names()):
            if f"generated/{kind}/{name}.html" not in table_links:
                problems.append(f"{kind} name {name!r} is not linked from the table in {table.relative_to(root)}")
            page_path = root / "api" / "generated" / kind / f"{name}.html"
            if not page_path.is_file():
                problems.append(f"{kind} name {name!r} has no page ({page_path.relative_to(root)} is missing)")
                continue
            page = _parse(page_path)
            cls = type(registry.get(name))
            if not {f"gradkit.{cls.__name__}", f"{cls.__module__}.{cls.__qualname__}"} & page.ids:
                problems.append(f"{kind} name {name!r}: its page does not document {cls.__qualname__}")
            if page.math == 0:
                problems.append(f"{kind} name {name!r}: its page has no math")
    mathjax = root / "_static" / "mathjax" / "tex-svg.js"
    if not mathjax.is_file():
        problems.append(f"{mathjax.relative_to(root)} is missing: math would not render offline")
    return problems


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python docs/check_site.py BUILT_HTML_DIR", file=sys.stderr)
        return 2
    root = Path(args[0])
    if not (root / "index.html").is_file():
        print(f"{root}: no index.html (build the site first: make docs)", file=sys.stderr)
        return 1
    problems = check_registry_pages(root) + check_links(root)
    for line in problems:
        print(line)
    n_pages = sum(1 for _ in root.rglob("*.html"))
    print(f"checked {n_pages} pages: {'OK' if not problems else f'{len(problems)} problems'}")
    return 1 if problems else 0


if __name__ == "__main__":
    # the names are those of the source tree beside this file, the one conf.py documents
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    sys.exit(main())
