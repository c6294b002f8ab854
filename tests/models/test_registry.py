"""The model registry: installing from folders and zip archives of each format, digests,
refusals that leave installed models untouched, per-project availability, DICOM-wrapped
models moving between two instances."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import stat
import zipfile
from pathlib import Path

import pytest

from kahu.actions import Actor
from kahu.actions import models as actions
from kahu.auth.policy import EVERYTHING
from kahu.core import Kahu
from kahu.errors import Conflict, NotFound
from kahu.models.archive import Limits, tree_digest
from kahu.models.manifest import InvalidModel
from kahu.models.registry import ModelRegistry
from tests.models.builders import manifest_folder, monai_bundle, nnunet_folder, zip_of

CLI = Actor.cli()


def installed_state(kahu: Kahu) -> list[tuple[str, str, str]]:
    """What is installed: each model's ref, digest and the digest its files give now."""
    return [(m.ref, m.sha256, tree_digest(m.path).sha256) for m in kahu.models.all()]


def staging_empty(kahu: Kahu) -> bool:
    staging = kahu.settings.models_root / ".staging"
    return not staging.exists() or not any(staging.iterdir())


class TestInstall:
    def test_nnunet_results_folder_is_described_by_its_own_files(
        self, kahu: Kahu, tmp_path: Path
    ) -> None:
        model = kahu.models.install(nnunet_folder(tmp_path), installed_by="admin")
        assert (model.name, model.version, model.format) == ("dataset101_spheres", "1", "nnunetv2")
        labels = model.manifest.labels
        assert {v: label.name for v, label in labels.items()} == {1: "big", 2: "small"}
        assert all(label.colour.startswith("#") for label in labels.values())
        assert model.manifest.inputs.modality == ["CT"]
        assert model.manifest.inputs.spacing_mm == [1.5, 1.5, 3.0]
        assert model.manifest.licence == "CC-BY-4.0"
        assert (model.path / "fold_0" / "checkpoint_final.pth").is_file()
        assert json.loads((model.path / "kahu-model.json").read_text())["format"] == "nnunetv2"
        assert model.sha256 == tree_digest(model.path).sha256
        assert [m.ref for m in kahu.models.all()] == ["dataset101_spheres@1"]

    def test_the_same_files_give_the_same_model_from_a_zip_or_a_folder(
        self, sqlite_kahu: Kahu, tmp_path: Path
    ) -> None:
        folder = nnunet_folder(tmp_path / "a")
        from_folder = sqlite_kahu.models.install(folder)
        archive = zip_of(folder.parent, tmp_path / "m.zip", prefix="Dataset101_Spheres/")
        again = sqlite_kahu.models.install(archive)  # same name, version and files: a no-op
        assert again.sha256 == from_folder.sha256
        assert len(sqlite_kahu.models.all()) == 1

    def test_monai_bundle(self, sqlite_kahu: Kahu, tmp_path: Path) -> None:
        model = sqlite_kahu.models.install(zip_of(monai_bundle(tmp_path), tmp_path / "b.zip"))
        assert (model.name, model.version, model.format) == (
            "spleen-ct-segmentation",
            "0.5.9",
            "monai-bundle",
        )
        assert model.manifest.labels[1].name == "spleen"
        assert model.manifest.licence == "Apache License 2.0"
        assert model.readme.startswith("# Spleen")
        assert model.manifest.inputs.modality == ["CT"]

    def test_a_manifest_keeps_codes_and_resources(self, sqlite_kahu: Kahu, tmp_path: Path) -> None:
        model = sqlite_kahu.models.install(manifest_folder(tmp_path))
        assert model.ref == "liver@2.0"
        assert model.manifest.labels[1].code == ("SCT", "10200004", "Liver")
        assert model.manifest.resources.memory_mb == 2048
        assert model.readme == "# A model\n"

    def test_what_the_administrator_says_wins(self, sqlite_kahu: Kahu, tmp_path: Path) -> None:
        model = sqlite_kahu.models.install(
            nnunet_folder(tmp_path),
            overrides={"name": "spheres", "version": "3", "licence": "internal use"},
        )
        assert (model.ref, model.manifest.licence) == ("spheres@3", "internal use")

    def test_expected_sha256_of_the_archive_or_of_the_files(
        self, sqlite_kahu: Kahu, tmp_path: Path
    ) -> None:
        folder = nnunet_folder(tmp_path)
        archive = zip_of(folder, tmp_path / "m.zip")
        archive_sha = hashlib.sha256(archive.read_bytes()).hexdigest()
        sqlite_kahu.models.install(archive, sha256=archive_sha, overrides={"version": "1"})
        files_sha = tree_digest(folder).sha256
        sqlite_kahu.models.install(folder, sha256=files_sha.upper(), overrides={"version": "2"})
        assert [m.version for m in sqlite_kahu.models.all()] == ["1", "2"]

    def test_the_installed_model_describes_itself_when_exported(
        self, sqlite_kahu: Kahu, tmp_path: Path
    ) -> None:
        """An installed folder carries its manifest, overrides included: a copy of it
        installs as the same model elsewhere."""
        model = sqlite_kahu.models.install(
            nnunet_folder(tmp_path), overrides={"name": "spheres", "licence": "MIT"}
        )
        copy = shutil.copytree(model.path, tmp_path / "copy")
        sqlite_kahu.models.uninstall(model.name, model.version)
        again = sqlite_kahu.models.install(copy)
        assert (again.ref, again.sha256, again.manifest) == (
            model.ref,
            model.sha256,
            model.manifest,
        )
        with pytest.raises(InvalidModel, match="outside the models folder"):
            sqlite_kahu.models.install(tmp_path)


