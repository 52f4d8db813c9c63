"""The base-weights manager: one cache folder, a registry of known CLIP and SAM weights, import and download.

The folder is ``$RSREFSEG2_WEIGHTS_DIR`` if set, else the platform's cache folder (``%LOCALAPPDATA%\\rsrefseg2``
on Windows, ``~/Library/Caches/rsrefseg2`` on macOS, ``$XDG_CACHE_HOME/rsrefseg2`` or ``~/.cache/rsrefseg2``
elsewhere). A known weight is present when its file is in the folder. Downloads are resumable (HTTP Range on a
``.part`` file), verified against the published SHA-256 and renamed into place atomically, so the folder only
ever holds complete, verified files. Nothing here loads a weight file; ``backend.model.checkpoint`` does that.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from backend.errors import BackendError

log = logging.getLogger(__name__)

ENV_VAR = "RSREFSEG2_WEIGHTS_DIR"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class WeightsEntry:
    """A known base-weight file.

    Attributes:
        name: the short name users type (``python -m backend weights download NAME``).
        kind: "clip" or "sam".
        arch: what it fits: the open_clip model name, or the SAM size ("vit_b", "vit_l", "vit_h").
        filename: the file's name in the weights folder.
        url: where to download it.
        size: the file size in bytes, None if not published.
        sha256: the published SHA-256 (hex), None if none is published (then a download needs an explicit
            hash or an explicit "trust unverified").
    """

    name: str
    kind: str
    arch: str
    filename: str
    url: str
    size: int | None
    sha256: str | None


# SAM: the official checkpoints of facebookresearch/segment-anything with their widely published SHA-256.
# CLIP: open_clip's safetensors files on the Hugging Face hub; their hashes are not published by the authors,
# so they are None here and a download must be given a hash or an explicit --trust-unverified.
REGISTRY: dict[str, WeightsEntry] = {e.name: e for e in (
    WeightsEntry("clip-vit-b-16", "clip", "ViT-B-16", "clip_vit_b_16_openai.safetensors",
                 "https://huggingface.co/timm/vit_base_patch16_clip_224.openai/resolve/main/"
                 "open_clip_model.safetensors", None, None),
    WeightsEntry("siglip2-so400m-16-512", "clip", "ViT-SO400M-16-SigLIP2-512", "siglip2_so400m_16_512.safetensors",
                 "https://huggingface.co/timm/ViT-SO400M-16-SigLIP2-512/resolve/main/open_clip_model.safetensors",
                 None, None),
    WeightsEntry("sam-vit-b", "sam", "vit_b", "sam_vit_b_01ec64.pth",
                 "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth", 375_042_383,
                 "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912"),
    WeightsEntry("sam-vit-l", "sam", "vit_l", "sam_vit_l_0b3195.pth",
                 "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth", 1_249_524_607,
                 "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622"),
    WeightsEntry("sam-vit-h", "sam", "vit_h", "sam_vit_h_4b8939.pth",
                 "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth", 2_564_550_879,
                 "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e"),
)}


def weights_dir() -> Path:
    """The weights folder (not created): ``$RSREFSEG2_WEIGHTS_DIR`` or the platform's cache folder."""
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "rsrefseg2"


def _entry(name: str) -> WeightsEntry:
    if name not in REGISTRY:
        raise BackendError("weights", f"unknown weights name {name!r}",
                           f"known names: {', '.join(REGISTRY)} (see `python -m backend weights list`)")
    return REGISTRY[name]


def sha256_file(path: Path) -> str:
    """The hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def installed(directory: Path | None = None) -> dict[str, Path | None]:
    """Registry name → the file's path if present in the weights folder, else None."""
    folder = directory or weights_dir()
    return {name: (folder / e.filename if (folder / e.filename).is_file() else None) for name, e in REGISTRY.items()}


def resolve(name_or_path: str, directory: Path | None = None) -> Path:
    """Turn a user's weights option into a file path.

    Args:
        name_or_path: an existing file path, or a registry name (looked up in the weights folder).
        directory: the weights folder; default ``weights_dir()``.

    Returns:
        The path of an existing file.

    Raises:
        BackendError("weights"): neither an existing file nor a present registry entry.
    """
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    if name_or_path in REGISTRY:
        entry = REGISTRY[name_or_path]
        candidate = (directory or weights_dir()) / entry.filename
        if candidate.is_file():
            return candidate
        raise BackendError("weights", f"weights {name_or_path!r} are not in the weights folder {candidate.parent}",
                           f"run `python -m backend weights download {name_or_path}` or "
                           f"`python -m backend weights import FILE --name {name_or_path}`")
    raise BackendError("weights", f"weights file not found: {name_or_path}",
                       f"give an existing file or one of {', '.join(REGISTRY)}")


