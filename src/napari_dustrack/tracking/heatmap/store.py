"""A trained model is a folder: ``model.json`` + safetensors weights (nothing is unpickled).

``model.json`` is the commit point. Its every field is checked on reading. The weights file's
own header records a checksum of the fields that shape predictions (labels, sizes,
normalisation, architecture), and ``sha256`` in ``model.json`` covers the weights file: so a
hand-edited or damaged description (a changed ``working_size`` would shift every prediction) is
refused when the model is loaded.  Weights are written first under a new name
(``weights-<iteration>-<token>.safetensors``), then ``model.json`` naming them and their SHA-256
replaces the old one atomically, then old weights are removed. A crash at any moment leaves
either the old model or the new one, never a JSON pointing at half-written weights.

Reading the JSON needs no torch (the napari process and the CLI check labels with it); loading
the network imports torch and belongs in a worker process.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import DustrackError
from ...io.atomic import remove_stale_temps, write_text_atomic

FORMAT = "napari-dustrack-heatmap"
VERSION = 1
META = "model.json"
REQUIRED = (
    "format",
    "version",
    "labels",
    "working_size",
    "source_size",
    "normalisation",
    "architecture",
    "iteration",
    "weights",
    "sha256",
)
DESCRIPTION_SUM = "description_sha256"  # in the weights file's header
DESCRIBED = ("labels", "working_size", "source_size", "normalisation", "architecture")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


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
    problem = _field_problem(meta)
    if problem:
        raise DustrackError(f"model description: {problem}", path)
    if meta["version"] > VERSION:
        raise DustrackError(
            f"model format version {meta['version']} is newer than this napari-dustrack "
            f"understands ({VERSION})",
            path,
        )
    return meta


def description_sha256(meta: dict[str, Any]) -> str:
    """SHA-256 of the fields of ``meta`` that shape predictions (canonical JSON)."""
    described = {k: _jsonable(meta.get(k)) for k in DESCRIBED}
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode("utf-8")).hexdigest()


def _is_int(value, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _size_ok(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(_is_int(v, 1) for v in value)


def _field_problem(meta: dict[str, Any]) -> str | None:
    """What is wrong with the fields of a ``model.json`` (None when nothing is)."""
    labels, arch, norm = meta["labels"], meta["architecture"], meta["normalisation"]
    weights = meta["weights"]
    checks = [
        (_is_int(meta["version"], 1), "version must be a whole number >= 1"),
        (
            isinstance(labels, list)
            and labels
            and all(isinstance(v, str) and v for v in labels)
            and len(set(labels)) == len(labels),
            "labels must be a list of distinct names",
        ),
        (
            _size_ok(meta["working_size"]) and min(meta["working_size"]) >= 32,
            "working_size must be [height, width], whole numbers >= 32",
        ),
        (_size_ok(meta["source_size"]), "source_size must be [height, width], whole numbers >= 1"),
        (
            isinstance(norm, dict)
            and _is_number(norm.get("mean"))
            and _is_number(norm.get("std"))
            and norm["std"] > 0,
            "normalisation must hold a finite mean and a std > 0",
        ),
        (
            isinstance(arch, dict)
            and isinstance(arch.get("name"), str)
            and isinstance(arch.get("encoder"), str)
            and _is_int(arch.get("in_channels"), 1)
            and isinstance(arch.get("decoder_channels"), list)
            and all(_is_int(c, 1) for c in arch["decoder_channels"]),
            "architecture must name the network and give its channels",
        ),
        (
            not isinstance(arch, dict)
            or not isinstance(labels, list)
            or arch.get("classes") == len(labels),
            f"{len(labels) if isinstance(labels, list) else '?'} labels but the network has "
            f"{arch.get('classes') if isinstance(arch, dict) else '?'} output channels",
        ),
        (_is_int(meta["iteration"]), "iteration must be a whole number >= 0"),
        (
            isinstance(weights, str)
            and weights == Path(weights).name
            and weights not in ("", ".", "..")
            and "\\" not in weights,
            "weights must be a file name inside the model folder",
        ),
        (
            isinstance(meta["sha256"], str) and bool(_SHA_RE.match(meta["sha256"])),
            "sha256 must be 64 hexadecimal digits",
        ),
    ]
    return next((what for ok, what in checks if not ok), None)


def check_model_folder(folder: str | os.PathLike) -> Path:
    """Refuse, before training, a destination that cannot become (or already be) a model folder."""
    from ...io.atomic import check_destination

    folder = Path(folder)
    check_destination(folder, folder=True)
    if folder.is_dir() and any(folder.iterdir()) and not has_model(folder):
        raise DustrackError(
            f"folder is not empty and holds no model ({META}); choose an empty or new folder",
            folder,
        )
    return folder


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

    folder = check_model_folder(folder)
    folder.mkdir(parents=True, exist_ok=True)
    old = _weights_files(folder)
    name = f"weights-{int(meta['iteration'])}-{secrets.token_hex(4)}.safetensors"
    tmp = folder / f".{name}.tmp"
    try:
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
        save_file(
            tensors,
            str(tmp),
            metadata={"format": FORMAT, DESCRIPTION_SUM: description_sha256(meta)},
        )
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, folder / name)
    finally:
        if tmp.exists():
            tmp.unlink()
    full = _jsonable(
        dict(meta, format=FORMAT, version=VERSION, weights=name, sha256=_sha256(folder / name))
    )
    try:
        write_text_atomic(folder / META, json.dumps(full, indent=1), backup=False)
    except BaseException:
        (folder / name).unlink(missing_ok=True)
        raise
    for path in old:
        if path.name != name:
            path.unlink(missing_ok=True)
    remove_stale_temps(folder, ".weights-*.safetensors.tmp")
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


def load_model(
    folder: str | os.PathLike, labels: Sequence[str] | None = None, device: str = "cpu"
) -> LoadedModel:
    """Load a model folder, checking labels, checksum and every tensor's name and shape.

    Raises
    ------
    DustrackError
        Labels differ from ``labels``, the weights are missing or corrupt, or they do not fit
        the architecture described in ``model.json``.
    """
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    from .model import build_model

    meta = read_meta(folder)
    if labels is not None:
        check_labels(meta, labels, folder)
    wpath = Path(folder) / meta["weights"]
    if wpath.resolve().parent != Path(folder).resolve():  # e.g. a link leading elsewhere
        raise DustrackError("weights file lies outside the model folder", wpath)
    if not wpath.is_file():
        raise DustrackError("weights file is missing", wpath)
    if _sha256(wpath) != meta["sha256"]:
        raise DustrackError("weights file is corrupt (checksum differs from model.json)", wpath)
    try:
        tensors = load_file(str(wpath), device="cpu")
        with safe_open(str(wpath), framework="pt") as fh:
            recorded = (fh.metadata() or {}).get(DESCRIPTION_SUM)
    except (SafetensorError, OSError, ValueError) as exc:
        raise DustrackError(f"weights file is corrupt ({exc})", wpath) from None
    net = build_model(meta["architecture"], pretrained=False)
    expected = net.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    wrong = [
        k for k in expected if k in tensors and tuple(tensors[k].shape) != tuple(expected[k].shape)
    ]
    if missing or extra or wrong:
        detail = (
            f"missing {missing[:3]}"
            if missing
            else f"unexpected {extra[:3]}"
            if extra
            else f"shape of {wrong[0]} is {tuple(tensors[wrong[0]].shape)}, expected "
            f"{tuple(expected[wrong[0]].shape)}"
        )
        raise DustrackError(
            f"weights do not match the architecture in model.json ({detail})", wpath
        )
    if recorded is not None and recorded != description_sha256(meta):  # older models: none
        raise DustrackError(
            f"was changed after training: its {', '.join(DESCRIBED)} no longer match what the "
            "weights were trained with; retrain, or restore the file",
            Path(folder) / META,
        )
    net.load_state_dict(tensors, strict=True)
    net.to(device).eval()
    return LoadedModel(folder=Path(folder), meta=meta, net=net)
