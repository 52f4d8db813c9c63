"""A hostile ``weights-record.json`` in the weights folder (second hostile sweep): nested 100000 levels deep or holding
a 5000-digit integer, it is ignored with a warning like any unreadable record (files read "unchecked"), and
``weights list`` answers; it used to end as "RecursionError … this is a bug"."""

from __future__ import annotations

import json
import logging

import pytest

from backend.cli import main
from backend.weights import record


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000,
                                  '{"version": 1, "files": {"a.bin": {"size": ' + "9" * 5000 + "}}}"],
                         ids=["nested", "huge-integer"])
def test_a_hostile_record_is_ignored_with_a_warning(tmp_path, monkeypatch, capsys, caplog, text) -> None:
    folder = tmp_path / "w"
    folder.mkdir()
    (folder / record.RECORD_NAME).write_text(text)
    monkeypatch.setenv("RSREFSEG2_WEIGHTS_DIR", str(folder))
    caplog.set_level(logging.WARNING)
    assert record.read(folder) == {}
    assert "ignoring the unreadable weights record" in caplog.text
    assert main(["weights", "list", "--json"]) == 0
    assert isinstance(json.loads(capsys.readouterr().out), (list, dict))
