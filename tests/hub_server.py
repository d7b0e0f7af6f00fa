"""A local, offline Hugging Face Hub: just enough of the Hub's HTTP API for huggingface_hub, transformers and datasets.

Tests point clients at it with `HF_ENDPOINT` (and `HF_HUB_DISABLE_XET=1`, since only the git-LFS "basic" transfer is
served), so pushing models and datasets to "the Hub" and loading them back runs the libraries' real code paths.
Repositories live on disk under a root folder: one JSON document per repository (branches and commits, each commit
holding its full file tree) and content-addressed blobs shared by all repositories.

    python -m tests.hub_server --root /tmp/hub --port 8080
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import secrets
import sys
import tempfile
import threading
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from fnmatch import fnmatch
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

# The Hub stores these as git-LFS objects (its default .gitattributes), as well as any binary or large file.
LFS_PATTERNS = ("*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gz", "*.h5", "*.joblib", "*.mlmodel",
                "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet", "*.pb", "*.pickle", "*.pkl",
                "*.pt", "*.pth", "*.rar", "*.safetensors", "*.tar", "*.tflite", "*.tgz", "*.wasm", "*.xz", "*.zip",
                "*.zst", "*tfevents*")
LFS_MIN_SIZE = 10 * 1024 * 1024
KINDS = {"models": "model", "datasets": "dataset", "spaces": "space"}
PREFIXES = {None: "model", "datasets/": "dataset", "spaces/": "space"}  # URL prefix -> kind
COMMIT_SHA = re.compile(r"[0-9a-f]{40}")
REPO_ID = re.compile(r"[\w-]+(?:\.[\w-]+)*/[\w-]+(?:\.[\w-]+)*")  # namespace/name, no path tricks


class HubError(Exception):
    """An error answer: huggingface_hub turns `code` (sent as X-Error-Code) into its typed exceptions."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None,
                 **extra: Any):
        super().__init__(message)
        self.status, self.message, self.code, self.headers, self.extra = status, message, code, headers or {}, extra


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def is_lfs(path: str, size: int, sample: bytes) -> bool:
    name = path.rsplit("/", 1)[-1]
    return size >= LFS_MIN_SIZE or b"\0" in sample or any(fnmatch(name, pattern) for pattern in LFS_PATTERNS)


