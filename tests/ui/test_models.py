"""The Models page in Chromium: an administrator installs a model from a zip archive with
the form, opens it (labels with codes and colours, licence, SHA-256, README), narrows the
projects that may use it, and uninstalls it; a bad archive is explained and changes nothing.
A project member sees the models of their projects, without the forms."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

from tests.api.conftest import Api
from tests.models.builders import manifest_folder, monai_bundle, zip_of
from tests.ui.conftest import PASSWORD, Site
from tests.ui.test_pages import _login


def test_install_inspect_and_uninstall_a_model(page: Page, site: Site, tmp_path: Path) -> None:
    kahu = site.kahu
    kahu.accounts.create_user("root2", PASSWORD, is_admin=True)
    kahu.projects.create("lung")
    archive = zip_of(monai_bundle(tmp_path), tmp_path / "spleen.zip")
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 not a whole archive")

    page.goto(site.url + "/models")
    page.get_by_label("User name").fill("root2")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_text("No models are installed")).to_be_visible()

    page.get_by_label("Archive").set_input_files(str(bad))
    page.get_by_role("button", name="Install").click()
    expect(page.locator(".message")).to_contain_text("Nothing installed: not a readable zip")

    page.get_by_label("Archive").set_input_files(str(archive))
    page.get_by_role("button", name="Install").click()
    expect(page.locator(".message")).to_contain_text("spleen-ct-segmentation@0.5.9 installed")
    row = page.locator("tr[data-model='spleen-ct-segmentation@0.5.9']")
    expect(row).to_contain_text("monai-bundle")
    expect(row).to_contain_text("spleen")
    site.shot(page, "models")

    row.get_by_role("link").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Spleen CT segmentation")
    model = kahu.models.get("spleen-ct-segmentation")
    expect(page.locator("[data-sha256]")).to_have_text(model.sha256)
    expect(page.locator("tr[data-label='1']")).to_contain_text("spleen")
    expect(page.locator("pre.readme")).to_contain_text("Segments the spleen on CT.")
    expect(page.locator("pre.licence")).to_contain_text("Apache License 2.0")
    site.shot(page, "model")

    page.get_by_label("every project").uncheck()
    page.get_by_label("Projects that may use it").fill("lung")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".message")).to_contain_text("available to lung")
    assert kahu.models.get("spleen-ct-segmentation").projects == ("lung",)

    page.locator("tr[data-model] a").first.click()
    page.get_by_role("button", name="Uninstall").click()
    expect(page.locator(".message")).to_contain_text("uninstalled")
    assert kahu.models.all() == []
    assert [r.status for r in kahu.audit.query(action="model.install", limit=None)] == [400, 200]


def test_members_see_their_projects_models_without_the_forms(api: Api, tmp_path: Path) -> None:
    api.kahu.projects.create("lung")
    api.kahu.models.install(manifest_folder(tmp_path / "a"))
    api.kahu.models.install(manifest_folder(tmp_path / "b", name="lungs"), projects=["lung"])
    csrf = _login(api, "alice", "correct horse battery")
    listed = api.client.get("/models").text
    assert "liver@2.0" in listed
    assert "lungs@2.0" not in listed
    assert "Install a model" not in listed
    assert api.client.get("/models/lungs/2.0").status_code == 404
    detail = api.client.get("/models/liver/2.0").text
    assert "SCT 10200004" in detail
    assert "Uninstall" not in detail
    refused = api.client.post(
        "/models/uninstall", data={"csrf": csrf, "name": "liver", "version": "2.0"}
    )
    assert refused.status_code == 403
    assert [m.ref for m in api.kahu.models.all()] == ["liver@2.0", "lungs@2.0"]


def test_a_series_page_segments_with_an_installed_model(api: Api, tmp_path: Path) -> None:
    from tests.models.builders import nnunet_folder
    from tests.synthetic import ct_series

    [result, *_] = api.kahu.ingestor.ingest_many(ct_series(2, 16, patient_id="SEGME"))
    uid = str(result.series_instance_uid)
    model = api.kahu.models.install(nnunet_folder(tmp_path), overrides={"name": "spheres"})
    csrf = _login(api, "alice", "correct horse battery")
    page = api.client.get(f"/series/{uid}").text
    assert "Segment with" in page
    assert f'value="{model.ref}"' in page
    answer = api.client.post(
        f"/series/{uid}/segment",
        data={"csrf": csrf, "model": "spheres", "project": "default"},
        follow_redirects=False,
    )
    assert "Segmenting+with+spheres%401" in answer.headers["location"]
    [run] = api.kahu.runs.runs(workflow="nnunet-inference")
    assert run.params["model"] == "spheres@1"
    api.kahu.projects.create("lung")
    api.kahu.models.set_projects("spheres", None, ["lung"])
    assert "Segment with" not in api.client.get(f"/series/{uid}").text
    refused = api.client.post(
        f"/series/{uid}/segment",
        data={"csrf": csrf, "model": "spheres", "project": "default"},
        follow_redirects=False,
    )
    assert "Not+started" in refused.headers["location"]


def test_the_gallery_segments_series_with_an_installed_model(
    page: Page, site: Site, tmp_path: Path
) -> None:
    from tests.models.builders import nnunet_folder
    from tests.ui.test_explore import _fill
    from tests.ui.test_explore import _login as login_at

    _fill(site)
    kahu = site.kahu
    kahu.models.install(nnunet_folder(tmp_path), overrides={"name": "spheres"})
    login_at(page, site, "/explore?view=gallery")
    status = page.get_by_role("status")
    page.get_by_role("button", name="Segment the selected series").click()
    expect(status).to_contain_text("Not started: select series first")
    boxes = page.locator('input[name="series"]')
    boxes.nth(0).check()
    boxes.nth(2).check()
    chosen = {boxes.nth(i).get_attribute("value") for i in (0, 2)}
    page.get_by_label("Model", exact=True).select_option("spheres@1")
    page.get_by_role("button", name="Segment the selected series").click()
    expect(status).to_contain_text("Segmenting with spheres@1: run")
    [listed] = kahu.runs.runs(workflow="nnunet-inference")
    run = kahu.runs.run(listed.id)
    assert set(run.series) == chosen
    assert (run.params["model"], run.project, run.created_by) == ("spheres@1", "default", "uma")
    # a whole search: the query with its filters
    page.locator('[data-field="BodyPartExamined"] a.include', has_text="CHEST").click()
    expect(page.locator("[data-total]")).to_have_text("2")
    page.get_by_role("button", name="Segment every series found").click()
    expect(status).to_contain_text("Segmenting with spheres@1: run")
    [newest] = [r for r in kahu.runs.runs(workflow="nnunet-inference") if r.id != run.id]
    assert len(kahu.runs.run(newest.id).series) == 2
    # a model the project may not use is not offered
    kahu.projects.create("lung")
    kahu.models.set_projects("spheres", None, ["lung"])
    page.reload()
    expect(page.get_by_role("button", name="Segment the selected series")).to_have_count(0)
