"""The ``kahu`` command, run as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kahu.cli import app
from tests import synthetic
from tests.conftest import sample_path

runner = CliRunner()


def kahu(home: Path, *args: str, input: str | None = None) -> tuple[int, str]:
    result = runner.invoke(app, [*args, "--home", str(home)], input=input)
    return result.exit_code, result.output


class TestHelp:
    @pytest.mark.parametrize(
        "command",
        [
            [],
            ["serve"],
            ["import"],
            ["search"],
            ["find"],
            ["users"],
            ["users", "add"],
            ["tokens"],
            ["tokens", "create"],
            ["nodes"],
            ["nodes", "add"],
            ["series"],
            ["audit"],
            ["audit", "list"],
            ["audit", "export"],
        ],
    )
    def test_every_command_has_help(self, command: list[str]) -> None:
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0
        assert "Usage" in result.output

    def test_module_entry_point(self) -> None:
        out = subprocess.run(
            [sys.executable, "-m", "kahu", "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert "import" in out.stdout
        assert "serve" in out.stdout


class TestImport:
    def test_import_files_folders_and_zips(self, tmp_path: Path) -> None:
        folder = tmp_path / "in" / "nested"
        folder.mkdir(parents=True)
        for i, data in enumerate(synthetic.ct_series(3)):
            (folder / f"{i}.dcm").write_bytes(data)
        (folder / "readme.txt").write_text("not dicom")
        archive = tmp_path / "in.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            zf.write(sample_path("MR_small.dcm"), "mr.dcm")
            zf.writestr("../escape.dcm", sample_path("CT_small.dcm").read_bytes())
        home = tmp_path / "home"
        code, out = kahu(
            home,
            "import",
            str(tmp_path / "in"),
            str(archive),
            str(tmp_path / "missing"),
            "--dataset",
            "IMPORTED",
        )
        assert code == 0
        assert "4 stored, 0 duplicate, 3 rejected" in out
        assert "'..' in archive path" in out
        assert "no such file or folder" in out
        code, out = kahu(home, "import", str(archive), "--json")
        rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        assert [r["status"] for r in rows] == ["duplicate", "rejected"]

    def test_only_rejections_exit_non_zero(self, tmp_path: Path) -> None:
        bad = tmp_path / "bad.dcm"
        bad.write_bytes(b"nope")
        code, out = kahu(tmp_path / "home", "import", str(bad))
        assert code == 1
        assert "rejected" in out


class TestSearch:
    def test_search_with_a_query(self, tmp_path: Path) -> None:
        home = tmp_path / "home"
        files = ["CT_small.dcm", "MR_small.dcm", "rtdose.dcm"]
        kahu(home, "import", *(str(sample_path(n)) for n in files))
        code, out = kahu(home, "search", "Modality:(CT OR MR) AND StudyDate:[2004 TO *]", "--json")
        assert code == 0
        docs = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        assert sorted(d["Modality"] for d in docs) == ["CT", "MR"]
        assert all(d["instance_count"] == 1 for d in docs)
        code, out = kahu(home, "search", "NOT Modality:CT", "--limit", "1")
        assert code == 0
        assert "1 of 2 series" in out
        code, out = kahu(home, "search")
        assert "3 of 3 series" in out

    @pytest.mark.parametrize(
        ("query", "message"),
        [
            ("Colour:red", "unknown field 'Colour' at position 1"),
            ("Modality:(CT", "syntax error"),
            ("Rows:many", "Rows takes a number"),
        ],
    )
    def test_bad_search_queries_are_explained(
        self, tmp_path: Path, query: str, message: str
    ) -> None:
        code, out = kahu(tmp_path / "home", "search", query)
        assert code == 2
        assert message in out

    def test_find_by_matching_keys(self, tmp_path: Path) -> None:
        home = tmp_path / "home"
        kahu(home, "import", str(sample_path("CT_small.dcm")), str(sample_path("MR_small.dcm")))
        code, out = kahu(home, "find", "Modality=CT", "--json")
        assert code == 0
        [row] = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        assert row["PatientID"] == "1CT1"
        code, out = kahu(home, "find", "PatientName=compressed*", "--level", "study")
        assert "1CT1" in out
        assert "4MR1" in out

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["Modality"], "expected KEYWORD=VALUE"),
            (["Colour=red"], "unknown matching key"),
            (["StudyDate=2020xx"], "invalid DA value"),
            (["--level", "galaxy"], "unknown level"),
        ],
    )
    def test_bad_matching_keys_are_explained(
        self, tmp_path: Path, args: list[str], message: str
    ) -> None:
        code, out = kahu(tmp_path / "home", "find", *args)
        assert code == 2
        assert message in out


class TestAccounts:
    def test_users_and_tokens(self, tmp_path: Path) -> None:
        home = tmp_path / "home"
        code, out = kahu(
            home, "users", "add", "bob", "--password-stdin", input="a long enough password\n"
        )
        assert code == 0
        code, out = kahu(
            home, "users", "add", "bob", "--password-stdin", input="a long enough password\n"
        )
        assert code == 2
        assert "exists" in out
        code, out = kahu(home, "users", "add", "eve", "--password-stdin", input="short\n")
        assert code == 2
        assert "at least 12" in out
        code, out = kahu(home, "tokens", "create", "--user", "bob", "--name", "ci")
        assert code == 0
        secret = out.splitlines()[0]
        assert secret.startswith("kahu_")
        code, out = kahu(home, "tokens", "list")
        assert "bob" in out
        assert secret not in out
        assert kahu(home, "tokens", "revoke", "1")[0] == 0
        assert "revoked" in kahu(home, "tokens", "list")[1]
        code, out = kahu(home, "tokens", "create", "--user", "nobody")
        assert code == 2
        assert "no user" in out


class TestNodes:
    def test_add_list_echo_remove(self, tmp_path: Path, running_kahu) -> None:  # type: ignore[no-untyped-def]
        home = tmp_path / "home"
        port = str(running_kahu.dicom.port)
        assert (
            kahu(
                home,
                "nodes",
                "add",
                "self",
                "--ae-title",
                "KAHU",
                "--host",
                "127.0.0.1",
                "--port",
                port,
            )[0]
            == 0
        )
        assert "self\tKAHU\t127.0.0.1:" in kahu(home, "nodes", "list")[1]
        code, out = kahu(home, "nodes", "echo", "self")
        assert code == 0
        assert "success" in out
        code, out = kahu(
            home, "nodes", "add", "bad", "--ae-title", "X" * 20, "--host", "h", "--port", "1"
        )
        assert code == 2
        assert "invalid AE title" in out
        assert kahu(home, "nodes", "remove", "self")[0] == 0


def test_environment_settings_apply(tmp_path: Path) -> None:
    env = {**os.environ, "KAHU_HOME": str(tmp_path / "envhome"), "KAHU_DICOM__AE_TITLE": "ENVAE"}
    out = subprocess.run(
        [sys.executable, "-m", "kahu", "users", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "envhome" / "catalog.sqlite").exists()
    env["KAHU_DICOM__AE_TITLE"] = "BAD\\AE"
    out = subprocess.run(
        [sys.executable, "-m", "kahu", "users", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert "AE title" in out.stderr + out.stdout


def test_serve_logs_each_association(tmp_path: Path) -> None:
    """`kahu serve` logs one line per association; pynetdicom's own INFO lines stay quiet."""
    from tests.conftest import free_port, wait_for_port
    from tests.dimse import scu

    dicom_port = free_port()
    ports = ["--port", str(free_port()), "--dicom-port", str(dicom_port)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "kahu", "serve", "--home", str(tmp_path / "home"), *ports],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for_port(dicom_port)
        assert scu.store(dicom_port, synthetic.ct_series(1), calling="MODALITY7") == [0]
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    assert "kahu.dimse.handlers: association accepted: MODALITY7 at 127.0.0.1" in err
    assert "association released: MODALITY7" in err
    assert "pynetdicom" not in err


