"""Measurements as JSON to and from DICOM Structured Reports (TID 1500, highdicom).

The JSON an operator writes::

    {"algorithm": {"name": "threshold", "version": "1.0"},
     "groups": [{"name": "bone", "finding": "Bone",
                 "measurements": [{"name": "Volume", "value": 12.5, "unit": "ml"}]}]}

becomes a Comprehensive 3D SR: an Imaging Measurement Report whose measurement groups carry
the group's name as tracking identifier, the finding, and each measurement as a numeric item
with its UCUM unit and the algorithm that made it. Names that SNOMED CT or DICOM already code
(Volume, Area, Diameter, Mean, ...) use those codes; any other name gets a code of Kahu's
local scheme ``99KAHU`` with the name as its meaning, so the report reads back unchanged.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset

from kahu.flow.job import TaskContext
from kahu.flow.model import Operator, Resources, python_operator
from kahu.operators.seg import with_type2
from kahu.operators.volumes import dicom_files

LOCAL_SCHEME = "99KAHU"

#: measurement names with standard codes (scheme, code)
_KNOWN = {
    "volume": ("SCT", "118565006", "Volume"),
    "area": ("SCT", "42798000", "Area"),
    "diameter": ("SCT", "81827009", "Diameter"),
    "length": ("SCT", "410668003", "Length"),
    "mean": ("SCT", "373098007", "Mean"),
    "minimum": ("SCT", "255605001", "Minimum"),
    "maximum": ("SCT", "56851009", "Maximum"),
    "standard deviation": ("SCT", "386136009", "Standard Deviation"),
}

_GROUP = ("DCM", "125007")
_TRACKING_ID = ("DCM", "112039")
_FINDING = ("DCM", "121071")
_ALGORITHM_NAME = ("DCM", "111001")
_ALGORITHM_VERSION = ("DCM", "111003")


class InvalidMeasurements(ValueError):
    """The measurement JSON does not have the expected shape; the message says where."""


def _coded(scheme: str, code: str, meaning: str) -> Any:
    from highdicom.sr import CodedConcept

    return CodedConcept(value=code, scheme_designator=scheme, meaning=meaning[:64])


def name_code(name: str) -> Any:
    """The code of a measurement or finding name (standard where known, else local)."""
    known = _KNOWN.get(name.strip().lower())
    if known is not None:
        return _coded(*known)
    digest = hashlib.sha256(name.encode()).hexdigest()[:12].upper()
    return _coded(LOCAL_SCHEME, f"K{digest}", name)


def _check(doc: Any) -> list[Mapping[str, Any]]:
    if not isinstance(doc, Mapping):
        raise InvalidMeasurements("the measurements document is a JSON object")
    groups = doc.get("groups")
    if not isinstance(groups, list) or not groups:
        raise InvalidMeasurements("'groups' is a non-empty list")
    for i, group in enumerate(groups):
        if not isinstance(group, Mapping) or not str(group.get("name", "")).strip():
            raise InvalidMeasurements(f"groups[{i}] needs a 'name'")
        items = group.get("measurements")
        if not isinstance(items, list) or not items:
            raise InvalidMeasurements(f"groups[{i}].measurements is a non-empty list")
        for j, item in enumerate(items):
            where = f"groups[{i}].measurements[{j}]"
            if not isinstance(item, Mapping) or not str(item.get("name", "")).strip():
                raise InvalidMeasurements(f"{where} needs a 'name'")
            value = item.get("value")
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidMeasurements(f"{where}.value is a number, not {value!r}")
            if not str(item.get("unit", "")).strip():
                raise InvalidMeasurements(f"{where} needs a 'unit' (UCUM, e.g. ml, mm, [hnsf'U])")
    return groups


def measurements_to_sr(
    doc: Mapping[str, Any],
    evidence: Sequence[Dataset],
    *,
    series_description: str = "Measurements",
    series_number: int = 301,
) -> Dataset:
    """A TID 1500 Comprehensive 3D SR of ``doc`` about the images in ``evidence``."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    groups = _check(doc)
    if not evidence:
        raise InvalidMeasurements("a report needs the images it measured (evidence)")
    algorithm = doc.get("algorithm") or {}
    algorithm_id = hd.sr.AlgorithmIdentification(
        name=str(algorithm.get("name", "kahu"))[:64],
        version=str(algorithm.get("version", "1"))[:64],
    )
    observer = hd.sr.ObserverContext(
        observer_type=codes.cid270.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name=str(algorithm.get("name", "kahu"))[:64]
        ),
    )
    measurement_groups = []
    for group in groups:
        finding = group.get("finding")
        measurement_groups.append(
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(
                    uid=hd.UID(), identifier=str(group["name"])[:64]
                ),
                finding_type=name_code(str(finding)) if finding else None,
                algorithm_id=algorithm_id,
                measurements=[
                    hd.sr.Measurement(
                        name=name_code(str(item["name"])),
                        value=float(item["value"]),
                        unit=_coded("UCUM", str(item["unit"]), str(item["unit"])),
                        algorithm_id=algorithm_id,
                    )
                    for item in group["measurements"]
                ],
            )
        )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=_coded("SCT", "363679005", "Imaging"),
        imaging_measurements=measurement_groups,
    )
    return hd.sr.Comprehensive3DSR(
        evidence=[with_type2(ds) for ds in evidence],
        content=report[0],
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="Kahu",
        series_description=series_description[:64],
        is_complete=True,
    )


