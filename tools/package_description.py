"""Write the package's long description (what an index page shows) from README.md.

The README is written for the repository: its links and its image point at files next to it
(``docs/guides/training.md``, ``docs/training.png``), which break on a package index page where
nothing sits next to the text. This script rewrites every relative link and image of README.md:

- with ``--base-url URL`` (where the repository is published, e.g. a forge's ``.../blob/main``),
  a relative link becomes ``URL/path`` and an image ``URL/path``: absolute, as an index needs;
- without one (gradkit has no public address yet), a link becomes its text followed by the path in
  the source distribution (``Training networks (`docs/guides/training.md` in the source
  distribution)``) and an image becomes one line naming the file, so nothing on the page is broken.

Absolute links (``http://``, ``https://``, ``mailto:``) and in-page anchors (``#...``) are kept. Code
blocks are copied as they are. The result is ``docs/package_description.md``, which pyproject.toml
names as the readme; ``tests/test_packaging.py`` fails when it is not what this script writes from
the current README, so the two cannot drift.

Usage::

    python tools/package_description.py            # write docs/package_description.md
    python tools/package_description.py --check    # exit 1 when it is out of date
    python tools/package_description.py --base-url https://example.org/gradkit/blob/main
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
OUTPUT = ROOT / "docs" / "package_description.md"

# [text](target) and ![alt](target); the text holds no ']' and the target no ')' or space (README style)
_LINK = re.compile(r"(?P<bang>!?)\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)\)")
_KEEP = ("http://", "https://", "mailto:", "#")
_NOTE = (
    "<!-- Written by tools/package_description.py from README.md: edit README.md, then run the script. -->\n"
)


def _rewrite_link(match: re.Match[str], base_url: str | None) -> str:
    target = match["target"]
    if target.startswith(_KEEP):
        return match[0]
    if base_url is not None:
        return f"{match['bang']}[{match['text']}]({base_url.rstrip('/')}/{target})"
    if match["bang"]:
        return f"*(Figure: {match['text']}; the image is `{target}` in the source distribution.)*"
    if match["text"].strip("`") == target:
        return f"`{target}` in the source distribution"
    return f"{match['text']} (`{target}` in the source distribution)"


def describe(readme: str, base_url: str | None = None) -> str:
    """Return ``readme`` with its relative links and images rewritten (code blocks untouched)."""
    out: list[str] = [_NOTE]
    in_code = False
    for line in readme.splitlines(keepends=True):
        if line.lstrip().startswith("```"):
            in_code = not in_code
        out.append(line if in_code else _LINK.sub(lambda m: _rewrite_link(m, base_url), line))
    return "".join(out)


def relative_targets(text: str) -> list[str]:
    """Every link or image target in ``text`` (outside code blocks) that is not absolute."""
    found: list[str] = []
    in_code = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
        elif not in_code:
            found += [m["target"] for m in _LINK.finditer(line) if not m["target"].startswith(_KEEP)]
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the file is out of date")
    parser.add_argument("--base-url", help="make relative links absolute against this address")
    args = parser.parse_args(argv)
    text = describe(README.read_text(encoding="utf-8"), args.base_url)
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT.relative_to(ROOT)} is out of date: run python tools/package_description.py")
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
