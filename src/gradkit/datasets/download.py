"""Downloading with a total deadline, credentials kept to their host, and one-line errors.

What pip does with an index URL, for the few requests the dataset fetcher makes:

- **Credentials.** ``https://user:secret@host/simple`` is split as pip splits it (the user-info ends at
  the last ``@``, the user at the first ``:``, both percent-decoded): the request goes to ``host``
  with HTTP basic auth, and so does every request to the same scheme, host and port (the archive,
  when the index serves it). Never to another one: a redirect elsewhere drops the header. Every
  message shows the URL as pip does, the password as ``****`` (:attr:`Location.shown`); error
  texts are scrubbed of the secrets besides.
- **A total deadline.** Each request, from the connection to the last byte of the body, must end
  within ``timeout`` seconds; a server that trickles its headers or body is cut off then (a
  watchdog shuts the socket down; a socket timeout alone restarts with every byte).
- **Local files.** ``file://`` URLs are read only when they name a regular file (a FIFO or a device
  is refused before it is opened, so nothing can block), at most ``limit`` bytes; a URL ending in
  ``/`` reads the folder's ``index.html``, as pip does.
- **One-line errors.** Whatever a server sends (no HTTP, an over-long or a hundred headers, broken
  chunked encoding, a redirect loop, control characters in a URL) ends as one :class:`OSError`
  naming the URL and what was wrong, printable characters only.

Proxies come from the environment (``https_proxy`` and the like), as with pip and urllib. Looking
up a host name (DNS) is not bounded by the deadline: the system resolver has its own.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import urllib.response
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

from .._io import open_regular

__all__ = ["Location", "fetch", "printable"]

_USER_AGENT = "gradkit-datasets"
_SCHEMES = ("http", "https", "file")


def printable(text: str, limit: int = 300) -> str:
    """``text`` on one line, control characters escaped, cut to ``limit`` characters."""
    out = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return out if len(out) <= limit else out[: limit - 3] + "..."


@dataclass(frozen=True)
class Location:
    """A URL with its credentials apart: :attr:`url` has none, :attr:`shown` has the password as ``****``."""

    url: str
    shown: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, text: str, what: str = "URL") -> Location:
        """Check and split ``text``; ``what`` names it in errors (``"the index URL"``).

        >>> loc = Location.parse("https://me:s3cret@example.org:8443/simple/")
        >>> loc.url, loc.shown, loc.username
        ('https://example.org:8443/simple/', 'https://me:****@example.org:8443/simple/', 'me')
        """
        if not isinstance(text, str):
            raise TypeError(f"{what} must be a str, got {type(text).__name__}")
        parts = urllib.parse.urlsplit(text)
        userinfo, at, hostport = parts.netloc.rpartition("@")
        user, colon, password = userinfo.partition(":")
        username = urllib.parse.unquote(user) if at else None
        secret = urllib.parse.unquote(password) if colon else None
        shown_netloc = (f"{user}:****@" if colon else "****@") + hostport if at else hostport
        shown = printable(urllib.parse.urlunsplit(parts._replace(netloc=shown_netloc)))
        bad = next((i for i, c in enumerate(text) if ord(c) < 0x21 or ord(c) == 0x7F), None)
        if bad is not None:
            raise ValueError(f"{what} {shown}: a control character or space at position {bad}")
        if parts.scheme not in _SCHEMES:
            raise ValueError(f"{what} {shown}: the scheme must be one of {', '.join(_SCHEMES)}; "
                             f"got {parts.scheme or 'none'!r}")
        try:
            parts._replace(netloc=hostport).port  # noqa: B018 - checks the port
        except ValueError:
            raise ValueError(f"{what} {shown}: the port must be a number from 0 to 65535") from None
        if parts.scheme != "file" and not parts._replace(netloc=hostport).hostname:
            raise ValueError(f"{what} {shown}: no host name")
        if parts.scheme == "file" and hostport not in ("", "localhost"):
            raise ValueError(f"{what} {shown}: a file:// URL must name a local file (file:///path)")
        url = urllib.parse.urlunsplit(parts._replace(netloc=hostport, fragment=""))
        return cls(url, shown.split("#", 1)[0], username, secret)

    def join(self, href: str, what: str = "the link") -> Location:
        """``href`` resolved against this URL (credentials come only with an absolute ``href``)."""
        return Location.parse(urllib.parse.urljoin(self.url, href), what)

    @property
    def origin(self) -> tuple[str, str, int | None]:
        """Scheme, host and port: where these credentials may be sent."""
        parts = urllib.parse.urlsplit(self.url)
        return parts.scheme, (parts.hostname or "").lower(), parts.port

    @property
    def host(self) -> str:
        """``host:port`` (or ``local file``), for messages."""
        return urllib.parse.urlsplit(self.url).netloc or "local file"

    def authorization(self) -> str | None:
        """The ``Authorization`` header for these credentials (basic auth), or None."""
        if self.username is None:
            return None
        pair = f"{self.username}:{self.password or ''}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")


class _Deadline:
    """Shuts the watched sockets down when ``seconds`` have passed (then any read ends at once)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._deadline = time.monotonic() + seconds
        self._timer.start()

    def remaining(self) -> float:
        return max(0.01, self._deadline - time.monotonic())

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut(sock)

    def cancel(self) -> None:
        self._timer.cancel()


