"""A trained model is a folder: ``model.json`` + safetensors weights (nothing is unpickled).

``model.json`` is the commit point. Weights are written first under a new name
(``weights-<iteration>-<token>.safetensors``), then ``model.json`` naming them and their SHA-256
replaces the old one atomically, then old weights are removed. A crash at any moment leaves
either the old model or the new one, never a JSON pointing at half-written weights.

Reading the JSON needs no torch (the napari process and the CLI check labels with it); loading
the network imports torch and belongs in a worker process.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ...errors import DustrackError
from ...io.atomic import write_text_atomic

FORMAT = "napari-dustrack-heatmap"
VERSION = 1
META = "model.json"
REQUIRED = ("format", "version", "labels", "working_size", "source_size", "normalisation",
            "architecture", "iteration", "weights", "sha256")


def has_model(folder: str | os.PathLike) -> bool:
    """True when ``folder`` holds a ``model.json``."""
    return (Path(folder) / META).is_file()


def read_meta(folder: str | os.PathLike) -> dict[str, Any]:
    """The checked ``model.json`` of a model folder (no torch needed).

    Raises
    ------
    DustrackError
        No model there, unreadable JSON, another format, or missing fields.
    """
    path = Path(folder) / META
    if not Path(folder).is_dir():
        raise DustrackError("model folder not found", folder)
    if not path.is_file():
        raise DustrackError(f"not a model folder (no {META})", folder)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DustrackError(f"unreadable model description ({exc})", path) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DustrackError(f"not a {FORMAT} model description", path)
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise DustrackError(f"model description lacks {', '.join(missing)}", path)
    if int(meta["version"]) > VERSION:
        raise DustrackError(
            f"model format version {meta['version']} is newer than this napari-dustrack "
            f"understands ({VERSION})", path,
        )
    if len(meta["labels"]) != int(meta["architecture"].get("classes", -1)):
        raise DustrackError(
            f"{len(meta['labels'])} labels but the network has "
            f"{meta['architecture'].get('classes')} output channels", path,
        )
    return meta


def check_labels(meta: dict[str, Any], labels: Sequence[str], folder=None) -> None:
    """Raise a :class:`DustrackError` unless ``labels`` are the model's labels (same order)."""
    if list(labels) != list(meta["labels"]):
        raise DustrackError(
            f"the model's labels {list(meta['labels'])} do not match {list(labels)}", folder
        )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_model(folder: str | os.PathLike, state_dict: dict, meta: dict[str, Any]) -> Path:
    """Write ``state_dict`` (tensors) and ``meta`` as a model folder, atomically.

    ``meta`` holds everything but ``format``, ``version``, ``weights`` and ``sha256``, which
    are filled in here.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise DustrackError("exists and is not a folder", folder)
    if folder.is_dir() and any(folder.iterdir()) and not has_model(folder):
        raise DustrackError(
            f"folder is not empty and holds no model ({META}); choose an empty or new folder", folder
        )
    folder.mkdir(parents=True, exist_ok=True)
    old = _weights_files(folder)
    name = f"weights-{int(meta['iteration'])}-{secrets.token_hex(4)}.safetensors"
    tmp = folder / f".{name}.tmp"
    try:
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
        save_file(tensors, str(tmp), metadata={"format": FORMAT})
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, folder / name)
    finally:
        if tmp.exists():
            tmp.unlink()
    full = dict(meta, format=FORMAT, version=VERSION, weights=name, sha256=_sha256(folder / name))
    try:
        write_text_atomic(folder / META, json.dumps(_jsonable(full), indent=1), backup=False)
    except BaseException:
        (folder / name).unlink(missing_ok=True)
        raise
    for path in old:
        if path.name != name:
            path.unlink(missing_ok=True)
    return folder


def _weights_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("weights-*.safetensors"))


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


@dataclass
class LoadedModel:
    """A model read from its folder: the network (eval mode) and its description."""

    folder: Path
    meta: dict[str, Any]
    net: Any  # torch.nn.Module

    @property
    def labels(self) -> list[str]:
        return list(self.meta["labels"])

    @property
    def working_size(self) -> tuple[int, int]:
        return tuple(int(v) for v in self.meta["working_size"])

    @property
    def iteration(self) -> int:
        return int(self.meta["iteration"])


def load_model(folder: str | os.PathLike, labels: Sequence[str] | None = None,
               device: str = "cpu") -> LoadedModel:
    """Load a model folder, checking labels, checksum and every tensor's name and shape.

    Raises
    ------
    DustrackError
        Labels differ from ``labels``, the weights are missing or corrupt, or they do not fit
        the architecture described in ``model.json``.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .model import build_model

    meta = read_meta(folder)
    if labels is not None:
        check_labels(meta, labels, folder)
    wpath = Path(folder) / str(meta["weights"])
    if not wpath.is_file():
        raise DustrackError("weights file is missing", wpath)
    if _sha256(wpath) != meta["sha256"]:
        raise DustrackError("weights file is corrupt (checksum differs from model.json)", wpath)
    try:
        tensors = load_file(str(wpath), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise DustrackError(f"weights file is corrupt ({exc})", wpath) from None
    net = build_model(meta["architecture"], pretrained=False)
    expected = net.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    wrong = [k for k in expected if k in tensors and tuple(tensors[k].shape) != tuple(expected[k].shape)]
    if missing or extra or wrong:
        detail = (f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}" if extra
                  else f"shape of {wrong[0]} is {tuple(tensors[wrong[0]].shape)}, expected "
                  f"{tuple(expected[wrong[0]].shape)}")
        raise DustrackError(f"weights do not match the architecture in model.json ({detail})", wpath)
    net.load_state_dict(tensors, strict=True)
    net.to(device).eval()
    return LoadedModel(folder=Path(folder), meta=meta, net=net)
