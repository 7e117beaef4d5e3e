"""A local HTTP server that speaks the part of the Hugging Face hub's file API that
`huggingface_hub.hf_hub_download` uses (HEAD/GET `/<repo_id>/resolve/<revision>/<path>`, with
`Range` for resumed downloads), for repositories a test makes. Point `HF_ENDPOINT` at `url`.

Headers as the hub sends them for an LFS file: `X-Repo-Commit`, `X-Linked-Etag` (the file's
sha256), `X-Linked-Size`, `Content-Length`. Faults a test can ask for, per file path:
- `cut_after[path] = n`: the next GET sends the headers of the whole file but only n bytes, then
  closes the connection (a dropped download);
- `corrupt[path] = True`: the body differs from the bytes the advertised sha256 was taken of.
Every request is recorded in `requests` as (method, path, Range header or None).
"""
from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")


@dataclass
class HubRepo:
    commit: str                                   # 40 hex digits
    files: dict[str, bytes] = field(default_factory=dict)


class LocalHub:
    """Context manager: the server on 127.0.0.1, a free port, in a daemon thread."""

    def __init__(self, repos: dict[str, HubRepo]) -> None:
        self.repos = repos
        self.cut_after: dict[str, int] = {}
        self.corrupt: dict[str, bool] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:          # noqa: N802 (http.server's naming)
                hub._answer(self, body=False)

            def do_GET(self) -> None:           # noqa: N802
                hub._answer(self, body=True)

            def log_message(self, *_args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "LocalHub":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def ranges(self, path: str) -> list[str | None]:
        """The Range headers of the GETs of `path` (None: from the start)."""
        return [r for m, p, r in self.requests if m == "GET" and p.endswith("/" + path)]

    def _answer(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        range_header = handler.headers.get("Range")
        self.requests.append((handler.command, handler.path, range_header))
        match = _RESOLVE.match(handler.path.split("?")[0])
        repo = self.repos.get(match["repo"]) if match else None
        if repo is None:
            handler.send_response(404)
            handler.send_header("X-Error-Code", "RepoNotFound")
            handler.end_headers()
            return
        if match["rev"] not in ("main", repo.commit):
            handler.send_response(404)
            handler.send_header("X-Error-Code", "RevisionNotFound")
            handler.end_headers()
            return
        data = repo.files.get(match["path"])
        if data is None:
            handler.send_response(404)
            handler.send_header("X-Error-Code", "EntryNotFound")
            handler.send_header("X-Repo-Commit", repo.commit)
            handler.end_headers()
            return
        sha256 = hashlib.sha256(data).hexdigest()
        if self.corrupt.get(match["path"]):
            data = bytes(b ^ 0xFF for b in data[:64]) + data[64:]
        start = int(range_header.split("=")[1].split("-")[0]) if range_header else 0
        handler.send_response(206 if start else 200)
        handler.send_header("X-Repo-Commit", repo.commit)
        handler.send_header("X-Linked-Etag", f'"{sha256}"')
        handler.send_header("ETag", f'"{sha256}"')
        handler.send_header("X-Linked-Size", str(len(data)))
        handler.send_header("Accept-Ranges", "bytes")
        if start:
            handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        handler.send_header("Content-Length", str(len(data) - start))
        handler.end_headers()
        if not body:
            return
        part = data[start:]
        cut = self.cut_after.pop(match["path"], None) if handler.command == "GET" else None
        if cut is not None:
            handler.wfile.write(part[:cut])
            handler.wfile.flush()
            handler.close_connection = True
            handler.connection.shutdown(2)      # the peer sees the connection drop mid-body
            return
        handler.wfile.write(part)
