"""Kahu's own workflows, found through the entry point group and run by the engine."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient

from kahu.app import create_app
from kahu.core import Kahu
from kahu.dicom.structure import body_offset
from kahu.dimse.nodes import Node
from kahu.errors import Conflict, InvalidParameters
from kahu.flow import Workflow
from kahu.operators import cleanup, get_input, zip_outputs
from kahu.operators.seg import seg_to_volumes
from kahu.operators.send import SendFailed, send_instances
from kahu.operators.sr import sr_to_measurements
from tests.conftest import SYSTEM, free_port
from tests.flow.conftest import add_series, internal_task, run_workflow
from tests.synthetic import ct_volume


def _files_of(kahu: Kahu, series_uid: str) -> list[Path]:
    paths = []
    for instance in kahu.catalog.instances(SYSTEM, series_uid=series_uid):
        local = kahu.store.local_path(instance.blob_key)
        assert local is not None
        paths.append(Path(local))
    return paths


def test_builtin_workflows_are_registered_by_entry_point(local_kahu: Kahu) -> None:
    workflow = local_kahu.workflows.get("ct-threshold-segmentation")
    assert workflow.source.startswith("entry point ct-threshold-segmentation")
    assert workflow.parameters["properties"]["bone_min"]["default"] == 300


def test_threshold_segmentation_stores_seg_and_sr_with_lineage(local_kahu: Kahu) -> None:
    files, hu = ct_volume(slices=12, size=32)
    [ct] = {r.series_instance_uid for r in local_kahu.ingestor.ingest_many(files)}
    assert ct is not None
    run_id = run_workflow(local_kahu, "ct-threshold-segmentation", [ct], {"bone_min": 500})
    assert local_kahu.flow.wait_idle(run_id, 120) == "succeeded", local_kahu.flow.runs.tasks(run_id)

    results = {r["series_uid"] for r in local_kahu.lineage.of(ct)["results"]}
    assert len(results) == 2
    by_modality = {
        local_kahu.catalog.get_series(SYSTEM, uid).document["Modality"]: uid for uid in results
    }
    assert set(by_modality) == {"SEG", "SR"}
    derived = local_kahu.lineage.of(by_modality["SEG"])["derived_from"]
    assert derived == [
        {
            "run_id": run_id,
            "workflow": "ct-threshold-segmentation",
            "version": "1.0",
            "source_series_uid": ct,
        }
    ]

    # the stored SEG, read back on the CT's grid, is exactly the thresholded volume
    [seg_file] = _files_of(local_kahu, by_modality["SEG"])
    seg = pydicom.dcmread(seg_file)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == ct
    import SimpleITK as sitk

    [labels] = seg_to_volumes(
        seg_file, local_kahu.settings.home / "check", source_files=_files_of(local_kahu, ct)
    )
    expected = np.zeros(hu.shape, dtype=np.uint8)
    expected[(hu >= -100) & (hu < 300)] = 2
    expected[hu >= 500] = 1
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(labels))), expected)

    # the SR holds the volumes the SEG implies
    [sr_file] = _files_of(local_kahu, by_modality["SR"])
    report = sr_to_measurements(pydicom.dcmread(sr_file))
    voxel_ml = 0.8 * 0.8 * 2.5 / 1000
    volumes = {g["name"]: g["measurements"][0] for g in report["groups"]}
    assert volumes["bone"]["value"] == round(int((expected == 1).sum()) * voxel_ml, 3)
    assert volumes["soft tissue"]["unit"] == "ml"
    assert report["algorithm"] == {"name": "kahu-threshold", "version": "1.0"}


def test_threshold_segmentation_refuses_a_series_with_a_missing_slice(local_kahu: Kahu) -> None:
    files, _ = ct_volume(slices=8, size=16, shuffle=False)
    [ct] = {r.series_instance_uid for r in local_kahu.ingestor.ingest_many(files[:3] + files[4:])}
    assert ct is not None
    run_id = run_workflow(local_kahu, "ct-threshold-segmentation", [ct])
    assert local_kahu.flow.wait_idle(run_id, 120) == "failed"
    failed = [t for t in local_kahu.flow.runs.tasks(run_id) if t.state == "failed"]
    assert [t.operator for t in failed] == ["dicom-to-volume"]
    assert "inconsistent slice spacing" in failed[0].error
    assert "1 missing slice" in failed[0].error


def _api(kahu: Kahu) -> tuple[TestClient, dict[str, str]]:
    kahu.accounts.ensure_admin(kahu.settings.admin_password_file)
    token, _ = kahu.accounts.create_token("admin")
    return TestClient(create_app(kahu.settings, kahu)), {"Authorization": f"Bearer {token}"}


def test_export_dicom_zip_is_downloaded_from_the_run_files(local_kahu: Kahu) -> None:
    series = add_series(local_kahu, 2, instances=3)
    run_id = run_workflow(local_kahu, "export-dicom-zip", series)
    assert local_kahu.flow.wait_idle(run_id, 60) == "succeeded"
    client, headers = _api(local_kahu)
    with client:
        listing = client.get(f"/api/v1/runs/{run_id}/files?prefix=zip", headers=headers).json()
        assert [f["path"] for f in listing["files"]] == [f"zip/{run_id}.zip"]
        download = client.get(f"/api/v1/runs/{run_id}/files/zip/{run_id}.zip", headers=headers)
        assert download.status_code == 200
        # nothing outside the run folder is reachable, not even through a link
        (local_kahu.settings.runs_root / run_id / "zip" / "escape").symlink_to("/etc/passwd")
        for path in ["../../catalog.sqlite", "zip/escape", "%2e%2e/%2e%2e/catalog.sqlite"]:
            response = client.get(f"/api/v1/runs/{run_id}/files/{path}", headers=headers)
            assert response.status_code == 404, path
        assert client.get(f"/api/v1/runs/{run_id}/files", headers={}).status_code == 401
    with zipfile.ZipFile(io.BytesIO(download.content)) as archive:
        names = sorted(archive.namelist())
        assert len(names) == 6
        assert {n.split("/")[0] for n in names} == set(series)
        for name in names:
            uid, filename = name.split("/")
            sop = filename.removesuffix(".dcm")
            [row] = local_kahu.catalog.instances(SYSTEM, series_uid=uid, sop_uid=sop)
            assert archive.read(name) == local_kahu.store.get(row.blob_key)


def test_export_volumes_zip_as_nrrd(local_kahu: Kahu) -> None:
    files, hu = ct_volume(slices=6, size=16)
    [ct] = {r.series_instance_uid for r in local_kahu.ingestor.ingest_many(files)}
    assert ct is not None
    run_id = run_workflow(local_kahu, "export-volumes-zip", [ct], {"format": "nrrd"})
    assert local_kahu.flow.wait_idle(run_id, 60) == "succeeded"
    zip_path = local_kahu.settings.runs_root / run_id / "zip" / f"{run_id}.zip"
    with zipfile.ZipFile(zip_path) as archive:
        assert archive.namelist() == [f"{ct}/{ct}.nrrd"]
        target = local_kahu.settings.home / "volume.nrrd"
        target.write_bytes(archive.read(f"{ct}/{ct}.nrrd"))
    import SimpleITK as sitk

    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(target))), hu)
    with pytest.raises(InvalidParameters) as caught:
        run_workflow(local_kahu, "export-volumes-zip", [ct], {"format": "dicom"})
    assert caught.value.errors[0]["field"] == "format"


@pytest.fixture
def destination(make_settings: Any) -> Iterator[Kahu]:
    """A second Kahu, listening: the DICOM node series are sent to."""
    other = Kahu(make_settings(ae_title="DEST"))
    other.start()
    yield other
    other.stop()


def body_of(data: bytes) -> bytes:
    """The data set without its file meta (the receiver writes its own)."""
    return data[body_offset(data) :]


def test_send_to_node_delivers_the_stored_bytes(local_kahu: Kahu, destination: Kahu) -> None:
    series = add_series(local_kahu, 2, instances=2)
    local_kahu.nodes.add(Node("dest", "DEST", "127.0.0.1", destination.dicom.port))
    run_id = run_workflow(local_kahu, "send-to-node", series, {"node": "dest"})
    assert local_kahu.flow.wait_idle(run_id, 60) == "succeeded"
    sent = {
        r.sop_instance_uid: local_kahu.store.get(r.blob_key)
        for r in local_kahu.catalog.instances(SYSTEM)
    }
    received = {
        r.sop_instance_uid: destination.store.get(r.blob_key)
        for r in destination.catalog.instances(SYSTEM)
    }
    assert received.keys() == sent.keys()
    assert all(body_of(received[uid]) == body_of(sent[uid]) for uid in sent)


def test_send_to_a_node_of_another_project_is_refused(local_kahu: Kahu, destination: Kahu) -> None:
    series = add_series(local_kahu, 1)
    local_kahu.projects.create("other")
    local_kahu.nodes.add(Node("dest", "DEST", "127.0.0.1", destination.dicom.port, "", ("other",)))
    run_id = run_workflow(local_kahu, "send-to-node", series, {"node": "dest"})
    assert local_kahu.flow.wait_idle(run_id, 60) == "failed"
    errors = [t.error for t in local_kahu.runs.tasks(run_id) if t.state == "failed"]
    assert errors
    assert "may not receive series of project default" in errors[0]
    assert destination.catalog.instances(SYSTEM) == []


def test_sending_to_a_node_that_does_not_listen_names_it(local_kahu: Kahu, tmp_path: Path) -> None:
    [uid] = add_series(local_kahu, 1)
    node = Node("gone", "GONE", "127.0.0.1", free_port())
    _, services = internal_task(local_kahu, tmp_path / "run")
    with pytest.raises(SendFailed, match=r"gone \(GONE at 127.0.0.1:\d+\) did not accept"):
        send_instances(services, node, services.instances(uid))


def test_delete_series_needs_confirmation(local_kahu: Kahu) -> None:
    keep, gone = add_series(local_kahu, 2)
    with pytest.raises(InvalidParameters):
        run_workflow(local_kahu, "delete-series", [gone])
    run_id = run_workflow(local_kahu, "delete-series", [gone], {"confirm": True})
    assert local_kahu.flow.wait_idle(run_id, 60) == "succeeded"
    assert {r.series_instance_uid for r in local_kahu.catalog.instances(SYSTEM)} == {keep}


def test_cleanup_removes_intermediate_files_and_keeps_logs(local_kahu: Kahu) -> None:
    local_kahu.workflows.add(
        Workflow(
            "zip-then-clean",
            "1.0",
            (get_input(), zip_outputs(["get-input"]), cleanup(["zip"], operators=["get-input"])),
        )
    )
    series = add_series(local_kahu, 2)
    run_id = run_workflow(local_kahu, "zip-then-clean", series)
    assert local_kahu.flow.wait_idle(run_id, 60) == "succeeded"
    root = local_kahu.settings.runs_root / run_id
    assert not (root / "batch").exists() or not any((root / "batch").iterdir())
    assert (root / "zip" / f"{run_id}.zip").is_file()
    assert (root / "logs" / "cleanup.log").read_text().count("removed") == 1


def test_threshold_segmentation_of_a_single_real_slice(local_kahu: Kahu) -> None:
    """pydicom's CT_small: one real CT slice, a volume one voxel deep."""
    from pydicom.data import get_testdata_file

    data = Path(get_testdata_file("CT_small.dcm", read=False)).read_bytes()  # type: ignore[arg-type]
    [result] = local_kahu.ingestor.ingest_many([data])
    assert result.series_instance_uid is not None
    run_id = run_workflow(local_kahu, "ct-threshold-segmentation", [result.series_instance_uid])
    assert local_kahu.flow.wait_idle(run_id, 120) == "succeeded", local_kahu.flow.runs.tasks(run_id)
    assert len(local_kahu.lineage.of(result.series_instance_uid)["results"]) == 2


