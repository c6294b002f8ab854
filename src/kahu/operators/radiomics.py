"""Radiomics: features of each label of a SEG on its image, computed by MIRP (Zwanenburg et
al., JOSS 2024), whose features and their definitions follow the Image Biomarker
Standardisation Initiative and are validated against the IBSI reference values (IBSI 1 and
2). pyradiomics, the usual choice, no longer builds on current Pythons; MIRP is maintained,
pure Python and installs from the package registry.

Per series, :func:`features_task` writes ``features/features.json`` (label -> feature -> value, with
the settings used) and ``measurements.json`` for a TID 1500 SR; the run-level
:func:`table_task` joins every series into ``radiomics.csv`` and ``radiomics.parquet``.
"""

from __future__ import annotations

import csv
import json
import math
from typing import Any

import numpy as np

from kahu.flow.job import TaskContext

#: MIRP's metadata columns (everything else it returns is a feature)
_META = "image_"
FAMILIES = ("morphology", "statistics", "intensity_histogram", "glcm", "glrlm", "glszm")


def _unit(feature: str, modality: str) -> str:
    if feature.startswith("morph_vol") or feature == "morph_volume":
        return "mm3"
    if feature.startswith("morph_area"):
        return "mm2"
    if feature.startswith("stat_") and feature not in ("stat_skew", "stat_kurt", "stat_cov"):
        return "[hnsf'U]" if modality == "CT" else "1"
    return "1"


def features_task(ctx: TaskContext) -> None:
    """Per series (a SEG decoded by ``seg_masks(image=True)``): each label's features."""
    import SimpleITK as sitk
    from mirp import extract_features

    folder = ctx.in_dir
    meta = json.loads((folder / "meta.json").read_text())
    if "skipped" in meta:
        raise ValueError(f"series {ctx.series_uid} is not a SEG: radiomics reads SEGs")
    image = sitk.ReadImage(str(folder / "image.nii.gz"))
    modality = str(meta.get("modality") or "")
    settings = {
        "families": list(ctx.params.get("families") or FAMILIES),
        "bins": int(ctx.params.get("bins", 32)),
    }
    features: dict[str, dict[str, float]] = {}
    with np.load(folder / "masks.npz") as masks:
        for label in sorted(masks.files):
            mask = sitk.GetImageFromArray(masks[label].astype(np.uint8))
            mask.CopyInformation(image)
            path = ctx.out_dir / "mask.nii.gz"
            sitk.WriteImage(mask, str(path))
            [table] = extract_features(
                image=str(folder / "image.nii.gz"),
                mask=str(path),
                image_modality=modality.lower() or "generic",
                base_feature_families=settings["families"],
                base_discretisation_method="fixed_bin_number",
                base_discretisation_n_bins=settings["bins"],
            )
            row = table.iloc[0].to_dict()
            features[label] = {
                k: float(v)
                for k, v in row.items()
                if not k.startswith(_META) and k != "sample_name" and _number(v)
            }
            path.unlink()
    report = {"seg_series": meta["seg_series"], "image_series": meta["image_series"]}
    report |= {"implementation": "MIRP (IBSI)", "settings": settings, "labels": features}
    (ctx.out_dir / "features").mkdir()  # beside, not among, the SR's measurements
    (ctx.out_dir / "features" / "features.json").write_text(json.dumps(report, indent=2))
    groups = [
        {
            "name": label,
            "finding": label,
            "measurements": [
                {"name": name, "value": value, "unit": _unit(name, modality)}
                for name, value in sorted(values.items())
            ],
        }
        for label, values in features.items()
        if values
    ]
    measurements = {"algorithm": {"name": "mirp", "version": _version()}, "groups": groups}
    (ctx.out_dir / "measurements.json").write_text(json.dumps(measurements, indent=2))
    ctx.log.info(
        "%d labels, %d features each", len(features), len(next(iter(features.values()), {}))
    )


def _number(value: Any) -> bool:
    return isinstance(value, int | float | np.number) and math.isfinite(float(value))


def _version() -> str:
    from importlib.metadata import version

    return version("mirp")


def table_task(ctx: TaskContext) -> None:
    """Run-level: every series' features as one table (a row per SEG and label)."""
    import pandas as pd

    rows = []
    for folder in ctx.series_dirs(next(iter(ctx.job.inputs))).values():
        path = folder / "features" / "features.json"
        if not path.is_file():
            continue
        report = json.loads(path.read_text())
        for label, values in report["labels"].items():
            rows.append({"seg_series": report["seg_series"], "image_series": report["image_series"],
                         "label": label, **values})  # fmt: skip
    if not rows:
        raise ValueError("no features: the cohort holds no SEG with a label")
    frame = pd.DataFrame(rows)
    frame.to_csv(ctx.out_dir / "radiomics.csv", index=False, quoting=csv.QUOTE_MINIMAL)
    frame.to_parquet(ctx.out_dir / "radiomics.parquet", index=False)
    ctx.log.info("%d rows, %d columns", *frame.shape)
