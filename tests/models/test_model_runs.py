"""Workflows that name an installed model: the launch resolves it for the run's project and
pins its version, the operator finds its files (a command in the sandbox too, read-only),
and the model cannot be uninstalled while a run uses it."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kahu.actions import Actor
from kahu.actions import models as actions
from kahu.core import Kahu
from kahu.errors import Conflict, InvalidParameters
from kahu.flow import TaskContext, Workflow, application_operator, command_operator, python_operator
from kahu.flow.job import RunPaths
from kahu.flow.model import model_parameter
from tests.flow.conftest import add_series, flow_settings, run_workflow, start_kahu
from tests.models.builders import manifest_folder

#: a program in the sandbox: reads the model's manifest, tries to change the model
PROBE = """
import json, os, pathlib
folder = pathlib.Path(os.environ["KAHU_MODEL_MODEL"])
name = json.loads((folder / "kahu-model.json").read_text())["name"]
try:
    (folder / "x").write_text("x")
    writable = "writable"
except OSError:
    writable = "read-only"
pathlib.Path(os.environ["KAHU_OUT_DIR"], "probe.txt").write_text(name + " " + writable)
"""


def use_model(ctx: TaskContext) -> None:
    model = ctx.model("model")
    seen = {
        "ref": f"{model.name}@{model.version}",
        "sha256": model.sha256,
        "labels": {str(k): v["name"] for k, v in model.labels.items()},
        "entry": (model.path / model.manifest["entry"]).is_file(),
        "param": ctx.params["model"],
        "memory_mb": ctx.job.memory_mb,
    }
    (ctx.out_dir / "seen.json").write_text(json.dumps(seen))


def workflow(name: str, *operators: Any) -> Workflow:
    return Workflow(
        name=name,
        version="1",
        parameters={
            "type": "object",
            "properties": {"model": model_parameter(formats=["torchscript"])},
            "required": ["model"],
        },
        operators=operators,
    )


USE = workflow(
    "test-use-model",
    python_operator("use", use_model, models=["model"]),
    command_operator("probe", [sys.executable, "-c", PROBE], isolation="required"),
)
HOLD = workflow("test-hold-model", application_operator("wait", per="run"))


@pytest.fixture
def kahu(make_settings: Any) -> Iterator[Kahu]:
    instance = start_kahu(flow_settings(make_settings))
    instance.workflows.add(USE)
    instance.workflows.add(HOLD)
    yield instance
    instance.stop()


def test_the_run_gets_the_model_its_project_may_use(kahu: Kahu, tmp_path: Path) -> None:
    if shutil.which("bwrap") is None:
        pytest.fail("bubblewrap is not installed: run `make test`, which installs it")
    older = kahu.models.install(manifest_folder(tmp_path / "a"))
    newer = kahu.models.install(manifest_folder(tmp_path / "b", version="10.0"))
    [series] = add_series(kahu, 1)
    run_id = run_workflow(kahu, "test-use-model", [series], {"model": "liver"})
    assert kahu.flow.wait_idle(run_id, 60) == "succeeded"
    paths = RunPaths(kahu.settings.runs_root, run_id)
    seen = json.loads((paths.out_dir("use", series) / "seen.json").read_text())
    assert seen == {
        "ref": "liver@10.0",
        "sha256": newer.sha256,
        "labels": {"1": "liver"},
        "entry": True,
        "param": "liver@10.0",  # pinned at launch
        "memory_mb": 2048,  # the model's need, more than the operator's own 512 MB
    }
    assert kahu.runs.run(run_id).params["model"] == "liver@10.0"
    probe = (paths.out_dir("probe", series) / "probe.txt").read_text()
    assert probe == "liver read-only"
    pinned = run_workflow(kahu, "test-use-model", [series], {"model": "liver@2.0"})
    assert kahu.flow.wait_idle(pinned, 60) == "succeeded"
    seen = json.loads(
        (RunPaths(kahu.settings.runs_root, pinned).out_dir("use", series) / "seen.json").read_text()
    )
    assert seen["sha256"] == older.sha256


def test_a_model_the_project_may_not_use_is_refused_at_launch(kahu: Kahu, tmp_path: Path) -> None:
    kahu.projects.create("lung")
    kahu.models.install(manifest_folder(tmp_path))
    actions.set_projects(kahu, Actor.cli(), "liver", None, ["lung"])
    [series] = add_series(kahu, 1)
    before = kahu.runs.active_run_ids()
    for ref in ("liver", "nothing", "liver@9"):
        with pytest.raises(InvalidParameters) as refused:
            run_workflow(kahu, "test-use-model", [series], {"model": ref})
        [error] = refused.value.errors
        assert error["field"] == "model"
        assert "for project 'default'" in error["message"]
    assert kahu.runs.active_run_ids() == before


@pytest.mark.parametrize(
    ("resources", "reason"),
    [
        ({"memory_mb": 10**8}, "needs 100000000 MB of memory; this machine has"),
        ({"gpu": "required", "gpu_memory_mb": 10**8}, "needs 100000000 MB of GPU memory"),
    ],
)
def test_a_model_that_needs_more_than_the_site_has_is_refused_at_launch(
    kahu: Kahu, tmp_path: Path, resources: dict[str, Any], reason: str
) -> None:
    kahu.models.install(manifest_folder(tmp_path, version="3.0", resources=resources))
    [series] = add_series(kahu, 1)
    before = kahu.runs.active_run_ids()
    with pytest.raises(Conflict) as refused:
        run_workflow(kahu, "test-use-model", [series], {"model": "liver"})
    assert str(refused.value).startswith("operator use with model liver@3.0 " + reason)
    assert kahu.runs.active_run_ids() == before


def test_series_of_a_modality_the_model_does_not_take_are_refused(
    kahu: Kahu, tmp_path: Path
) -> None:
    import SimpleITK as sitk

    from tests.synthetic import series_from_volume

    kahu.models.install(manifest_folder(tmp_path))  # takes CT
    [ct] = add_series(kahu, 1)
    files = series_from_volume(sitk.Image(8, 8, 2, sitk.sitkUInt16), modality="MR")
    [mr] = {r.series_instance_uid for r in kahu.ingestor.ingest_many(files)}
    before = kahu.runs.active_run_ids()
    with pytest.raises(InvalidParameters) as refused:
        run_workflow(kahu, "test-use-model", [ct, str(mr)], {"model": "liver"})
    [error] = refused.value.errors
    assert error["field"] == "model"
    assert error["message"] == f"liver@2.0 takes CT series; 1 of the cohort are not: {mr} (MR)"
    assert kahu.runs.active_run_ids() == before


def test_a_model_in_use_is_not_uninstalled(kahu: Kahu, tmp_path: Path) -> None:
    kahu.models.install(manifest_folder(tmp_path))
    [series] = add_series(kahu, 1)
    run_id = run_workflow(kahu, "test-hold-model", [series], {"model": "liver"})
    with pytest.raises(Conflict, match=f"in use by run {run_id}"):
        actions.uninstall(kahu, Actor.cli(), "liver", "2.0")
    assert [m.ref for m in kahu.models.all()] == ["liver@2.0"]
    kahu.flow.cancel(run_id)
    assert kahu.flow.wait_idle(run_id, 60) == "cancelled"
    actions.uninstall(kahu, Actor.cli(), "liver", "2.0")
    assert kahu.models.all() == []
