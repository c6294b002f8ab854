"""nnU-Net v2 (Isensee et al., Nature Methods 2021) as Kahu operators: a training dataset
collected from the catalog's images and SEGs, planning, preprocessing and training, and
inference with an installed model. Needs ``kahu[ai]`` (nnunetv2, torch); a GPU is used when
torch sees one, the CPU otherwise.

Training follows Kaapana's: every SEG of the cohort is decoded onto its image's grid
(:func:`kahu.operators.evaluation.seg_masks_task`); :func:`collect_task` merges the SEGs of
one image, aligns label names across cases (case-insensitive), refuses a case whose labels
overlap (reported, not trained on) and writes an nnU-Net raw dataset. :func:`train_task`
plans, preprocesses (``3d_fullres``), trains one fold with nnU-Net's own trainer on a
shortened schedule, validates, and leaves a model folder (nnU-Net's results folder plus
``kahu-model.json``) and a training report for the registry and the catalog.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kahu.flow.job import RunModel, TaskContext
from kahu.operators.evaluation import write_report
from kahu.operators.inference import each_series
from kahu.operators.metrics import scores

if TYPE_CHECKING:
    from kahu.flow.services import OperatorServices

#: the dataset id of the nnU-Net folders inside a run (each run has its own)
DATASET_ID = 501
TRAINER = "nnUNetTrainer"
CONFIGURATION = "3d_fullres"


def use_folders(root: Path) -> dict[str, Path]:
    """nnU-Net's three folders under ``root``, in the environment before nnunetv2 is
    imported (it reads them at import)."""
    folders = {k: root / k for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    for key, path in folders.items():
        path.mkdir(parents=True, exist_ok=True)
        os.environ[key] = str(path)
    os.environ.setdefault("nnUNet_n_proc_DA", "1")
    return folders


def device() -> Any:
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# -- collecting the training dataset ---------------------------------------------------------


def _case(folders: list[Path]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The SEGs of one image merged: label name -> mask (a label in two SEGs: their union)."""
    masks: dict[str, np.ndarray] = {}
    codes: dict[str, Any] = {}
    for folder in folders:
        meta = json.loads((folder / "meta.json").read_text())
        codes.update(meta.get("codes", {}))
        with np.load(folder / "masks.npz") as found:
            for name in found.files:
                mask = found[name].astype(bool)
                masks[name] = masks[name] | mask if name in masks else mask
    return masks, codes


def _overlap(masks: dict[str, np.ndarray]) -> str:
    names = sorted(masks)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            both = int((masks[a] & masks[b]).sum())
            if both:
                return f"labels {a} and {b} overlap in {both} voxels"
    return ""


def collect_task(ctx: TaskContext) -> None:
    """Run-level: the image/SEG pairs as an nnU-Net raw dataset, with ``collection.json``
    saying which cases were used, which refused and why, and the labels' values."""
    import SimpleITK as sitk

    by_image: dict[str, list[Path]] = defaultdict(list)
    for folder in ctx.series_dirs(next(iter(ctx.job.inputs))).values():
        meta = json.loads((folder / "meta.json").read_text())
        if "skipped" not in meta:
            by_image[meta["image_series"]].append(folder)
    wanted = [s.strip().lower() for s in str(ctx.params.get("labels", "")).split(",") if s.strip()]
    cases, rejected, codes = [], [], {}
    for image, folders in sorted(by_image.items()):
        masks, found_codes = _case(folders)
        if wanted:
            masks = {k: v for k, v in masks.items() if k in wanted}
        if problem := _overlap(masks):
            rejected.append({"image_series": image, "reason": problem})
            continue
        cases.append((image, folders, masks))
        codes.update(found_codes)
    labels = wanted or sorted({name for _, _, masks in cases for name in masks})
    if len(cases) < 5:
        raise ValueError(
            f"nnU-Net's 5-fold split needs at least 5 cases; {len(cases)} are usable"
            + "".join(f"; {r['image_series']}: {r['reason']}" for r in rejected[:5])
        )
    dataset = ctx.out_dir / f"Dataset{DATASET_ID}_Kahu"
    (dataset / "imagesTr").mkdir(parents=True)
    (dataset / "labelsTr").mkdir()
    used = []
    for index, (image, folders, masks) in enumerate(cases):
        name = f"case_{index:04d}"
        shutil.copy(folders[0] / "image.nii.gz", dataset / "imagesTr" / f"{name}_0000.nii.gz")
        reference = sitk.ReadImage(str(folders[0] / "image.nii.gz"))
        label_map = np.zeros(sitk.GetArrayFromImage(reference).shape, np.uint8)
        for value, label in enumerate(labels, start=1):
            if label in masks:
                label_map[masks[label]] = value
        out = sitk.GetImageFromArray(label_map)
        out.CopyInformation(reference)
        sitk.WriteImage(out, str(dataset / "labelsTr" / f"{name}.nii.gz"), useCompression=True)
        segs = [json.loads((f / "meta.json").read_text())["seg_series"] for f in folders]
        used.append({"case": name, "image_series": image, "segs": segs})
    modality = json.loads((cases[0][1][0] / "meta.json").read_text()).get("modality") or "image"
    description = {
        "name": "Kahu",
        "channel_names": {"0": modality},
        "labels": {"background": 0, **{label: i for i, label in enumerate(labels, start=1)}},
        "numTraining": len(used),
        "file_ending": ".nii.gz",
    }
    (dataset / "dataset.json").write_text(json.dumps(description, indent=2))
    report = {"cases": used, "rejected": rejected, "labels": labels, "codes": codes}
    report["modality"] = modality
    (ctx.out_dir / "collection.json").write_text(json.dumps(report, indent=2))
    ctx.log.info("%d cases, %d refused, labels %s", len(used), len(rejected), labels)


