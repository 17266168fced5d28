"""The playground at the server root: a page that lists the served models and answers a form built from each
model's `toolkit` metadata through KServe V1 :predict.

`GET /` answers a browser (Accept: text/html) with the page and everyone else with KServe V1's liveness
document {"status": "alive"} (what KServe's Python SDK asks for). `GET /ui/FILE` serves the page's modules
and style sheet. The files are package data (toolkit/runtime/webui/), read once when the server starts: no
build step, nothing from a CDN, so the page works offline. None of these routes needs the API key (they hold
no model data); the page asks for the key once when the server answers 401, and sends it with every call.
With --no-ui, `GET /` is the liveness document for everyone and /ui/ is 404.
"""

from __future__ import annotations

from pathlib import Path

from toolkit.runtime.server.protocol import ServeError

WEBUI = Path(__file__).resolve().parents[1] / "webui"
PAGE = "playground.html"
ASSETS = {
    "playground.mjs": b"text/javascript; charset=utf-8",
    "form.mjs": b"text/javascript; charset=utf-8",
    "toolkit-web.mjs": b"text/javascript; charset=utf-8",
    "style.css": b"text/css; charset=utf-8",
}
ALIVE = b'{"status":"alive"}'
JSON = b"application/json"
HTML = b"text/html; charset=utf-8"
# The page loads only its own files and talks only to this server; labels and messages are set as text.
CSP = (
    b"default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
    b"script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


class Playground:
    """The root and /ui/ routes; `enabled=False` (--no-ui) keeps only the liveness answer."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.files: dict[str, tuple[bytes, bytes]] = {}
        if enabled:
            self.files = {name: ((WEBUI / name).read_bytes(), kind) for name, kind in ASSETS.items()}
            self.files[""] = ((WEBUI / PAGE).read_bytes(), HTML)

    @staticmethod
    def handles(method: str, parts: list[str]) -> bool:
        return method == "GET" and (parts == [""] or parts[0] == "ui")

    def answer(self, scope: dict, parts: list[str]) -> tuple[int, bytes, list]:
        if parts == [""]:
            if self.enabled and _wants_html(scope):
                return _file(*self.files[""])
            return _file(ALIVE, JSON)
        name = "/".join(parts[1:])
        if not self.enabled or name not in self.files or not name:
            raise ServeError(404, f"no endpoint GET {scope['path']}")
        return _file(*self.files[name])


def _wants_html(scope: dict) -> bool:
    for k, v in scope["headers"]:
        if k == b"accept":
            return b"text/html" in v
    return False


def _file(body: bytes, kind: bytes) -> tuple[int, bytes, list]:
    headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode())]
    if kind.startswith(b"text/"):
        # The page runs no code from elsewhere; nothing is cached across toolkit upgrades.
        headers += [(b"cache-control", b"no-cache"), (b"x-content-type-options", b"nosniff")]
    if kind == HTML:
        headers.append((b"content-security-policy", CSP))
    return 200, body, headers
