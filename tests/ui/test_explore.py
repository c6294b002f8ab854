"""Log in, search, filter by facets (include and exclude), in Chromium."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.conftest import SYSTEM
from tests.synthetic import ct_series
from tests.ui.conftest import PASSWORD, Site


def _fill(site: Site) -> None:
    kahu = site.kahu
    for index, (patient, body) in enumerate(
        [("P-CHEST-1", "CHEST"), ("P-CHEST-2", "CHEST"), ("P-HEAD-1", "HEAD")]
    ):
        files = ct_series(2, 8, patient_id=patient, description=f"series {index}")
        from io import BytesIO

        import pydicom

        changed = []
        for data in files:
            ds = pydicom.dcmread(BytesIO(data))
            ds.BodyPartExamined = body
            ds.PatientAge = ["047Y", "045Y", "006M"][index]
            ds.PatientName = "<img src=x onerror=alert(1)>^Evil" if index == 2 else f"Doe^{index}"
            out = BytesIO()
            ds.save_as(out, enforce_file_format=True)
            changed.append(out.getvalue())
        kahu.ingestor.ingest_many(changed)
    kahu.accounts.create_user("uma", PASSWORD)
    kahu.projects.set_member("default", "uma", "scientist")


def _login(page: Page, site: Site, path: str = "/explore") -> None:
    page.goto(site.url + path)
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.get_by_label("User name").fill("uma")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(re.escape(path) + "$"))


def test_login_search_and_facets(page: Page, site: Site) -> None:
    _fill(site)
    page.on("dialog", lambda dialog: (_ for _ in ()).throw(AssertionError("markup ran")))
    _login(page, site, "/explore")
    total = page.locator("[data-total]")
    expect(total).to_have_text("3")
    expect(page.get_by_text("uma")).to_be_visible()
    # the project switcher names the user's projects and roles; choosing one says the role
    switcher = page.locator("#project-switch")
    expect(switcher.locator("option")).to_have_text(["all my projects", "default (scientist)"])
    switcher.select_option("default")
    page.get_by_role("button", name="Switch").click()
    expect(page.locator("[data-role]")).to_have_text("scientist in default")
    expect(switcher).to_have_value("default")
    # markup in a patient name is shown as text, never run
    expect(page.get_by_text("<img src=x onerror=alert(1)>^Evil")).to_be_visible()
    site.shot(page, "explore")
    # a query
    page.get_by_label(re.compile("^Query")).fill("BodyPartExamined:CHEST")
    page.get_by_role("button", name="Search").click()
    expect(total).to_have_text("2")
    # clear it, then click a facet value: an include filter shown as a chip
    page.get_by_label(re.compile("^Query")).fill("")
    page.get_by_role("button", name="Search").click()
    expect(total).to_have_text("3")
    page.locator('[data-field="BodyPartExamined"] a.include', has_text="HEAD").click()
    expect(total).to_have_text("1")
    chip = page.locator(".chip")
    expect(chip).to_have_text(re.compile("BodyPartExamined: HEAD"))
    site.shot(page, "explore-filtered")
    # remove the chip; Alt-click excludes instead
    page.get_by_label("remove filter BodyPartExamined: HEAD").click()
    expect(total).to_have_text("3")
    page.locator('[data-field="BodyPartExamined"] a.include', has_text="HEAD").click(
        modifiers=["Alt"]
    )
    expect(total).to_have_text("2")
    expect(page.locator(".chip.exclude")).to_have_text(re.compile("not BodyPartExamined: HEAD"))
    # the URL holds the filters: a reload shows the same
    page.reload()
    expect(total).to_have_text("2")
    # a bad query is explained in words
    page.get_by_label(re.compile("^Query")).fill("Modality:(")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("alert")).to_contain_text("cannot be run")


def test_home_and_logout(page: Page, site: Site) -> None:
    _fill(site)
    _login(page, site, "/")
    expect(page.locator('[data-count="series"]')).to_have_text("3")
    site.shot(page, "home")
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile("/login$"))
    page.goto(site.url + "/")
    expect(page).to_have_url(re.compile(r"/login\?next="))


def test_wrong_password_is_explained(page: Page, site: Site) -> None:
    _fill(site)
    page.goto(site.url + "/login")
    page.get_by_label("User name").fill("uma")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_be_visible()
    site.shot(page, "login-failed")


def test_save_datasets_from_explore(page: Page, site: Site) -> None:
    _fill(site)
    _login(page, site, "/explore")
    total = page.locator("[data-total]")
    page.locator('[data-field="BodyPartExamined"] a.include', has_text="CHEST").click()
    expect(total).to_have_text("2")
    page.get_by_label("Name").fill("chest-cohort")
    page.get_by_role("button", name="Save the query").click()
    expect(page.get_by_role("status")).to_have_text("Dataset chest-cohort saved.")
    # two series picked by hand
    page.get_by_label("remove filter BodyPartExamined: CHEST").click()
    expect(total).to_have_text("3")
    boxes = page.locator('input[name="series"]')
    boxes.nth(0).check()
    boxes.nth(2).check()
    page.get_by_label("Name").fill("picked")
    page.get_by_role("button", name="Save the selected series").click()
    expect(page.get_by_role("status")).to_have_text("Dataset picked saved.")
    # a third added to it; adding with nothing selected says what to do
    page.locator('input[name="series"]').nth(1).check()
    page.get_by_label("Dataset", exact=True).select_option("picked")
    page.get_by_role("button", name="Add the selected series").click()
    expect(page.get_by_role("status")).to_have_text("Added to picked: it holds 3 series now.")
    page.get_by_role("button", name="Add the selected series").click()
    expect(page.get_by_role("status")).to_contain_text("select series first")
    # the datasets page lists both with their sizes; one opens in Explore
    page.get_by_role("link", name="Datasets").click()
    expect(page.locator('[data-dataset="chest-cohort"] td').nth(3)).to_have_text("2")
    expect(page.locator('[data-dataset="picked"] td').nth(2)).to_have_text("explicit")
    expect(page.locator('[data-dataset="picked"] td').nth(3)).to_have_text("3")
    site.shot(page, "datasets")
    page.get_by_role("link", name="chest-cohort").click()
    expect(total).to_have_text("2")
    expect(page.locator(".chip")).to_have_text(re.compile("dataset: chest-cohort"))
    # freeze the query dataset, delete the other (after confirming)
    page.get_by_role("link", name="Datasets").click()
    page.locator('[data-dataset="chest-cohort"]').get_by_role("button", name="Freeze").click()
    expect(page.get_by_role("status")).to_contain_text("frozen")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator('[data-dataset="picked"]').get_by_role("button", name="Delete").click()
    expect(page.get_by_role("status")).to_contain_text("deleted")
    expect(page.locator('[data-dataset="picked"]')).to_have_count(0)
    assert [d.name for d in site.kahu.curation.datasets()] == ["chest-cohort"]
    assert site.kahu.curation.dataset("chest-cohort").kind == "frozen"


def test_launch_a_workflow_and_watch_it(page: Page, site: Site) -> None:
    _fill(site)
    site.kahu.curation.create_dataset("chest", query="BodyPartExamined:CHEST")
    _login(page, site, "/workflows")
    site.shot(page, "workflows")
    page.get_by_role("link", name="Export de-identified DICOM zip").click()
    page.get_by_label("Dataset").select_option("chest")
    # a value outside the schema is refused inline, naming the field
    page.get_by_label("max_shift_days").fill("0")
    page.get_by_role("button", name="Start").click()
    expect(page.locator(".field.invalid")).to_contain_text("minimum")
    expect(page.get_by_role("alert").first).to_be_visible()
    site.shot(page, "launch-invalid")
    page.get_by_label("max_shift_days").fill("30")
    page.get_by_label("retain_dates").check()
    page.get_by_role("button", name="Start").click()
    expect(page.get_by_role("status")).to_contain_text("Started export-deidentified-zip")
    row = page.locator("tr[data-run]").first
    expect(row.locator("[data-state]")).to_have_text("succeeded", timeout=60_000)  # live
    site.shot(page, "runs")
    row.get_by_role("link").first.click()
    expect(page.locator("tr[data-progress]")).to_have_count(2)  # the two series
    expect(page.locator("tr[data-progress]").first).to_contain_text("2 of 2")
    expect(page.locator("tbody tr:not([data-progress])")).to_have_count(5)  # 2 get-input,
    # 2 deidentify, 1 zip
    site.shot(page, "run")
    [run] = site.kahu.runs.runs()
    assert run.params["retain_dates"] is True
    assert run.params["max_shift_days"] == 30
    assert run.created_by == "uma"


def test_administration(page: Page, site: Site) -> None:
    kahu = site.kahu
    kahu.accounts.create_user("ada", PASSWORD, is_admin=True)
    kahu.accounts.create_user("bo", PASSWORD)
    kahu.ingestor.ingest_many(ct_series(3, 8))
    page.goto(site.url + "/admin")
    page.get_by_label("User name").fill("ada")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator('[data-system="disk"]')).to_contain_text("GB")
    expect(page.locator('[data-system="ingest"]')).to_have_text("3 / 3")
    expect(page.locator('[data-system="queue"]')).to_have_text("0 / 0 / 0")
    # a project, a member, an AE title, a node: each change confirmed and audited
    page.get_by_label("New project").fill("onco")
    page.get_by_role("button", name="Add project").click()
    expect(page.get_by_role("status")).to_have_text("Project onco created.")
    project = page.locator('[data-project="onco"]')
    project.get_by_label("Member").select_option("bo")
    project.get_by_label("Role").select_option("scientist")
    project.get_by_role("button", name="Set role").click()
    expect(page.get_by_role("status")).to_have_text("bo is scientist in onco.")
    page.locator('[data-project="onco"]').get_by_label("Called AE title storing here").fill("ONCO")
    page.locator('[data-project="onco"]').get_by_role("button", name="Map").click()
    expect(page.get_by_role("status")).to_have_text("ONCO now stores into onco.")
    page.get_by_label("Name", exact=True).fill("pacs")
    page.get_by_label("AE title", exact=True).fill("PACS")
    page.get_by_label("Host").fill("10.0.0.5")
    page.get_by_label("Port").fill("104")
    page.get_by_label("Projects (comma-separated)").fill("onco")
    page.get_by_role("button", name="Add node").click()
    expect(page.get_by_role("status")).to_have_text("Node pacs added.")
    expect(page.locator('[data-node="pacs"]')).to_contain_text("onco")
    # a mistake is explained, nothing changes
    page.get_by_label("New project").fill("Bad Name")
    page.get_by_role("button", name="Add project").click()
    expect(page.get_by_role("status")).to_contain_text("Nothing changed")
    page.locator('[data-user="bo"]').get_by_role("button", name="Disable").click()
    expect(page.get_by_role("status")).to_have_text("User bo disabled.")
    expect(page.locator('tr[data-audit="member.set"]')).to_have_count(1)
    site.shot(page, "admin")
    assert kahu.projects.roles_of("bo") == {"onco": "scientist"}
    assert kahu.projects.project_of_ae("ONCO") == "onco"
    assert [n.projects for n in kahu.nodes.list()] == [("onco",)]
    # both attempts recorded; the refused one with the status of its refusal, not 500
    assert [(r.actor, r.status) for r in kahu.audit.query(action="project.create")] == [
        ("ada", 200), ("ada", 400),
    ]  # fmt: skip
    # not for others
    kahu.accounts.set_disabled("bo", False)
    page.get_by_role("button", name="Log out").click()
    page.get_by_label("User name").fill("bo")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("link", name="Admin")).to_have_count(0)
    response = page.goto(site.url + "/admin")
    assert response is not None
    assert response.status == 403


def test_suggestions_years_gallery_and_tag_keys(page: Page, site: Site) -> None:
    _fill(site)
    _login(page, site, "/explore")
    query = page.get_by_label(re.compile("^Query"))
    query.fill("BodyPart")
    options = page.locator("#q-suggestions option")
    expect(options.first).to_have_attribute("value", "BodyPartExamined:")
    query.fill("BodyPartExamined:CH")
    expect(options.first).to_have_attribute("value", 'BodyPartExamined:"CHEST"')
    # a study year bar filters by that year
    years = page.locator('[data-field="StudyDate"] a.include')
    expect(years.first).to_be_visible()
    years.first.click()
    expect(page.locator(".chip")).to_have_text(re.compile(r"StudyDate: \d{4}"))
    # the age chart: bars by decade (6 months is 0.5 years), a click keeps that decade,
    # an Alt-click leaves it out
    page.goto(site.url + "/explore")
    ages = page.locator('[data-field="PatientAge"] li')
    expect(ages).to_have_count(2)
    expect(ages.nth(0)).to_have_text(re.compile(r"0–9\s*1"))
    expect(ages.nth(1)).to_have_text(re.compile(r"40–49\s*2"))
    ages.nth(1).locator("a.include").click()
    expect(page.locator(".chip")).to_have_text(re.compile(r"^\s*age 40 to under 50\s*×"))
    expect(page.locator("[data-total]")).to_have_text("2")
    page.get_by_label("remove filter age 40 to under 50").click()
    expect(page.locator("[data-total]")).to_have_text("3")  # the page without the filter
    page.locator('[data-field="PatientAge"] a.include').first.click(modifiers=["Alt"])
    expect(page.locator(".chip.exclude")).to_have_text(re.compile("not age 0 to under 10"))
    expect(page.locator("[data-total]")).to_have_text("2")
    page.goto(site.url + "/explore?view=gallery")
    images = page.locator(".gallery img")
    expect(images).to_have_count(3)
    page.wait_for_function(
        "Array.from(document.querySelectorAll('.gallery img')).every(i => i.complete)"
    )
    assert page.evaluate(
        "Array.from(document.querySelectorAll('.gallery img')).every(i => i.naturalWidth > 0)"
    )
    site.shot(page, "explore-gallery")
    # select two series and press 2: the second tag of the list
    boxes = page.locator('.gallery input[name="series"]')
    boxes.nth(0).check()
    boxes.nth(1).check()
    page.keyboard.press("2")
    expect(page.locator(".gallery .tags", has_text="bad")).to_have_count(2)
    tagged = {u for u, tags in site.kahu.curation.tags_of(
        [r.series_instance_uid for r in site.kahu.catalog.list_series(SYSTEM)[0]]
    ).items() if tags == ["bad"]}  # fmt: skip
    assert len(tagged) == 2


def test_explore_by_keyboard_only(page: Page, site: Site) -> None:
    """Each step of the explore path by keys: the focus moves with Tab (or a shortcut) and
    Enter or Space acts."""
    _fill(site)
    page.goto(site.url + "/explore")
    page.get_by_label("User name").focus()
    page.keyboard.type("uma")
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    total = page.locator("[data-total]")
    expect(total).to_have_text("3")
    # the skip link is the first stop of Tab and leads to the content
    page.keyboard.press("Tab")
    expect(page.locator("a.skip")).to_be_focused()
    # "/" jumps to the query bar; Enter searches
    page.locator("body").click(position={"x": 5, "y": 400})
    page.keyboard.press("/")
    expect(page.locator("#q")).to_be_focused()
    page.keyboard.type("BodyPartExamined:CHEST")
    page.keyboard.press("Enter")
    expect(total).to_have_text("2")
    # a facet value's exclude link, then the chip's remove link
    page.locator('[data-field="Modality"] a.exclude').first.focus()
    page.keyboard.press("Enter")
    expect(page.locator(".chip.exclude")).to_have_count(1)
    expect(total).to_have_text("0")
    page.locator(".chip a").first.focus()
    page.keyboard.press("Enter")
    expect(page.locator(".chip")).to_have_count(0)
    expect(total).to_have_text("2")
    # select a series with Space, tag it with 1
    page.locator('input[name="series"]').first.focus()
    page.keyboard.press("Space")
    page.keyboard.press("1")
    expect(page.locator("td.tags", has_text="good")).to_have_count(1)


def test_the_api_documentation_works_offline(page: Page, site: Site) -> None:
    """Swagger UI from Kahu's own static files: every request the page makes stays on Kahu."""
    elsewhere: list[str] = []
    page.on(
        "request",
        lambda r: None if r.url.startswith(site.url) else elsewhere.append(r.url),
    )
    _fill(site)
    _login(page, site, "/docs")
    expect(page.locator(".swagger-ui .opblock").first).to_be_visible()
    expect(page.get_by_text("/api/v1/series").first).to_be_visible()
    assert elsewhere == []
    site.shot(page, "api-docs")
