"""Output safety: the GeoPackage + GeoJSON pair is replaced all or nothing, concurrent runs never clobber each
other, and unwritable targets are refused with one clear error, before anything is written."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import numpy as np
import pyogrio
import pytest
from affine import Affine
from rasterio.crs import CRS
from readonly import immutable, read_only

from backend.errors import BackendError
from backend.files.stale import owned_prefix
from backend.output.preflight import check_output_targets
from backend.output.swap import JOURNAL_PREFIX, swap_in
from backend.output.vectorize import vectorize
from backend.output.writing import SCRATCH_PREFIX, PhraseDetections, output_paths, write_outputs

UTM = CRS.from_epsg(32633)


def layers(value: float = 0.9) -> list[PhraseDetections]:
    probs = np.zeros((20, 20), np.float32)
    probs[2:8, 2:8] = value
    return [PhraseDetections("the tank", tuple(vectorize(probs, Affine(0.5, 0, 500000.0, 0, -0.5, 4e6), UTM)))]


def models_in(paths: dict[str, str]) -> set[str]:
    """The ``model`` attribute of every feature of both files (which run wrote them)."""
    return {str(v) for path in paths.values() for v in pyogrio.raw.read(path)[3][3]}


def scratch_files(folder: Path) -> list[str]:
    """Scratch files and swap journals left in ``folder``."""
    return [p.name for p in folder.iterdir() if p.name.startswith((SCRATCH_PREFIX, JOURNAL_PREFIX))]


@pytest.fixture
def read_only_folder(tmp_path):
    folder = tmp_path / "read-only"
    folder.mkdir()
    with read_only(folder):
        yield folder


def test_overwrite_keeps_the_old_pair_when_the_second_file_cannot_be_replaced(tmp_path):
    paths = output_paths(str(tmp_path), "result")  # the GeoJSON is replaced first, the GeoPackage second
    write_outputs(layers(), UTM, paths, model="old", checkpoint="c")
    before = {p: Path(p).read_bytes() for p in paths.values()}
    with immutable(Path(paths["gpkg"])), pytest.raises(BackendError) as info:  # protected by an administrator
        write_outputs(layers(0.7), UTM, paths, model="new", checkpoint="c", overwrite=True)
    assert paths["gpkg"] in info.value.message and "left unchanged" in info.value.message
    assert {p: Path(p).read_bytes() for p in paths.values()} == before  # the pair still matches
    assert not scratch_files(tmp_path)


def test_a_failed_second_replace_restores_the_first_file(tmp_path):
    # Replacing the pair at the lowest level, with a real failure of the second replace: a folder in the way.
    old_a = tmp_path / "result.geojson"
    old_a.write_text("old pair")
    blocker = tmp_path / "result.gpkg"
    blocker.mkdir()
    (blocker / "keep.txt").write_text("someone's data")
    new_a, new_b = tmp_path / f"{SCRATCH_PREFIX}1-a.geojson", tmp_path / f"{SCRATCH_PREFIX}1-b.gpkg"
    new_a.write_text("new")
    new_b.write_text("new")
    with pytest.raises(BackendError) as info:
        swap_in({str(new_a): str(old_a), str(new_b): str(blocker)}, lambda final: f"{final}.old", overwrite=True)
    assert str(blocker) in info.value.message
    assert old_a.read_text() == "old pair" and (blocker / "keep.txt").read_text() == "someone's data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.geojson", "result.gpkg"]  # no scratch left


def test_overwrite_replaces_both_and_a_new_pair_appears_whole(tmp_path):
    paths = output_paths(str(tmp_path), "result")
    write_outputs(layers(), UTM, paths, model="first", checkpoint="c")
    write_outputs(layers(0.7), UTM, paths, model="second", checkpoint="c", overwrite=True)
    assert models_in(paths) == {"second"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.geojson", "result.gpkg"]


@pytest.mark.parametrize("round_", range(4))
def test_of_two_concurrent_runs_exactly_one_wins(tmp_path, round_):
    paths = output_paths(str(tmp_path), f"race{round_}")
    start = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def run(name: str) -> None:
        start.wait()
        try:
            write_outputs(layers(), UTM, paths, model=name, checkpoint="c")
            outcomes[name] = "wrote"
        except BackendError as err:
            outcomes[name] = err.code

    threads = [threading.Thread(target=run, args=(name,)) for name in ("run-a", "run-b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes.values()) == ["output_exists", "wrote"], outcomes
    winner = next(name for name, outcome in outcomes.items() if outcome == "wrote")
    assert models_in(paths) == {winner}  # both files come from the same run
    assert not scratch_files(tmp_path)


def test_scratch_files_of_a_killed_writer_are_swept(tmp_path):
    dead = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True, check=True).stdout.strip()
    leftover = tmp_path / f"{owned_prefix(SCRATCH_PREFIX)}{dead}-0000-result.gpkg"
    leftover.write_bytes(b"half a file")
    elsewhere = tmp_path / f"{SCRATCH_PREFIX}othermachine-{dead}-0000-result.gpkg"  # being written from elsewhere
    elsewhere.write_bytes(b"half a file")
    write_outputs(layers(), UTM, output_paths(str(tmp_path), "other"), model="m", checkpoint="c")
    assert not leftover.exists() and elsewhere.exists()


def test_a_folder_or_device_in_the_way_is_refused_before_writing(tmp_path):
    (tmp_path / "result.gpkg").mkdir()
    for overwrite in (False, True):
        with pytest.raises(BackendError) as info:
            write_outputs(layers(), UTM, output_paths(str(tmp_path), "result"), model="m", checkpoint="c",
                          overwrite=overwrite)
        assert info.value.code == "bad_request" and "result.gpkg" in info.value.message
        assert "folder" in info.value.message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.gpkg"]
    with pytest.raises(BackendError, match="device or special file"):
        check_output_targets(["/dev/null"], overwrite=True)


def test_a_read_only_folder_is_one_clear_error(read_only_folder):
    with pytest.raises(BackendError) as info:
        write_outputs(layers(), UTM, output_paths(str(read_only_folder), "result"), model="m", checkpoint="c")
    assert info.value.code == "bad_request"
    assert "permission denied" in info.value.message and str(read_only_folder) in info.value.message
    assert "folder you can write to" in info.value.hint
    assert not list(read_only_folder.iterdir())


def test_a_full_disk_is_refused_before_writing(tmp_path):
    with pytest.raises(BackendError) as info:
        check_output_targets([str(tmp_path / "r.gpkg")], overwrite=False, min_free_bytes=2**62)
    assert "disk" in info.value.message and "full" in info.value.message and "free" in info.value.hint


def test_an_invalid_output_name_is_one_clear_error(tmp_path):
    with pytest.raises(BackendError) as info:
        check_output_targets([str(tmp_path / ("x" * 300 + ".gpkg"))], overwrite=False)
    assert info.value.code == "bad_request" and "File name too long" in info.value.message


def test_a_long_output_name_that_fits_is_written(tmp_path):
    stem = "x" * 240  # 246 characters with ".gpkg": a valid name, which a longer scratch name would not be
    paths = write_outputs(layers(), UTM, output_paths(str(tmp_path), stem), model="m", checkpoint="c")
    assert models_in(paths) == {"m"} and not scratch_files(tmp_path)
