"""DICOM Segmentation objects to and from label volumes, with highdicom.

``volume_to_seg`` turns a label map on a source series' grid into a SEG that references the
source instances and names the algorithm that made it; ``seg_to_volume`` turns a SEG back into
a label map (all segments in one volume or one volume per segment, optionally only some
labels) on the source series' grid, or on the SEG's own geometry when the source is absent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from kahu.flow.job import TaskContext
from kahu.flow.model import Operator, Resources, python_operator
from kahu.operators.volumes import FORMATS, dicom_files, read_volume, write_volume

if TYPE_CHECKING:
    import SimpleITK

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"

#: SNOMED CT "Tissue" in "Anatomical Structure": the codes of a segment that says no more
_DEFAULT_CATEGORY = ("SCT", "91723000", "Anatomical Structure")
_DEFAULT_TYPE = ("SCT", "85756007", "Tissue")


def _code(value: Sequence[str]) -> Any:
    from highdicom.sr import CodedConcept

    scheme, code, meaning = value
    return CodedConcept(value=code, scheme_designator=scheme, meaning=meaning)


def _segment(number: int, spec: str | Mapping[str, Any], algorithm: tuple[str, str]) -> Any:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    label = spec if isinstance(spec, str) else str(spec["label"])
    category = _DEFAULT_CATEGORY if isinstance(spec, str) else spec.get("category")
    kind = _DEFAULT_TYPE if isinstance(spec, str) else spec.get("type")
    colour = "" if isinstance(spec, str) else str(spec.get("colour") or "")
    rgb = [int(colour[i : i + 2], 16) for i in (1, 3, 5)] if colour else None
    return hd.seg.SegmentDescription(
        display_color=hd.color.CIELabColor.from_rgb(*rgb) if rgb else None,
        segment_number=number,
        segment_label=label,
        segmented_property_category=_code(category or _DEFAULT_CATEGORY),
        segmented_property_type=_code(kind or _DEFAULT_TYPE),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name=algorithm[0], version=algorithm[1], family=codes.DCM.ArtificialIntelligence
        ),
    )


#: type 2 attributes (present, may be empty) that highdicom copies from the source; real
#: files do not always carry them
_TYPE2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
)


def with_type2(ds: Dataset) -> Dataset:
    """``ds`` with the patient and study attributes derived objects copy present."""
    missing = [k for k in _TYPE2 if k not in ds]
    if not missing:
        return ds
    ds = ds.copy()
    for keyword in missing:
        setattr(ds, keyword, "")
    return ds


def volume_to_seg(
    labels: np.ndarray,
    source: Sequence[Dataset],
    segments: Mapping[int, str | Mapping[str, Any]],
    *,
    algorithm: tuple[str, str] = ("kahu", "1"),
    series_description: str = "Segmentation",
    series_number: int = 300,
) -> Dataset:
    """A binary SEG of ``labels`` (slices, rows, columns; 0 background, n segment n) drawn
    on ``source`` (the series' datasets in the same slice order). ``segments`` names each
    label value present (a label, or ``{"label", "category", "type"}`` with coded
    ``(scheme, code, meaning)``)."""
    import highdicom as hd

    if labels.ndim != 3:
        raise ValueError(f"a label volume has 3 dimensions, not {labels.ndim}")
    if len(source) != labels.shape[0]:
        raise ValueError(
            f"the label volume has {labels.shape[0]} slices, the source series {len(source)}"
        )
    size = (int(source[0].Rows), int(source[0].Columns))
    if labels.shape[1:] != size:
        raise ValueError(
            f"the label volume's slices are {labels.shape[1]}x{labels.shape[2]}, "
            f"the source series' {size[0]}x{size[1]}"
        )
    present = sorted(int(v) for v in np.unique(labels) if v != 0)
    unnamed = [v for v in present if v not in segments]
    if unnamed:
        raise ValueError(f"label values {unnamed} have no segment name")
    if not present:
        raise ValueError("the label volume is empty: nothing to store as a segmentation")
    numbers = sorted(int(n) for n in segments)
    if numbers != list(range(1, len(numbers) + 1)):
        raise ValueError(f"segment numbers must be 1..n without gaps, not {numbers}")
    if labels.min() < 0 or labels.max() > len(numbers):
        raise ValueError(f"label values must be between 0 and {len(numbers)}")
    return hd.seg.Segmentation(
        source_images=[with_type2(ds) for ds in source],
        pixel_array=labels.astype(np.uint16 if len(numbers) > 255 else np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[_segment(n, segments[n], algorithm) for n in numbers],
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="Kahu",
        manufacturer_model_name=algorithm[0][:64],
        software_versions=algorithm[1][:64],
        device_serial_number="kahu",
        series_description=series_description[:64],
    )


def segment_labels(seg: Dataset) -> dict[int, str]:
    """Segment number -> label of a SEG."""
    return {
        int(item.SegmentNumber): str(item.get("SegmentLabel", "")) for item in seg.SegmentSequence
    }


def _selected(seg: Dataset, labels: Sequence[str] | None) -> list[int]:
    available = segment_labels(seg)
    if not labels:
        return sorted(available)
    wanted = {label.lower() for label in labels}
    chosen = sorted(n for n, label in available.items() if label.lower() in wanted)
    if not chosen:
        raise ValueError(
            f"no segment labelled {', '.join(labels)}; the SEG has "
            + ", ".join(f"{n}: {label}" for n, label in sorted(available.items()))
        )
    return chosen


def seg_to_arrays(
    seg: Dataset,
    source_uids: Sequence[str] | None,
    *,
    labels: Sequence[str] | None = None,
    split: bool = False,
) -> tuple[dict[str, np.ndarray], Any]:
    """The SEG's segments as arrays (slices, rows, columns): ``{"labels": map}`` or, split,
    one binary array per segment keyed ``<number>-<label>``. With ``source_uids`` (the source
    instances in slice order) on that grid, else on the SEG's own geometry (the highdicom
    volume is returned second, for its affine)."""
    import highdicom as hd

    parsed = hd.seg.Segmentation.from_dataset(seg, copy=False)
    numbers = _selected(seg, labels)
    names = segment_labels(seg)
    volume = None
    if source_uids is not None:
        stack = parsed.get_pixels_by_source_instance(
            source_sop_instance_uids=list(source_uids),
            segment_numbers=numbers,
            combine_segments=False,
            rescale_fractional=True,
        )
    else:
        volume = parsed.get_volume(segment_numbers=numbers, combine_segments=False)
        stack = volume.array
    stack = np.asarray(stack)
    if split:
        return {
            f"{n}-{_safe(names[n])}": (stack[..., i] > 0).astype(np.uint8)
            for i, n in enumerate(numbers)
        }, volume
    combined = np.zeros(stack.shape[:3], dtype=np.uint16 if max(numbers) > 255 else np.uint8)
    for i, n in enumerate(numbers):
        combined[stack[..., i] > 0] = n
    return {"labels": combined}, volume


def _safe(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_") or "segment"


def image_on(array: np.ndarray, reference: SimpleITK.Image) -> SimpleITK.Image:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    return image


def _image_from_affine(array: np.ndarray, affine: np.ndarray) -> SimpleITK.Image:
    """A SimpleITK image of ``array`` (i, j, k) with an index -> LPS ``affine``."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array)  # sitk's x, y, z are the array's k, j, i
    columns = [affine[:3, 2], affine[:3, 1], affine[:3, 0]]
    spacing = [float(np.linalg.norm(c)) for c in columns]
    direction = np.stack([c / s for c, s in zip(columns, spacing, strict=True)], axis=1)
    image.SetSpacing(spacing)
    image.SetDirection([float(v) for v in direction.flatten()])
    image.SetOrigin([float(v) for v in affine[:3, 3]])
    return image


