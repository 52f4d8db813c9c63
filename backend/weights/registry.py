"""The known base weights and tokenizer files: where they come from, their published hashes, where they live.

A ``WeightsEntry`` is one file (a CLIP or SAM checkpoint; an ``AuthorsEntry`` is the authors' released RSRefSeg 2
checkpoint, converted after download); a ``FolderEntry`` is a folder of small files that belong together (a
tokenizer). Both describe their downloadable files as ``WeightsFile`` rows with paths relative
to the weights folder, so download, import and verification treat them alike.
"""

from __future__ import annotations

from dataclasses import dataclass

_HUB = "https://huggingface.co"


@dataclass(frozen=True)
class WeightsFile:
    """One downloadable file of an entry.

    Attributes:
        relpath: its path inside the weights folder (``"sam_vit_b_01ec64.pth"``,
            ``"siglip2-tokenizer/tokenizer.json"``).
        url: where to download it.
        size: the size in bytes, None if not published.
        sha256: the published SHA-256 (hex), None if none is published.
        required: the entry is unusable without it (optional files are fetched and imported when available).
    """

    relpath: str
    url: str
    size: int | None
    sha256: str | None
    required: bool = True


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

    @property
    def location(self) -> str:
        """What ``installed()`` points at, relative to the weights folder: the file."""
        return self.filename

    @property
    def files(self) -> tuple[WeightsFile, ...]:
        return (WeightsFile(self.filename, self.url, self.size, self.sha256),)


@dataclass(frozen=True)
class AuthorsEntry(WeightsEntry):
    """A trained RSRefSeg 2 checkpoint released by the authors (their ``.pth``, kind "authors").

    ``weights download`` fetches it like any weights file, then converts it into the imported checkpoint of the
    same name (``backend.model.authors.location.imported_checkpoint``), which ``--checkpoint NAME`` loads.
    ``arch`` is the model config the weights are for (a bundled name or a JSON path).

    Attributes:
        dataset: what it was trained on ("RRSIS-D").
        reported: the accuracy reported for it, with who measured it.
    """

    dataset: str = ""
    reported: str = ""


@dataclass(frozen=True)
class FolderEntry:
    """A known folder of files used together (a tokenizer: ``tokenizer.json`` and its configs).

    Attributes:
        name: the short name users type.
        kind: "tokenizer".
        arch: the model it belongs to (the open_clip model name).
        folder: the folder's name in the weights folder.
        files: its files, ``relpath`` starting with ``folder/``; no hashes are published for hub tokenizers.
    """

    name: str
    kind: str
    arch: str
    folder: str
    files: tuple[WeightsFile, ...]

    @property
    def location(self) -> str:
        """What ``installed()`` points at, relative to the weights folder: the folder."""
        return self.folder


Entry = WeightsEntry | FolderEntry


def _authors(name: str, file: str, sha256: str | None, dataset: str, reported: str) -> AuthorsEntry:
    """An authors' checkpoint from the hub repo KyanChen/RSRefSeg2, stored as ``authors/<file>``."""
    return AuthorsEntry(name, "authors", "rsrefseg2-paper", f"authors/{file}",
                        f"{_HUB}/KyanChen/RSRefSeg2/resolve/main/{file}", None, sha256, dataset, reported)


def _hub_folder(name: str, repo: str, arch: str, required: tuple[str, ...], optional: tuple[str, ...]) -> FolderEntry:
    """A folder entry of files from a Hugging Face hub repository's main branch."""
    files = tuple(WeightsFile(f"{name}/{file}", f"{_HUB}/{repo}/resolve/main/{file}", None, None, file in required)
                  for file in required + optional)
    return FolderEntry(name, "tokenizer", arch, name, files)


# SAM: the official checkpoints of facebookresearch/segment-anything with their widely published SHA-256.
# CLIP: open_clip's safetensors files on the Hugging Face hub; their hashes are not published by the authors,
# so they are None here and a download must be given a hash or an explicit --trust-unverified.
# Tokenizer: SigLIP 2's Gemma tokenizer (read with the `tokenizers` library from tokenizer.json).
# Authors: the RSRefSeg 2 checkpoints of KyanChen/RSRefSeg2 (SigLIP 2 so400m-512 + SAM 2.1 Hiera-L). A third party
# published refsegrs.pth's SHA-256 and re-evaluated both with the authors' code on the test splits; no hash is
# published for rrsisd.pth (its download needs --sha256 or --trust-unverified, like the CLIP files).
REGISTRY: dict[str, Entry] = {e.name: e for e in (
    WeightsEntry("clip-vit-b-16", "clip", "ViT-B-16", "clip_vit_b_16_openai.safetensors",
                 f"{_HUB}/timm/vit_base_patch16_clip_224.openai/resolve/main/open_clip_model.safetensors",
                 None, None),
    WeightsEntry("siglip2-so400m-16-512", "clip", "ViT-SO400M-16-SigLIP2-512", "siglip2_so400m_16_512.safetensors",
                 f"{_HUB}/timm/ViT-SO400M-16-SigLIP2-512/resolve/main/open_clip_model.safetensors", None, None),
    _hub_folder("siglip2-tokenizer", "google/siglip2-so400m-patch16-512", "ViT-SO400M-16-SigLIP2-512",
                required=("tokenizer.json",), optional=("tokenizer_config.json", "special_tokens_map.json")),
    WeightsEntry("sam-vit-b", "sam", "vit_b", "sam_vit_b_01ec64.pth",
                 "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth", 375_042_383,
                 "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912"),
    WeightsEntry("sam-vit-l", "sam", "vit_l", "sam_vit_l_0b3195.pth",
                 "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth", 1_249_524_607,
                 "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622"),
    WeightsEntry("sam-vit-h", "sam", "vit_h", "sam_vit_h_4b8939.pth",
                 "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth", 2_564_550_879,
                 "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e"),
    _authors("rsrefseg2-rrsisd", "rrsisd.pth", None, "RRSIS-D",
             "RRSIS-D test: gIoU 69.06 / cIoU 79.66 (third-party re-evaluation)"),
    _authors("rsrefseg2-refsegrs", "refsegrs.pth", "6018af204120cf14e7555ff067f6fa4a921eba084c33be308bc65bc540f826ee",
             "RefSegRS", "RefSegRS test: gIoU 77.36 / cIoU 81.21 (third-party re-evaluation)"),
)}


