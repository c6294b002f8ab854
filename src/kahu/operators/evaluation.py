"""Segmentation evaluation: SEGs of the same image compared, a reference against each
prediction, label by label (matched by name, case-insensitive), with Dice, HD95 and surface
Dice (:mod:`kahu.operators.metrics`); over a dataset, a table (CSV, JSON) and a report with
box plots (PNG, PDF), which also enter the catalog (Encapsulated PDF, Secondary Capture).

Per series, ``seg_masks_task`` decodes a SEG onto the grid of the image it segments. The
run-level ``evaluate_task`` groups the SEGs by image, picks the reference among them (the
one whose description, creator or algorithm contains the ``reference`` parameter; when that
is empty, the one drawn by hand: segment algorithm type MANUAL) and scores the others.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom

from kahu.flow.job import TaskContext
from kahu.flow.model import Operator, Resources, python_operator
from kahu.operators.metrics import scores, summary
from kahu.operators.seg import SEG_SOP_CLASS, seg_to_arrays, segment_labels
from kahu.operators.volumes import dicom_files, read_volume

METRICS = ("dice", "hd95_mm", "surface_dice")
COLUMNS = ("image_series", "reference_series", "prediction_series", "prediction", "label")


def _describe(seg: pydicom.Dataset) -> dict[str, Any]:
    algorithms = sorted(
        {
            str(item.get("SegmentAlgorithmName", ""))
            for item in seg.SegmentSequence
            if item.get("SegmentAlgorithmName")
        }
    )
    kinds = {str(item.get("SegmentAlgorithmType", "")) for item in seg.SegmentSequence}
    return {
        "seg_series": str(seg.SeriesInstanceUID),
        "description": str(seg.get("SeriesDescription", "")),
        "creator": str(seg.get("ContentCreatorName", "")),
        "algorithms": algorithms,
        "manual": kinds == {"MANUAL"},
    }


def seg_masks_task(ctx: TaskContext) -> None:
    """Per series: the SEG's segments on its image's grid (``masks.npz``, one mask per label
    name) and what it says of itself (``meta.json``); a series that is no SEG is noted."""
    names = list(ctx.job.inputs)
    segs = [p for p in dicom_files(ctx.input(names[0])) if _is_seg(p)]
    if not segs:
        (ctx.out_dir / "meta.json").write_text(json.dumps({"skipped": "not a SEG"}))
        return
    seg = pydicom.dcmread(segs[0])
    referenced = [str(r.SeriesInstanceUID) for r in seg.get("ReferencedSeriesSequence", [])]
    if len(referenced) != 1:
        raise ValueError(f"SEG {seg.SeriesInstanceUID} refers to {len(referenced)} series")
    image, slices = read_volume(dicom_files(ctx.input(names[1]) / referenced[0]))
    arrays, _ = seg_to_arrays(seg, [s.sop_instance_uid for s in slices], split=True)
    labels = segment_labels(seg)
    masks = {labels[int(key.split("-", 1)[0])].strip().lower(): a for key, a in arrays.items()}
    save: Any = np.savez_compressed  # its typing takes the masks for allow_pickle
    save(ctx.out_dir / "masks.npz", **masks)
    if ctx.options.get("image"):  # the image too, for training on it
        import SimpleITK as sitk

        sitk.WriteImage(image, str(ctx.out_dir / "image.nii.gz"), useCompression=True)
    header = pydicom.dcmread(slices[0].path, stop_before_pixels=True)
    meta = {
        **_describe(seg),
        "image_series": referenced[0],
        "modality": str(header.get("Modality", "")),
        "spacing_mm": list(reversed(image.GetSpacing())),  # the arrays' (z, y, x)
        "labels": sorted(masks),
        "codes": _codes(seg),
    }
    (ctx.out_dir / "meta.json").write_text(json.dumps(meta))
    ctx.log.info("SEG %s: %d labels on %s", seg.SeriesInstanceUID, len(masks), referenced[0])


def _codes(seg: pydicom.Dataset) -> dict[str, dict[str, list[str]]]:
    """Label name -> its segmented property type and category, as (scheme, value, meaning)."""
    found = {}
    for item in seg.SegmentSequence:
        entry = {}
        for key, keyword in (
            ("code", "SegmentedPropertyTypeCodeSequence"),
            ("category", "SegmentedPropertyCategoryCodeSequence"),
        ):
            if item.get(keyword):
                code = item.get(keyword)[0]
                entry[key] = [code.CodingSchemeDesignator, code.CodeValue, code.CodeMeaning]
        found[str(item.get("SegmentLabel", "")).strip().lower()] = entry
    return found


def _is_seg(path: Path) -> bool:
    header = pydicom.dcmread(path, stop_before_pixels=True)
    return str(header.SOPClassUID) == SEG_SOP_CLASS


def _matches(meta: Mapping[str, Any], text: str) -> bool:
    if not text:
        return bool(meta["manual"])
    haystack = [meta["description"], meta["creator"], *meta["algorithms"]]
    return any(text.lower() in value.lower() for value in haystack)


def pair_and_score(
    segs: Sequence[tuple[Mapping[str, Any], Path]], reference: str, tolerance_mm: float
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Rows of scores (one per image, prediction and label) and the images left out, each
    with why."""
    by_image: dict[str, list[tuple[Mapping[str, Any], Path]]] = defaultdict(list)
    for meta, folder in segs:
        by_image[meta["image_series"]].append((meta, folder))
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for image, group in sorted(by_image.items()):
        refs = [(m, f) for m, f in group if _matches(m, reference)]
        if len(refs) != 1:
            what = (
                f"whose description, creator or algorithm has {reference!r}"
                if reference
                else "drawn by hand (MANUAL)"
            )
            skipped.append(
                {"image_series": image, "reason": f"{len(refs)} SEGs {what}; one is the reference"}
            )
            continue
        (ref_meta, ref_dir), predictions = (
            refs[0],
            [(m, f) for m, f in group if m is not refs[0][0]],
        )
        if not predictions:
            skipped.append({"image_series": image, "reason": "no SEG besides the reference"})
            continue
        with np.load(ref_dir / "masks.npz") as ref_masks:
            ref_arrays = {k: ref_masks[k] for k in ref_masks.files}
        for meta, folder in predictions:
            with np.load(folder / "masks.npz") as pred_masks:
                for label in sorted(set(ref_arrays) | set(pred_masks.files)):
                    ref = ref_arrays.get(label)
                    pred = pred_masks[label] if label in pred_masks.files else None
                    shape = (ref if ref is not None else pred).shape  # type: ignore[union-attr]
                    ref = ref if ref is not None else np.zeros(shape, np.uint8)
                    pred = pred if pred is not None else np.zeros(shape, np.uint8)
                    s = scores(ref, pred, meta["spacing_mm"], tolerance_mm=tolerance_mm)
                    rows.append(
                        {
                            "image_series": image,
                            "reference_series": ref_meta["seg_series"],
                            "prediction_series": meta["seg_series"],
                            "prediction": meta["description"] or meta["seg_series"],
                            "label": label,
                            **s.as_dict(),
                        }
                    )
    return rows, skipped