def seg_to_volumes(
    seg_path: Path,
    out_dir: Path,
    *,
    source_files: Sequence[Path] | None = None,
    labels: Sequence[str] | None = None,
    split: bool = False,
    fmt: str = "nifti",
) -> list[Path]:
    """Write the SEG at ``seg_path`` as label volumes in ``out_dir``: ``<name><ext>`` where
    name is ``labels`` or, split, ``<number>-<label>``. With ``source_files`` (the source
    series) the volumes share its grid exactly."""
    seg = pydicom.dcmread(seg_path)
    if str(seg.SOPClassUID) != SEG_SOP_CLASS:
        raise ValueError(f"{seg_path.name} is not a DICOM Segmentation")
    written = []
    if source_files:
        reference, slices = read_volume(source_files)
        arrays, _ = seg_to_arrays(
            seg, [s.sop_instance_uid for s in slices], labels=labels, split=split
        )
        images = {name: image_on(a, reference) for name, a in arrays.items()}
    else:
        arrays, volume = seg_to_arrays(seg, None, labels=labels, split=split)
        images = {name: _image_from_affine(a, volume.affine) for name, a in arrays.items()}
    for name, image in images.items():
        written.append(write_volume(image, out_dir / f"{name}{FORMATS[fmt]}"))
    return written