# -- training --------------------------------------------------------------------------------


def _trainer_class(epochs: int, iterations: int) -> Any:
    """nnU-Net's own trainer on a schedule of ``epochs`` of ``iterations`` (its default is
    1000 of 250); the network, loss and augmentation are nnU-Net's."""
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    class Scheduled(nnUNetTrainer):  # type: ignore[misc]
        def __init__(
            self,
            plans: dict[str, Any],
            configuration: str,
            fold: int,
            dataset_json: dict[str, Any],
            device: torch.device = torch.device("cpu"),  # noqa: B008 - nnU-Net's signature
        ) -> None:
            super().__init__(plans, configuration, fold, dataset_json, device)
            self.num_epochs = epochs
            self.num_iterations_per_epoch = iterations
            self.num_val_iterations_per_epoch = max(2, iterations // 5)
            self.save_every = epochs + 1  # only the final checkpoint

    return Scheduled


def _cap_features(plans_file: Path, cap: int) -> None:
    """At most ``cap`` feature maps per stage (a small network for a CPU)."""
    plans = json.loads(plans_file.read_text())
    arch = plans["configurations"][CONFIGURATION]["architecture"]["arch_kwargs"]
    arch["features_per_stage"] = [min(int(f), cap) for f in arch["features_per_stage"]]
    plans_file.write_text(json.dumps(plans, indent=2))


def train_task(ctx: TaskContext) -> None:
    """Run-level: plan, preprocess, train fold 0, validate; ``model/`` (the results folder
    with ``kahu-model.json`` and a README) and ``report/`` (the training report)."""
    import torch

    folders = use_folders(ctx.out_dir / "work")
    source = ctx.input(next(iter(ctx.job.inputs)))
    shutil.copytree(
        source / f"Dataset{DATASET_ID}_Kahu", folders["nnUNet_raw"] / f"Dataset{DATASET_ID}_Kahu"
    )
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprints,
        plan_experiments,
        preprocess,
    )

    torch.set_num_threads(max(1, int(ctx.job.cpu)))
    seed = int(ctx.params.get("seed", 0))
    random.seed(seed)  # as repeatable as nnU-Net's threads allow
    np.random.seed(seed)
    torch.manual_seed(seed)
    extract_fingerprints([DATASET_ID], check_dataset_integrity=True, num_processes=1)
    plan_experiments([DATASET_ID])
    preprocessed = folders["nnUNet_preprocessed"] / f"Dataset{DATASET_ID}_Kahu"
    if int(ctx.params.get("max_features", 0)) > 0:
        _cap_features(preprocessed / "nnUNetPlans.json", int(ctx.params["max_features"]))
    preprocess([DATASET_ID], configurations=(CONFIGURATION,), num_processes=(1,))
    plans = json.loads((preprocessed / "nnUNetPlans.json").read_text())
    plans["continue_training"] = False
    dataset = json.loads((preprocessed / "dataset.json").read_text())
    os.environ["nnUNet_n_proc_DA"] = "0"  # noqa: SIM112 - nnU-Net's name; augment in-process
    trainer_class = _trainer_class(
        int(ctx.params["epochs"]), int(ctx.params["iterations_per_epoch"])
    )
    trainer = trainer_class(plans, CONFIGURATION, 0, dataset, device=device())
    ctx.log.info("training on the %s: %s epochs", trainer.device, ctx.params["epochs"])
    trainer.run_training()
    trainer.perform_actual_validation(False)
    results = Path(trainer.output_folder).parent
    collection = json.loads((source / "collection.json").read_text())
    model = _model_folder(ctx, results, collection)
    _training_report(ctx, model, preprocessed / "gt_segmentations")
    (ctx.out_dir / "report" / "collection.json").write_text(json.dumps(collection, indent=2))
    shutil.rmtree(ctx.out_dir / "work")  # nnU-Net's copies and preprocessed arrays