def write_report(
    rows: Sequence[Mapping[str, Any]],
    out_dir: Path,
    *,
    title: str,
    skipped: Sequence[Mapping[str, str]] = (),
    extra_pages: Sequence[Any] = (),
) -> dict[str, Any]:
    """``evaluation.csv``, ``evaluation.json`` (rows, per-label summary, what was left out),
    ``boxplot.png`` and ``report.pdf`` (the summary table, then the box plots, then any
    ``extra_pages``: matplotlib figures). Returns the summary."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    labels = sorted({str(r["label"]) for r in rows})
    per_label = {
        label: {m: summary([r[m] for r in rows if r["label"] == label]) for m in METRICS}
        for label in labels
    }
    with open(out_dir / "evaluation.csv", "w", newline="") as fh:
        writer = csv.DictWriter(
            fh, fieldnames=[*COLUMNS, *METRICS, "reference_voxels", "prediction_voxels"]
        )
        writer.writeheader()
        writer.writerows(rows)
    report = {"title": title, "rows": list(rows), "summary": per_label, "skipped": list(skipped)}
    (out_dir / "evaluation.json").write_text(json.dumps(report, indent=2))

    figure, axes = plt.subplots(1, 3, figsize=(12, 4.2))
    for ax, metric, name in zip(axes, METRICS, ("Dice", "HD95 (mm)", "Surface Dice"), strict=True):
        data = [
            [r[metric] for r in rows if r["label"] == label and r[metric] is not None]
            for label in labels
        ]
        ax.boxplot([d or [float("nan")] for d in data], tick_labels=labels or ["-"])
        ax.set_title(name)
        if metric != "hd95_mm":
            ax.set_ylim(0, 1.02)
        ax.tick_params(axis="x", rotation=30)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(out_dir / "boxplot.png", dpi=100)

    table = plt.figure(figsize=(8.27, 11.69))
    table.text(0.05, 0.95, title, fontsize=16, weight="bold")
    lines = [f"{len(rows)} comparisons, {len(labels)} labels, {len(skipped)} images left out", ""]
    for label, metrics in per_label.items():
        d, h, sd = (metrics[m] for m in METRICS)
        lines.append(
            f"{label}: Dice {_fmt(d['mean'])} ± {_fmt(d['std'])} (median {_fmt(d['median'])}), "
            f"HD95 {_fmt(h['median'])} mm, surface Dice {_fmt(sd['mean'])}  (n={d['n']})"
        )
    lines += ["", *[f"left out {s['image_series']}: {s['reason']}" for s in skipped[:30]]]
    table.text(0.05, 0.9, "\n".join(lines), fontsize=9, va="top", family="monospace", wrap=True)
    with PdfPages(out_dir / "report.pdf") as pdf:
        pdf.savefig(table)
        pdf.savefig(figure)
        for page in extra_pages:
            pdf.savefig(page)
    plt.close("all")
    return per_label


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def evaluate_task(ctx: TaskContext) -> None:
    """Run-level: every image's SEGs paired and scored; the table and the report."""
    segs = []
    for folder in ctx.series_dirs(next(iter(ctx.job.inputs))).values():
        meta = json.loads((folder / "meta.json").read_text())
        if "skipped" not in meta:
            segs.append((meta, folder))
    rows, skipped = pair_and_score(
        segs, str(ctx.params.get("reference", "")), float(ctx.params.get("tolerance_mm", 1.0))
    )
    if not rows:
        reasons = "; ".join(f"{s['image_series']}: {s['reason']}" for s in skipped[:5])
        raise ValueError(
            f"nothing to compare among {len(segs)} SEGs" + (f" ({reasons})" if reasons else "")
        )
    write_report(
        rows,
        ctx.out_dir,
        title=str(ctx.params.get("title") or "Segmentation evaluation"),
        skipped=skipped,
    )
    ctx.log.info("%d comparisons, %d images left out", len(rows), len(skipped))