def test_projects_commands(tmp_path: Path) -> None:
    home = tmp_path / "home"
    folder = tmp_path / "in"
    folder.mkdir()
    for index, data in enumerate(synthetic.ct_series(2, 8)):
        (folder / f"{index}.dcm").write_bytes(data)
    assert kahu(home, "projects", "create", "onco", "--description", "oncology")[0] == 0
    code, out = kahu(home, "import", str(folder), "--project", "onco")
    assert code == 0, out
    assert "2 stored" in out
    code, out = kahu(home, "import", str(folder), "--project", "nope")
    assert code != 0
    assert "no project 'nope'" in out
    assert (
        kahu(home, "users", "add", "dana", "--password-stdin", input="correct horse battery\n")[0]
        == 0
    )
    assert kahu(home, "projects", "add-member", "onco", "dana", "--role", "scientist")[0] == 0
    assert kahu(home, "projects", "map-ae", "ONCO", "onco")[0] == 0
    code, out = kahu(home, "projects", "show", "onco")
    shown = json.loads(out)
    assert shown["series_count"] == 1
    assert shown["ae_titles"] == ["ONCO"]
    assert shown["members"] == [{"user": "dana", "role": "scientist"}]
    code, out = kahu(home, "projects", "list")
    assert out.splitlines() == ["default\t0 series\t", "onco\t1 series\tONCO"]
    code, out = kahu(home, "projects", "add-member", "onco", "dana", "--role", "owner")
    assert code != 0
    assert "invalid role 'owner'" in out


def test_changes_on_the_command_line_are_audited(tmp_path: Path) -> None:
    import getpass

    home = tmp_path / "home"
    assert kahu(home, "projects", "create", "onco")[0] == 0
    assert (
        kahu(home, "users", "add", "erin", "--password-stdin", input="a long passphrase\n")[0] == 0
    )
    assert kahu(home, "projects", "add-member", "onco", "erin", "--role", "viewer")[0] == 0
    assert kahu(home, "projects", "add-member", "onco", "nobody", "--role", "viewer")[0] != 0
    code, out = kahu(home, "audit", "list", "--action", "member.set")
    assert code == 0
    lines = [line.split("\t") for line in out.splitlines()]
    actor = f"cli:{getpass.getuser()}"
    assert [(a, action, status) for _, a, action, _, status, _ in lines] == [
        (actor, "member.set", "200"),  # erin
        (actor, "member.set", "404"),  # nobody: refused (no such user), the attempt recorded
    ]
    code, out = kahu(home, "audit", "export", "--actor", actor)
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["action"] for r in records] == [
        "project.create", "user.create", "member.set", "member.set",
    ]  # fmt: skip
    assert records[2]["project"] == "onco"
    assert records[2]["detail"] == {"user": "erin", "role": "viewer"}
    assert kahu(home, "audit", "list", "--since", "yesterday")[0] != 0