def read_labels(path: Path) -> tuple[np.ndarray, SimpleITK.Image]:
    """A label volume file (NIfTI, NRRD) as an integer array (slices, rows, columns)."""
    import SimpleITK as sitk

    image = sitk.ReadImage(str(path))
    array = sitk.GetArrayFromImage(image)
    if not np.allclose(array, np.round(array)):
        raise ValueError(f"{path.name} holds fractional values, not labels")
    return array.astype(np.int64), image


def _same_grid(image: SimpleITK.Image, reference: SimpleITK.Image) -> str:
    """Why ``image`` is not on ``reference``'s grid ("" when it is)."""
    if image.GetSize() != reference.GetSize():
        return f"size {image.GetSize()} differs from the source's {reference.GetSize()}"
    for what, a, b, tolerance in (
        ("spacing", image.GetSpacing(), reference.GetSpacing(), 1e-3),
        ("origin", image.GetOrigin(), reference.GetOrigin(), 1e-2),
        ("direction", image.GetDirection(), reference.GetDirection(), 1e-3),
    ):
        if not np.allclose(a, b, atol=tolerance):
            return f"{what} {tuple(round(v, 4) for v in a)} differs from the source's"
    return ""


def labels_to_seg(
    label_path: Path,
    source_files: Sequence[Path],
    segments: Mapping[int, str | Mapping[str, Any]],
    *,
    algorithm: tuple[str, str] = ("kahu", "1"),
    series_description: str = "Segmentation",
) -> Dataset:
    """A SEG from the label volume at ``label_path``, which must lie on the grid of the
    source series in ``source_files`` (as a volume converted from it does)."""
    labels, image = read_labels(label_path)
    reference, slices = read_volume(source_files)
    problem = _same_grid(image, reference)
    if problem:
        raise ValueError(f"{label_path.name} is not on the source series' grid: {problem}")
    # the headers are enough (geometry, patient, study); copying pixels cost 5x the time
    source = [pydicom.dcmread(s.path, stop_before_pixels=True) for s in slices]
    return volume_to_seg(
        labels,
        source,
        segments,
        algorithm=algorithm,
        series_description=series_description,
    )


def _volume_file(folder: Path) -> Path:
    found = sorted(
        p for p in folder.iterdir() if p.name.endswith((".nii.gz", ".nii", ".nrrd", ".mha"))
    )
    if len(found) != 1:
        raise ValueError(f"{folder} holds {len(found)} volume files; one label volume was expected")
    return found[0]


