"""``weights download`` of the authors' RSRefSeg 2 checkpoints: fetched from a real HTTP server on 127.0.0.1,
verified, then converted into the imported checkpoint that ``--checkpoint NAME`` loads.

The hub cannot be reached here, so the registry entry is pointed at the local server and at a tiny model config
(``dataclasses.replace`` of the real entry); the file it serves is a tiny checkpoint in the authors' layout.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import sys
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "model"))
from authors_layout import authors_state, tiny_config  # noqa: E402 (the model tests' helper)

from backend.cli import main  # noqa: E402
from backend.errors import EXIT_CODES  # noqa: E402
from backend.loading import load_predictor  # noqa: E402
from backend.model.authors.location import imported_checkpoint  # noqa: E402
from backend.weights.manager import REGISTRY  # noqa: E402
from backend.weights.registry import AuthorsEntry  # noqa: E402

NAME = "rsrefseg2-refsegrs"


class _Server:
    """Serves ``payload`` at /refsegrs.pth, honouring ``Range``; ``cut_after`` drops the connection once."""

    def __init__(self, payload: bytes) -> None:
        self.payload, self.ranges, self.cut_after = payload, [], None
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                header = self.headers.get("Range")
                server.ranges.append(header)
                match = re.fullmatch(r"bytes=(\d+)-", header or "")
                start = int(match.group(1)) if match else 0
                self.send_response(206 if match else 200)
                self.send_header("Content-Length", str(len(server.payload) - start))
                self.end_headers()
                body = server.payload[start:]
                if server.cut_after is not None:
                    body, server.cut_after = body[:server.cut_after], None
                    self.close_connection = True
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/refsegrs.pth"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def authors_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.save({"state_dict": authors_state(tiny_config())}, buffer)
    return buffer.getvalue()


@pytest.fixture
def served(authors_bytes, tmp_path, monkeypatch):
    """(server, weights folder): the refsegrs entry points at the server, its hash and a tiny config."""
    srv = _Server(authors_bytes)
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(tiny_config().to_dict()), encoding="utf-8")
    folder = tmp_path / "weights"
    monkeypatch.setenv("RSREFSEG2_WEIGHTS_DIR", str(folder))
    monkeypatch.setitem(REGISTRY, NAME, replace(REGISTRY[NAME], url=srv.url, arch=str(config),
                                                sha256=hashlib.sha256(authors_bytes).hexdigest()))
    yield srv, folder
    srv.httpd.shutdown()
    srv.httpd.server_close()


def test_registry_names_the_released_files() -> None:
    rrsisd, refsegrs = REGISTRY["rsrefseg2-rrsisd"], REGISTRY[NAME]
    assert isinstance(rrsisd, AuthorsEntry) and rrsisd.kind == refsegrs.kind == "authors"
    assert rrsisd.url == "https://huggingface.co/KyanChen/RSRefSeg2/resolve/main/rrsisd.pth" and rrsisd.sha256 is None
    assert refsegrs.url.endswith("/KyanChen/RSRefSeg2/resolve/main/refsegrs.pth")
    assert refsegrs.sha256 == "6018af204120cf14e7555ff067f6fa4a921eba084c33be308bc65bc540f826ee"
    assert (rrsisd.dataset, refsegrs.dataset) == ("RRSIS-D", "RefSegRS")
    assert "69.06" in rrsisd.reported and "79.66" in rrsisd.reported
    assert "77.36" in refsegrs.reported and "81.21" in refsegrs.reported


def test_download_verifies_converts_and_loads_by_name(served, capsys) -> None:
    server, folder = served
    assert main(["weights", "list"]) == 0
    assert f"not converted (weights download {NAME}" in capsys.readouterr().out
    assert main(["weights", "download", NAME]) == 0
    out, err = capsys.readouterr()
    dest = imported_checkpoint(NAME)
    assert out.strip() == str(dest) and f"{NAME}: verified" in err
    assert (folder / "authors" / "refsegrs.pth").is_file() and not list(folder.rglob("*.part"))
    predictor = load_predictor(checkpoint=NAME)
    assert predictor.meta.dataset == "RefSegRS" and "81.21" in predictor.meta.description

    assert main(["weights", "list", "--json"]) == 0
    row = next(r for r in json.loads(capsys.readouterr().out)["weights"] if r["name"] == NAME)
    assert row["status"] == "verified" and row["checkpoint"] == str(dest) and row["dataset"] == "RefSegRS"
    assert main(["weights", "download", NAME]) == 0  # present and converted: nothing fetched or converted again
    assert len(server.ranges) == 1 and "already converted" in capsys.readouterr().err


def test_cut_download_resumes_then_converts(served, authors_bytes, capsys) -> None:
    server, folder = served
    server.cut_after = len(authors_bytes) // 3
    assert main(["weights", "download", NAME]) == EXIT_CODES["weights"]
    assert "again to resume" in capsys.readouterr().err
    assert (folder / "authors" / "refsegrs.pth.part").stat().st_size == len(authors_bytes) // 3
    assert not imported_checkpoint(NAME).exists()
    assert main(["weights", "download", NAME]) == 0
    assert server.ranges == [None, f"bytes={len(authors_bytes) // 3}-"]
    assert imported_checkpoint(NAME).is_file() and not (folder / "authors" / "refsegrs.pth.part").exists()


def test_wrong_checksum_is_refused_and_nothing_stays(served, monkeypatch, capsys) -> None:
    _, folder = served
    monkeypatch.setitem(REGISTRY, NAME, replace(REGISTRY[NAME], sha256="0" * 64))
    assert main(["weights", "download", NAME]) == EXIT_CODES["weights"]
    assert "checksum mismatch" in capsys.readouterr().err
    assert not list((folder / "authors").iterdir()) and not imported_checkpoint(NAME).exists()


def test_a_hand_downloaded_file_imported_by_hash_is_converted(served, authors_bytes, tmp_path, capsys) -> None:
    (tmp_path / "refsegrs.pth").write_bytes(authors_bytes)
    assert main(["weights", "import", str(tmp_path / "refsegrs.pth")]) == 0  # recognised by its SHA-256
    assert capsys.readouterr().out.strip() == str(imported_checkpoint(NAME))
    assert load_predictor(checkpoint=NAME).meta.dataset == "RefSegRS"
