"""What a model says about itself: its :class:`Manifest` (name, version, format, licence,
labels with their codes and colours, the input it expects, the resources it needs), read
from ``kahu-model.json`` or worked out from the format's own files (an nnU-Net v2 results
folder's ``dataset.json`` and ``plans.json``, a MONAI bundle's ``configs/metadata.json``).

Formats and what each must hold:

=================  ========================================================================
``nnunetv2``       an nnU-Net v2 results folder: ``dataset.json``, ``plans.json`` and
                   ``fold_*/checkpoint_final.pth`` (one fold, or several for an ensemble)
``monai-bundle``   a MONAI bundle: ``configs/metadata.json``, ``configs/inference.json``
                   (or ``.yaml``) and ``models/model.pt`` (or ``model.ts``)
``torchscript``    one TorchScript file, named by ``entry``
``onnx``           one ONNX file, named by ``entry``
``totalsegmentator``  TotalSegmentator's weights folder (``Dataset*_TotalSegmentator*``
                   nnU-Net results)
=================  ========================================================================
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from kahu.errors import InvalidInput

MANIFEST_NAME = "kahu-model.json"
Format = Literal["nnunetv2", "monai-bundle", "torchscript", "onnx", "totalsegmentator"]
FORMATS: tuple[str, ...] = Format.__args__  # type: ignore[attr-defined]

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,31}$")
COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")

#: what a label is when its model does not say: an anatomical structure, a tissue
CATEGORY = ("SCT", "91723000", "Anatomical Structure")
TISSUE = ("SCT", "85756007", "Tissue")
#: colours of labels that bring none (distinct on a grey image)
PALETTE = (
    "#e6194b",
    "#3cb44b",
    "#ffe119",
    "#4363d8",
    "#f58231",
    "#911eb4",
    "#46f0f0",
    "#f032e6",
    "#bcf60c",
    "#fabebe",
    "#008080",
    "#e6beff",
)


class InvalidModel(InvalidInput):
    """A model archive or folder that cannot be installed: corrupt, incomplete, or not what
    it says it is."""


class Label(BaseModel):
    """One label value of the model's output."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    #: (scheme, value, meaning), e.g. ("SCT", "10200004", "Liver")
    code: tuple[str, str, str] = TISSUE
    category: tuple[str, str, str] = CATEGORY
    colour: str = ""

    @field_validator("colour")
    @classmethod
    def _colour(cls, value: str) -> str:
        if value and not COLOUR.match(value):
            raise ValueError("a colour is #rrggbb")
        return value.lower()


