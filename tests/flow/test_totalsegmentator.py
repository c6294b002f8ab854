"""TotalSegmentator: unavailable (with how to install its weights) until a site installs
them, never a download; its classes named, coded and coloured from its own mapping; and the
SEG writing path of a multi-label output, on a real multi-label volume (nilearn's MNI152 grey
and white matter)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from kahu.core import Kahu
from kahu.errors import Conflict
from kahu.flow.cohort import RunInput
from kahu.flow.launch import launch
from kahu.operators.inference import write_seg_spec
from kahu.operators.seg import labels_to_seg, seg_to_volumes
from kahu.operators.totalseg import _no_downloads, class_labels, renumber
from tests.synthetic import series_from_volume


def _weights(root: Path) -> Path:
    """A weights folder laid out as TotalSegmentator's (stand-in checkpoint bytes)."""
    fold = root / "Dataset291_TotalSegmentator_part1_organs_1559subj"
    fold = fold / "nnUNetTrainerNoMirroring__nnUNetPlans__3d_fullres" / "fold_0"
    fold.mkdir(parents=True)
    (fold / "checkpoint_final.pth").write_bytes(b"weights")
    return root


def test_unavailable_until_its_weights_are_installed(sqlite_kahu: Kahu, tmp_path: Path) -> None:
    workflow = sqlite_kahu.workflows.get("totalsegmentator")
    why = workflow.unavailable(sqlite_kahu.models.formats())
    assert "needs a totalsegmentator model" in why
    assert "kahu models import" in why
    with pytest.raises(Conflict, match="totalseg_download_weights"):
        launch(
            sqlite_kahu.catalog, sqlite_kahu.workflows, sqlite_kahu.flow, "totalsegmentator",
            {}, RunInput(query="*"), audit=sqlite_kahu.audit,
        )  # fmt: skip
    model = sqlite_kahu.models.install(
        _weights(tmp_path / "weights"), overrides={"name": "totalsegmentator", "licence": "test"}
    )
    assert model.format == "totalsegmentator"
    assert workflow.unavailable(sqlite_kahu.models.formats()) == ""


def test_weights_are_never_downloaded(tmp_path: Path) -> None:
    check = _no_downloads(_weights(tmp_path))
    check(291)  # present: nothing to do
    with pytest.raises(RuntimeError, match="Dataset297 and they are not in the installed model"):
        check(297)


def test_classes_carry_totalsegmentators_names_codes_and_colours() -> None:
    labels = class_labels("total", [5, 1])
    assert labels[5]["name"] == "liver"
    assert labels[5]["code"] == ["SCT", "10200004", "Liver"]
    assert labels[1]["name"] == "spleen"
    assert labels[5]["colour"].startswith("#")
    with pytest.raises(ValueError, match="no class 999"):
        class_labels("total", [999])
    with pytest.raises(ValueError, match="no task"):
        class_labels("nothing", [1])


def test_class_values_become_segment_numbers_without_gaps() -> None:
    output = np.array([[[0, 5, 5], [90, 0, 1]]], np.uint8)
    found, numbered = renumber(output)
    assert found == [1, 5, 90]
    assert numbered.tolist() == [[[0, 2, 2], [3, 0, 1]]]


def test_a_real_multi_label_volume_as_a_seg_and_back(tmp_path: Path) -> None:
    import SimpleITK as sitk
    from nilearn.datasets import (
        load_mni152_gm_template,
        load_mni152_template,
        load_mni152_wm_template,
    )

    paths = {}
    for name, load in (("t1", load_mni152_template), ("gm", load_mni152_gm_template),
                       ("wm", load_mni152_wm_template)):  # fmt: skip
        paths[name] = tmp_path / f"{name}.nii.gz"
        load(resolution=2).to_filename(paths[name])
    image = sitk.ReadImage(str(paths["t1"]))
    gm, wm = (sitk.GetArrayFromImage(sitk.ReadImage(str(paths[k]))) for k in ("gm", "wm"))
    labels = np.zeros(gm.shape, np.uint8)
    labels[(gm > 0.5) & (gm >= wm)] = 1
    labels[(wm > 0.5) & (wm > gm)] = 2
    assert min((labels == 1).sum(), (labels == 2).sum()) > 10_000
    source = tmp_path / "mr"
    source.mkdir()
    for index, data in enumerate(series_from_volume(image, patient_id="MNI152")):
        (source / f"{index:03d}.dcm").write_bytes(data)
    out = tmp_path / "out"
    out.mkdir()
    volume = sitk.GetImageFromArray(labels)
    volume.CopyInformation(image)
    sitk.WriteImage(volume, str(out / "labels.nii.gz"))
    names = {1: {"name": "grey matter", "colour": "#c0c0c0"},
             2: {"name": "white matter", "colour": "#f5f5dc"}}  # fmt: skip
    write_seg_spec(out, names, ("tissue-model", "3"))
    spec = json.loads((out / "seg.json").read_text())
    files = sorted(source.iterdir())
    segments = {int(k): v for k, v in spec["segments"].items()}
    seg = labels_to_seg(out / "labels.nii.gz", files, segments, algorithm=("tissue-model", "3"))
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["grey matter", "white matter"]
    assert seg.SegmentSequence[1].SegmentAlgorithmName == "tissue-model"
    seg_path = tmp_path / "seg.dcm"
    seg.save_as(seg_path, enforce_file_format=True)
    [back] = seg_to_volumes(seg_path, tmp_path / "back", source_files=files)
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(back))), labels)
    colour = pydicom.dcmread(seg_path).SegmentSequence[0].RecommendedDisplayCIELabValue
    assert len(colour) == 3
