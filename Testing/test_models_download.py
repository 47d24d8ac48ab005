"""Downloads and online installs against a local HTTP server with Range support (no network needed)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import MappingProxyType

import pytest
from fake_models import LESION_MS_TRAINER, fold_zip
from SpinalLesionSegLib.errors import InputError
from SpinalLesionSegLib.models import installer, manifests, registry, resolve
from SpinalLesionSegLib.models.download import download, part_path
from SpinalLesionSegLib.models.manifests import MANIFESTS, Archive

#: The server shuts itself down after this long even if a test forgets to (seconds).
SERVER_LIFETIME_S = 60


class FileServer:
    """Serves in-memory files on 127.0.0.1 with HTTP Range support; can cut a response short to fake a dropped
    connection, or ignore Range like some proxies do. Records the Range header of every request."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut_after: dict[str, int] = {}  # path -> bytes sent before the connection drops (once)
        self.ignore_range = False
        self.no_length = False  # send no Content-Length: the body ends when the connection closes
        self.ranges: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                data = server.files.get(self.path)
                server.ranges.append(self.headers.get("Range"))
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if match and not server.ignore_range:
                    start = int(match.group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                if not server.no_length:
                    self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                cut = server.cut_after.pop(self.path, None)
                self.wfile.write(body if cut is None else body[:cut])
                self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.deadline = threading.Timer(SERVER_LIFETIME_S, self.httpd.shutdown)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def add(self, name: str, data: bytes) -> str:
        self.files[f"/{name}"] = data
        return self.url(name)


@pytest.fixture
def server() -> Iterator[FileServer]:
    running = FileServer()
    running.thread.start()
    running.deadline.start()
    try:
        yield running
    finally:
        running.deadline.cancel()
        running.httpd.shutdown()
        running.httpd.server_close()
        running.thread.join(timeout=5)


PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


def test_download_reports_progress(server: FileServer, tmp_path: Path) -> None:
    url = server.add("a.bin", PAYLOAD)
    seen: list[tuple[str, int, int | None]] = []
    target = download(url, tmp_path / "a.bin", lambda *update: seen.append(update))
    assert target.read_bytes() == PAYLOAD and not part_path(target).exists()
    assert seen[0] == ("a.bin", 0, len(PAYLOAD)) and seen[-1] == ("a.bin", len(PAYLOAD), len(PAYLOAD))
    assert download(url, target) == target and len(server.ranges) == 1  # complete files are not fetched again


def test_interrupted_download_resumes_with_a_range_request(server: FileServer, tmp_path: Path) -> None:
    url = server.add("a.bin", PAYLOAD)
    server.cut_after["/a.bin"] = 300_000
    target = tmp_path / "a.bin"
    with pytest.raises(InputError, match="run the same command again to resume"):
        download(url, target)
    assert not target.exists() and part_path(target).stat().st_size == 300_000
    download(url, target)
    assert server.ranges == [None, "bytes=300000-"]
    assert target.read_bytes() == PAYLOAD


def test_a_server_ignoring_range_restarts_the_download(server: FileServer, tmp_path: Path) -> None:
    url = server.add("a.bin", PAYLOAD)
    target = tmp_path / "a.bin"
    part_path(target).write_bytes(b"stale bytes")
    server.ignore_range = True
    assert download(url, target).read_bytes() == PAYLOAD


def test_a_complete_part_file_is_finished_on_416(server: FileServer, tmp_path: Path) -> None:
    url = server.add("a.bin", PAYLOAD)
    target = tmp_path / "a.bin"
    part_path(target).write_bytes(PAYLOAD)
    assert download(url, target).read_bytes() == PAYLOAD
    assert server.ranges == [f"bytes={len(PAYLOAD)}-"]


def test_http_errors_are_one_line_input_errors(server: FileServer, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="HTTP 404"):
        download(server.url("missing.zip"), tmp_path / "missing.zip")
    with pytest.raises(InputError, match="download failed"):
        download("http://127.0.0.1:9/nothing.zip", tmp_path / "nothing.zip")


def test_a_download_over_its_size_limit_is_refused_and_leaves_nothing(server: FileServer, tmp_path: Path) -> None:
    """Declared too large: refused before any byte is written. Undeclared (no Content-Length) and endless in
    effect: stopped as soon as it passes the limit, its partial file deleted. Within the limit: downloaded."""
    url = server.add("big.bin", PAYLOAD)
    target = tmp_path / "big.bin"
    with pytest.raises(InputError, match=f"declares {len(PAYLOAD)} bytes, more than the 500000 bytes"):
        download(url, target, max_bytes=500_000)
    assert not target.exists() and not part_path(target).exists()
    server.no_length = True
    with pytest.raises(InputError, match="sent more than 500000 bytes"):
        download(url, target, max_bytes=500_000)
    assert not target.exists() and not part_path(target).exists()
    assert download(url, target, max_bytes=len(PAYLOAD)).read_bytes() == PAYLOAD


def test_registered_models_cap_their_downloads_from_their_size() -> None:
    sized = [m for m in MANIFESTS.values() if m.size_mb]
    assert sized and all(m.max_download_bytes == int(m.size_mb * 1e6 * manifests.DOWNLOAD_SLACK) for m in sized)


@pytest.fixture
def served_lesion_ms(server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    monkeypatch.setenv(registry.HOME_ENV, str(tmp_path / "home"))
    archives = {f"model_fold{k}.zip": fold_zip(tmp_path / f"model_fold{k}.zip", k).read_bytes() for k in range(5)}
    manifest = dataclasses.replace(MANIFESTS["lesion_ms"],
                                   archives=tuple(Archive(server.add(name, data)) for name, data in archives.items()))
    monkeypatch.setattr(manifests, "MANIFESTS", MappingProxyType({**MANIFESTS, "lesion_ms": manifest}))
    return archives


def test_online_install_downloads_resumes_and_merges_folds(server: FileServer, served_lesion_ms: dict[str, bytes],
                                                          tmp_path: Path) -> None:
    server.cut_after["/model_fold3.zip"] = 500
    with pytest.raises(InputError, match="resume"):
        installer.install("lesion_ms")
    cache = tmp_path / "home" / "models"
    assert not (cache / "lesion_ms").exists() and not list(cache.glob(".tmp-*"))
    downloads = cache / ".downloads" / "lesion_ms-r20250909"
    assert sorted(p.name for p in downloads.iterdir()) == [*(f"model_fold{k}.zip" for k in range(3)),
                                                           "model_fold3.zip.part"]
    server.ranges.clear()
    stages: set[str] = set()
    folder = installer.install("lesion_ms", progress=lambda stage, done, total: stages.add(stage))
    assert server.ranges == ["bytes=500-", None]  # fold 3 resumed, fold 4 fetched; folds 0-2 not fetched again
    assert {"model_fold3.zip", "model_fold4.zip", "installing", "checksums"} <= stages
    assert folder.name == LESION_MS_TRAINER and not downloads.exists()
    resolved = resolve.resolve_model("lesion_ms")
    assert resolved.folds == (0, 1, 2, 3, 4) and resolved.verified
    record = json.loads((cache / "lesion_ms" / registry.RECORD_NAME).read_text())
    assert [source["sha256"] for source in record["sources"]] == \
        [hashlib.sha256(data).hexdigest() for data in served_lesion_ms.values()]
    assert all(source["kind"] == "url" and source["location"].startswith("http://127.0.0.1")
               for source in record["sources"])


def test_a_pinned_checksum_wins(server: FileServer, served_lesion_ms: dict[str, bytes], tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = manifests.MANIFESTS["lesion_ms"]
    wrong = dataclasses.replace(manifest, archives=(dataclasses.replace(manifest.archives[0], sha256="0" * 64),
                                                    *manifest.archives[1:]))
    monkeypatch.setattr(manifests, "MANIFESTS", MappingProxyType({**manifests.MANIFESTS, "lesion_ms": wrong}))
    with pytest.raises(InputError, match="model_fold0.zip has sha256 .* but the release pins 0000"):
        installer.install("lesion_ms")
    cache = tmp_path / "home" / "models"
    assert not (cache / "lesion_ms").exists() and not (cache / ".downloads" / "lesion_ms-r20250909").exists()

    # installed before the pin was known: verify now reports the archive, and resolve_model refuses it
    monkeypatch.setattr(manifests, "MANIFESTS", MappingProxyType({**manifests.MANIFESTS, "lesion_ms": manifest}))
    installer.install("lesion_ms")
    assert registry.verify("lesion_ms").ok
    monkeypatch.setattr(manifests, "MANIFESTS", MappingProxyType({**manifests.MANIFESTS, "lesion_ms": wrong}))
    assert "release pins" in str(registry.verify("lesion_ms").problems[0])
    with pytest.raises(InputError, match="release pins"):
        resolve.resolve_model("lesion_ms")
    right = hashlib.sha256(served_lesion_ms["model_fold0.zip"]).hexdigest()
    pinned = dataclasses.replace(manifest, archives=(dataclasses.replace(manifest.archives[0], sha256=right),
                                                     *manifest.archives[1:]))
    monkeypatch.setattr(manifests, "MANIFESTS", MappingProxyType({**manifests.MANIFESTS, "lesion_ms": pinned}))
    assert resolve.resolve_model("lesion_ms").verified
