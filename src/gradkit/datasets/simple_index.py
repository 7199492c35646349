"""Reading a project page of a simple repository API: JSON (PEP 691) or HTML (PEP 503), strictly.

The page's links are returned as written; anything that is not such a page says what is wrong in
one line (:class:`ValueError`): bytes that are not text in the declared encoding (UTF-8 for JSON,
the ``charset`` of the ``Content-Type`` or UTF-8 for HTML), JSON that is not an object with a
``files`` list of objects whose ``url`` and ``filename`` are strings, ``NaN`` or ``Infinity``
(not JSON), nesting too deep to read.
"""

from __future__ import annotations

import json
from email.message import Message
from html.parser import HTMLParser
from typing import Any, NamedTuple

__all__ = ["Link", "links"]


class Link(NamedTuple):
    """A file's link on the page: its ``href`` and, from JSON, its ``filename`` (else None)."""

    href: str
    filename: str | None


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []
        self.base: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = next((value for key, value in attrs if key == "href" and value), None)
        if tag == "a" and href:
            self.hrefs.append(href)
        elif tag == "base" and href and self.base is None:
            self.base = href


def _charset(content_type: str) -> str:
    message = Message()
    message["Content-Type"] = content_type or "text/html"
    return message.get_content_charset() or "utf-8"


def _decode(body: bytes, charset: str, page: str) -> str:
    try:
        return body.decode(charset)
    except LookupError:
        raise ValueError(f"the index page {page} declares the unknown encoding {charset!r}") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"the index page {page} is not valid {charset}: byte 0x{body[exc.start]:02x} at "
                         f"offset {exc.start:,} ({exc.reason})") from None


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _malformed(page: str, what: str) -> ValueError:
    """A page whose content is wrong (a ValueError: the data, not the caller, is at fault)."""
    return ValueError(f"the index page {page}: {what}")


def _json_links(text: str, page: str) -> list[Link]:
    try:
        data = json.loads(text, parse_constant=_not_json)
    except RecursionError:
        raise _malformed(page, "JSON nested too deeply to read") from None
    except ValueError as exc:
        raise _malformed(page, f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise _malformed(page, f"expected a JSON object, got a {type(data).__name__}")
    files = data.get("files")
    if not isinstance(files, list):
        raise _malformed(page, f"'files' must be a list, got {type(files).__name__}")
    found = []
    for i, entry in enumerate(files):
        if not isinstance(entry, dict):
            raise _malformed(page, f"files[{i}] must be an object, got {type(entry).__name__}")
        url, filename = entry.get("url"), entry.get("filename")
        if not isinstance(url, str) or not url:
            raise _malformed(page, f"files[{i}]['url'] must be a non-empty string, "
                             f"got {type(url).__name__}")
        if filename is not None and not isinstance(filename, str):
            raise _malformed(page, f"files[{i}]['filename'] must be a string, "
                             f"got {type(filename).__name__}")
        found.append(Link(url, filename))
    return found


def links(body: bytes, content_type: str, page: str) -> tuple[list[Link], str | None]:
    """The file links of a project page, and the page's ``<base href>`` (HTML) if it has one.

    Parameters
    ----------
    body : bytes
        The page as served.
    content_type : str
        Its ``Content-Type``: JSON when it names ``json`` (or is empty and the page starts with
        ``{``), else HTML.
    page : str
        The page's URL as it may be shown (no password), for messages.

    Examples
    --------
    >>> links(b'<a href="../f/x-1.tar.gz#sha256=ab">x</a>', "text/html", "https://i/simple/x/")
    ([Link(href='../f/x-1.tar.gz#sha256=ab', filename=None)], None)
    """
    is_json = "json" in content_type.lower() or (
        not content_type.lower().startswith("text/html") and body.lstrip()[:1] == b"{")
    if is_json:
        return _json_links(_decode(body, "utf-8", page), page), None
    parser = _Anchors()
    parser.feed(_decode(body, _charset(content_type), page))
    parser.close()
    return [Link(href, None) for href in parser.hrefs], parser.base