def _check_hash(path: Path, expected: str | None, what: str) -> str:
    """Hash ``path`` and compare with ``expected`` (when given); delete the file and raise on a mismatch."""
    actual = sha256_file(path)
    if expected is not None and actual != expected.lower():
        path.unlink()
        raise BackendError("weights", f"checksum mismatch for {what}: expected SHA-256 {expected}, got {actual}",
                           "the file is corrupt or not the expected one; it was removed — download it again")
    return actual


def import_file(source: Path, name: str | None = None, directory: Path | None = None) -> Path:
    """Copy a local weights file into the weights folder (offline installs), verifying it when the hash is known.

    Args:
        source: the file to import.
        name: the registry name it is; None = recognise it by its SHA-256, or keep its own file name.
        directory: the weights folder; default ``weights_dir()`` (created if needed).

    Returns:
        The path of the imported file in the weights folder.
    """
    source = Path(source).expanduser()
    if not source.is_file():
        raise BackendError("weights", f"cannot import {source}: no such file", "check the path")
    folder = directory or weights_dir()
    folder.mkdir(parents=True, exist_ok=True)
    if name is not None:
        entry: WeightsEntry | None = _entry(name)
    else:
        digest = sha256_file(source)
        entry = next((e for e in REGISTRY.values() if e.sha256 == digest), None)
    target = folder / (entry.filename if entry else source.name)
    part = target.with_name(target.name + ".part")
    shutil.copyfile(source, part)
    _check_hash(part, entry.sha256 if entry else None, f"{source} (as {entry.name if entry else target.name})")
    os.replace(part, target)
    log.info("imported %s → %s", source, target)
    return target


def download(entry: WeightsEntry | str, directory: Path | None = None, *, sha256: str | None = None,
             trust_unverified: bool = False, progress: bool = True, timeout: float = 60.0) -> Path:
    """Download a known weight into the weights folder, resuming a previous partial download.

    Args:
        entry: a registry entry or its name.
        directory: the weights folder; default ``weights_dir()`` (created if needed).
        sha256: the expected hash, overriding (or supplying) the registry's.
        trust_unverified: allow a download with no expected hash at all (the computed hash is logged).
        progress: show a tqdm bar on stderr.
        timeout: socket timeout in seconds.

    Returns:
        The path of the complete, verified file. An interrupted download leaves ``<file>.part`` behind; calling
        again resumes it with an HTTP Range request. A checksum mismatch deletes the partial file.
    """
    if isinstance(entry, str):
        entry = _entry(entry)
    expected = sha256 or entry.sha256
    if expected is None and not trust_unverified:
        raise BackendError("weights", f"no published SHA-256 for {entry.name}, so the download cannot be verified",
                           "pass --sha256 HEX if you know the hash, or --trust-unverified to accept the file as is")
    folder = directory or weights_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / entry.filename
    if target.is_file():
        log.info("%s is already present: %s", entry.name, target)
        return target
    part = target.with_name(target.name + ".part")
    _fetch(entry.url, part, entry.size, progress, timeout)
    actual = _check_hash(part, expected, entry.name)
    if expected is None:
        log.warning("%s was not verified (no known hash); its SHA-256 is %s", entry.name, actual)
    os.replace(part, target)
    log.info("downloaded %s → %s", entry.name, target)
    return target


def _fetch(url: str, part: Path, size: int | None, progress: bool, timeout: float) -> None:
    """Append the rest of ``url`` to ``part`` (HTTP Range from its current size); restart if Range is ignored."""
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset == size:
        return
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if offset and response.status != 206:
                log.info("server ignored the Range request; restarting %s from the beginning", part.name)
                offset = 0
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length is not None else size
            with open(part, "ab" if offset else "wb") as sink, tqdm(
                    total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                    desc=part.name.removesuffix(".part"), disable=not progress, file=sys.stderr) as bar:
                for block in iter(lambda: response.read(_CHUNK), b""):
                    sink.write(block)
                    bar.update(len(block))
            if total is not None and part.stat().st_size < total:
                # http.client returns b"" rather than raising when the server closes early.
                raise http.client.IncompleteRead(b"", total - part.stat().st_size)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the .part already holds the whole file
            return
        raise BackendError("weights", f"download failed: HTTP {exc.code} {exc.reason} for {url}",
                           "check the URL and your connection, then run the same command again") from exc
    except (OSError, http.client.HTTPException) as exc:
        got = part.stat().st_size if part.exists() else 0
        raise BackendError("weights", f"download interrupted after {got} bytes: {exc}",
                           "run the same command again to resume where it stopped") from exc
