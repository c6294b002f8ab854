"""Internal operators read only what their run may read: the series of the run's project,
while the user who launched it holds a role there (:mod:`kahu.flow.services`)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest

from kahu.core import Kahu
from kahu.dimse.nodes import Node
from kahu.errors import NotFound, PermissionDenied
from kahu.flow import Workflow
from kahu.operators import get_input, get_referenced
from kahu.operators.catalog import fetch_referenced, fetch_series, ingest_results
from kahu.operators.maintenance import delete_series_task, reindex_task
from kahu.operators.send import send_series
from kahu.operators.thumbnail import make_thumbnail
from tests.conftest import SYSTEM
from tests.flow.conftest import flow_settings, internal_task, start_kahu
from tests.synthetic import ct_volume


@pytest.fixture
def two_projects(make_settings: Any) -> Iterator[tuple[Kahu, str, str]]:
    """A CT in project ``b`` only and a SEG drawn on it in project ``a``."""
    from kahu.operators.seg import volume_to_seg

    kahu = start_kahu(flow_settings(make_settings))
    try:
        kahu.projects.create("a")
        kahu.projects.create("b")
        files, hu = ct_volume(slices=4, size=16)
        [ct] = {r.series_instance_uid for r in kahu.ingestor.ingest_many(files, project="b")}
        assert ct is not None
        ordered = sorted(
            (pydicom.dcmread(io.BytesIO(f)) for f in files),
            key=lambda ds: float(ds.ImagePositionPatient[2]),
        )
        seg = volume_to_seg((hu > 300).astype("uint8"), ordered, {1: "bone"})
        out = io.BytesIO()
        seg.save_as(out, enforce_file_format=True)
        [stored] = kahu.ingestor.ingest_many([out.getvalue()], project="a")
        assert stored.series_instance_uid is not None
        kahu.workflows.add(
            Workflow("fetch-with-references", "1.0", (get_input(), get_referenced()))
        )
        yield kahu, stored.series_instance_uid, ct
    finally:
        kahu.stop()


def _launch(kahu: Kahu, series: str, project: str, created_by: str = "") -> str:
    from kahu.flow.cohort import RunInput
    from kahu.flow.launch import launch

    [run_id] = launch(
        kahu.catalog, kahu.workflows, kahu.flow, "fetch-with-references", None,
        RunInput(series_uids=(series,)), project=project, created_by=created_by,
        audit=kahu.audit, path="test",
    )  # fmt: skip
    return run_id


class TestReferencesAcrossProjects:
    def test_a_reference_into_another_project_fails_naming_it(
        self, two_projects: tuple[Kahu, str, str]
    ) -> None:
        kahu, seg, ct = two_projects
        run_id = _launch(kahu, seg, "a")
        assert kahu.flow.wait_idle(run_id, 60) == "failed"
        [error] = [t.error for t in kahu.runs.tasks(run_id) if t.state == "failed"]
        assert error == (f"ValueError: series {seg} refers to 1 series not in project a: {ct}")
        fetched = kahu.settings.runs_root / run_id / "batch" / seg / "get-referenced"
        assert not any(fetched.rglob("*.dcm"))  # nothing of project b in the run folder

    def test_the_same_reference_inside_the_project_is_fetched(
        self, two_projects: tuple[Kahu, str, str]
    ) -> None:
        kahu, seg, ct = two_projects
        kahu.catalog.add_to_project("a", ct)  # the CT is shared with project a
        run_id = _launch(kahu, seg, "a")
        assert kahu.flow.wait_idle(run_id, 60) == "succeeded"
        fetched = kahu.settings.runs_root / run_id / "batch" / seg / "get-referenced" / ct
        assert len(list(fetched.glob("*.dcm"))) == 4

    def test_a_launcher_who_left_the_project_reads_nothing(
        self, two_projects: tuple[Kahu, str, str]
    ) -> None:
        kahu, seg, ct = two_projects
        kahu.catalog.add_to_project("a", ct)
        kahu.accounts.create_user("ann", "a long enough password")
        kahu.projects.set_member("a", "ann", "scientist")
        run_id = _launch(kahu, seg, "a", created_by="ann")
        assert kahu.flow.wait_idle(run_id, 60) == "succeeded"
        kahu.projects.remove_member("a", "ann")
        again = _launch(kahu, seg, "a", created_by="ann")
        assert kahu.flow.wait_idle(again, 60) == "failed"
        errors = {t.error for t in kahu.runs.tasks(again) if t.state == "failed"}
        assert errors == {  # get-input and get-referenced both
            "PermissionDenied: this run may not act any more: ann, who launched the run, has left a"
        }


class TestEveryCatalogOperatorIsScoped:
    """Each built-in internal operator that reads the catalog, called as a run of project
    ``a`` on project ``b``'s CT: refused, and nothing of the CT read or changed."""

    def test_get_input(self, two_projects: tuple[Kahu, str, str], tmp_path: Path) -> None:
        kahu, _, ct = two_projects
        ctx, services = internal_task(kahu, tmp_path / "run", project="a", series_uid=ct)
        with pytest.raises(ValueError, match=f"series {ct} has no instances in project a"):
            fetch_series(ctx, services)
        assert not any(ctx.out_dir.iterdir())

    def test_get_referenced_of_a_foreign_series(
        self, two_projects: tuple[Kahu, str, str], tmp_path: Path
    ) -> None:
        kahu, _, ct = two_projects
        ctx, services = internal_task(kahu, tmp_path / "run", project="a", series_uid=ct)
        with pytest.raises(NotFound, match=f"series {ct} is not in project a"):
            fetch_referenced(ctx, services)

    def test_delete_series(self, two_projects: tuple[Kahu, str, str], tmp_path: Path) -> None:
        kahu, _, ct = two_projects
        ctx, services = internal_task(
            kahu, tmp_path / "run", project="a", series_uid=ct, params={"confirm": True}
        )
        with pytest.raises(NotFound, match=f"series {ct} is not in project a"):
            delete_series_task(ctx, services)
        assert len(kahu.catalog.instances(SYSTEM, series_uid=ct)) == 4
        assert kahu.audit.query(action="series.delete") == []

    def test_reindex(self, two_projects: tuple[Kahu, str, str], tmp_path: Path) -> None:
        kahu, _, ct = two_projects
        ctx, services = internal_task(kahu, tmp_path / "run", project="a", series_uid=ct)
        with pytest.raises(NotFound, match=f"series {ct} is not in project a"):
            reindex_task(ctx, services)

    def test_thumbnail(self, two_projects: tuple[Kahu, str, str], tmp_path: Path) -> None:
        from kahu.catalog.thumbnails import thumbnail_key

        kahu, _, ct = two_projects
        ctx, services = internal_task(kahu, tmp_path / "run", project="a", series_uid=ct)
        with pytest.raises(ValueError, match=f"series {ct} has no instances"):
            make_thumbnail(ctx, services)
        with pytest.raises(NotFound):
            kahu.store.get(thumbnail_key(ct))

    def test_send_to_node(self, two_projects: tuple[Kahu, str, str], tmp_path: Path) -> None:
        kahu, _, ct = two_projects
        kahu.nodes.add(Node("pacs", "PACS", "127.0.0.1", 1, "", ("a",)))
        ctx, services = internal_task(
            kahu, tmp_path / "run", project="a", series_uid=ct, params={"node": "pacs"}
        )
        with pytest.raises(ValueError, match=f"series {ct} has no instances in project a"):
            send_series(ctx, services)
        assert kahu.audit.query(action="send") == []

    def test_send_to_a_node_of_another_project(
        self, two_projects: tuple[Kahu, str, str], tmp_path: Path
    ) -> None:
        kahu, _, ct = two_projects
        kahu.nodes.add(Node("pacs", "PACS", "127.0.0.1", 1, "", ("a",)))
        ctx, services = internal_task(
            kahu, tmp_path / "run", project="b", series_uid=ct, params={"node": "pacs"}
        )
        with pytest.raises(PermissionDenied, match="may not receive series of project b"):
            send_series(ctx, services)

    def test_results_enter_the_run_project_only(
        self, two_projects: tuple[Kahu, str, str], tmp_path: Path
    ) -> None:
        from kahu.flow.job import Job

        kahu, seg, _ = two_projects
        [row] = kahu.catalog.instances(SYSTEM, series_uid=seg)
        ctx, services = internal_task(kahu, tmp_path / "run", project="b")
        job = Job(**{**_fields(ctx.job), "inputs": {"made": "run"}, "per": "run"})
        job.in_dir("made").mkdir(parents=True)
        ds = pydicom.dcmread(io.BytesIO(kahu.store.get(row.blob_key)))
        ds.SeriesInstanceUID = pydicom.uid.generate_uid()
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.save_as(job.in_dir("made") / "result.dcm", enforce_file_format=True)
        ingest_results(type(ctx)(job, ctx.log), services)
        assert kahu.projects.series_projects(str(ds.SeriesInstanceUID)) == ["b"]


def _fields(job: object) -> dict[str, object]:
    from dataclasses import fields

    return {f.name: getattr(job, f.name) for f in fields(job)}  # type: ignore[arg-type]


class TestServices:
    def test_an_instance_of_another_project_cannot_be_read(
        self, two_projects: tuple[Kahu, str, str], tmp_path: Path
    ) -> None:
        """Even given an instance row (got elsewhere), the services read only what is in
        the run's project."""
        kahu, seg, ct = two_projects
        [row, *_] = kahu.catalog.instances(SYSTEM, series_uid=ct)
        _, services = internal_task(kahu, tmp_path / "run", project="a", series_uid=seg)
        with pytest.raises(NotFound, match=f"series {ct} is not in project a"):
            services.read(row)
        with pytest.raises(NotFound):
            services.copy_to(row, tmp_path / "x.dcm")
        assert not (tmp_path / "x.dcm").exists()
        [own] = services.instances(seg)
        assert services.read(own)[128:132] == b"DICM"
