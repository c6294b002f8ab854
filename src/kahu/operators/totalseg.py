"""TotalSegmentator (Wasserthal et al., Radiology: AI 2023) with weights the site installed
(``kahu models import``): it never downloads. The multi-label output becomes a SEG whose
segments carry TotalSegmentator's class names, the SNOMED CT codes and colours of the
mapping its package ships (``totalsegmentator_snomed_mapping.csv``)."""

from __future__ import annotations

import csv
import importlib.resources
import os
from pathlib import Path
from typing import Any

import numpy as np

from kahu.flow.job import TaskContext
from kahu.operators.inference import write_seg_spec

HOW = (
    "install TotalSegmentator's weights from a folder: where downloads are allowed, "
    "`totalseg_download_weights -t total` fills ~/.totalsegmentator/nnunet/results; copy "
    "that folder here and run `kahu models import FOLDER --name totalsegmentator "
    "--licence 'Apache-2.0 (weights: see TotalSegmentator)'`"
)


def _snomed() -> dict[str, dict[str, Any]]:
    """Class name -> its codes and colour, from TotalSegmentator's own mapping."""
    path = importlib.resources.files("totalsegmentator") / "resources"
    found = {}
    with (path / "totalsegmentator_snomed_mapping.csv").open() as fh:
        for row in csv.DictReader(fh):
            category = [row[f"SegmentedPropertyCategoryCodeSequence.{k}"] for k in _KEYS]
            code = [row[f"SegmentedPropertyTypeCodeSequence.{k}"] for k in _KEYS]
            modifier = row.get("SegmentedPropertyTypeModifierCodeSequence.CodeMeaning", "")
            rgb = [int(v) for v in row["DicomRGBColor"].split(",")] if row["DicomRGBColor"] else []
            found[row["Structure"]] = {
                "category": category,
                "code": [code[0], code[1], f"{code[2]}, {modifier}" if modifier else code[2]],
                "colour": "#" + "".join(f"{v:02x}" for v in rgb) if len(rgb) == 3 else "",
            }
    return found


_KEYS = ("CodingSchemeDesignator", "CodeValue", "CodeMeaning")


def class_labels(task: str, values: list[int]) -> dict[int, dict[str, Any]]:
    """The label values of a ``task``'s output as names, codes and colours (a class the
    mapping lacks: an anatomical structure of its name)."""
    from totalsegmentator.map_to_binary import class_map

    if task not in class_map:
        raise ValueError(f"TotalSegmentator has no task {task!r}")
    names = class_map[task]
    codes = _snomed()
    out: dict[int, dict[str, Any]] = {}
    for value in values:
        if value not in names:
            raise ValueError(f"task {task} has no class {value}")
        name = names[value]
        out[value] = {"name": name, **codes.get(name, {})}
    return out


def renumber(labels: np.ndarray) -> tuple[list[int], np.ndarray]:
    """The class values present (ascending) and the volume with them as 1..n: a SEG numbers
    its segments without gaps."""
    found = [int(v) for v in np.unique(labels) if v > 0]
    table = np.zeros(int(labels.max()) + 1 if labels.size else 1, np.uint8)
    table[found] = np.arange(1, len(found) + 1)
    return found, table[labels.astype(np.int64)]


def _no_downloads(weights: Path) -> Any:
    def check(task_id: int) -> None:
        if not any(weights.glob(f"Dataset{task_id:03d}_*")) and not any(
            weights.glob(f"*/*/Task{task_id}_*")
        ):
            raise RuntimeError(
                f"TotalSegmentator needs its weights Dataset{task_id} and they are not in the "
                f"installed model; {HOW}"
            )

    return check


def segment_task(ctx: TaskContext) -> None:
    """Per series: TotalSegmentator on the series' volume with the installed weights;
    ``labels.nii.gz`` and ``seg.json`` (the classes found, named and coded)."""
    import SimpleITK as sitk
    import torch

    model = ctx.model("model")
    os.environ["TOTALSEG_WEIGHTS_PATH"] = str(model.path)
    os.environ["TOTALSEG_HOME_DIR"] = str(ctx.out_dir / ".totalsegmentator")
    from totalsegmentator import python_api

    python_api.download_pretrained_weights = _no_downloads(model.path)
    [volume] = sorted(ctx.in_dir.glob("*.nii.gz"))
    task = str(ctx.params.get("task", "total"))
    gpu = torch.cuda.is_available()
    python_api.totalsegmentator(
        volume,
        ctx.out_dir / "labels.nii.gz",
        ml=True,
        task=task,
        fast=bool(ctx.params.get("fast", False)),
        device="gpu" if gpu else "cpu",
        quiet=True,
        nr_thr_saving=1,
    )
    output = sitk.ReadImage(str(ctx.out_dir / "labels.nii.gz"))
    found, numbered = renumber(sitk.GetArrayFromImage(output))
    labels = sitk.GetImageFromArray(numbered)
    labels.CopyInformation(sitk.ReadImage(str(volume)))  # the series' own grid, exactly
    sitk.WriteImage(labels, str(ctx.out_dir / "labels.nii.gz"), useCompression=True)
    ctx.log.info(
        "TotalSegmentator %s on the %s: %d classes", task, "GPU" if gpu else "CPU", len(found)
    )
    classes = class_labels(task, found)
    numbered_classes = {number: classes[value] for number, value in enumerate(found, start=1)}
    write_seg_spec(ctx.out_dir, numbered_classes, (f"TotalSegmentator {task}", model.version))
