"""The export-deidentified-zip workflow end to end: a CT and its SEG, de-identified into a
zip with no original identifier in a name, references intact, the same pseudonyms and UIDs at
every run (the site key)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pydicom
from fastapi.testclient import TestClient

from kahu.app import create_app
from kahu.core import Kahu
from kahu.dicom.deidentify import Deidentifier
from tests.flow.conftest import run_workflow
from tests.operators.test_deidentify import _ct_and_seg, _saved


def test_the_export_workflow_delivers_deidentified_files(local_kahu: Kahu) -> None:
    ct, seg = _ct_and_seg()
    for ds in [*ct, seg]:
        local_kahu.ingestor.ingest_many([_saved(ds)])
    ct_uid, seg_uid = str(ct[0].SeriesInstanceUID), str(seg.SeriesInstanceUID)
    params = {"retain_dates": True}
    run_id = run_workflow(local_kahu, "export-deidentified-zip", [ct_uid, seg_uid], params)
    assert local_kahu.flow.wait_idle(run_id, 120) == "succeeded"
    key = local_kahu.settings.home / "deid.key"
    assert key.stat().st_mode & 0o777 == 0o600
    local_kahu.accounts.ensure_admin(local_kahu.settings.admin_password_file)
    token, _ = local_kahu.accounts.create_token("admin")
    with TestClient(create_app(local_kahu.settings, local_kahu)) as client:
        download = client.get(
            f"/api/v1/runs/{run_id}/files/zip/{run_id}.zip",
            headers={"Authorization": f"Bearer {token}"},
        )
    assert download.status_code == 200
    with zipfile.ZipFile(io.BytesIO(download.content)) as archive:
        names = archive.namelist()
        files = [pydicom.dcmread(io.BytesIO(archive.read(n))) for n in names]
    originals = {ct_uid, seg_uid, *(str(d.SOPInstanceUID) for d in ct)}
    assert not any(uid in name for name in names for uid in originals)
    assert len(files) == len(ct) + 1
    [new_seg] = [f for f in files if f.Modality == "SEG"]
    new_ct = [f for f in files if f.Modality == "CT"]
    assert new_seg.ReferencedSeriesSequence[0].SeriesInstanceUID == new_ct[0].SeriesInstanceUID
    assert {f.PatientID for f in files} == {Deidentifier(_key(key)).pseudonym("SEG-PATIENT")}
    assert all(f.LongitudinalTemporalInformationModified == "MODIFIED" for f in files)
    # run again: the same pseudonyms and UIDs (the site key)
    again = run_workflow(local_kahu, "export-deidentified-zip", [ct_uid], params)
    assert local_kahu.flow.wait_idle(again, 120) == "succeeded"
    zipped = local_kahu.settings.runs_root / again / "zip" / f"{again}.zip"
    with zipfile.ZipFile(zipped) as archive:
        assert {n.split("/")[0] for n in archive.namelist()} == {str(new_ct[0].SeriesInstanceUID)}


def _key(path: Path) -> bytes:
    return bytes.fromhex(path.read_text().strip())