class Store:
    """Repositories and blobs under `root`; one lock serialises writes so concurrent commits cannot interleave."""

    def __init__(self, root: Path):
        self.root = root
        self.blobs = root / "blobs"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()

    def _path(self, kind: str, repo_id: str) -> Path:
        if not REPO_ID.fullmatch(repo_id):
            raise HubError(400, f"Invalid repository id {repo_id!r}: expected namespace/name.")
        return self.root / "repos" / f"{kind}s" / repo_id / "repo.json"

    def load(self, kind: str, repo_id: str) -> dict[str, Any]:
        path = self._path(kind, repo_id)
        if not path.is_file():
            raise HubError(404, f"Repository {repo_id} ({kind}) not found.", "RepoNotFound")
        return json.loads(path.read_text())

    def _save(self, repo: dict[str, Any]) -> None:
        path = self._path(repo["type"], repo["id"])
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(repo))
        os.replace(tmp, path)

    def create(self, kind: str, repo_id: str, private: bool) -> bool:
        """Create the repository with the Hub's initial commit (a .gitattributes); False if it already exists."""
        with self.lock:
            if self._path(kind, repo_id).is_file():
                return False
            repo = {"id": repo_id, "type": kind, "uid": uuid.uuid4().hex[:24], "private": private,
                    "createdAt": now(), "refs": {}, "commits": {}}
            gitattributes = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS).encode()
            self._commit(repo, "main", "initial commit", "", {".gitattributes": self.file_entry(gitattributes)})
            return True

    def put_blob(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        path = self.blobs / sha256
        if not path.is_file():
            with tempfile.NamedTemporaryFile(dir=self.blobs, delete=False) as tmp:
                tmp.write(data)
            os.replace(tmp.name, path)
        return sha256

    def has_blob(self, sha256: str, size: int) -> bool:
        path = self.blobs / sha256
        return path.is_file() and path.stat().st_size == size

    def file_entry(self, data: bytes) -> dict[str, Any]:
        return {"sha256": self.put_blob(data), "size": len(data), "oid": git_oid(data), "lfs": False}

    @staticmethod
    def lfs_entry(sha256: str, size: int) -> dict[str, Any]:
        """In git the file is a pointer to the LFS object: its oid is the pointer's."""
        pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
        return {"sha256": sha256, "size": size, "oid": git_oid(pointer), "lfs": True, "pointerSize": len(pointer)}

    def commit(self, kind: str, repo_id: str, branch: str, apply: Callable[[dict[str, Any]], None], title: str,
               message: str, parent: str | None) -> str:
        """Commit on `branch` the changes `apply` makes to a copy of its file tree; returns the new commit sha."""
        with self.lock:
            repo = self.load(kind, repo_id)
            if branch not in repo["refs"]:
                raise HubError(404, f"Invalid rev id: {branch} (commits go to a branch)", "RevisionNotFound")
            head = repo["refs"][branch]
            if parent is not None and parent != head:
                raise HubError(412, f"A commit has happened since {parent}. Please refresh and try again.")
            files = dict(repo["commits"][head]["files"])
            apply(files)
            return self._commit(repo, branch, title, message, files)

    def create_branch(self, kind: str, repo_id: str, branch: str, starting_point: str | None) -> None:
        with self.lock:
            repo = self.load(kind, repo_id)
            if branch in repo["refs"]:
                raise HubError(409, f"Branch {branch} already exists.")
            repo["refs"][branch] = resolve(repo, starting_point or "main")["id"]
            self._save(repo)

    def _commit(self, repo: dict[str, Any], branch: str, title: str, message: str, files: dict[str, Any]) -> str:
        parent = repo["refs"].get(branch)
        old = repo["commits"][parent]["files"] if parent else {}
        sha = hashlib.sha1(f"{parent}{title}{uuid.uuid4()}".encode()).hexdigest()
        unchanged = {path for path, entry in files.items() if path in old and old[path]["sha256"] == entry["sha256"]}
        files = {path: old[path] if path in unchanged else {**entry, "lastCommit": sha}
                 for path, entry in files.items()}
        repo["commits"][sha] = {"id": sha, "parents": [parent] if parent else [], "title": title,
                                "message": message, "date": now(), "files": files}
        repo["refs"][branch] = sha
        self._save(repo)
        return sha


def resolve(repo: dict[str, Any], revision: str) -> dict[str, Any]:
    """A branch name or a full commit sha, to its commit."""
    sha = repo["refs"].get(revision) or (revision if COMMIT_SHA.fullmatch(revision) else None)
    if sha not in repo["commits"]:
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
    return repo["commits"][sha]


def tree_entries(repo: dict[str, Any], commit: dict[str, Any], paths: list[str], expand: bool) -> list[dict]:
    """The Hub's JSON for these files and folders of a commit (the shape of `tree` and `paths-info` answers)."""
    files = commit["files"]
    order = list(repo["commits"])

    def last_commit(sha: str) -> dict[str, str]:
        return {"id": sha, "title": repo["commits"][sha]["title"], "date": repo["commits"][sha]["date"]}

    entries = []
    for path in paths:
        if path in files:
            entry = files[path]
            item = {"type": "file", "oid": entry["oid"], "size": entry["size"], "path": path}
            if entry["lfs"]:
                item["lfs"] = {"oid": entry["sha256"], "size": entry["size"], "pointerSize": entry["pointerSize"]}
            latest = entry["lastCommit"]
        else:
            inside = sorted(p for p in files if p.startswith(path + "/"))
            item = {"type": "directory", "path": path, "size": 0,
                    "oid": hashlib.sha1("".join(files[p]["oid"] for p in inside).encode()).hexdigest()}
            latest = max((files[p]["lastCommit"] for p in inside), key=order.index)
        if expand:
            item["lastCommit"] = last_commit(latest)
        entries.append(item)
    return entries


def list_tree(files: dict[str, Any], folder: str, recursive: bool) -> list[str]:
    """Paths of the files and folders under `folder` ("" for the root): its children, or its whole subtree."""
    prefix = folder + "/" if folder else ""
    below = [p[len(prefix):] for p in files if p.startswith(prefix)]
    if folder and not below:
        raise HubError(404, f"{folder} does not exist in this revision.", "EntryNotFound")
    found = set()
    for rel in below:
        parts = rel.split("/")
        depth = len(parts) if recursive else 1
        found.update("/".join(parts[: i + 1]) for i in range(depth))
    return sorted(prefix + p for p in found)


class HubServer(ThreadingHTTPServer):
    """The Hub on 127.0.0.1; `tokens` holds every bearer token clients sent (tests assert on it, nobody prints it)."""

    daemon_threads = True

    def __init__(self, root: Path, port: int = 0, user: str = "user", verbose: bool = False):
        super().__init__(("127.0.0.1", port), HubHandler)
        self.store = Store(Path(root))
        self.user = user
        self.verbose = verbose
        self.tokens: set[str] = set()
        self.uploads: dict[str, tuple[str, int]] = {}  # one-time LFS upload ticket -> (sha256, size)
        self.endpoint = f"http://127.0.0.1:{self.server_address[1]}"
        self._thread: threading.Thread | None = None

    def __enter__(self) -> HubServer:
        self._thread = threading.Thread(target=self.serve_forever, name="hub-server", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join()


@contextmanager
def hub_server(root: Path) -> Iterator[str]:
    """Run a Hub on a free port for the duration of the block; yields its endpoint URL for HF_ENDPOINT."""
    with HubServer(root) as server:
        yield server.endpoint


REPO = r"/api/(models|datasets|spaces)/([^/]+/[^/]+)"
ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (method, re.compile(pattern), name) for method, pattern, name in [
        ("GET", r"/api/whoami-v2", "whoami"),
        ("POST", r"/api/repos/create", "create_repo"),
        ("POST", r"/api/validate-yaml", "validate_yaml"),
        ("GET", r"/api/agent-harnesses", "agent_harnesses"),
        ("GET", REPO + r"(?:/revision/([^/]+))?", "repo_info"),
        ("GET", REPO + r"/tree/([^/]+)(?:/(.+))?", "tree"),
        ("POST", REPO + r"/paths-info/([^/]+)", "paths_info"),
        ("GET", REPO + r"/refs", "refs"),
        ("GET", REPO + r"/commits/([^/]+)", "commits"),
        ("POST", REPO + r"/branch/([^/]+)", "create_branch"),
        ("POST", REPO + r"/preupload/([^/]+)", "preupload"),
        ("POST", REPO + r"/commit/([^/]+)", "commit"),
        ("POST", r"/(datasets/|spaces/)?([^/]+/[^/]+)\.git/info/lfs/objects/batch", "lfs_batch"),
        ("PUT", r"/lfs-upload/([\w-]+)", "lfs_upload"),
        ("POST", r"/lfs-verify/([0-9a-f]{64})", "lfs_verify"),
        ("GET", r"/(datasets/|spaces/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)", "resolve"),
    ]
]


class HubHandler(BaseHTTPRequestHandler):
    """Routes each request to a `route_<name>` method; those answer through `send_json` / `send_blob` or HubError."""

    server: HubServer

    def do_GET(self) -> None:
        self.dispatch()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_GET

    def dispatch(self) -> None:
        url = urlsplit(self.path)
        self.query = parse_qs(url.query)
        self.body = self.read_body()
        command = "GET" if self.command == "HEAD" else self.command  # HEAD answers GET's headers, without the body
        try:
            for method, pattern, name in ROUTES:
                if method == command and (match := pattern.fullmatch(url.path)):
                    getattr(self, f"route_{name}")(*(unquote(g) if g else g for g in match.groups()))
                    return
            print(f"hub_server: no route for {self.command} {self.path} (answered 404)", file=sys.stderr)
            raise HubError(404, f"This local Hub does not implement {self.command} {url.path}.")
        except HubError as error:
            headers = {"X-Error-Message": error.message.encode("ascii", "backslashreplace").decode(), **error.headers}
            if error.code:
                headers["X-Error-Code"] = error.code
            self.send_json({"error": error.message, **error.extra}, error.status, headers)
        except Exception:
            traceback.print_exc()
            self.send_json({"error": f"hub_server crashed on {self.command} {url.path}; see its stderr"}, 500)

    def read_body(self) -> bytes:
        """The request body, also when streamed chunked (httpx sends file objects of unknown length that way)."""
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        chunks = []
        while size := int(self.rfile.readline().split(b";")[0], 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
        return b"".join(chunks)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    # --- answers ---

    def send_json(self, data: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        for key, value in {"Content-Type": "application/json", "Content-Length": str(len(body)),
                           **(headers or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_blob(self, path: Path, size: int, headers: dict[str, str]) -> None:
        """The file, or the single byte range asked for (HfFileSystem reads files in ranges)."""
        start, end, status = 0, size - 1, 200
        if match := re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "")):
            first, last = match.groups()
            start = int(first) if first else max(size - int(last or 0), 0)
            end = min(int(last), size - 1) if first and last else size - 1
            if start >= size or start > end:
                raise HubError(416, "Range not satisfiable", headers={"Content-Range": f"bytes */{size}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(end - start + 1), "Accept-Ranges": "bytes",
                           "Content-Type": "application/octet-stream"}.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            with path.open("rb") as file:
                file.seek(start)
                self.wfile.write(file.read(end - start + 1))

    # --- auth and lookups ---

    def token(self, required: bool) -> str | None:
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token:
            self.server.tokens.add(token)
            return token
        if required:
            raise HubError(401, "Authentication required: send `Authorization: Bearer <token>` "
                                "(set HF_TOKEN or pass token=...) to write to this Hub.")
        return None

    def repo(self, kind: str, repo_id: str, write: bool = False) -> dict[str, Any]:
        """The repository, if this client may see it (private ones need a token, like on the Hub)."""
        token = self.token(required=write)
        repo = self.server.store.load(kind, repo_id)
        if repo["private"] and token is None:
            raise HubError(401, f"Repository {repo_id} is private: send a token.", "RepoNotFound")
        return repo

    def base(self) -> str:
        return f"http://{self.headers['Host']}" if self.headers.get("Host") else self.server.endpoint

    def repo_url(self, kind: str, repo_id: str) -> str:
        return f"{self.base()}/{'' if kind == 'model' else kind + 's/'}{repo_id}"

    def json_body(self) -> Any:
        try:
            return json.loads(self.body or b"{}")
        except ValueError:
            raise HubError(400, "The request body is not valid JSON.") from None

    def flag(self, name: str) -> bool:
        return self.query.get(name, ["false"])[-1].lower() in ("1", "true")

    # --- routes ---

    def route_whoami(self) -> None:
        self.token(required=True)
        self.send_json({"type": "user", "id": self.server.user, "name": self.server.user,
                        "fullname": self.server.user, "orgs": [],
                        "auth": {"type": "access_token", "accessToken": {"displayName": "local", "role": "write"}}})

    def route_create_repo(self) -> None:
        self.token(required=True)
        payload = self.json_body()
        kind = payload.get("type") or "model"
        name, namespace = payload.get("name") or "", payload.get("organization") or self.server.user
        if kind not in KINDS.values():
            raise HubError(400, f"This local Hub stores models, datasets and spaces, not {kind}s.")
        repo_id = f"{namespace}/{name}"
        url = self.repo_url(kind, repo_id)
        if not self.server.store.create(kind, repo_id, private=payload.get("visibility") == "private"):
            raise HubError(409, f"You already created this {kind} repo: {repo_id}", url=url)
        self.send_json({"url": url, "name": repo_id, "id": self.server.store.load(kind, repo_id)["uid"]})

    def route_validate_yaml(self) -> None:
        self.send_json({"errors": [], "warnings": []})

    def route_agent_harnesses(self) -> None:
        """huggingface_hub fetches this registry once a day to tag its user agent; an empty one detects nothing."""
        self.send_json({"standardEnvVars": [], "harnesses": {}})

    def route_repo_info(self, kinds: str, repo_id: str, revision: str | None) -> None:
        kind = KINDS[kinds]
        repo = self.repo(kind, repo_id)
        commit = resolve(repo, revision or "main")
        blobs = self.flag("blobs")
        siblings = []
        for path, entry in commit["files"].items():
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs:
                sibling.update(size=entry["size"], blobId=entry["oid"])
                if entry["lfs"]:
                    sibling["lfs"] = {"size": entry["size"], "sha256": entry["sha256"],
                                      "pointerSize": entry["pointerSize"]}
            siblings.append(sibling)
        info = {"_id": repo["uid"], "id": repo_id, "author": repo_id.split("/")[0], "sha": commit["id"],
                "createdAt": repo["createdAt"], "lastModified": commit["date"], "private": repo["private"],
                "disabled": False, "gated": False, "downloads": 0, "likes": 0, "tags": [], "siblings": siblings,
                "usedStorage": sum(entry["size"] for entry in commit["files"].values())}
        if kind == "model":
            info["modelId"] = repo_id
        if expand := self.query.get("expand") or self.query.get("expand[]"):
            info = {key: value for key, value in info.items() if key in {"_id", "id", *expand}}
        self.send_json(info)

    def route_tree(self, kinds: str, repo_id: str, revision: str, folder: str | None) -> None:
        repo = self.repo(KINDS[kinds], repo_id)
        commit = resolve(repo, revision)
        paths = list_tree(commit["files"], (folder or "").strip("/"), self.flag("recursive"))
        self.send_json(tree_entries(repo, commit, paths, self.flag("expand")))

    def route_paths_info(self, kinds: str, repo_id: str, revision: str) -> None:
        repo = self.repo(KINDS[kinds], repo_id)
        commit = resolve(repo, revision)
        form = parse_qs(self.body.decode())
        files = commit["files"]
        paths = [p.strip("/") for p in form.get("paths", [])]
        found = [p for p in paths if p in files or any(f.startswith(p + "/") for f in files)]
        expand = form.get("expand", ["False"])[-1].lower() == "true"
        self.send_json(tree_entries(repo, commit, found, expand))

    def route_refs(self, kinds: str, repo_id: str) -> None:
        repo = self.repo(KINDS[kinds], repo_id)
        branches = [{"name": name, "ref": f"refs/heads/{name}", "targetCommit": sha}
                    for name, sha in repo["refs"].items()]
        self.send_json({"branches": branches, "converts": [], "tags": [], "pullRequests": []})

    def route_commits(self, kinds: str, repo_id: str, revision: str) -> None:
        repo = self.repo(KINDS[kinds], repo_id)
        commit, history = resolve(repo, revision), []
        while True:
            history.append({"id": commit["id"], "title": commit["title"], "message": commit["message"],
                            "date": commit["date"], "authors": [{"user": self.server.user}]})
            if not commit["parents"]:
                break
            commit = repo["commits"][commit["parents"][0]]
        self.send_json(history)

    def route_create_branch(self, kinds: str, repo_id: str, branch: str) -> None:
        self.repo(KINDS[kinds], repo_id, write=True)
        self.server.store.create_branch(KINDS[kinds], repo_id, branch, self.json_body().get("startingPoint"))
        self.send_json({})

    def route_preupload(self, kinds: str, repo_id: str, revision: str) -> None:
        """Tell the client, per file, whether it goes inline in the commit or through LFS, and its current oid."""
        repo = self.repo(KINDS[kinds], repo_id, write=True)
        commit = resolve(repo, revision)
        answers = []
        for file in self.json_body().get("files", []):
            path, size = file["path"], file["size"]
            lfs = is_lfs(path, size, base64.b64decode(file.get("sample", "")))
            current = commit["files"].get(path)
            oid = (current["sha256"] if current["lfs"] else current["oid"]) if current else None
            answers.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                            "oid": oid})
        self.send_json({"files": answers, "commitOid": commit["id"]})

    def route_commit(self, kinds: str, repo_id: str, revision: str) -> None:
        """Apply an NDJSON commit: a header line, then file / lfsFile / deletedFile / deletedFolder lines."""
        kind = KINDS[kinds]
        self.repo(kind, repo_id, write=True)
        if self.flag("create_pr"):
            raise HubError(400, "This local Hub does not implement pull requests (create_pr).")
        try:
            lines = [json.loads(line) for line in self.body.splitlines() if line.strip()]
        except ValueError:
            raise HubError(400, "The commit payload is not valid NDJSON.") from None
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "The commit payload must start with a header line.")
        header, operations = lines[0]["value"], lines[1:]
        store = self.server.store

        def apply(files: dict[str, Any]) -> None:
            for operation in operations:
                key, value = operation["key"], operation["value"]
                path = value["path"].strip("/")
                if key == "file":
                    files[path] = store.file_entry(base64.b64decode(value["content"]))
                elif key == "lfsFile":
                    sha256, size = value["oid"], value.get("size")
                    blob = store.blobs / sha256
                    if not blob.is_file() or (size is not None and blob.stat().st_size != size):
                        raise HubError(422, f"LFS object {sha256} for {path} was not uploaded.")
                    files[path] = store.lfs_entry(sha256, blob.stat().st_size)
                elif key == "deletedFile":
                    if files.pop(path, None) is None:
                        raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                elif key == "deletedFolder":
                    for inside in [p for p in files if p.startswith(path + "/")]:
                        del files[inside]
                else:
                    raise HubError(400, f"This local Hub does not implement commit operation {key!r}.")

        sha = store.commit(kind, repo_id, revision, apply, header.get("summary") or "",
                           header.get("description") or "", header.get("parentCommit"))
        self.send_json({"success": True, "commitOid": sha, "commitUrl": f"{self.repo_url(kind, repo_id)}/commit/{sha}",
                        "pullRequestUrl": None})

    def route_lfs_batch(self, prefix: str | None, repo_id: str) -> None:
        """git-LFS batch API, basic transfer: a one-time upload URL (like the Hub's signed URLs) per missing object."""
        self.repo(PREFIXES[prefix], repo_id, write=True)
        payload = self.json_body()
        if payload.get("operation") != "upload":
            raise HubError(400, "This local Hub serves LFS uploads only; downloads go through /resolve.")
        objects = []
        for obj in payload.get("objects", []):
            sha256, size = obj["oid"], obj["size"]
            if self.server.store.has_blob(sha256, size):
                objects.append({"oid": sha256, "size": size})
                continue
            ticket = secrets.token_urlsafe(24)
            self.server.uploads[ticket] = (sha256, size)
            objects.append({"oid": sha256, "size": size, "authenticated": True, "actions": {
                "upload": {"href": f"{self.base()}/lfs-upload/{ticket}"},
                "verify": {"href": f"{self.base()}/lfs-verify/{sha256}"}}})
        self.send_json({"transfer": "basic", "objects": objects},
                       headers={"Content-Type": "application/vnd.git-lfs+json"})

    def route_lfs_upload(self, ticket: str) -> None:
        if ticket not in self.server.uploads:
            raise HubError(404, "Unknown or used LFS upload URL.")
        sha256, size = self.server.uploads[ticket]
        if len(self.body) != size or hashlib.sha256(self.body).hexdigest() != sha256:
            raise HubError(400, f"Uploaded content does not match LFS object {sha256} ({size} bytes).")
        self.server.store.put_blob(self.body)
        del self.server.uploads[ticket]
        self.send_json({}, headers={"ETag": f'"{sha256}"'})

    def route_lfs_verify(self, sha256: str) -> None:
        self.token(required=True)
        if not self.server.store.has_blob(sha256, self.json_body().get("size", -1)):
            raise HubError(404, f"LFS object {sha256} is missing or has another size.")
        self.send_json({"message": "Object verified"})

    def route_resolve(self, prefix: str | None, repo_id: str, revision: str, path: str) -> None:
        """A file at a revision, with the headers hf_hub_download relies on (X-Repo-Commit, ETag, X-Linked-*)."""
        repo = self.repo(PREFIXES[prefix], repo_id)
        commit = resolve(repo, revision)
        headers = {"X-Repo-Commit": commit["id"]}
        entry = commit["files"].get(path)
        if entry is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", headers)
        if entry["lfs"]:
            headers.update({"ETag": f'"{entry["sha256"]}"', "X-Linked-Etag": f'"{entry["sha256"]}"',
                            "X-Linked-Size": str(entry["size"])})
        else:
            headers["ETag"] = f'"{entry["oid"]}"'
        self.send_blob(self.server.store.blobs / entry["sha256"], entry["size"], headers)


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve a local Hugging Face Hub (set HF_ENDPOINT to its URL).")
    parser.add_argument("--root", type=Path, required=True, help="folder holding the repositories")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--user", default="user", help="the user every token authenticates as")
    args = parser.parse_args()
    server = HubServer(args.root, args.port, args.user, verbose=True)
    print(f"Hub at {server.endpoint} (root {args.root}); use HF_ENDPOINT={server.endpoint} HF_HUB_DISABLE_XET=1",
          file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