def _concept(item: Dataset) -> tuple[str, str]:
    code = item.ConceptNameCodeSequence[0]
    return str(code.CodingSchemeDesignator), str(code.CodeValue)


def _walk(items: Sequence[Dataset]) -> Iterator[Dataset]:
    for item in items:
        yield item
        yield from _walk(item.get("ContentSequence", []))


def sr_to_measurements(sr: Dataset) -> dict[str, Any]:
    """The measurement groups of a TID 1500 report as the JSON shape above."""
    groups = []
    algorithm: dict[str, str] = {}
    for item in _walk(sr.get("ContentSequence", [])):
        if item.get("ValueType") != "CONTAINER" or _concept(item) != _GROUP:
            continue
        group: dict[str, Any] = {"name": "", "measurements": []}
        for child in item.get("ContentSequence", []):
            kind, concept = child.get("ValueType"), _concept(child)
            if kind == "TEXT" and concept == _TRACKING_ID:
                group["name"] = str(child.TextValue)
            elif kind == "CODE" and concept == _FINDING:
                group["finding"] = str(child.ConceptCodeSequence[0].CodeMeaning)
            elif kind == "NUM":
                value = child.MeasuredValueSequence[0]
                number = float(value.NumericValue)
                group["measurements"].append(
                    {
                        "name": str(child.ConceptNameCodeSequence[0].CodeMeaning),
                        "value": int(number) if number.is_integer() else number,
                        "unit": str(value.MeasurementUnitsCodeSequence[0].CodeValue),
                    }
                )
                for sub in child.get("ContentSequence", []):
                    if _concept(sub) == _ALGORITHM_NAME:
                        algorithm["name"] = str(sub.TextValue)
                    elif _concept(sub) == _ALGORITHM_VERSION:
                        algorithm["version"] = str(sub.TextValue)
        groups.append(group)
    doc: dict[str, Any] = {"groups": groups}
    if algorithm:
        doc["algorithm"] = algorithm
    return doc


def _json_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.json"))


def json_to_sr_task(ctx: TaskContext) -> None:
    """Each JSON file of the first input as an SR about the second input's series."""
    names = list(ctx.job.inputs)
    evidence = [
        pydicom.dcmread(p, stop_before_pixels=True) for p in dicom_files(ctx.input(names[1]))
    ]
    found = _json_files(ctx.input(names[0]))
    if not found:
        raise InvalidMeasurements(f"no .json file in the output of {names[0]}")
    for path in found:
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise InvalidMeasurements(f"{path.name} is not JSON: {exc}") from None
        sr = measurements_to_sr(
            doc, evidence, series_description=str(ctx.options["series_description"])
        )
        sr.save_as(ctx.out_dir / f"{sr.SOPInstanceUID}.dcm", enforce_file_format=True)
        ctx.log.info("%s -> SR %s", path.name, sr.SOPInstanceUID)


def sr_to_json_task(ctx: TaskContext) -> None:
    """Each TID 1500 SR in the input as ``<SOPInstanceUID>.json``; other objects are skipped."""
    for path in dicom_files(ctx.in_dir):
        ds = pydicom.dcmread(path)
        if ds.get("Modality") != "SR":
            continue
        doc = sr_to_measurements(ds)
        (ctx.out_dir / f"{ds.SOPInstanceUID}.json").write_text(json.dumps(doc, indent=2))
        ctx.log.info("%s: %d measurement groups", path.name, len(doc["groups"]))


def json_to_sr_operator(
    name: str,
    *,
    measurements_from: str,
    source_from: str = "get-input",
    series_description: str = "Measurements",
) -> Operator:
    """Per series: the JSON measurements ``measurements_from`` wrote as TID 1500 SRs about
    the series ``source_from`` fetched."""
    return python_operator(
        name,
        json_to_sr_task,
        inputs=[measurements_from, source_from],
        resources=Resources(cpu=1, memory_mb=512),
        description="Store JSON measurements as a DICOM SR (TID 1500)",
        options={"series_description": series_description},
    )


def sr_to_json_operator(
    name: str = "sr-to-json", *, inputs: Sequence[str] = ("get-input",)
) -> Operator:
    """Per series: TID 1500 SRs as JSON measurements."""
    return python_operator(
        name,
        sr_to_json_task,
        inputs=inputs,
        resources=Resources(cpu=1, memory_mb=512),
        description="Read DICOM SR measurements (TID 1500) as JSON",
    )