def _bad_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data, zipfile.ZIP_DEFLATED)
    return path


def _symlink_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        info = zipfile.ZipInfo("link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, "/etc/passwd")
    return path


def _corrupt_member(folder: Path, path: Path) -> Path:
    zip_of(folder, path)
    data = bytearray(path.read_bytes())
    at = data.index(bytes(range(256)))  # the stored checkpoint's bytes
    data[at + 10] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


class TestRefusals:
    """Each refusal says what is wrong and leaves the installed models as they were."""

    @pytest.fixture
    def before(self, sqlite_kahu: Kahu, tmp_path: Path) -> list[tuple[str, str, str]]:
        sqlite_kahu.models.install(manifest_folder(tmp_path / "installed"))
        return installed_state(sqlite_kahu)

    @pytest.mark.parametrize(
        ("make", "message"),
        [
            (lambda t: (t / "x.zip").write_bytes(b"PK\x03\x04broken") and t / "x.zip", "zip"),
            (lambda t: _corrupt_member(nnunet_folder(t / "src"), t / "c.zip"), "corrupt"),
            (lambda t: _bad_zip(t / "x.zip", {"../evil.json": b"{}"}), "unsafe path"),
            (lambda t: _bad_zip(t / "x.zip", {"/etc/evil": b"{}"}), "unsafe path"),
            (lambda t: _symlink_zip(t / "x.zip"), "links"),
            (lambda t: _bad_zip(t / "x.zip", {"a.bin": bytes(30_000_000)}), "compression"),
            (lambda t: _bad_zip(t / "x.zip", {"README.md": b"hi"}), "not a model Kahu knows"),
        ],
        ids=["truncated", "crc", "traversal", "absolute", "symlink", "bomb", "unknown"],
    )
    def test_bad_archives(
        self, sqlite_kahu: Kahu, tmp_path: Path, before: list[object], make: object, message: str
    ) -> None:
        source = make(tmp_path)  # type: ignore[operator]
        with pytest.raises(InvalidModel, match=message):
            sqlite_kahu.models.install(source)
        assert installed_state(sqlite_kahu) == before
        assert staging_empty(sqlite_kahu)

    def test_nnunet_folder_without_weights(
        self, sqlite_kahu: Kahu, tmp_path: Path, before: list[object]
    ) -> None:
        folder = nnunet_folder(tmp_path / "src")
        shutil.rmtree(folder / "fold_0")
        with pytest.raises(InvalidModel, match=r"checkpoint_final\.pth"):
            sqlite_kahu.models.install(zip_of(folder, tmp_path / "m.zip"))
        assert installed_state(sqlite_kahu) == before

    @pytest.mark.parametrize(
        ("manifest", "message"),
        [
            ({"licence": ""}, "no licence"),
            ({"name": "../etc"}, "name"),
            ({"version": "1/2"}, "version"),
            ({"format": "caffe"}, "format"),
            ({"entry": "missing.ts"}, "entry"),
            ({"entry": "../../outside.ts"}, "outside"),
            ({"labels": {"0": {"name": "background"}}}, "label values"),
            ({"labels": {"1": {"name": "a"}, "2": {"name": "a"}}}, "same name"),
            ({"labels": {"1": {"name": "a", "colour": "red"}}}, "colour"),
            ({"surprise": 1}, "surprise"),
        ],
    )
    def test_bad_manifests(
        self,
        sqlite_kahu: Kahu,
        tmp_path: Path,
        before: list[object],
        manifest: dict[str, object],
        message: str,
    ) -> None:
        with pytest.raises(InvalidModel, match=message):
            sqlite_kahu.models.install(manifest_folder(tmp_path / "src", **manifest))
        assert installed_state(sqlite_kahu) == before
        assert staging_empty(sqlite_kahu)

    def test_region_based_nnunet_labels(self, sqlite_kahu: Kahu, tmp_path: Path) -> None:
        folder = nnunet_folder(tmp_path, labels={"background": 0, "whole": [1, 2]})  # type: ignore[dict-item]
        with pytest.raises(InvalidModel, match="region-based"):
            sqlite_kahu.models.install(folder)

    def test_wrong_sha256(self, sqlite_kahu: Kahu, tmp_path: Path, before: list[object]) -> None:
        with pytest.raises(InvalidModel, match="SHA-256 mismatch"):
            sqlite_kahu.models.install(nnunet_folder(tmp_path / "src"), sha256="ab" * 32)
        assert installed_state(sqlite_kahu) == before

    def test_other_files_under_an_installed_version(
        self, sqlite_kahu: Kahu, tmp_path: Path, before: list[object]
    ) -> None:
        changed = manifest_folder(tmp_path / "src")
        (changed / "model.ts").write_bytes(b"other weights")
        with pytest.raises(Conflict, match="another version"):
            sqlite_kahu.models.install(changed)
        assert installed_state(sqlite_kahu) == before

    def test_limits(self, sqlite_kahu: Kahu, tmp_path: Path) -> None:
        small = ModelRegistry(sqlite_kahu.db, tmp_path / "root", Limits(1000, 3, 200.0))
        with pytest.raises(InvalidModel, match="limit"):
            small.install(zip_of(nnunet_folder(tmp_path / "a"), tmp_path / "m.zip"))
        with pytest.raises(InvalidModel, match="limits"):
            small.install(nnunet_folder(tmp_path / "b"))

    def test_a_folder_with_a_link(self, sqlite_kahu: Kahu, tmp_path: Path) -> None:
        folder = manifest_folder(tmp_path / "src")
        (folder / "passwd").symlink_to("/etc/passwd")
        with pytest.raises(InvalidModel, match="links"):
            sqlite_kahu.models.install(folder)


class TestAvailability:
    def test_projects_and_versions(self, sqlite_kahu: Kahu, tmp_path: Path) -> None:
        models = sqlite_kahu.models
        sqlite_kahu.projects.create("lung")
        models.install(manifest_folder(tmp_path / "a"))
        models.install(manifest_folder(tmp_path / "b", version="10.0"))
        assert models.resolve("liver", "default").version == "10.0"  # 10.0 > 2.0
        assert models.resolve("liver@2.0", "lung").version == "2.0"
        actions.set_projects(sqlite_kahu, CLI, "liver", "10.0", ["lung"])
        assert models.resolve("liver", "lung").version == "10.0"
        assert models.resolve("liver", "default").version == "2.0"
        actions.set_projects(sqlite_kahu, CLI, "liver", None, [])
        with pytest.raises(NotFound, match="for project 'default'"):
            models.resolve("liver", "default")
        actions.set_projects(sqlite_kahu, CLI, "liver", None, None)
        with pytest.raises(InvalidModel, match="needs nnunetv2"):
            models.resolve("liver", "default", ("nnunetv2",))
        with pytest.raises(NotFound, match="no project"):
            actions.set_projects(sqlite_kahu, CLI, "liver", None, ["nowhere"])

    def test_uninstall_removes_the_files(self, sqlite_kahu: Kahu, tmp_path: Path) -> None:
        model = sqlite_kahu.models.install(manifest_folder(tmp_path))
        actions.uninstall(sqlite_kahu, CLI, "liver", "2.0")
        assert sqlite_kahu.models.all() == []
        assert not model.path.exists()
        with pytest.raises(NotFound):
            actions.uninstall(sqlite_kahu, CLI, "liver", "2.0")
        records = sqlite_kahu.audit.query(action="model.uninstall", limit=None)
        assert sorted(r.status for r in records) == [200, 404]


class TestDicomWrapped:
    def test_a_model_travels_as_a_dicom_series(self, make_settings: object, tmp_path: Path) -> None:
        """Site A stores its model in the catalog (binary chunks); the instances reach site
        B (here: their bytes, as C-STORE would bring them); B installs it from its catalog."""
        a = Kahu(make_settings())  # type: ignore[operator]
        b = Kahu(make_settings().model_copy(update={"home": tmp_path / "b"}))  # type: ignore[operator]
        try:
            model = a.models.install(nnunet_folder(tmp_path / "src"))
            series_uid = actions.to_catalog(a, CLI, model.name, None).result
            instances = a.catalog.instances(EVERYTHING, series_uid=series_uid)
            for instance in instances:
                assert b.ingestor.ingest(a.store.get(instance.blob_key)).status == "stored"
            got = actions.install_from_series(b, CLI, series_uid).result
            assert (got.ref, got.sha256, got.format) == (model.ref, model.sha256, "nnunetv2")
            assert got.source == f"series {series_uid}"
            assert staging_empty(b)
        finally:
            a.stop()
            b.stop()

    def test_a_tampered_or_partial_model_series_is_refused(
        self, sqlite_kahu: Kahu, tmp_path: Path
    ) -> None:
        from kahu.operators.documents import binary_to_dicom

        big = manifest_folder(tmp_path / "src")
        (big / "model.ts").write_bytes(bytes(range(256)) * 40)  # several chunks of 4 KiB
        archive = zip_of(big, tmp_path / "m.zip")
        chunks = list(binary_to_dicom(archive, chunk_bytes=4096))
        assert len(chunks) > 2
        chunks[1].EncapsulatedDocument = bytes(len(chunks[1].EncapsulatedDocument))
        for ds in chunks[:-1]:  # one chunk never arrived, one is damaged
            out = io.BytesIO()
            ds.save_as(out, enforce_file_format=True)
            sqlite_kahu.ingestor.ingest(out.getvalue())
        series_uid = chunks[0].SeriesInstanceUID
        with pytest.raises(InvalidModel, match="missing"):
            actions.install_from_series(sqlite_kahu, CLI, series_uid)
        out = io.BytesIO()
        chunks[-1].save_as(out, enforce_file_format=True)
        sqlite_kahu.ingestor.ingest(out.getvalue())
        with pytest.raises(InvalidModel, match="SHA-256"):
            actions.install_from_series(sqlite_kahu, CLI, series_uid)
        assert sqlite_kahu.models.all() == []
        assert staging_empty(sqlite_kahu)

    def test_a_series_that_is_no_model(self, sqlite_kahu: Kahu) -> None:
        from tests.synthetic import ct_series

        [result] = sqlite_kahu.ingestor.ingest_many(ct_series(1, size=8))
        with pytest.raises(InvalidModel, match="no whole model"):
            actions.install_from_series(sqlite_kahu, CLI, str(result.series_instance_uid))
        with pytest.raises(NotFound):
            actions.install_from_series(sqlite_kahu, CLI, "1.2.3.4")
