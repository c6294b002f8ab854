"""The pages over HTTP (no browser): login redirects, the read scope, escaping, logout."""

from __future__ import annotations

from tests.api.conftest import Api
from tests.conftest import SYSTEM
from tests.synthetic import ct_series


def _login(api: Api, user: str, password: str) -> str:
    """Logs in; answers the session's CSRF value."""
    response = api.client.post(
        "/login", data={"username": user, "password": password, "next": "/explore"},
        follow_redirects=False,
    )  # fmt: skip
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/explore"
    for name in ("kahu_session", "kahu_csrf"):  # TestClient speaks http: keep them anyway
        api.client.cookies.set(name, response.cookies[name])
    return str(response.cookies["kahu_csrf"])


def test_pages_need_a_session(api: Api) -> None:
    for path in ("/", "/explore", "/explore?q=Modality:CT"):
        response = api.client.get(path, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login?next=%2F")
    assert api.client.get("/login").status_code == 200
    # a forged cookie is no session
    api.client.cookies.set("kahu_session", "kahu_forged")
    assert api.client.get("/", follow_redirects=False).status_code == 303


def test_explore_shows_only_the_callers_projects(api: Api) -> None:
    kahu = api.kahu
    kahu.projects.create("secret")
    kahu.ingestor.ingest_many(ct_series(1, 8, patient_id="OURS"))
    kahu.ingestor.ingest_many(ct_series(1, 8, patient_id="THEIRS"), project="secret")
    _login(api, "alice", "correct horse battery")
    page = api.client.get("/explore").text
    assert "data-total>1<" in page
    assert "THEIRS" not in page
    home = api.client.get("/").text
    assert 'data-count="series">1<' in home
    assert 'data-count="studies">1<' in home
    assert 'data-count="patients">1<' in home
    assert "default (scientist)" in home


def test_the_project_switcher_narrows_the_lists(api: Api) -> None:
    kahu = api.kahu
    for name in ("second", "secret"):
        kahu.projects.create(name)
    kahu.projects.set_member("second", "alice", "viewer")
    ours = kahu.ingestor.ingest_many(ct_series(1, 4, description="OURS"))
    kahu.ingestor.ingest_many(ct_series(1, 4, description="SECOND"), project="second")
    kahu.ingestor.ingest_many(ct_series(1, 4, description="SECRET"), project="secret")
    kahu.curation.create_dataset("ours-all", query="*")
    kahu.curation.create_dataset("second-all", query="*", project="second")
    csrf = _login(api, "alice", "correct horse battery")
    page = api.client.get("/explore").text
    assert "data-total>2<" in page
    assert "all my projects" in page

    switched = api.client.post(
        "/project", data={"csrf": csrf, "project": "second", "next": "/explore?q=*"},
        follow_redirects=False,
    )  # fmt: skip
    assert switched.status_code == 303
    assert switched.headers["location"] == "/explore?q=*"
    api.client.cookies.set("kahu_project", switched.cookies["kahu_project"])
    page = api.client.get("/explore").text
    assert "data-total>1<" in page
    assert "SECOND" in page
    assert "OURS" not in page
    assert "viewer in second" in page  # the role where the user is now
    assert 'data-count="series">1<' in api.client.get("/").text
    datasets = api.client.get("/datasets").text
    assert "second-all" in datasets
    assert "ours-all" not in datasets
    # a series of another of the user's projects still opens by its link
    uid = ours[0].series_instance_uid
    assert api.client.get(f"/series/{uid}").status_code == 200

    # a project the user is not in: refused in words, nothing chosen
    refused = api.client.post(
        "/project", data={"csrf": csrf, "project": "secret", "next": "/"}, follow_redirects=True
    )
    assert "not a member of secret" in refused.text
    # a cookie naming it anyway (forged, or the membership ended) shows every own project
    api.client.cookies.set("kahu_project", "secret")
    page = api.client.get("/explore").text
    assert "data-total>2<" in page
    assert "SECRET" not in page
    # without the page's CSRF value nothing is chosen
    forged = api.client.post(
        "/project", data={"csrf": "forged", "project": "second"}, follow_redirects=False
    )
    assert forged.status_code == 403
    assert "kahu_project" not in forged.cookies
    # back to every project
    api.client.cookies.set("kahu_project", "second")
    back = api.client.post(
        "/project", data={"csrf": csrf, "project": "", "next": "/explore"}, follow_redirects=False
    )
    assert (
        'kahu_project=""' in back.headers["set-cookie"] or "Max-Age=0" in back.headers["set-cookie"]
    )


def test_values_are_escaped(api: Api) -> None:
    import io

    import pydicom

    data = ct_series(1, 8)[0]
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.PatientName = "<script>alert(1)</script>"
    ds.SeriesDescription = '"><img src=x onerror=alert(2)>'
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    api.kahu.ingestor.ingest_many([out.getvalue()])
    _login(api, "alice", "correct horse battery")
    page = api.client.get("/explore").text
    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x" not in page


def test_wrong_logins_and_bad_filters_are_explained(api: Api) -> None:
    response = api.client.post("/login", data={"username": "alice", "password": "nope"})
    assert response.status_code == 401
    assert "invalid" in response.text.lower() or "wrong" in response.text.lower()
    _login(api, "alice", "correct horse battery")
    bad = api.client.get("/explore", params={"f": "no equals sign"})
    assert bad.status_code == 400
    assert "a filter is Field=value" in bad.text


def test_logout_needs_the_pages_csrf_value(api: Api) -> None:
    csrf = _login(api, "alice", "correct horse battery")
    api.client.post("/logout", data={"csrf": "forged"}, follow_redirects=False)
    sessions = [t for t in api.kahu.accounts.list_tokens("alice") if t.name == "session"]
    assert sessions[0].revoked_at is None  # a forged logout ends nothing
    api.client.post("/logout", data={"csrf": csrf}, follow_redirects=False)
    sessions = [t for t in api.kahu.accounts.list_tokens("alice") if t.name == "session"]
    assert sessions[0].revoked_at is not None


def test_every_page_needs_a_session_and_every_change_the_csrf_value(api: Api) -> None:
    """Walks the page routes (they are not in the OpenAPI schema): without a session each
    goes to the login page; with one, a change without the form's CSRF value is refused."""
    from fastapi.routing import APIRoute

    from kahu.web import pages

    routes = [
        (method, route.path)
        for route in pages.router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    ]
    assert len(routes) >= 12
    open_routes = {("GET", "/login"), ("POST", "/login"), ("POST", "/logout")}
    client = api.client
    for method, path in routes:
        if (method, path) in open_routes:
            continue
        url = (
            path.replace("{name}", "x")
            .replace("{action}", "delete")
            .replace("{run_id}", "r")
            .replace("{series_uid}", "1.2.3")
            .replace("{task_id}", "1")
        )
        response = client.request(method, url, follow_redirects=False)
        assert response.status_code == 303, (method, path, response.status_code)
        assert response.headers["location"].startswith("/login")
    _login(api, "alice", "correct horse battery")
    for method, path in routes:
        if method != "POST" or (method, path) in open_routes:
            continue
        url = (
            path.replace("{name}", "x")
            .replace("{action}", "delete")
            .replace("{run_id}", "r")
            .replace("{series_uid}", "1.2.3")
            .replace("{task_id}", "1")
        )
        response = client.post(url, data={"csrf": "forged"}, follow_redirects=False)
        assert response.status_code == 403, (path, response.status_code, response.text[:200])


def test_series_page_download_send_and_delete(api: Api) -> None:
    import io
    import zipfile

    from kahu.dimse.nodes import Node

    kahu, client = api.kahu, api.client
    files = ct_series(2, 8, patient_id="PAGE-1")
    [first, _] = kahu.ingestor.ingest_many(files)
    uid = first.series_instance_uid
    assert uid is not None
    kahu.nodes.add(Node("pacs", "PACS", "127.0.0.1", 1))
    csrf = _login(api, "alice", "correct horse battery")
    page = client.get(f"/series/{uid}")
    assert page.status_code == 200
    assert "PAGE-1" in page.text
    assert "Delete the series" not in page.text  # administrators only
    download = client.get(f"/series/{uid}/download")
    with zipfile.ZipFile(io.BytesIO(download.content)) as archive:
        assert sorted(archive.read(n) for n in archive.namelist()) == sorted(files)
    sent = client.post(
        f"/series/{uid}/send", data={"csrf": csrf, "node": "pacs", "project": "default"},
        follow_redirects=False,
    )  # fmt: skip
    assert "Sending+to+pacs" in sent.headers["location"]
    [run] = kahu.runs.runs()
    assert (run.workflow, run.params, run.created_by) == ("send-to-node", {"node": "pacs"}, "alice")
    refused = client.post(f"/series/{uid}/delete", data={"csrf": csrf}, follow_redirects=False)
    assert refused.status_code == 403
    assert kahu.catalog.get_series(SYSTEM, uid).instance_count == 2
    assert client.get("/series/1.2.3").status_code == 404


def test_a_report_opens_in_the_browser(api: Api) -> None:
    """A workflow's report (an Encapsulated PDF series) opens as a PDF, sandboxed; a series
    without one, or of another project, does not."""
    from tests.synthetic import encapsulated_pdf

    kahu, client = api.kahu, api.client
    kahu.projects.create("secret")
    [doc] = kahu.ingestor.ingest_many([encapsulated_pdf()])
    [hidden] = kahu.ingestor.ingest_many([encapsulated_pdf()], project="secret")
    [ct, *_] = kahu.ingestor.ingest_many(ct_series(1, 4))
    _login(api, "alice", "correct horse battery")
    page = client.get(f"/series/{doc.series_instance_uid}").text
    assert f'href="/series/{doc.series_instance_uid}/report"' in page
    assert "Open the report" not in client.get(f"/series/{ct.series_instance_uid}").text
    report = client.get(f"/series/{doc.series_instance_uid}/report")
    assert report.status_code == 200
    assert report.headers["content-type"] == "application/pdf"
    assert report.headers["content-security-policy"] == "sandbox"
    assert report.content == b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
    assert client.get(f"/series/{ct.series_instance_uid}/report").status_code == 404
    assert client.get(f"/series/{hidden.series_instance_uid}/report").status_code == 404
    [entry] = [e for e in kahu.audit.query(action="retrieve") if e.path.endswith("/report")]
    assert (entry.actor, entry.series) == ("alice", [doc.series_instance_uid])


def test_adding_to_a_dataset_keeps_to_the_callers_projects(api: Api) -> None:
    kahu = api.kahu
    kahu.projects.create("secret")
    ours = kahu.ingestor.ingest_many(ct_series(1, 4))[0].series_instance_uid
    theirs = kahu.ingestor.ingest_many(ct_series(1, 4), project="secret")[0].series_instance_uid
    kahu.curation.create_dataset("mine", series=[])
    kahu.curation.create_dataset("hidden", series=[], project="secret")
    csrf = _login(api, "alice", "correct horse battery")

    def add(into: str, uid: str) -> str:
        form = {"csrf": csrf, "what": "add", "into": into, "series": uid}
        return api.client.post("/datasets", data=form, follow_redirects=True).text

    assert "Nothing was added: no dataset &#39;hidden&#39;" in add("hidden", ours)
    assert "Nothing was added" in add("mine", theirs)
    assert kahu.curation.dataset("hidden").series_count == 0
    assert kahu.curation.dataset("mine").series_count == 0
    assert "it holds 1 series now" in add("mine", ours)
    page = api.client.get("/explore").text
    assert 'value="mine"' in page
    assert 'value="hidden"' not in page


def test_a_facet_shows_more_values_on_asking(api: Api) -> None:
    import io

    import pydicom

    for index in range(10):
        ds = pydicom.dcmread(io.BytesIO(ct_series(1, 4)[0]))
        ds.Manufacturer = f"Maker {index:02d}"
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        api.kahu.ingestor.ingest_many([out.getvalue()])
    _login(api, "alice", "correct horse battery")
    page = api.client.get("/explore").text
    assert page.count('aria-label="exclude Maker') == 8
    assert ">more values</a>" in page
    more = api.client.get("/explore", params={"more": "Manufacturer"}).text
    assert more.count('aria-label="exclude Maker') == 10
    assert ">fewer values</a>" in more
    assert ">more values</a>" not in more  # no other facet has eight values here


def test_home_shows_failed_runs(api: Api) -> None:
    from kahu.flow.cohort import RunInput
    from kahu.flow.launch import launch

    kahu = api.kahu
    [report] = kahu.ingestor.ingest_many(ct_series(1, 4))
    [run] = launch(
        kahu.catalog, kahu.workflows, kahu.flow, "ct-threshold-segmentation", {},
        RunInput(series_uids=(str(report.series_instance_uid),)), audit=kahu.audit, path="test",
    )  # fmt: skip
    assert kahu.flow.wait_idle(run, 120) == "failed"
    _login(api, "alice", "correct horse battery")
    home = api.client.get("/").text
    failed = home[home.index('id="failed-title"') :]
    assert f'data-run="{run}"' in failed
    assert "None running." in home


def test_the_api_schema_and_its_page_need_a_caller(api: Api) -> None:
    assert api.client.get("/openapi.json").status_code == 401
    assert api.client.get("/openapi.json", headers=api.headers()).json()["info"]["title"] == "Kahu"
    response = api.client.get("/docs", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fdocs"
    assert api.client.get("/redoc").status_code == 404  # its page would load from a CDN
    _login(api, "alice", "correct horse battery")
    page = api.client.get("/docs").text
    assert "/static/vendor/swagger-ui-bundle.js" in page
    assert "http://" not in page
    assert "https://" not in page  # nothing from elsewhere
    assert api.client.get("/openapi.json").status_code == 200  # the page's own fetch
