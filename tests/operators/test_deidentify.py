"""De-identification (PS3.15 basic profile and options): no identifying value survives on
real test files, references stay intact (a SEG points at its de-identified CT), pseudonyms
and UIDs are consistent, and the options do what they say (the export workflow:
tests/flow/test_deidentify_export.py)."""

from __future__ import annotations

import copy
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from kahu.dicom.deidentify import Deidentifier, Options, _action
from kahu.operators.seg import volume_to_seg
from tests.synthetic import ct_volume

KEY = b"0123456789abcdef0123456789abcdef"
REAL = ["CT_small.dcm", "MR_small.dcm", "rtdose.dcm", "rtplan.dcm", "test-SR.dcm",
        "JPEG2000.dcm", "US1_J2KR.dcm", "emri_small.dcm", "SC_rgb.dcm"]  # fmt: skip
#: identifying values a file may hold, by keyword: none may be found in the output's bytes
IDENTIFYING = ("PatientName", "PatientID", "OtherPatientIDs", "AccessionNumber",
               "InstitutionName", "InstitutionAddress", "ReferringPhysicianName",
               "PerformingPhysicianName", "OperatorsName", "StationName", "StudyID",
               "PatientBirthDate", "DeviceSerialNumber", "PhysiciansOfRecord")  # fmt: skip


def _elements(ds: Dataset) -> Iterator[pydicom.DataElement]:
    for element in ds:
        yield element
        if element.VR == "SQ":
            for item in element.value:
                yield from _elements(item)


def _read(name: str) -> Dataset:
    path = get_testdata_file(name)
    assert path is not None, name
    return pydicom.dcmread(path)


