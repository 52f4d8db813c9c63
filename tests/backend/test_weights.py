"""The weights manager against a real local HTTP server on 127.0.0.1 (nothing leaves the machine).

The server is the standard library's ``http.server`` with a handler written here that honours ``Range`` and can
be told to cut the connection after a number of bytes, which is how a dropped download is produced.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from backend.errors import EXIT_CODES, BackendError
from backend.weights import manager as weights
from backend.weights.manager import REGISTRY, WeightsEntry

PAYLOAD = os.urandom(3 * (1 << 20) + 12345)  # a little over 3 MiB: several read chunks
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


class _Server:
    """Serves PAYLOAD at /w.bin; records each request's Range header; optionally drops or ignores Range."""

    def __init__(self) -> None:
        self.ranges: list[str | None] = []
        self.cut_after: int | None = None  # close the connection after this many body bytes (once)
        self.honour_range = True
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path != "/w.bin":
                    self.send_error(404)
                    return
                header = self.headers.get("Range")
                server.ranges.append(header)
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", header or "")
                if match and server.honour_range:
                    start = int(match.group(1))
                    if start >= len(PAYLOAD):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(PAYLOAD) - start))
                self.end_headers()
                body = PAYLOAD[start:]
                if server.cut_after is not None:
                    body, server.cut_after = body[:server.cut_after], None
                    self.close_connection = True
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/w.bin"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()


@pytest.fixture
def server():
    srv = _Server()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


@pytest.fixture
def entry(server) -> WeightsEntry:
    return WeightsEntry("test-w", "sam", "vit_b", "test_w.pth", server.url, len(PAYLOAD), DIGEST)


def test_download_verifies_and_renames_atomically(server, entry, tmp_path: Path) -> None:
    path = weights.download(entry, tmp_path, progress=False)
    assert path == tmp_path / "test_w.pth" and path.read_bytes() == PAYLOAD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test_w.pth", "weights-record.json"]
    assert server.ranges == [None]
    assert weights.download(entry, tmp_path, progress=False) == path  # present: re-hashed, no second request
    assert len(server.ranges) == 1


def test_interrupted_download_resumes_with_range(server, entry, tmp_path: Path) -> None:
    server.cut_after = 1_000_000
    with pytest.raises(BackendError, match="interrupted after 1000000 bytes") as info:
        weights.download(entry, tmp_path, progress=False)
    assert info.value.code == "weights" and "again to resume" in info.value.hint
    part = tmp_path / "test_w.pth.part"
    assert part.stat().st_size == 1_000_000 and not (tmp_path / "test_w.pth").exists()

    path = weights.download(entry, tmp_path, progress=False)
    assert server.ranges == [None, "bytes=1000000-"]
    assert path.read_bytes() == PAYLOAD and not part.exists()


def test_server_ignoring_range_restarts_from_zero(server, entry, tmp_path: Path) -> None:
    (tmp_path / "test_w.pth.part").write_bytes(PAYLOAD[:500])
    server.honour_range = False
    path = weights.download(entry, tmp_path, progress=False)
    assert server.ranges == ["bytes=500-"] and path.read_bytes() == PAYLOAD


def test_complete_part_file_is_finished_without_refetching_the_body(server, entry, tmp_path: Path) -> None:
    (tmp_path / "test_w.pth.part").write_bytes(PAYLOAD)
    nosize = replace(entry, size=None)  # size unknown: the server answers 416 to the Range request
    assert weights.download(nosize, tmp_path, progress=False).read_bytes() == PAYLOAD
    assert server.ranges == [f"bytes={len(PAYLOAD)}-"]


def test_wrong_checksum_is_rejected_and_leaves_no_file(server, entry, tmp_path: Path) -> None:
    bad = replace(entry, sha256="0" * 64)
    with pytest.raises(BackendError, match="checksum mismatch") as info:
        weights.download(bad, tmp_path, progress=False)
    assert info.value.code == "weights"
    assert list(tmp_path.iterdir()) == []


def test_unverifiable_download_needs_explicit_trust(server, entry, tmp_path: Path) -> None:
    unknown = replace(entry, sha256=None)
    with pytest.raises(BackendError, match="no published SHA-256"):
        weights.download(unknown, tmp_path, progress=False)
    assert server.ranges == []
    assert weights.download(unknown, tmp_path, sha256=DIGEST, progress=False).read_bytes() == PAYLOAD
    (tmp_path / "test_w.pth").unlink()
    assert weights.download(unknown, tmp_path, trust_unverified=True, progress=False).read_bytes() == PAYLOAD


def test_http_error_is_a_weights_error(server, entry, tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="HTTP 404"):
        weights.download(replace(entry, url=server.url.replace("w.bin", "missing")), tmp_path, progress=False)


