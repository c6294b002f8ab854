"""MONAI bundles (the MONAI Model Zoo's format) as a Kahu model: the bundle's own
``configs/inference.json`` (or ``.yaml``) is parsed with MONAI's ``ConfigParser``; its
network, weights (``models/model.pt`` or ``model.ts``), preprocessing, inferer and
postprocessing run as the bundle's evaluator would run them, on each series' volume, with the
model loaded once. What a bundle writes itself (``SaveImage``) is left out: the labels are put
on the series' own grid and become a SEG with the bundle's labels. No PyTorch Ignite is
needed, and nothing is written into the (read-only) bundle folder.

A bundle's config runs Python (``$`` expressions, ``_target_`` classes, its ``scripts``):
install only bundles the site trusts; the task runs in the sandbox, without network.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from kahu.flow.job import RunModel, TaskContext
from kahu.operators.inference import each_series

CONFIG_EXTENSIONS = ("json", "yaml", "yml")


def config_file(folder: Path, name: str) -> Path:
    for ext in CONFIG_EXTENSIONS:
        if (path := folder / "configs" / f"{name}.{ext}").is_file():
            return path
    raise ValueError(f"the bundle has no configs/{name}.json (or .yaml)")


def keys(meta: dict[str, Any]) -> tuple[str, str]:
    """The names of the bundle's input and output (``image`` and ``pred`` unless its
    ``network_data_format`` says otherwise)."""
    formats = meta.get("network_data_format") or {}
    inputs, outputs = formats.get("inputs") or {}, formats.get("outputs") or {}
    return next(iter(inputs), "image"), next(iter(outputs), "pred")


class Bundle:
    """A bundle's inference, parsed once: :meth:`segment` runs it on one volume."""

    def __init__(self, model: RunModel, config: str, scratch: Path, device: Any) -> None:
        import torch
        from monai.bundle.config_parser import ConfigParser
        from monai.inferers.inferer import SimpleInferer
        from monai.transforms.compose import Compose
        from monai.transforms.io.array import SaveImage
        from monai.transforms.io.dictionary import SaveImaged

        folder = model.path
        if (folder / "scripts").is_dir() and str(folder) not in sys.path:
            sys.path.insert(0, str(folder))  # a bundle's own code (``$import scripts``)
        parser = ConfigParser()
        parser.read_meta(str(config_file(folder, "metadata")))
        parser.read_config(str(config_file(folder, config)))
        parser["bundle_root"] = str(folder)
        parser["output_dir"] = str(scratch)
        parser["dataset_dir"] = str(scratch)
        parser["device"] = f"$torch.device('{device}')"
        self.input, self.output = keys(parser.get("_meta_") or {})
        self.device = device
        self.network = self._network(parser, folder, device, torch)
        self.preprocessing = parser.get_parsed_content("preprocessing")
        self.inferer = (
            parser.get_parsed_content("inferer") if "inferer" in parser else SimpleInferer()
        )
        post = parser.get_parsed_content("postprocessing") if "postprocessing" in parser else None
        steps = list(getattr(post, "transforms", [post] if post is not None else []))
        self.postprocessing = Compose(
            [t for t in steps if not isinstance(t, (SaveImage, SaveImaged))]
        )

    @staticmethod
    def _network(parser: Any, folder: Path, device: Any, torch: Any) -> Any:
        weights = folder / "models" / "model.pt"
        if not weights.is_file() or "network_def" not in parser:
            network = torch.jit.load(str(folder / "models" / "model.ts"), map_location=device)
            return network.eval()
        network = parser.get_parsed_content("network_def").to(device)
        state = torch.load(str(weights), map_location=device, weights_only=True)
        if isinstance(state, dict) and set(state) == {"model"}:
            state = state["model"]  # saved as {"model": ...} (MONAI's CheckpointSaver)
        network.load_state_dict(state)
        return network.eval()

    def segment(self, volume: Path) -> tuple[np.ndarray, np.ndarray]:
        """The labels (x, y, z) of ``volume`` in the space the bundle's postprocessing
        leaves them, and their affine (RAS, as MONAI's)."""
        import torch

        data = self.preprocessing({self.input: str(volume)})
        image = data[self.input]
        with torch.no_grad():
            data[self.output] = self.inferer(image[None].to(self.device), self.network)[0]
        data = self.postprocessing(data)
        pred = data[self.output]
        labels = np.asarray(pred.detach().cpu())
        if labels.ndim == 4:  # channels first: argmax unless already one channel of labels
            labels = labels[0] if labels.shape[0] == 1 else labels.argmax(axis=0)
        affine = np.asarray(getattr(pred, "affine", image.affine), dtype=np.float64)
        if str(getattr(pred, "meta", {}).get("space", "RAS")).upper() == "LPS":
            affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
        return np.rint(labels).astype(np.uint16), affine


def on_grid(labels: np.ndarray, affine_ras: np.ndarray, reference: Path) -> Any:
    """``labels`` (x, y, z with a RAS affine) as a SimpleITK image on the grid of the
    volume ``reference`` (nearest neighbour; the same grid gives the same voxels)."""
    import SimpleITK as sitk

    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_ras
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    image = sitk.GetImageFromArray(np.transpose(labels, (2, 1, 0)).copy())
    image.SetSpacing([float(s) for s in spacing])
    image.SetDirection([float(v) for v in (lps[:3, :3] / spacing).ravel()])
    image.SetOrigin([float(v) for v in lps[:3, 3]])
    grid = sitk.ReadImage(str(reference))
    return sitk.Resample(image, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0)


def predict_task(ctx: TaskContext) -> None:
    """Run-level: the installed bundle, parsed and loaded once, on each series' volume; per
    series ``labels.nii.gz`` on the series' grid and ``seg.json`` (the bundle's labels)."""
    import SimpleITK as sitk
    import torch

    gpu = torch.cuda.is_available()
    torch.set_num_threads(max(1, int(ctx.job.cpu)))
    model = ctx.model("model")
    scratch = ctx.out_dir / ".bundle"
    scratch.mkdir(parents=True, exist_ok=True)
    bundle = Bundle(model, str(ctx.params.get("config", "inference")), scratch,
                    "cuda:0" if gpu else "cpu")  # fmt: skip

    def segment(volume: Path, out: Path) -> None:
        labels, affine = bundle.segment(volume)
        image = on_grid(labels, affine, volume)
        sitk.WriteImage(image, str(out / "labels.nii.gz"), useCompression=True)
        found = np.unique(sitk.GetArrayViewFromImage(image)).tolist()
        ctx.log.info("%s: labels %s", out.parent.name, found)

    each_series(ctx, model, segment, "GPU" if gpu else "CPU")
