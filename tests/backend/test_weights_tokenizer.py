"""The SigLIP 2 tokenizer files in the weights manager: registry entry, ``tokenizer_dir``, folder import, download.

Downloads come from a real ``http.server`` on 127.0.0.1 standing in for the Hugging Face hub (the hub itself is not
reachable here); the registry entry is pointed at it with ``monkeypatch``.
"""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from backend.cli import main
from backend.cli.info import collect, format_text
from backend.errors import BackendError
from backend.weights import manager as weights
from backend.weights.manager import REGISTRY, FolderEntry

NAME = "siglip2-tokenizer"
FILES = {"tokenizer.json": b'{"model": {"type": "BPE"}}', "tokenizer_config.json": b'{"do_lower_case": false}'}


@pytest.fixture
def hub(monkeypatch):
    """Serves FILES under /tok/ (special_tokens_map.json answers 404) and points the registry entry there."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            body = FILES.get(self.path.removeprefix("/tok/"))
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}/tok/"
    entry = REGISTRY[NAME]
    local = replace(entry, files=tuple(replace(f, url=base + Path(f.relpath).name) for f in entry.files))
    monkeypatch.setitem(REGISTRY, NAME, local)
    yield local
    httpd.shutdown()
    httpd.server_close()


def test_registry_entry_points_at_the_siglip2_hub_repo() -> None:
    entry = REGISTRY[NAME]
    assert isinstance(entry, FolderEntry) and entry.kind == "tokenizer"
    assert entry.arch == "ViT-SO400M-16-SigLIP2-512" and entry.location == NAME
    urls = {f.relpath: (f.url, f.required) for f in entry.files}
    assert urls[f"{NAME}/tokenizer.json"] == (
        "https://huggingface.co/google/siglip2-so400m-patch16-512/resolve/main/tokenizer.json", True)
    assert not urls[f"{NAME}/tokenizer_config.json"][1]


def test_missing_tokenizer_names_the_file_and_both_commands(tmp_path: Path) -> None:
    with pytest.raises(BackendError) as info:
        weights.tokenizer_dir(NAME, tmp_path)
    assert info.value.code == "weights"
    assert str(tmp_path / NAME / "tokenizer.json") in info.value.message
    assert f"python -m backend weights download {NAME}" in info.value.hint
    assert f"python -m backend weights import FOLDER --name {NAME}" in info.value.hint
    with pytest.raises(BackendError, match="not a tokenizer"):
        weights.tokenizer_dir("sam-vit-b", tmp_path)


def test_import_a_local_folder(tmp_path: Path) -> None:
    source = tmp_path / "from-a-colleague"
    source.mkdir()
    for name, body in FILES.items():
        (source / name).write_bytes(body)
    (source / "model.safetensors").write_bytes(b"not a tokenizer file")
    folder = tmp_path / "weights"

    assert weights.import_file(source, NAME, folder) == folder / NAME
    assert weights.tokenizer_dir(NAME, folder) == folder / NAME
    assert sorted(p.name for p in (folder / NAME).iterdir()) == sorted(FILES)
    assert (folder / NAME / "tokenizer.json").read_bytes() == FILES["tokenizer.json"]
    presence = weights.inventory(folder)[NAME]
    assert presence.status == "unverified" and presence.path == folder / NAME  # no hash is published
    assert weights.installed(folder)[NAME] == folder / NAME


def test_import_rejects_incomplete_or_unnamed_folders(tmp_path: Path) -> None:
    source = tmp_path / "partial"
    source.mkdir()
    (source / "tokenizer_config.json").write_bytes(FILES["tokenizer_config.json"])
    folder = tmp_path / "weights"
    with pytest.raises(BackendError, match=r"tokenizer\.json is missing") as info:
        weights.import_file(source, NAME, folder)
    assert str(source / "tokenizer.json") in info.value.message
    with pytest.raises(BackendError, match="is a folder") as info:
        weights.import_file(source, None, folder)
    assert NAME in info.value.hint
    assert not (folder / NAME / "tokenizer.json").exists()


def test_import_the_tokenizer_json_file_itself(tmp_path: Path) -> None:
    source = tmp_path / "tokenizer.json"
    source.write_bytes(FILES["tokenizer.json"])
    folder = tmp_path / "weights"
    assert weights.import_file(source, NAME, folder) == folder / NAME
    assert weights.tokenizer_dir(NAME, folder) == folder / NAME


def test_download_fetches_the_files_without_trust_flag(hub, tmp_path: Path) -> None:
    assert weights.download(NAME, tmp_path, progress=False) == tmp_path / NAME
    assert weights.tokenizer_dir(NAME, tmp_path) == tmp_path / NAME
    assert sorted(p.name for p in (tmp_path / NAME).iterdir()) == sorted(FILES)  # the 404 optional file skipped
    checks = {c.relpath: c.status for c in weights.inventory(tmp_path)[NAME].files}
    assert checks == {f"{NAME}/tokenizer.json": "unverified", f"{NAME}/tokenizer_config.json": "unverified",
                      f"{NAME}/special_tokens_map.json": "missing"}


def test_download_of_a_missing_required_file_fails(hub, monkeypatch, tmp_path: Path) -> None:
    broken = replace(hub, files=tuple(replace(f, url=f.url + ".gone") if f.required else f for f in hub.files))
    monkeypatch.setitem(REGISTRY, NAME, broken)
    with pytest.raises(BackendError, match="HTTP 404"):
        weights.download(NAME, tmp_path, progress=False)
    with pytest.raises(BackendError, match=r"tokenizer\.json"):
        weights.tokenizer_dir(NAME, tmp_path)


def test_list_and_info_show_whether_the_tokenizer_is_present(hub, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("RSREFSEG2_WEIGHTS_DIR", str(tmp_path))
    assert main(["weights", "list", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)["weights"]}
    assert rows[NAME]["path"] is None and rows[NAME]["status"] == "missing" and rows[NAME]["kind"] == "tokenizer"
    assert collect()["weights"][NAME]["path"] is None
    assert f"  {NAME}: optional, not installed (`python -m backend weights download {NAME}`)" in format_text(collect())

    assert main(["weights", "download", NAME]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / NAME)
    assert main(["weights", "list"]) == 0
    assert f"{NAME} " in (line := next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(NAME)))
    assert "unverified" in line and str(tmp_path / NAME) in line
    assert collect()["weights"][NAME] == {"kind": "tokenizer", "path": str(tmp_path / NAME), "status": "unverified"}
    assert f"  {NAME}: {tmp_path / NAME} (unverified)" in format_text(collect())


def test_import_into_a_blocked_folder_is_a_weights_error(tmp_path: Path) -> None:
    source = tmp_path / "tokenizer.json"
    source.write_bytes(FILES["tokenizer.json"])
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / NAME).write_text("a file where the tokenizer folder belongs")
    with pytest.raises(BackendError, match="cannot copy") as info:
        weights.import_file(source, NAME, folder)
    assert info.value.code == "weights" and "writable" in info.value.hint