def test_seg_to_volume_on_the_referenced_series_grid(local_kahu: Kahu) -> None:
    """get_referenced brings the SEG's CT; the label volume lands exactly on its grid."""
    import SimpleITK as sitk

    from kahu.operators import get_referenced, seg_to_volume_operator
    from kahu.operators.seg import volume_to_seg

    files, hu = ct_volume(slices=8, size=16)
    [ct] = {r.series_instance_uid for r in local_kahu.ingestor.ingest_many(files)}
    assert ct is not None
    ordered = sorted(
        (pydicom.dcmread(io.BytesIO(f)) for f in files),
        key=lambda ds: float(ds.ImagePositionPatient[2]),
    )
    labels = (hu > 300).astype(np.uint8)
    seg = volume_to_seg(labels, ordered, {1: "bone"})
    out = io.BytesIO()
    seg.save_as(out, enforce_file_format=True)
    [stored] = local_kahu.ingestor.ingest_many([out.getvalue()])
    assert stored.series_instance_uid is not None
    local_kahu.workflows.add(
        Workflow(
            "seg-on-source",
            "1.0",
            (
                get_input(),
                get_referenced(),
                seg_to_volume_operator(
                    inputs=["get-input", "get-referenced"], source="get-referenced"
                ),
            ),
        )
    )
    run_id = run_workflow(local_kahu, "seg-on-source", [stored.series_instance_uid])
    assert local_kahu.flow.wait_idle(run_id, 60) == "succeeded", local_kahu.runs.tasks(run_id)
    out_dir = local_kahu.settings.runs_root / run_id / "batch" / stored.series_instance_uid
    [volume] = list((out_dir / "seg-to-volume").rglob("labels.nii.gz"))
    image = sitk.ReadImage(str(volume))
    assert np.array_equal(sitk.GetArrayFromImage(image), labels)
    assert image.GetOrigin() == pytest.approx((-6.4, -6.4, -100.0), abs=1e-4)

    # a SEG whose CT is not in the catalog: the task names the missing series
    local_kahu.ingestor.delete_series(ct)
    failed_run = run_workflow(local_kahu, "seg-on-source", [stored.series_instance_uid])
    assert local_kahu.flow.wait_idle(failed_run, 60) == "failed"
    errors = [t.error for t in local_kahu.runs.tasks(failed_run) if t.state == "failed"]
    assert errors == [
        f"ValueError: series {stored.series_instance_uid} refers to 1 series "
        f"not in project default: {ct}"
    ]