def labels_to_seg_task(ctx: TaskContext) -> None:
    """Per series: the first input's label volume as a SEG on the second input's series. A
    ``seg.json`` beside the volume (a model's labels and name, written by the operator that
    ran it) gives the segments, algorithm and description the workflow left open."""
    names = list(ctx.job.inputs)
    given = ctx.input(names[0]) / "seg.json"
    found = json.loads(given.read_text()) if given.is_file() else {}
    segments = {int(k): v for k, v in (ctx.options["segments"] or found["segments"]).items()}
    algorithm = found.get("algorithm") or (
        ctx.options["algorithm"],
        ctx.options["algorithm_version"],
    )
    seg = labels_to_seg(
        _volume_file(ctx.input(names[0])),
        dicom_files(ctx.input(names[1])),
        segments,
        algorithm=(str(algorithm[0]), str(algorithm[1])),
        series_description=str(
            found.get("series_description") or ctx.options["series_description"]
        ),
    )
    target = ctx.out_dir / f"{seg.SOPInstanceUID}.dcm"
    seg.save_as(target, enforce_file_format=True)
    ctx.log.info("wrote SEG %s with %d segments", target.name, len(seg.SegmentSequence))


def seg_to_volume_task(ctx: TaskContext) -> None:
    """Per series: each SEG in the input as label volumes; other series are left alone."""
    source_name = ctx.options.get("source")
    fmt = str(ctx.params.get("format") or ctx.options.get("format", "nifti"))
    for path in dicom_files(ctx.in_dir):
        header = pydicom.dcmread(path, stop_before_pixels=True)
        if str(header.SOPClassUID) != SEG_SOP_CLASS:
            continue
        source_files = None
        if source_name:
            referenced = [
                str(item.SeriesInstanceUID) for item in header.get("ReferencedSeriesSequence", [])
            ]
            for uid in referenced[:1]:
                # the referenced series fetched for this series (get_referenced, an input),
                # or fetched as a series of the run itself (launched with fetch_references)
                folder = (
                    ctx.input(str(source_name)) / uid
                    if source_name in ctx.job.inputs
                    else ctx.job.paths.out_dir(str(source_name), uid)
                )
                if folder.is_dir():
                    source_files = dicom_files(folder)
        written = seg_to_volumes(
            path,
            ctx.out_dir / str(header.SOPInstanceUID),
            source_files=source_files,
            labels=ctx.options.get("labels"),
            split=bool(ctx.options.get("split")),
            fmt=fmt,
        )
        ctx.log.info(
            "%s: %s%s",
            path.name,
            ", ".join(p.name for p in written),
            "" if source_files else " (on the SEG's own geometry)",
        )


def labels_to_seg_operator(
    name: str,
    *,
    labels_from: str,
    source_from: str = "get-input",
    segments: Mapping[int, str | Mapping[str, Any]],
    algorithm: str,
    algorithm_version: str = "1",
    series_description: str = "Segmentation",
) -> Operator:
    """Per series: the label volume written by ``labels_from`` as a DICOM SEG referencing the
    series fetched by ``source_from`` and naming ``algorithm``."""
    return python_operator(
        name,
        labels_to_seg_task,
        inputs=[labels_from, source_from],
        resources=Resources(cpu=1, memory_mb=2048),
        description="Store a label volume as a DICOM Segmentation (highdicom)",
        options={
            "segments": {str(k): v for k, v in segments.items()},
            "algorithm": algorithm,
            "algorithm_version": algorithm_version,
            "series_description": series_description,
        },
    )


def seg_to_volume_operator(
    name: str = "seg-to-volume",
    *,
    inputs: Sequence[str] = ("get-input",),
    labels: Sequence[str] | None = None,
    split: bool = False,
    fmt: str = "nifti",
    source: str | None = None,
) -> Operator:
    """Per series: SEGs to label volumes (``split`` one per segment, ``labels`` only those).
    ``source`` names the operator that fetched the referenced series: a
    :func:`~kahu.operators.catalog.get_referenced` among ``inputs``, or ``get-input`` of a run
    launched with ``fetch_references``; the volumes then share the source's grid."""
    return python_operator(
        name,
        seg_to_volume_task,
        inputs=inputs,
        resources=Resources(cpu=1, memory_mb=2048),
        description="Convert DICOM Segmentations to label volumes (highdicom)",
        options={"labels": list(labels or []), "split": split, "format": fmt, "source": source},
    )