def test_import_verifies_known_names_and_recognises_by_hash(tmp_path: Path, monkeypatch) -> None:
    source = tmp_path / "downloaded_elsewhere.bin"
    source.write_bytes(PAYLOAD)
    folder = tmp_path / "weights"
    monkeypatch.setitem(REGISTRY, "test-w", WeightsEntry("test-w", "sam", "vit_b", "test_w.pth", "", None, DIGEST))

    assert weights.import_file(source, None, folder) == folder / "test_w.pth"  # recognised by its hash
    (folder / "test_w.pth").unlink()
    assert weights.import_file(source, "test-w", folder).read_bytes() == PAYLOAD
    assert weights.installed(folder)["test-w"] == folder / "test_w.pth"
    assert weights.resolve("test-w", folder) == folder / "test_w.pth"
    assert weights.inventory(folder)["test-w"].status == "verified"
    assert not list(folder.glob("*.part"))

    other = tmp_path / "my_clip.safetensors"
    other.write_bytes(b"not a known file")
    assert weights.import_file(other, None, folder) == folder / "my_clip.safetensors"


def test_resolve_paths_names_and_errors(tmp_path: Path) -> None:
    file = tmp_path / "sam.pth"
    file.write_bytes(b"x")
    assert weights.resolve(str(file), tmp_path) == file
    with pytest.raises(BackendError, match="not in the weights folder") as info:
        weights.resolve("sam-vit-b", tmp_path)
    assert "weights download sam-vit-b" in info.value.hint
    with pytest.raises(BackendError, match="not found"):
        weights.resolve(str(tmp_path / "nope.pth"), tmp_path)
    with pytest.raises(BackendError, match="unknown weights name"):
        weights.import_file(file, "sam-vit-z", tmp_path)


@pytest.mark.parametrize(("platform", "env", "expected"), [
    ("linux", {"XDG_CACHE_HOME": "/xdg"}, "/xdg/rsrefseg2"),
    ("linux", {}, "~/.cache/rsrefseg2"),
    ("darwin", {}, "~/Library/Caches/rsrefseg2"),
    ("win32", {"LOCALAPPDATA": "/appdata"}, "/appdata/rsrefseg2"),
    ("linux", {"RSREFSEG2_WEIGHTS_DIR": "/override", "XDG_CACHE_HOME": "/xdg"}, "/override"),
])
def test_platform_default_folders(monkeypatch, platform: str, env: dict[str, str], expected: str) -> None:
    for var in ("RSREFSEG2_WEIGHTS_DIR", "XDG_CACHE_HOME", "LOCALAPPDATA"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setattr(sys, "platform", platform)
    assert weights.weights_dir() == Path(expected).expanduser()


def test_registry_is_consistent() -> None:
    kinds = {e.kind for e in REGISTRY.values()}
    assert kinds == {"clip", "sam", "tokenizer", "authors"}
    assert {e.arch for e in REGISTRY.values() if e.kind == "sam"} == {"vit_b", "vit_l", "vit_h"}
    files = [f for e in REGISTRY.values() for f in e.files]
    for f in files:
        assert f.url.startswith("https://")
        assert f.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", f.sha256)
    assert len({f.relpath for f in files}) == len(files)
    assert len({e.location for e in REGISTRY.values()}) == len(REGISTRY)


def test_cli_list_import_download(server, entry, tmp_path: Path, monkeypatch, capsys) -> None:
    from backend.cli import main

    folder = tmp_path / "w"
    monkeypatch.setenv("RSREFSEG2_WEIGHTS_DIR", str(folder))
    monkeypatch.setitem(REGISTRY, "test-w", entry)
    assert main(["weights", "download", "test-w"]) == 0
    assert capsys.readouterr().out.strip() == str(folder / "test_w.pth")

    source = tmp_path / "sam.pth"
    source.write_bytes(b"pretend weights")
    assert main(["weights", "import", str(source)]) == 0
    assert (folder / "sam.pth").read_bytes() == b"pretend weights"
    capsys.readouterr()

    assert main(["weights", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["folder"] == str(folder)
    rows = {row["name"]: row for row in listed["weights"]}
    assert rows["test-w"]["path"] == str(folder / "test_w.pth") and rows["sam-vit-b"]["path"] is None
    assert main(["weights", "list"]) == 0
    table = capsys.readouterr().out
    assert re.search(r"^test-w .* verified +" + re.escape(str(folder / "test_w.pth")), table, re.M)

    (folder / "test_w.pth").unlink()
    server.cut_after = 10
    assert main(["weights", "download", "test-w"]) == EXIT_CODES["weights"]
    assert "again to resume" in capsys.readouterr().err