def report_to_dicom_task(ctx: TaskContext) -> None:
    """Run-level: the report as Encapsulated PDF and its box plots as a Secondary Capture."""
    from kahu.operators.documents import pdf_to_dicom

    folder = ctx.input(next(iter(ctx.job.inputs)))
    title = str(ctx.options.get("title") or "Segmentation evaluation")
    pdf = pdf_to_dicom((folder / "report.pdf").read_bytes(), title=title, series_description=title)
    pdf.save_as(ctx.out_dir / "report.dcm", enforce_file_format=True)
    capture = png_to_secondary_capture((folder / "boxplot.png").read_bytes(), pdf, title)
    capture.save_as(ctx.out_dir / "boxplot.dcm", enforce_file_format=True)


def png_to_secondary_capture(png: bytes, study: pydicom.Dataset, title: str) -> pydicom.Dataset:
    """A PNG as an RGB Secondary Capture image in the study (and patient) of ``study``."""
    import highdicom as hd
    from PIL import Image
    from pydicom.uid import generate_uid

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    image = hd.sc.SCImage(
        pixel_array=rgb,
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        patient_orientation=("L", "F"),  # a chart, drawn upright
        study_instance_uid=study.StudyInstanceUID,
        series_instance_uid=generate_uid(),
        sop_instance_uid=generate_uid(),
        series_number=304,
        instance_number=1,
        manufacturer="Kahu",
        patient_id=study.PatientID,
        patient_name=study.get("PatientName", ""),
        series_description=f"{title} (plots)"[:64],
    )
    image.ContentDescription = title[:64]
    return image


def seg_masks(
    name: str = "seg-masks",
    *,
    inputs: Sequence[str] = ("get-input", "get-referenced"),
    image: bool = False,
) -> Operator:
    """Per series: a SEG decoded onto its image's grid, for :func:`evaluate` (and, with
    ``image``, the image as NIfTI, for training)."""
    return python_operator(
        name,
        seg_masks_task,
        inputs=inputs,
        resources=Resources(cpu=1, memory_mb=2048),
        description="Decode the SEG onto the grid of its image",
        options={"image": image},
    )


def evaluate(name: str = "evaluate", *, masks_from: str = "seg-masks") -> Operator:
    """Run-level: Dice, HD95 and surface Dice of each prediction against its reference."""
    return python_operator(
        name,
        evaluate_task,
        inputs=[masks_from],
        per="run",
        resources=Resources(cpu=1, memory_mb=4096),
        description="Score predictions against references; table and box plots",
    )


def report_to_dicom(
    name: str = "report-to-dicom", *, report_from: str = "evaluate", title: str = ""
) -> Operator:
    return python_operator(
        name,
        report_to_dicom_task,
        inputs=[report_from],
        per="run",
        resources=Resources(cpu=0.5, memory_mb=1024),
        description="The report as Encapsulated PDF, its plots as Secondary Capture",
        options={"title": title},
    )