class Inputs(BaseModel):
    """What the model expects to be given (checked against a series before it runs)."""

    model_config = ConfigDict(extra="forbid")

    modality: list[str] = Field(default_factory=list)
    body_part: list[str] = Field(default_factory=list)
    #: the spacing it was trained on (mm, x y z); inputs are resampled by the model's code
    spacing_mm: list[float] | None = None
    #: the channels it reads, in order (nnU-Net's ``channel_names``)
    channels: list[str] = Field(default_factory=list)

    @field_validator("spacing_mm")
    @classmethod
    def _spacing(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and (len(value) not in (2, 3) or min(value) <= 0):
            raise ValueError("spacing_mm has 2 or 3 positive values")
        return value


class ModelResources(BaseModel):
    model_config = ConfigDict(extra="forbid")

    memory_mb: int = Field(default=4096, ge=64)
    #: "none": CPU only; "optional": a GPU when there is one; "required": never on a CPU
    gpu: Literal["none", "optional", "required"] = "optional"
    gpu_memory_mb: int = Field(default=0, ge=0)


class Manifest(BaseModel):
    """A model's description (``kahu-model.json``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str
    version: str
    format: Format
    licence: str = Field(min_length=1, max_length=20_000, alias="license")
    title: str = Field(default="", max_length=200)
    description: str = Field(default="", max_length=5000)
    authors: list[str] = Field(default_factory=list)
    #: the README's file name in the model's folder
    readme: str = "README.md"
    #: label value (1, 2, ...) -> its name, code and colour
    labels: dict[int, Label] = Field(default_factory=dict)
    inputs: Inputs = Field(default_factory=Inputs)
    resources: ModelResources = Field(default_factory=ModelResources)
    #: the weights file of a torchscript or onnx model
    entry: str = ""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME.match(value):
            raise ValueError("a model name is lower-case letters, digits, '.', '_', '-'")
        return value

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not VERSION.match(value):
            raise ValueError("a version is letters, digits, '.', '_', '+', '-'")
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[int, Label]) -> dict[int, Label]:
        if any(v < 1 or v > 65535 for v in value):
            raise ValueError("label values are 1 to 65535 (0 is the background)")
        names = [label.name for label in value.values()]
        if len(set(names)) != len(names):
            raise ValueError("two labels have the same name")
        return value

    def coloured(self) -> Manifest:
        """This manifest with a colour for every label (from :data:`PALETTE` where none)."""
        labels = {
            value: label
            if label.colour
            else label.model_copy(update={"colour": PALETTE[(value - 1) % len(PALETTE)]})
            for value, label in sorted(self.labels.items())
        }
        return self.model_copy(update={"labels": labels})

    def public(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=False)


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidModel(f"{path.name} is not readable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidModel(f"{path.name} is not a JSON object")
    return data


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")
    return slug[:64] or "model"


def _licence_file(folder: Path) -> str:
    for name in ("LICENSE", "LICENCE", "LICENSE.txt", "LICENCE.txt", "LICENSE.md"):
        if (folder / name).is_file():
            return (folder / name).read_text(errors="replace")[:20_000]
    return ""


def _modality_of(channels: list[str]) -> list[str]:
    names = {c.upper() for c in channels}
    found = []
    if names & {"CT", "HU"}:
        found.append("CT")
    if names & {"MR", "MRI", "T1", "T2", "FLAIR", "T1C", "T1CE", "ADC", "DWI", "T1W", "T2W"}:
        found.append("MR")
    return found


def nnunet_checkpoints(folder: Path) -> list[Path]:
    return sorted(
        p
        for pattern in ("fold_*/checkpoint_final.pth", "fold_*/checkpoint_best.pth")
        for p in folder.glob(pattern)
    )


def _from_nnunet(folder: Path) -> dict[str, Any]:
    dataset, plans = _json(folder / "dataset.json"), _json(folder / "plans.json")
    labels: dict[int, dict[str, Any]] = {}
    for name, value in (dataset.get("labels") or {}).items():
        if not isinstance(value, int):
            raise InvalidModel(f"label {name!r}: region-based labels are not supported")
        if value:
            labels[value] = {"name": name}
    channels = [str(v) for _, v in sorted((dataset.get("channel_names") or {}).items())]
    configs = plans.get("configurations") or {}
    config = folder.name.rsplit("__", 1)[-1]
    if config not in configs:  # a folder renamed or unpacked: the usual one, or the only one
        config = "3d_fullres" if "3d_fullres" in configs else next(iter(configs), "")
    spacing = _dict(configs.get(config)).get("spacing")
    return {
        "name": _slug(str(plans.get("dataset_name") or folder.parent.name)),
        "format": "nnunetv2",
        "title": str(dataset.get("name") or plans.get("dataset_name") or ""),
        "description": str(dataset.get("description") or ""),
        "licence": str(dataset.get("licence") or dataset.get("license") or "")
        or _licence_file(folder),
        "labels": labels,
        "inputs": {
            "channels": channels,
            "modality": _modality_of(channels),
            "spacing_mm": list(reversed(spacing)) if isinstance(spacing, list) else None,
        },
    }


def _from_monai(folder: Path) -> dict[str, Any]:
    meta = _json(folder / "configs" / "metadata.json")
    formats = _dict(meta.get("network_data_format"))
    outputs = _dict(formats.get("outputs"))
    first = _dict(next(iter(outputs.values()), None))
    labels = {
        int(k): {"name": str(v)}
        for k, v in _dict(first.get("channel_def")).items()
        if str(k).isdigit() and int(k) > 0 and str(v).lower() != "background"
    }
    image = _dict(_dict(formats.get("inputs")).get("image"))
    modality = str(image.get("modality", "")).upper()
    return {
        "name": _slug(str(meta.get("name") or folder.name)),
        "version": str(meta.get("version") or ""),
        "format": "monai-bundle",
        "title": str(meta.get("name") or ""),
        "description": str(meta.get("description") or ""),
        "authors": [str(meta["authors"])] if meta.get("authors") else [],
        "licence": _licence_file(folder) or str(meta.get("license") or ""),
        "readme": "docs/README.md",
        "labels": labels,
        "inputs": {"modality": [modality] if modality in ("CT", "MR") else []},
    }


def _totalsegmentator(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("Dataset*_TotalSegmentator*") if p.is_dir())


def detect(folder: Path, overrides: dict[str, Any] | None = None) -> Manifest:
    """The manifest of the model in ``folder``: its ``kahu-model.json``, or what its format's
    own files say; ``overrides`` (name, version, licence, title, labels...) win over both."""
    if (folder / MANIFEST_NAME).is_file():
        found = _json(folder / MANIFEST_NAME)
    elif (folder / "dataset.json").is_file() and (folder / "plans.json").is_file():
        found = _from_nnunet(folder)
    elif (folder / "configs" / "metadata.json").is_file():
        found = _from_monai(folder)
    elif _totalsegmentator(folder):
        found = {"name": "totalsegmentator", "format": "totalsegmentator"}
    else:
        raise InvalidModel(
            "not a model Kahu knows: no kahu-model.json, no nnU-Net results "
            "(dataset.json, plans.json), no MONAI bundle (configs/metadata.json) and no "
            "TotalSegmentator weights (Dataset*_TotalSegmentator*)"
        )
    data = {**found, **{k: v for k, v in (overrides or {}).items() if v not in (None, "")}}
    data.setdefault("version", "1")
    if not data.get("version"):
        data["version"] = "1"
    if not data.get("licence") and not data.get("license"):
        raise InvalidModel(
            'the model states no licence: add a LICENSE file or "licence" to '
            f"{MANIFEST_NAME}, or give one when installing (--licence)"
        )
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'manifest'}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidModel(f"the model's description is not valid: {problems}") from None
    check_files(folder, manifest)
    return manifest.coloured()


def check_files(folder: Path, manifest: Manifest) -> None:
    """Refuse a model whose folder lacks what its format needs (a mismatched archive)."""
    for name in (manifest.entry, manifest.readme):
        if name and not (folder / name).resolve().is_relative_to(folder.resolve()):
            raise InvalidModel(f"{name!r} lies outside the model's folder")
    fmt = manifest.format
    if fmt == "nnunetv2":
        for name in ("dataset.json", "plans.json"):
            if not (folder / name).is_file():
                raise InvalidModel(f"an nnU-Net v2 model needs {name}")
        _json(folder / "dataset.json")
        _json(folder / "plans.json")
        if not nnunet_checkpoints(folder):
            raise InvalidModel("an nnU-Net v2 model needs fold_*/checkpoint_final.pth")
    elif fmt == "monai-bundle":
        configs = folder / "configs"
        if not any((configs / f"inference.{ext}").is_file() for ext in ("json", "yaml", "yml")):
            raise InvalidModel("a MONAI bundle needs configs/inference.json (or .yaml)")
        if not any((folder / "models" / n).is_file() for n in ("model.pt", "model.ts")):
            raise InvalidModel("a MONAI bundle needs models/model.pt (or model.ts)")
    elif fmt in ("torchscript", "onnx"):
        if not manifest.entry or not (folder / manifest.entry).is_file():
            raise InvalidModel(f"a {fmt} model names its weights file in 'entry'")
    elif fmt == "totalsegmentator" and not _totalsegmentator(folder):
        raise InvalidModel("TotalSegmentator weights are Dataset*_TotalSegmentator* folders")
