"""Where S3 URIs live locally: one folder shared by all executions, or real S3 through boto3.

``FolderStore`` maps ``s3://<bucket>/<key>`` to ``<root>/<bucket>/<key>``, like a
bucket that outlives executions. ``BotoStore`` uses whatever endpoint boto3 is
configured for. ``S3Endpoint`` serves a ``FolderStore`` read-only over HTTP on
127.0.0.1 (GetObject, HeadObject, ListObjectsV2), so that jobs which read S3
themselves through boto3 see the same store (``AWS_ENDPOINT_URL_S3``).
"""

from __future__ import annotations

import email.utils
import hashlib
import http.server
import shutil
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol
from xml.sax.saxutils import escape

from executor.errors import JobInternalError


def split_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> ``(bucket, key)``."""
    if not uri.startswith("s3://"):
        raise JobInternalError(f"{uri!r} is not an S3 URI.")
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def relative(key: str, prefix: str) -> str:
    """Where an object under an S3Prefix lands below the local folder."""
    rest = key[len(prefix) :].lstrip("/")
    return rest or key.rsplit("/", 1)[-1]


class Store(Protocol):
    """What the executor needs from S3."""

    def keys(self, uri: str) -> list[str]: ...
    def download(self, uri: str, dest: Path) -> int: ...
    def upload(self, src: Path, uri: str) -> int: ...
    def read(self, uri: str) -> bytes: ...
    def write(self, uri: str, data: bytes) -> None: ...
    def local_path(self, uri: str) -> Path | None: ...


class FolderStore:
    """S3 as folders: ``<root>/<bucket>/<key>``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    def path(self, bucket: str, key: str) -> Path:
        path = (self.root / bucket / key).resolve()
        if not path.is_relative_to((self.root / bucket).resolve()):
            raise JobInternalError(f"s3://{bucket}/{key} leaves the store.")
        return path

    def local_path(self, uri: str) -> Path:
        return self.path(*split_uri(uri))

    def iter_keys(self, bucket: str, prefix: str) -> Iterator[str]:
        """The keys of ``bucket`` that start with ``prefix``, in order."""
        base = self.root / bucket
        start = base / prefix.rsplit("/", 1)[0] if "/" in prefix else base
        if not start.is_dir():
            return
        for path in sorted(p for p in start.rglob("*") if p.is_file()):
            key = path.relative_to(base).as_posix()
            if key.startswith(prefix):
                yield key

    def keys(self, uri: str) -> list[str]:
        bucket, prefix = split_uri(uri)
        return list(self.iter_keys(bucket, prefix))

    def download(self, uri: str, dest: Path) -> int:
        bucket, prefix = split_uri(uri)
        count = 0
        for key in self.iter_keys(bucket, prefix):
            target = dest / relative(key, prefix)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.path(bucket, key), target)
            count += 1
        return count

    def upload(self, src: Path, uri: str) -> int:
        bucket, prefix = split_uri(uri)
        count = 0
        for path in sorted(p for p in src.rglob("*") if p.is_file()):
            key = f"{prefix.rstrip('/')}/{path.relative_to(src).as_posix()}"
            target = self.path(bucket, key)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            count += 1
        return count

    def read(self, uri: str) -> bytes:
        path = self.local_path(uri)
        if not path.is_file():
            raise JobInternalError(f"{uri} does not exist in the local store ({path}).")
        return path.read_bytes()

    def write(self, uri: str, data: bytes) -> None:
        path = self.local_path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


class BotoStore:
    """Real S3 (or a local AWS endpoint) through boto3."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def keys(self, uri: str) -> list[str]:
        bucket, prefix = split_uri(uri)
        out: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix
        ):
            out += [o["Key"] for o in page.get("Contents", [])]
        return out

    def download(self, uri: str, dest: Path) -> int:
        bucket, prefix = split_uri(uri)
        keys = self.keys(uri)
        for key in keys:
            target = dest / relative(key, prefix)
            target.parent.mkdir(parents=True, exist_ok=True)
            self.client.download_file(bucket, key, str(target))
        return len(keys)

    def upload(self, src: Path, uri: str) -> int:
        bucket, prefix = split_uri(uri)
        count = 0
        for path in sorted(p for p in src.rglob("*") if p.is_file()):
            key = f"{prefix.rstrip('/')}/{path.relative_to(src).as_posix()}"
            self.client.upload_file(str(path), bucket, key)
            count += 1
        return count

    def read(self, uri: str) -> bytes:
        bucket, key = split_uri(uri)
        return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()

    def write(self, uri: str, data: bytes) -> None:
        bucket, key = split_uri(uri)
        self.client.put_object(Bucket=bucket, Key=key, Body=data)

    def local_path(self, uri: str) -> Path | None:
        return None


# ------------------------------------------------------------------ read-only endpoint


def _error(code: str, message: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
        f"<Message>{escape(message)}</Message></Error>"
    ).encode()


class _Handler(http.server.BaseHTTPRequestHandler):
    store: FolderStore
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _target(self) -> tuple[str, str, dict[str, list[str]]]:
        parsed = urllib.parse.urlsplit(self.path)
        bucket, _, key = urllib.parse.unquote(parsed.path).lstrip("/").partition("/")
        return bucket, key, urllib.parse.parse_qs(parsed.query)

    def do_GET(self) -> None:
        bucket, key, query = self._target()
        if not (self.store.root / bucket).is_dir():
            self._send(404, _error("NoSuchBucket", f"No bucket {bucket!r} in the local store."))
        elif not key:
            self._list(bucket, query)
        else:
            self._object(bucket, key)

    do_HEAD = do_GET

    def _refuse(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self._send(403, _error("AccessDenied", "The local store's endpoint is read-only."))

    do_PUT = do_POST = do_DELETE = _refuse

    def _object(self, bucket: str, key: str) -> None:
        try:
            path = self.store.path(bucket, key)
        except JobInternalError:
            path = None
        if path is None or not path.is_file():
            self._send(404, _error("NoSuchKey", f"No key {key!r} in bucket {bucket!r}."))
            return
        data = path.read_bytes()
        headers = {
            "ETag": f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"',
            "Last-Modified": email.utils.formatdate(path.stat().st_mtime, usegmt=True),
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
        }
        ranged = self.headers.get("Range", "")
        if ranged.startswith("bytes="):
            first, _, last = ranged.removeprefix("bytes=").partition("-")
            start, end = int(first or 0), int(last) if last else len(data) - 1
            end = min(end, len(data) - 1)
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            self._send(206, data[start : end + 1], headers)
            return
        self._send(200, data, headers)

    def _list(self, bucket: str, query: dict[str, list[str]]) -> None:
        prefix = query.get("prefix", [""])[0]
        keys = list(self.store.iter_keys(bucket, prefix))
        items = "".join(
            f"<Contents><Key>{escape(k)}</Key><Size>{self.store.path(bucket, k).stat().st_size}"
            "</Size><StorageClass>STANDARD</StorageClass></Contents>"
            for k in keys
        )
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"<Name>{escape(bucket)}</Name><Prefix>{escape(prefix)}</Prefix>"
            f"<KeyCount>{len(keys)}</KeyCount><MaxKeys>100000</MaxKeys>"
            f"<IsTruncated>false</IsTruncated>{items}</ListBucketResult>"
        ).encode()
        self._send(200, body, {"Content-Type": "application/xml"})


class S3Endpoint:
    """A read-only S3 endpoint on 127.0.0.1 over a ``FolderStore``; use as a context manager."""

    def __init__(self, store: FolderStore) -> None:
        handler = type("Handler", (_Handler,), {"store": store})
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> S3Endpoint:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
