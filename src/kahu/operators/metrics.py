"""Overlap and surface metrics of a predicted segmentation against a reference, per label:
Dice, the 95th percentile Hausdorff distance (HD95) and the surface Dice at a tolerance
(Nikolov et al. 2021), with distances in mm on the image's spacing.

Surfaces and distances follow MONAI's definitions (``compute_hausdorff_distance`` with
``percentile=95``, ``compute_surface_dice``), which the tests compare against: a mask's
surface is its voxels that a 6-connected erosion removes; HD95 is the larger of the two
directed 95th percentiles. Both masks empty: Dice 1, distances 0; one empty: Dice 0,
distances infinite (reported as null), surface Dice 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, slots=True)
class Scores:
    dice: float
    hd95: float | None  # mm; None where one mask is empty
    surface_dice: float
    reference_voxels: int
    prediction_voxels: int

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "dice": round(self.dice, 6),
            "hd95_mm": None if self.hd95 is None else round(self.hd95, 4),
            "surface_dice": round(self.surface_dice, 6),
            "reference_voxels": self.reference_voxels,
            "prediction_voxels": self.prediction_voxels,
        }


def dice(reference: np.ndarray, prediction: np.ndarray) -> float:
    ref, pred = reference.astype(bool), prediction.astype(bool)
    total = int(ref.sum()) + int(pred.sum())
    return 1.0 if total == 0 else 2.0 * int((ref & pred).sum()) / total


def _crop(*masks: np.ndarray) -> tuple[np.ndarray, ...]:
    """The masks cut to the box around both (plus one voxel), where every surface lies."""
    union = np.logical_or.reduce(masks)
    found = np.argwhere(union)
    low = np.maximum(found.min(axis=0) - 1, 0)
    high = np.minimum(found.max(axis=0) + 2, union.shape)
    box = tuple(slice(a, b) for a, b in zip(low, high, strict=True))
    return tuple(m[box] for m in masks)


def surface(mask: np.ndarray) -> np.ndarray:
    from scipy.ndimage import binary_erosion

    edges: np.ndarray = mask & ~binary_erosion(mask)
    return edges


def _directed(from_surface: np.ndarray, to_surface: np.ndarray, spacing: Sequence[float]) -> Any:
    from scipy.ndimage import distance_transform_edt

    return distance_transform_edt(~to_surface, sampling=spacing)[from_surface]


def scores(
    reference: np.ndarray,
    prediction: np.ndarray,
    spacing: Sequence[float],
    *,
    tolerance_mm: float = 1.0,
) -> Scores:
    """Dice, HD95 and surface Dice of two binary masks of the same shape; ``spacing`` is the
    voxel size in mm along the arrays' axes."""
    if reference.shape != prediction.shape:
        raise ValueError(f"masks of shapes {reference.shape} and {prediction.shape}")
    if len(spacing) != reference.ndim:
        raise ValueError(f"{len(spacing)} spacings for a {reference.ndim}D mask")
    ref, pred = reference.astype(bool), prediction.astype(bool)
    counts = int(ref.sum()), int(pred.sum())
    overlap = dice(ref, pred)
    if not counts[0] and not counts[1]:
        return Scores(1.0, 0.0, 1.0, 0, 0)
    if not counts[0] or not counts[1]:
        return Scores(overlap, None, 0.0, *counts)
    ref, pred = _crop(ref, pred)
    ref_surface, pred_surface = surface(ref), surface(pred)
    to_ref = _directed(pred_surface, ref_surface, spacing)
    to_pred = _directed(ref_surface, pred_surface, spacing)
    hd95 = max(float(np.percentile(to_ref, 95)), float(np.percentile(to_pred, 95)))
    near = int((to_ref <= tolerance_mm).sum()) + int((to_pred <= tolerance_mm).sum())
    surface_dice = near / (len(to_ref) + len(to_pred))
    return Scores(overlap, hd95, surface_dice, *counts)


def summary(values: Sequence[float | None]) -> dict[str, float | int | None]:
    """n, mean, standard deviation, median, min and max of the finite values."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return {"n": 0, "mean": None, "std": None, "median": None, "min": None, "max": None}
    data = np.asarray(finite)
    return {
        "n": len(finite),
        "mean": round(float(data.mean()), 6),
        "std": round(float(data.std(ddof=1)) if len(finite) > 1 else 0.0, 6),
        "median": round(float(np.median(data)), 6),
        "min": round(float(data.min()), 6),
        "max": round(float(data.max()), 6),
    }