def test_reindex_restores_metadata_from_the_files(local_kahu: Kahu) -> None:
    """A series whose metadata went wrong is found again after re-indexing, by SQL and by
    the column index alike (which sees the series leave and come back)."""
    from dataclasses import replace

    from kahu.catalog.ingest import read_instance
    from kahu.search.series import search_series

    keep, broken = add_series(local_kahu, 2)
    index = local_kahu.search_index
    assert index is not None

    def found(query: str) -> set[str]:
        by_sql = {
            r.series_instance_uid for r in search_series(local_kahu.catalog, SYSTEM, query)[0]
        }
        by_index = search_series(local_kahu.catalog, SYSTEM, query, index=index)[0]
        assert {r.series_instance_uid for r in by_index} == by_sql
        return by_sql

    assert found("Modality:CT") == {keep, broken}
    [first, *_] = local_kahu.catalog.instances(SYSTEM, series_uid=broken)
    facts, _ = read_instance(local_kahu.store.get(first.blob_key))
    local_kahu.catalog.reindex_series(broken, replace(facts, modality="OT"), {"Modality": "OT"})
    assert found("Modality:CT") == {keep}
    assert found("Modality:OT") == {broken}
    run_id = run_workflow(local_kahu, "reindex-metadata", [broken])
    assert local_kahu.flow.wait_idle(run_id, 60) == "succeeded"
    assert found("Modality:CT") == {keep, broken}
    assert found("Modality:OT") == set()
    assert local_kahu.catalog.get_series(SYSTEM, broken).document["BodyPartExamined"] == "CHEST"


def test_a_workflow_whose_modules_are_missing_is_unavailable_not_failing(
    local_kahu: Kahu,
) -> None:
    """Listed with why and how to install, refused at launch with that, nothing created."""
    needy = Workflow(
        "needs-a-model",
        "1.0",
        (get_input(),),
        requires=("numpy", "kahu_no_such_module"),
        install="pip install kahu-no-such-module",
    )
    local_kahu.workflows.add(needy)
    [ct] = add_series(local_kahu, 1)
    with pytest.raises(Conflict, match=r"needs kahu_no_such_module.*pip install kahu-no-such"):
        run_workflow(local_kahu, "needs-a-model", [ct])
    assert local_kahu.flow.runs.runs(workflow="needs-a-model") == []
    client, auth = _api(local_kahu)
    with client:
        answer = client.get("/api/v1/workflows", headers=auth).json()
    [listed] = [w for w in answer["workflows"] if w["name"] == "needs-a-model"]
    assert "kahu_no_such_module" in listed["unavailable"]
    assert local_kahu.workflows.get("brain-extraction").requires == ("torch", "deepbet", "nibabel")