def _model_folder(ctx: TaskContext, results: Path, collection: dict[str, Any]) -> Path:
    """nnU-Net's results folder as the model: named as nnU-Net's own trainer made it (the
    network is its, only the schedule was shorter), with the final checkpoint only."""
    import torch

    model = ctx.out_dir / "model" / f"{TRAINER}__nnUNetPlans__{CONFIGURATION}"
    shutil.copytree(results, model)
    fold = model / "fold_0"
    checkpoint = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    checkpoint["trainer_name"] = TRAINER
    torch.save(checkpoint, fold / "checkpoint_final.pth")
    (fold / "checkpoint_best.pth").unlink(missing_ok=True)
    labels = collection["labels"]
    codes = collection.get("codes", {})
    manifest = {
        "name": str(ctx.params["model_name"]),
        "version": str(ctx.params.get("version") or ctx.run_id.split("-")[-1])[:32],
        "format": "nnunetv2",
        "title": str(ctx.params.get("title") or ctx.params["model_name"]),
        "description": f"nnU-Net v2 ({CONFIGURATION}, fold 0) trained by Kahu run {ctx.run_id} "
        f"on {len(collection['cases'])} cases",
        "licence": str(ctx.params["licence"]),
        "labels": {
            str(i): {"name": label, **codes.get(label, {})} for i, label in enumerate(labels, 1)
        },
        "inputs": {"modality": [m for m in [_modality(collection)] if m]},
    }
    (model / "kahu-model.json").write_text(json.dumps(manifest, indent=2))
    return model


def _modality(collection: dict[str, Any]) -> str:
    return str(collection.get("modality") or "")


