"""The model config stored inside the checkpoint file itself, so that an edited sidecar cannot go unnoticed.

The sidecar ``.json`` is plain text beside the weights: a ``clip.name`` changed by hand (another CLIP model of the
same shapes, a wrong tokenizer) used to load silently. Every checkpoint we write also carries its config in the
safetensors header's ``__metadata__`` (``STORED_CONFIG_KEY``, canonical JSON); ``check_stored_config`` compares it
with the sidecar's, after both are normalised through ``config_from_dict`` (defaults filled in), and names every
setting that differs with both values. Files written before the config was stored carry none: nothing to compare.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from backend.errors import BackendError
from backend.files.bounded_json import JsonLimitError, loads_bounded

from ..config import ModelConfig, config_from_dict

log = logging.getLogger(__name__)

STORED_CONFIG_KEY = "rsrefseg2.config"
_SHOWN = 6


def stored_metadata(config: ModelConfig) -> dict[str, str]:
    """The ``__metadata__`` strings a checkpoint of ``config`` carries (safetensors' "format" included)."""
    return {"format": "pt", STORED_CONFIG_KEY: json.dumps(config.to_dict(), sort_keys=True, separators=(",", ":"))}


def _shown(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _as_json(config: ModelConfig) -> Any:
    """The config as its JSON reads back (tuples as lists), defaults filled in."""
    return json.loads(json.dumps(config.to_dict()))


def _differences(sidecar: Any, stored: Any, where: str) -> list[tuple[str, Any, Any]]:
    """(dotted key, sidecar value, stored value) for every leaf that differs."""
    if isinstance(sidecar, dict) and isinstance(stored, dict):
        return [d for key in sorted(set(sidecar) | set(stored))
                for d in _differences(sidecar.get(key), stored.get(key), f"{where}.{key}")]
    return [] if sidecar == stored else [(where, sidecar, stored)]


def check_stored_config(metadata: dict[str, str], sidecar_config: ModelConfig, sidecar: Path,
                        checkpoint: Path) -> None:
    """Refuse a sidecar whose config differs from the one stored in the checkpoint file.

    Args:
        metadata: the checkpoint header's ``__metadata__``.
        sidecar_config: the config the sidecar describes (already checked and parsed).
        sidecar, checkpoint: the two files, named in the message.

    Raises:
        BackendError("checkpoint"): naming each differing setting with the sidecar's and the file's value, or a
            stored config that is not a readable config.
    """
    text = metadata.get(STORED_CONFIG_KEY)
    if text is None:
        log.info("%s stores no config (written before configs were stored): the sidecar's is used unchecked",
                 checkpoint.name)
        return
    try:
        stored = _as_json(config_from_dict(loads_bounded(text)))
    except (JsonLimitError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise BackendError("checkpoint", f"{checkpoint} stores a damaged model config ({type(exc).__name__})",
                           "copy or download the checkpoint again") from None
    differences = _differences(_as_json(sidecar_config), stored, "config")
    if differences:
        shown = "; ".join(f"{key} is {_shown(mine)} in {sidecar.name} but {_shown(theirs)} in {checkpoint.name}"
                          for key, mine, theirs in differences[:_SHOWN])
        more = f"; and {len(differences) - _SHOWN} more" if len(differences) > _SHOWN else ""
        raise BackendError("checkpoint", f"{sidecar} does not describe the model stored in {checkpoint.name} "
                                         f"(edited?): {shown}{more}",
                           "restore the .json written beside the checkpoint by training, or use the checkpoint "
                           "that .json was written for")