def _shut(sock: socket.socket) -> None:
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain socket's: an SSL socket's would drop its state
    except OSError:
        pass


def _connection_class(base: type[http.client.HTTPConnection], deadline: _Deadline) -> Any:
    """``base`` whose sockets ``deadline`` watches, from the TCP connect on (TLS handshake included)."""

    class Watched(base):  # type: ignore[valid-type, misc]
        def connect(self) -> None:
            def create(address: Any, timeout: Any = None, source_address: Any = None) -> socket.socket:
                sock = socket.create_connection(address, deadline.remaining(), source_address)
                deadline.watch(sock)
                return sock

            self._create_connection = create
            super().connect()
            deadline.watch(self.sock)
            self.sock.settimeout(deadline.remaining())

    return Watched


class _HTTP(urllib.request.HTTPHandler):
    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self._class = _connection_class(http.client.HTTPConnection, deadline)

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self._class, req)


class _HTTPS(urllib.request.HTTPSHandler):
    def __init__(self, deadline: _Deadline) -> None:
        self._tls = ssl.create_default_context()
        super().__init__(context=self._tls)
        self._class = _connection_class(http.client.HTTPSConnection, deadline)

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self._class, req, context=self._tls)


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Redirects between http and https only; the credentials go along only to their own origin."""

    def __init__(self, credentials: Iterable[Location]) -> None:
        super().__init__()
        self._credentials = list(credentials)

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> urllib.request.Request | None:
        target = Location.parse(newurl, f"the redirect ({code}) from {Location.parse(req.full_url).shown} to")
        if target.origin[0] not in ("http", "https"):
            raise ValueError(f"a redirect ({code}) to {target.shown}: only http and https redirects are followed")
        new = super().redirect_request(req, fp, code, msg, headers, target.url)
        if new is not None:
            new.remove_header("Authorization")
            _authorize(new, target, self._credentials)
        return new


class _LocalFiles(urllib.request.BaseHandler):
    """``file://`` URLs of regular files only (no FIFO, device or folder: nothing can block)."""

    def file_open(self, req: urllib.request.Request) -> Any:
        path = Path(urllib.request.url2pathname(urllib.parse.urlsplit(req.full_url).path))
        if req.full_url.endswith("/"):  # a folder of a file:// index: its page, as pip reads it
            path = path / "index.html"
        try:
            opened = open_regular(path, "a downloadable file")
            handle, size = opened.__enter__()
        except OSError as exc:
            raise urllib.error.URLError(exc.strerror or str(exc)) from None
        headers = Message()
        headers["Content-Length"] = str(size)
        return urllib.response.addinfourl(handle, headers, req.full_url)