def _training_report(ctx: TaskContext, model: Path, ground_truth: Path) -> None:
    """Loss curves and validation Dice per label (``report/``), from nnU-Net's log of the
    run and Kahu's metrics on its validation predictions."""
    import SimpleITK as sitk
    import torch
    from matplotlib import pyplot as plt

    checkpoint = torch.load(
        model / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=False
    )
    log = checkpoint.get("logging", {})
    labels = json.loads((model / "kahu-model.json").read_text())["labels"]
    rows = []
    for predicted in sorted((model / "fold_0" / "validation").glob("*.nii.gz")):
        pred_image = sitk.ReadImage(str(predicted))
        pred = sitk.GetArrayFromImage(pred_image)
        ref = sitk.GetArrayFromImage(sitk.ReadImage(str(ground_truth / predicted.name)))
        spacing = list(reversed(pred_image.GetSpacing()))
        for value, label in labels.items():
            s = scores(ref == int(value), pred == int(value), spacing)
            rows.append({"image_series": predicted.name[: -len(".nii.gz")], "reference_series": "",
                         "prediction_series": "", "prediction": "fold 0", "label": label["name"],
                         **s.as_dict()})  # fmt: skip
    figure, ax = plt.subplots(figsize=(8, 4))
    for key, name in (("train_losses", "training loss"), ("val_losses", "validation loss")):
        if log.get(key):
            ax.plot(range(1, len(log[key]) + 1), log[key], label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (Dice + cross-entropy)")
    ax.legend()
    ax.set_title("nnU-Net training")
    report = ctx.out_dir / "report"
    report.mkdir()
    summary = write_report(
        rows, report, title=f"nnU-Net training: {model.parent.name}", extra_pages=[figure]
    )
    figure.savefig(report / "loss.png", dpi=100)
    (report / "training.json").write_text(
        json.dumps({"log": _plain(log), "validation": summary}, indent=2)
    )
    (model / "README.md").write_text(_readme(ctx, summary, len(log.get("train_losses", []))))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _readme(ctx: TaskContext, summary: dict[str, Any], epochs: int) -> str:
    lines = [
        f"# {ctx.params['model_name']}",
        "",
        f"nnU-Net v2 ({CONFIGURATION}, fold 0), trained by Kahu run {ctx.run_id} for {epochs} "
        f"epochs of {ctx.params['iterations_per_epoch']} iterations.",
        "",
        "Validation (fold 0):",
        "",
    ]
    for label, metrics in summary.items():
        dice = metrics["dice"]
        lines.append(f"- {label}: Dice {dice['mean']} (n={dice['n']})")
    return "\n".join(lines) + "\n"


def report_task(ctx: TaskContext) -> None:
    """Run-level: the training report's files, for the catalog and the object store."""
    for path in sorted((ctx.input(next(iter(ctx.job.inputs))) / "report").iterdir()):
        shutil.copy(path, ctx.out_dir / path.name)


def install_task(ctx: TaskContext, services: OperatorServices) -> None:
    """Run-level (internal): the trained model into the registry, for the run's project."""
    model = services.install_model(ctx.input(next(iter(ctx.job.inputs))) / "model")
    (ctx.out_dir / "installed.json").write_text(json.dumps(model.public(), indent=2))
    ctx.log.info("installed model %s (SHA-256 %s)", model.ref, model.sha256)


# -- inference -------------------------------------------------------------------------------


def _predictor(ctx: TaskContext, model: RunModel, folds: str, gpu: bool) -> Any:
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(
        use_mirroring=bool(ctx.params.get("mirroring", True)),
        device=device(),
        perform_everything_on_device=gpu,
        allow_tqdm=False,
    )
    chosen = [f.strip() for f in folds.split(",") if f.strip()]
    predictor.initialize_from_trained_model_folder(
        str(model.path),
        use_folds=tuple(int(f) if f.isdigit() else f for f in chosen) or None,
        checkpoint_name="checkpoint_final.pth",
    )
    return predictor


def ensemble(models: list[RunModel]) -> tuple[str, str]:
    """The SEG's algorithm (name, version) of models that predict together; refused unless
    they have the same labels."""
    first = {v: label["name"] for v, label in models[0].labels.items()}
    for other in models[1:]:
        if {v: label["name"] for v, label in other.labels.items()} != first:
            raise ValueError(
                f"{other.name} {other.version} and {models[0].name} {models[0].version} do not "
                "have the same labels: an ensemble averages the same labels' probabilities"
            )
    return " + ".join(m.name for m in models)[:64], " + ".join(m.version for m in models)[:64]


def predict_task(ctx: TaskContext) -> None:
    """Run-level: the installed nnU-Net model (all its folds: an ensemble), loaded once, on
    each series' volume; with ``ensemble_with``, the average of both models' probabilities
    (as ``nnUNetv2_ensemble``). Per series ``labels.nii.gz`` and ``seg.json``."""
    import torch
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    gpu = torch.cuda.is_available()
    torch.set_num_threads(max(1, int(ctx.job.cpu)))
    models = [ctx.model("model")]
    if "ensemble_with" in ctx.job.models():
        models.append(ctx.model("ensemble_with"))
    algorithm = ensemble(models)
    folds = str(ctx.params.get("folds", ""))
    predictors = [_predictor(ctx, m, folds if i == 0 else "", gpu) for i, m in enumerate(models)]
    io = SimpleITKIO()

    def segment(volume: Path, out: Path) -> None:
        image, properties = io.read_images([str(volume)])
        if len(predictors) == 1:
            labels = predictors[0].predict_single_npy_array(image, properties, None, None, False)
        else:
            found = [p.predict_single_npy_array(image, properties, None, None, True)[1]
                     for p in predictors]  # fmt: skip
            mean = np.mean(found, axis=0)
            labels = predictors[0].label_manager.convert_probabilities_to_segmentation(mean)
        io.write_seg(np.asarray(labels), str(out / "labels.nii.gz"), properties)
        ctx.log.info("%s: labels %s", out.parent.name, np.unique(labels).tolist())

    each_series(ctx, models[0], segment, "GPU" if gpu else "CPU", algorithm)
