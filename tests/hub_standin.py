"""A local stand-in for the Hugging Face Hub HTTP API (the parts ``snapshot_download`` uses), served on
127.0.0.1 so the ``hf://`` tests never touch the network. Point ``HF_ENDPOINT`` at its URL."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
import urllib.parse
from pathlib import Path


class HubStandIn:
    """Repositories are folders: ``repos[("org/name", "main")] = (commit_sha, folder)``."""

    def __init__(self) -> None:
        self.repos: dict[tuple[str, str], tuple[str, Path]] = {}
        self.requests: list[str] = []
        stand_in = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                self._serve(body=False)

            def do_GET(self) -> None:
                self._serve(body=True)

            def _send(self, code: int, data: bytes, headers: dict[str, str], body: bool) -> None:
                self.send_response(code)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def _serve(self, body: bool) -> None:
                url = urllib.parse.urlsplit(self.path)
                parts = [urllib.parse.unquote(p) for p in url.path.strip("/").split("/")]
                stand_in.requests.append(f"{self.command} {url.path}")
                if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] in ("revision", "tree"):
                    repo, kind, rev = f"{parts[2]}/{parts[3]}", parts[4], parts[5]
                    found = stand_in.lookup(repo, rev)
                    if found is None:
                        return self._missing(repo, rev, body)
                    sha, folder = found
                    files = sorted(p for p in folder.iterdir() if p.is_file())
                    if kind == "revision":
                        doc: object = {"id": repo, "modelId": repo, "sha": sha, "private": False,
                                       "siblings": [{"rfilename": p.name} for p in files]}
                    else:
                        doc = [{"type": "file", "path": p.name, "size": p.stat().st_size,
                                "oid": hashlib.sha1(p.read_bytes()).hexdigest()} for p in files]
                    return self._send(200, json.dumps(doc).encode(), {"Content-Type": "application/json"}, body)
                if len(parts) >= 5 and parts[2] == "resolve":
                    repo, rev, name = f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:])
                    found = stand_in.lookup(repo, rev)
                    if found is None or not (found[1] / name).is_file():
                        return self._send(404, b"not found", {"X-Error-Code": "EntryNotFound"}, body)
                    data = (found[1] / name).read_bytes()
                    etag = hashlib.sha256(data).hexdigest()
                    return self._send(200, data, {"X-Repo-Commit": found[0], "ETag": f'"{etag}"'}, body)
                self._send(404, b"not found", {"X-Error-Code": "RepoNotFound"}, body)

            def _missing(self, repo: str, rev: str, body: bool) -> None:
                if any(r == repo for r, _ in stand_in.repos):
                    self._send(404, b'{"error": "Invalid rev id"}', {"X-Error-Code": "RevisionNotFound"}, body)
                else:
                    self._send(404, b'{"error": "Repository not found"}', {"X-Error-Code": "RepoNotFound"}, body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def lookup(self, repo: str, rev: str) -> tuple[str, Path] | None:
        for (r, ref), (sha, folder) in self.repos.items():
            if r == repo and rev in (ref, sha):
                return sha, folder
        return None

    def add(self, repo: str, folder: Path, ref: str = "main") -> str:
        sha = hashlib.sha1(f"{repo}@{ref}:{sorted(p.name for p in folder.iterdir())}".encode()).hexdigest()
        self.repos[(repo, ref)] = (sha, folder)
        return sha

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