def _authorize(req: urllib.request.Request, target: Location, credentials: Iterable[Location]) -> None:
    for holder in (target, *credentials):
        header = holder.authorization()
        if header is not None and holder.origin == target.origin and target.origin[0] != "file":
            req.add_header("Authorization", header)
            return


def _describe(exc: BaseException) -> str:
    """What went wrong, in words (the exception types of http.client and urllib)."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        return _describe(reason) if isinstance(reason, BaseException) else str(reason)
    if isinstance(exc, http.client.RemoteDisconnected):
        return "the server closed the connection without an answer"
    if isinstance(exc, http.client.BadStatusLine):
        return f"not an HTTP answer (its first line: {exc.args[0] if exc.args else ''!r})"
    if isinstance(exc, http.client.LineTooLong):
        return f"an answer's {exc} is longer than 64 KiB"
    if isinstance(exc, http.client.IncompleteRead):
        return "the answer ended early (a short body or broken chunked encoding)"
    if isinstance(exc, socket.gaierror):
        return f"the host name cannot be resolved ({exc.strerror or exc})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def fetch(location: Location, write: Callable[[bytes], object], *, limit: int, timeout: float, what: str,
          credentials: Iterable[Location] = ()) -> str:
    """GET ``location``, passing the body to ``write`` in pieces; return its ``Content-Type``.

    ``credentials``: locations whose user-info may be sent (each to its own origin only), besides
    ``location``'s own. More than ``limit`` bytes, more than ``timeout`` seconds in all, or any
    malformed answer: an :class:`OSError` naming ``what``, the URL (password hidden) and the cause.
    """
    credentials = list(credentials)
    deadline = _Deadline(timeout)
    opener = urllib.request.OpenerDirector()
    for handler in (urllib.request.ProxyHandler(), urllib.request.UnknownHandler(), _HTTP(deadline),
                    _HTTPS(deadline), urllib.request.HTTPDefaultErrorHandler(), _Redirects(credentials),
                    _LocalFiles(), urllib.request.HTTPErrorProcessor()):
        opener.add_handler(handler)
    request = urllib.request.Request(location.url, headers={
        "User-Agent": _USER_AGENT, "Accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.2, */*;q=0.1"})
    _authorize(request, location, credentials)
    total = 0
    try:
        with opener.open(request, timeout=deadline.remaining()) as response:
            kind = response.headers.get("Content-Type", "") or ""
            while chunk := response.read(1 << 20):
                total += len(chunk)
                if total > limit:
                    raise _TooLarge
                write(chunk)
            if deadline.expired:  # the watchdog shut the socket: the read ended early, not the body
                raise TimeoutError
            if getattr(response, "length", None):  # fewer bytes than its Content-Length said
                raise http.client.IncompleteRead(b"", response.length)
    except _TooLarge:
        raise OSError(f"{what} {location.shown}: larger than {limit:,} bytes") from None
    except (OSError, ValueError, http.client.HTTPException) as exc:
        if deadline.expired:
            raise OSError(f"{what} {location.shown}: no complete answer from {location.host} within {timeout:g} s "
                          f"(connection, headers and body together)") from None
        message = f"{what} {location.shown}: {_describe(exc)}"
        raise OSError(scrub(message, [location, *credentials])) from None
    finally:
        deadline.cancel()
    return kind


class _TooLarge(Exception):
    pass


def scrub(text: str, locations: Iterable[Location]) -> str:
    """``text`` on one line, every password of ``locations`` (and of the proxies) replaced by ``****``."""
    secrets = {loc.password for loc in locations if loc.password}
    for proxy in urllib.request.getproxies().values():
        with contextlib.suppress(ValueError):
            secret = urllib.parse.urlsplit(proxy).password
            if secret:
                secrets.add(urllib.parse.unquote(secret))
    for secret in sorted(secrets, key=len, reverse=True):
        for form in {secret, urllib.parse.quote(secret, safe="")}:
            text = text.replace(form, "****")
    return printable(text, 500)