def _saved(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@pytest.mark.parametrize("name", REAL)
def test_no_identifying_value_survives(name: str) -> None:
    original = _read(name)
    secrets = set()
    for element in _elements(original):
        if element.keyword in IDENTIFYING and element.value not in (None, ""):
            text = str(element.value)
            secrets |= {text} | {p for p in text.replace("=", "^").split("^") if len(p) >= 4}
    # a station named after its maker: the maker's name itself is kept (not identifying)
    kept = " ".join(str(original.get(k, "")) for k in ("Manufacturer", "ManufacturerModelName"))
    secrets = {s for s in secrets if s not in kept and len(s) >= 4}  # "1" is in any file
    uids = {
        str(e.value)
        for e in _elements(original)
        if e.VR == "UI" and _action(int(e.tag)) in ("U", "U*") and e.value
    }
    # the software that wrote the file (file meta) is not the patient's
    uids.discard(str(original.file_meta.get("ImplementationClassUID", "")))
    ds = Deidentifier(KEY).dataset(_read(name))
    data = _saved(ds)
    leaked = [s for s in secrets if s.encode() in data]
    assert leaked == [], f"{name}: {leaked}"
    assert [u for u in uids if u.encode() in data] == []
    assert not any(e.tag.is_private for e in _elements(ds))
    for element in _elements(ds):
        action = _action(int(element.tag))
        if action == "X":
            pytest.fail(f"{name}: {element.keyword} should have been removed")
        if action == "Z" and element.VR != "SQ" and element.keyword not in ("PatientName",):
            assert element.value in (None, "", b""), element.keyword
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.LongitudinalTemporalInformationModified == "REMOVED"
    assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    again = pydicom.dcmread(io.BytesIO(data))  # a valid file
    assert again.SOPClassUID == original.SOPClassUID
    if "PixelData" in original:
        assert again.PixelData == original.PixelData


def _ct_and_seg() -> tuple[list[Dataset], Dataset]:
    files, hu = ct_volume(slices=6, size=16, patient_id="SEG-PATIENT", shuffle=False)
    ct = [pydicom.dcmread(io.BytesIO(f)) for f in files]
    seg = volume_to_seg((hu > 300).astype(np.uint8), ct, {1: "bone"})
    return ct, seg


def test_a_deidentified_seg_points_at_its_deidentified_ct() -> None:
    import highdicom as hd

    ct, seg = _ct_and_seg()
    old_ct_sops = {str(d.SOPInstanceUID) for d in ct}
    deidentifier = Deidentifier(KEY)
    new_ct = [deidentifier.dataset(d) for d in ct]
    new_seg = deidentifier.dataset(seg)
    sops = {str(d.SOPInstanceUID) for d in new_ct}
    assert not sops & old_ct_sops
    [reference] = new_seg.ReferencedSeriesSequence
    assert reference.SeriesInstanceUID == new_ct[0].SeriesInstanceUID
    assert {str(r.ReferencedSOPInstanceUID) for r in reference.ReferencedInstanceSequence} <= sops
    assert new_seg.StudyInstanceUID == new_ct[0].StudyInstanceUID
    assert new_seg.FrameOfReferenceUID == new_ct[0].FrameOfReferenceUID
    assert new_seg.PatientID == new_ct[0].PatientID
    assert new_seg.PatientID.startswith("KAHU-")
    parsed = hd.seg.segread(io.BytesIO(_saved(new_seg)))
    sources = {uid for _, _, uid in parsed.get_source_image_uids()}
    assert sources == sops  # every frame's source is a de-identified CT slice


def test_pseudonyms_and_uids_are_consistent_per_key() -> None:
    first = Deidentifier(KEY).dataset(_read("CT_small.dcm"))
    second = Deidentifier(KEY).dataset(_read("CT_small.dcm"))
    other = Deidentifier(b"another key of 32 bytes........!").dataset(_read("CT_small.dcm"))
    assert first.PatientID == second.PatientID
    assert first.SOPInstanceUID == second.SOPInstanceUID
    assert first.PatientID != other.PatientID
    assert first.StudyInstanceUID != other.StudyInstanceUID
    assert len(first.StudyInstanceUID) <= 64
    assert pydicom.uid.UID(first.StudyInstanceUID).is_valid


def test_options_keep_what_they_name() -> None:
    original = _read("CT_small.dcm")
    original.SeriesDescription = f"chest {original.PatientID} of {original.PatientName}"
    options = Options(retain_dates=True, retain_patient_characteristics=True,
                      clean_descriptors=True)  # fmt: skip
    deidentifier = Deidentifier(KEY, options)
    ds = deidentifier.dataset(copy.deepcopy(original))
    shift = deidentifier.shift_days(str(original.PatientID))
    assert 1 <= shift <= 365
    study = pydicom.valuerep.DA(original.StudyDate)
    assert pydicom.valuerep.DA(ds.StudyDate) == study - np.timedelta64(shift, "D").item()
    assert ds.StudyTime == original.StudyTime
    assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
    assert ds.PatientSex == original.PatientSex
    assert ds.get("PatientBirthDate") in (None, "")
    assert ds.SeriesDescription == "chest of"
    assert [c.CodeValue for c in ds.DeidentificationMethodCodeSequence] == [
        "113100", "113105", "113107", "113108",
    ]  # fmt: skip
    # two studies of one patient keep their interval
    later = _read("CT_small.dcm")
    later.StudyDate = "20050119"
    assert (
        pydicom.valuerep.DA(deidentifier.dataset(later).StudyDate)
        - pydicom.valuerep.DA(ds.StudyDate)
    ).days == 366
    # without the options: dates and characteristics go, descriptors too
    plain = Deidentifier(KEY).dataset(_read("CT_small.dcm"))
    assert plain.StudyDate in (None, "")
    assert plain.get("PatientSex") in (None, "")
    assert "SeriesDescription" not in plain
    assert "PatientAge" not in plain


def test_tasks_starting_together_share_one_site_key(tmp_path: Path) -> None:
    """Per-series de-identification tasks start at once on a fresh home: each must get the
    same whole key (a half-written or second key would give one patient two pseudonyms)."""
    import stat
    import threading

    from kahu.dicom.deidentify import site_key

    for attempt in range(20):
        home = tmp_path / f"home{attempt}"
        start = threading.Barrier(8)
        keys: list[bytes | BaseException] = []

        def take(
            home: Path = home,
            start: threading.Barrier = start,
            keys: list[bytes | BaseException] = keys,
        ) -> None:
            start.wait()
            try:
                keys.append(site_key(home))
            except BaseException as exc:  # collected: the assertion names it
                keys.append(exc)

        threads = [threading.Thread(target=take) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(set(keys)) == 1, keys
        assert isinstance(keys[0], bytes)
        assert len(keys[0]) == 32
        assert stat.S_IMODE((home / "deid.key").stat().st_mode) == 0o600
        assert [p.name for p in home.iterdir()] == ["deid.key"]  # no temporary left
