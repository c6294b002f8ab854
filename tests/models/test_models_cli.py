"""``kahu models``, run as an administrator runs it."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from kahu.cli import app
from tests.models.builders import nnunet_folder, zip_of

runner = CliRunner()


def kahu(home: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, [*args, "--home", str(home)])
    return result.exit_code, result.output


def test_install_list_show_projects_export_uninstall(tmp_path: Path) -> None:
    home = tmp_path / "home"
    folder = nnunet_folder(tmp_path / "src")
    code, out = kahu(home, "models", "install", str(folder), "--name", "spheres")
    assert code == 0, out
    assert "Model spheres@1 installed (nnunetv2" in out
    code, out = kahu(home, "models", "list")
    assert out.strip() == "spheres@1\tnnunetv2\tbig,small\tall projects"
    code, out = kahu(home, "models", "show", "spheres")
    shown = json.loads(out)
    assert (shown["labels"]["2"]["name"], shown["licence"]) == ("small", "CC-BY-4.0")
    assert Path(shown["path"], "fold_0", "checkpoint_final.pth").is_file()
    assert kahu(home, "projects", "create", "lung")[0] == 0
    code, out = kahu(home, "models", "projects", "spheres", "--only", "lung")
    assert (code, out.strip()) == (0, "Model spheres is available to lung.")
    assert kahu(home, "models", "list")[1].strip().endswith("\tlung")
    archive = tmp_path / "spheres.zip"
    code, out = kahu(home, "models", "export", "spheres@1", str(archive))
    assert code == 0, out
    assert archive.is_file()
    code, out = kahu(home, "models", "to-catalog", "spheres")
    assert code == 0, out
    assert "stored in the catalog as series" in out
    code, out = kahu(home, "models", "uninstall", "spheres@1")
    assert (code, out.strip()) == (0, "Model spheres@1 uninstalled.")
    code, out = kahu(home, "models", "import", str(archive), "--sha256", shown["sha256"])
    assert code == 0, out
    assert json.loads(kahu(home, "models", "show", "spheres@1")[1])["sha256"] == shown["sha256"]


def test_refusals_are_one_line_errors(tmp_path: Path) -> None:
    home = tmp_path / "home"
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 truncated")
    code, out = kahu(home, "models", "install", str(bad))
    assert code == 2, out
    assert "error: not a readable zip archive" in out
    code, out = kahu(home, "models", "install")
    assert code == 2, out
    assert "give a zip archive or folder, or --series" in out
    folder = nnunet_folder(tmp_path / "src")
    archive = zip_of(folder, tmp_path / "m.zip")
    code, out = kahu(home, "models", "install", str(archive), "--sha256", "0" * 64)
    assert code == 2, out
    assert "SHA-256 mismatch" in out
    code, out = kahu(home, "models", "uninstall", "spheres")
    assert code == 2, out
    assert "name@version" in out
    assert kahu(home, "models", "list")[1] == ""
