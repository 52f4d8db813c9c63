"""Weights integrity: every file's hash is recorded and shown; a file that is not the published one is never used
or listed as it; nothing is replaced without --force; ``weights verify`` re-hashes on request.

Downloads come from a real ``http.server`` on 127.0.0.1 (nothing leaves the machine); the registry gets a test entry
through ``monkeypatch`` whose published hash is that of the served bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from backend.cli import main
from backend.errors import EXIT_CODES, BackendError
from backend.weights import manager as weights
from backend.weights.manager import REGISTRY, WeightsEntry
from backend.weights.record import RECORD_NAME

PUBLISHED = os.urandom(200_000)
OTHER = b"a fine-tuned variant, or a corrupt copy"
NAME, FILE = "test-w", "test_w.pth"


@pytest.fixture
def served(monkeypatch) -> list[str]:
    """Serves PUBLISHED at /w.bin, registers it as NAME; yields the list of requested paths."""
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            requests.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(PUBLISHED)))
            self.end_headers()
            self.wfile.write(PUBLISHED)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/w.bin"
    monkeypatch.setitem(REGISTRY, NAME, WeightsEntry(NAME, "sam", "vit_b", FILE, url, len(PUBLISHED),
                                                     hashlib.sha256(PUBLISHED).hexdigest()))
    yield requests
    httpd.shutdown()
    httpd.server_close()


def _file(tmp_path: Path, data: bytes, name: str = "source.pth") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_import_of_a_different_file_under_a_known_name_is_a_recorded_mismatch(served, tmp_path: Path) -> None:
    folder = tmp_path / "w"
    assert weights.import_file(_file(tmp_path, OTHER), NAME, folder) == folder / FILE
    presence = weights.inventory(folder)[NAME]
    assert presence.status == "mismatch" and presence.files[0].sha256 == hashlib.sha256(OTHER).hexdigest()
    assert weights.installed(folder)[NAME] is None  # never listed as the published weights
    with pytest.raises(BackendError, match="is not the published test-w") as info:
        weights.resolve(NAME, folder)
    assert info.value.code == "weights" and "--force" in info.value.hint
    record = json.loads((folder / RECORD_NAME).read_text())["files"][FILE]
    assert record["status"] == "mismatch" and record["expected"] == REGISTRY[NAME].sha256


def test_cli_import_mismatch_is_loud_and_listed_as_mismatch(served, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("RSREFSEG2_WEIGHTS_DIR", str(tmp_path / "w"))
    assert main(["weights", "import", str(_file(tmp_path, OTHER)), "--name", NAME]) == 0
    err = capsys.readouterr().err
    assert f"WARNING: {FILE} is NOT the published {NAME}" in err and "will not be used" in err
    assert main(["weights", "list"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(NAME + " "))
    assert " mismatch " in line and "verified" not in line
    assert main(["weights", "list", "--json"]) == 0
    row = next(r for r in json.loads(capsys.readouterr().out)["weights"] if r["name"] == NAME)
    assert row["status"] == "mismatch" and row["files"][0]["published_sha256"] == REGISTRY[NAME].sha256


def test_download_with_a_file_present_rechecks_it_and_never_replaces_silently(served, tmp_path: Path) -> None:
    (tmp_path / FILE).write_bytes(OTHER)  # put there by hand
    with pytest.raises(BackendError, match="already present but is not the published") as info:
        weights.download(NAME, tmp_path, progress=False)
    assert "--force" in info.value.hint
    assert (tmp_path / FILE).read_bytes() == OTHER and served == []  # kept, nothing fetched
    assert weights.inventory(tmp_path)[NAME].status == "mismatch"

    assert weights.download(NAME, tmp_path, force=True, progress=False).read_bytes() == PUBLISHED
    assert served == ["/w.bin"] and weights.inventory(tmp_path)[NAME].status == "verified"
    assert weights.download(NAME, tmp_path, progress=False) == tmp_path / FILE  # verified again, not fetched
    assert served == ["/w.bin"]


def test_import_never_replaces_a_different_file_without_force(served, tmp_path: Path, capsys) -> None:
    weights.import_file(_file(tmp_path, PUBLISHED), NAME, tmp_path / "w")
    with pytest.raises(BackendError, match="already exists and differs") as info:
        weights.import_file(_file(tmp_path, OTHER), NAME, tmp_path / "w")
    assert "--force" in info.value.hint and (tmp_path / "w" / FILE).read_bytes() == PUBLISHED
    weights.import_file(_file(tmp_path, PUBLISHED, "again.pth"), NAME, tmp_path / "w")  # same bytes: fine
    weights.import_file(_file(tmp_path, OTHER), NAME, tmp_path / "w", force=True)
    assert (tmp_path / "w" / FILE).read_bytes() == OTHER
    assert weights.inventory(tmp_path / "w")[NAME].status == "mismatch"
    assert not [p for p in (tmp_path / "w").iterdir() if p.name.endswith((".part", ".tmp"))]


def test_cli_overwrite_is_an_alias_of_force(served, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("RSREFSEG2_WEIGHTS_DIR", str(tmp_path / "w"))
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / FILE).write_bytes(OTHER)
    assert main(["weights", "download", NAME]) == EXIT_CODES["weights"]
    assert main(["weights", "download", NAME, "--overwrite"]) == 0
    assert (tmp_path / "w" / FILE).read_bytes() == PUBLISHED


def test_verify_rehashes_on_request(served, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("RSREFSEG2_WEIGHTS_DIR", str(tmp_path))
    (tmp_path / FILE).write_bytes(PUBLISHED)  # copied by hand: not hashed yet
    assert weights.inventory(tmp_path)[NAME].status == "unchecked"
    assert main(["weights", "list"]) == 0
    assert "weights verify" in capsys.readouterr().out
    assert main(["weights", "verify", NAME]) == 0
    assert f"{NAME} " in capsys.readouterr().out
    assert weights.inventory(tmp_path)[NAME].status == "verified"

    (tmp_path / FILE).write_bytes(OTHER)  # changed after it was verified
    assert weights.inventory(tmp_path)[NAME].status == "unchecked"
    assert main(["weights", "verify"]) == EXIT_CODES["weights"]
    captured = capsys.readouterr()
    assert f"error: {NAME}: not the published file" in captured.err
    assert f"weights download {NAME} --force" in captured.err
    assert weights.inventory(tmp_path)[NAME].status == "mismatch"


def test_unpublished_hash_is_unverified_and_recorded(tmp_path: Path) -> None:
    source = _file(tmp_path, OTHER, "my_clip.safetensors")
    folder = tmp_path / "w"
    weights.import_file(source, "clip-vit-b-16", folder)
    presence = weights.inventory(folder)["clip-vit-b-16"]
    assert presence.status == "unverified" and presence.files[0].sha256 == hashlib.sha256(OTHER).hexdigest()
    assert weights.resolve("clip-vit-b-16", folder) == folder / REGISTRY["clip-vit-b-16"].filename


def test_unreadable_record_means_unchecked_and_is_rewritten(served, tmp_path: Path) -> None:
    weights.download(NAME, tmp_path, progress=False)
    (tmp_path / RECORD_NAME).write_text("{ not json")
    assert weights.inventory(tmp_path)[NAME].status == "unchecked"
    assert weights.verify(NAME, tmp_path)[NAME].status == "verified"
    assert json.loads((tmp_path / RECORD_NAME).read_text())["files"][FILE]["status"] == "verified"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([RECORD_NAME, FILE])  # atomic writes leave no temp file


def test_download_of_a_present_file_without_published_hash_rechecks_without_fetching(served, tmp_path: Path,
                                                                                    monkeypatch) -> None:
    monkeypatch.setitem(REGISTRY, NAME, replace(REGISTRY[NAME], sha256=None))
    (tmp_path / FILE).write_bytes(OTHER)
    assert weights.download(NAME, tmp_path, progress=False) == tmp_path / FILE  # no --trust-unverified needed
    presence = weights.inventory(tmp_path)[NAME]
    assert served == [] and presence.status == "unverified"
    assert presence.files[0].sha256 == hashlib.sha256(OTHER).hexdigest()
    with pytest.raises(BackendError, match="no published SHA-256"):  # fetching it again still needs trust
        weights.download(NAME, tmp_path, force=True, progress=False)


def test_a_file_with_no_published_hash_needs_no_verify(tmp_path: Path) -> None:
    (tmp_path / REGISTRY["clip-vit-b-16"].filename).write_bytes(OTHER)  # copied by hand, never hashed
    assert weights.inventory(tmp_path)["clip-vit-b-16"].status == "unverified"  # hashing could not change that


def test_a_folder_where_the_record_cannot_be_written_still_answers(served, tmp_path: Path, monkeypatch,
                                                                   caplog) -> None:
    (tmp_path / FILE).write_bytes(PUBLISHED)

    def read_only(*args: object) -> None:  # as root here, a real read-only folder cannot be made
        raise PermissionError("read-only file system")

    monkeypatch.setattr("backend.weights.record._write", read_only)
    assert weights.download(NAME, tmp_path, progress=False) == tmp_path / FILE
    assert "cannot update the weights record" in caplog.text and "status is verified" in caplog.text


def test_a_weights_folder_that_cannot_be_created_is_a_weights_error(served, tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the weights folder belongs")
    for attempt in (lambda: weights.download(NAME, blocked / "w", progress=False),
                    lambda: weights.import_file(_file(tmp_path, PUBLISHED), NAME, blocked / "w")):
        with pytest.raises(BackendError, match="cannot create the weights folder") as info:
            attempt()
        assert "RSREFSEG2_WEIGHTS_DIR" in info.value.hint
