"""The ``kahu`` command's own commands: serve, import, search, find, users, tokens, nodes,
series and audit (workflows and projects are in :mod:`kahu.cli.flow` and
:mod:`kahu.cli.projects`)."""

from __future__ import annotations

import getpass
import json
import logging
import ssl
import sys
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from kahu.cli.common import DbOpt, HomeOpt, _fail, _guard, _open, _settings

app = typer.Typer(
    help="Kahu: receive, store, search and process medical images on your own site.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
users_app = typer.Typer(help="Manage user accounts.", no_args_is_help=True)
tokens_app = typer.Typer(help="Manage API tokens.", no_args_is_help=True)
nodes_app = typer.Typer(
    help="Manage remote DICOM nodes (C-MOVE destinations).", no_args_is_help=True
)
series_app = typer.Typer(help="Inspect and delete series.", no_args_is_help=True)
audit_app = typer.Typer(help="Read the audit log.", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(tokens_app, name="tokens")
app.add_typer(nodes_app, name="nodes")
app.add_typer(series_app, name="series")
app.add_typer(audit_app, name="audit")


@app.command()
@_guard
def serve(
    home: HomeOpt = None,
    database_url: DbOpt = None,
    host: Annotated[str | None, typer.Option(help="HTTP bind address [127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port [8080]")] = None,
    dicom_port: Annotated[int | None, typer.Option(help="DICOM port [11112]")] = None,
    ae_title: Annotated[str | None, typer.Option(help="DICOM AE title [KAHU]")] = None,
) -> None:
    """Start the platform: web/API, DICOMweb and the DICOM (DIMSE) server."""
    import uvicorn

    from kahu.app import create_app

    settings = _settings(
        home,
        database_url,
        http={"host": host, "port": port},
        dicom={"port": dicom_port, "ae_title": ae_title},
    )
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if settings.log_level != "DEBUG":  # Kahu logs each association itself
        logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    kahu = _open(settings)
    created = kahu.accounts.ensure_admin(settings.admin_password_file)
    tls = settings.http
    base = f"http{'s' if tls.tls_cert else ''}://{settings.http.host}:{settings.http.port}"
    typer.echo(f"Kahu home:        {settings.home.resolve()}")
    typer.echo(f"Web and API:      {base}/  (OpenAPI docs at {base}/docs)")
    if settings.dicom.enabled:
        typer.echo(
            f"DICOM (DIMSE):    AE title {settings.dicom.ae_title}, port {settings.dicom.port}"
        )
    if created:
        typer.echo(
            f"Admin user:       'admin', password written to "
            f"{settings.admin_password_file.resolve()} (mode 0600)"
        )
    else:
        typer.echo(
            f"Admin password:   see {settings.admin_password_file.resolve()} "
            "(if it was never changed)"
        )
    sys.stdout.flush()
    try:
        uvicorn.run(
            create_app(settings, kahu),
            host=settings.http.host,
            port=settings.http.port,
            log_level="info",
            ssl_certfile=tls.tls_cert,
            ssl_keyfile=tls.tls_key,
            ssl_ca_certs=str(tls.tls_client_ca) if tls.tls_client_ca else None,
            ssl_cert_reqs=ssl.CERT_REQUIRED if tls.tls_client_ca else ssl.CERT_NONE,
        )
    finally:
        kahu.stop()


@app.command("import")
@_guard
def import_(
    paths: Annotated[list[Path], typer.Argument(help="files, folders or zip archives")],
    dataset: Annotated[str | None, typer.Option(help="add every series to this dataset")] = None,
    project: Annotated[
        str | None, typer.Option(help="the project the series enter (default: default)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per file")] = False,
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Import DICOM files through the same path as C-STORE; report every file."""
    from kahu.imports import Importer

    settings = _settings(home, database_url)
    counts = {"stored": 0, "duplicate": 0, "rejected": 0}
    with _open(settings) as kahu:
        if project is not None:
            kahu.catalog.project_pk(project)
        importer = Importer(kahu.ingestor, settings.imports, project)
        for report in importer.import_paths(paths, dataset=dataset):
            counts[report.status] += 1
            if as_json:
                typer.echo(json.dumps(report.as_dict()))
            else:
                reason = f"  ({report.reason})" if report.reason else ""
                typer.echo(f"{report.status:9} {report.path}{reason}")
    summary = ", ".join(f"{n} {k}" for k, n in counts.items())
    typer.echo(summary, err=as_json)
    if counts["rejected"] and not counts["stored"] and not counts["duplicate"]:
        raise typer.Exit(1)


@app.command()
@_guard
def search(
    query: Annotated[
        str,
        typer.Argument(
            help="Lucene query string over the series metadata, e.g. "
            "'Modality:CT AND StudyDate:[2020 TO *] AND NOT SeriesDescription:*scout*'"
        ),
    ] = "*",
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 100,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    sort: Annotated[
        str, typer.Option(help="fields, comma-separated, '-' for descending: -StudyDate,Modality")
    ] = "",
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document per line")] = False,
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Find series with a query (syntax: docs/search.md); a table, or --json documents."""
    from kahu.catalog.scope import SeriesScope
    from kahu.errors import InvalidInput
    from kahu.search.series import search_series

    with _open(_settings(home, database_url)) as kahu:
        try:
            rows, total = search_series(
                kahu.catalog,
                SeriesScope.system("cli"),
                query,
                limit=limit,
                offset=offset,
                sort=sort,
            )
        except InvalidInput as exc:
            _fail(str(exc))
    for row in rows:
        if as_json:
            typer.echo(json.dumps(row.full_document(), default=str))
        else:
            cells = (
                row.series_instance_uid,
                row.modality or "",
                row.document.get("StudyDate") or "",
                str(row.instance_count),
                row.series_description or "",
            )
            typer.echo("\t".join(cells))
    typer.echo(f"{len(rows)} of {total} series", err=True)


@app.command()
@_guard
def find(
    terms: Annotated[
        list[str] | None,
        typer.Argument(
            help="DICOM matching keys as KEYWORD=VALUE (wildcards * ?, ranges a-b), e.g. "
            "Modality=CT 'PatientName=DOE*' StudyDate=20200101-"
        ),
    ] = None,
    level: Annotated[str, typer.Option(help="PATIENT, STUDY, SERIES or IMAGE")] = "SERIES",
    limit: Annotated[int, typer.Option(min=1)] = 100,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Find patients, studies, series or instances by DICOM matching keys, as C-FIND does."""
    from kahu.catalog.dicom_query import Level
    from kahu.catalog.scope import SeriesScope

    filters: dict[str, str] = {}
    for term in terms or []:
        key, sep, value = term.partition("=")
        if not sep or not key:
            _fail(f"expected KEYWORD=VALUE, got {term!r}")
        filters[key.strip()] = value
    try:
        query_level = Level(level.upper())
    except ValueError:
        _fail(f"unknown level {level!r}")
    with _open(_settings(home, database_url)) as kahu:
        from kahu.catalog.dicom_query import ATTRIBUTES, DERIVED

        unknown = [k for k in filters if k not in ATTRIBUTES and k not in DERIVED]
        if unknown:
            _fail(f"unknown matching key(s): {', '.join(unknown)}")
        rows = kahu.query.search(SeriesScope.system("cli"), query_level, filters, limit=limit)
    for row in rows:
        if as_json:
            typer.echo(json.dumps(row, default=str))
        else:
            typer.echo("  ".join(f"{k}={v}" for k, v in row.items() if v not in (None, "", [])))
    if not as_json:
        typer.echo(f"{len(rows)} match(es)", err=True)


# -- users ---------------------------------------------------------------------------------------


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Repeat password: ") != first:
        _fail("passwords differ")
    return first


@users_app.command("list")
@_guard
def users_list(home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """List user accounts."""
    with _open(_settings(home, database_url)) as kahu:
        for user in kahu.accounts.list_users():
            flags = [f for f, on in (("admin", user.is_admin), ("disabled", user.disabled)) if on]
            typer.echo(f"{user.name}\t{','.join(flags)}")


@users_app.command("add")
@_guard
def users_add(
    name: str,
    admin: Annotated[bool, typer.Option("--admin", help="grant the admin role")] = False,
    password_stdin: Annotated[bool, typer.Option(help="read the password from stdin")] = False,
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Create a user (asks for the password)."""
    password = _read_password(password_stdin)
    from kahu.actions import Actor, accounts

    with _open(_settings(home, database_url)) as kahu:
        accounts.create_user(kahu, Actor.cli(), name, password, admin=admin)
    typer.echo(f"created user {name}")


@users_app.command("passwd")
@_guard
def users_passwd(
    name: str,
    password_stdin: Annotated[bool, typer.Option(help="read the password from stdin")] = False,
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Set a user's password."""
    from kahu.actions import Actor, accounts

    password = _read_password(password_stdin)
    with _open(_settings(home, database_url)) as kahu:
        accounts.set_password(kahu, Actor.cli(), name, password)
    typer.echo(f"password of {name} changed")


@users_app.command("disable")
@_guard
def users_disable(name: str, home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """Disable a user: logins and tokens stop working."""
    from kahu.actions import Actor, accounts

    with _open(_settings(home, database_url)) as kahu:
        accounts.set_disabled(kahu, Actor.cli(), name, True)
    typer.echo(f"disabled {name}")


@users_app.command("enable")
@_guard
def users_enable(name: str, home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """Enable a disabled user."""
    from kahu.actions import Actor, accounts

    with _open(_settings(home, database_url)) as kahu:
        accounts.set_disabled(kahu, Actor.cli(), name, False)
    typer.echo(f"enabled {name}")


# -- tokens --------------------------------------------------------------------------------------


@tokens_app.command("create")
@_guard
def tokens_create(
    user: Annotated[str, typer.Option("--user", help="owner of the token")],
    name: Annotated[str, typer.Option(help="what the token is for")] = "",
    expires_days: Annotated[float | None, typer.Option(help="lifetime in days")] = None,
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Create an API token; prints the secret once."""
    from kahu.actions import Actor, accounts

    expires = timedelta(days=expires_days) if expires_days else None
    with _open(_settings(home, database_url)) as kahu:
        secret, token = accounts.create_token(kahu, Actor.cli(), user, name, expires).result
    typer.echo(secret)
    typer.echo(f"token {token.id} for {user}; it is shown only now", err=True)


@tokens_app.command("list")
@_guard
def tokens_list(
    user: Annotated[str | None, typer.Option("--user")] = None,
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """List tokens (never their secrets)."""
    with _open(_settings(home, database_url)) as kahu:
        for t in kahu.accounts.list_tokens(user):
            state = "revoked" if t.revoked_at else "active"
            expires = t.expires_at.isoformat() if t.expires_at else "never"
            typer.echo(f"{t.id}\t{t.user}\t{t.prefix}…\t{state}\texpires {expires}\t{t.name}")


@tokens_app.command("revoke")
@_guard
def tokens_revoke(token_id: int, home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """Revoke a token by its id."""
    from kahu.actions import Actor, accounts

    with _open(_settings(home, database_url)) as kahu:
        accounts.revoke_token(kahu, Actor.cli(), token_id)
    typer.echo(f"revoked token {token_id}")


# -- nodes ---------------------------------------------------------------------------------------


@nodes_app.command("list")
@_guard
def nodes_list(home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """List remote DICOM nodes."""
    with _open(_settings(home, database_url)) as kahu:
        for n in kahu.nodes.list():
            projects = ",".join(n.projects) or "-"
            typer.echo(f"{n.name}\t{n.ae_title}\t{n.host}:{n.port}\t{projects}\t{n.description}")


@nodes_app.command("add")
@_guard
def nodes_add(
    name: str,
    ae_title: Annotated[str, typer.Option("--ae-title", help="the node's AE title")],
    host: Annotated[str, typer.Option(help="host name or address")],
    port: Annotated[int, typer.Option(help="DICOM port")],
    description: Annotated[str, typer.Option()] = "",
    project: Annotated[
        list[str] | None,
        typer.Option(
            "--project",
            help="a project whose series it may query, retrieve and receive (repeatable; "
            "default: default)",
        ),
    ] = None,
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Register a remote DICOM node (a caller that may query and retrieve, a C-MOVE
    destination, a send target)."""
    from kahu.catalog.repository import DEFAULT_PROJECT
    from kahu.dimse.nodes import Node

    projects = tuple(project or [DEFAULT_PROJECT])
    from kahu.actions import Actor, nodes

    with _open(_settings(home, database_url)) as kahu:
        nodes.add_node(kahu, Actor.cli(), Node(name, ae_title, host, port, description, projects))
    typer.echo(f"added node {name}")


@nodes_app.command("remove")
@_guard
def nodes_remove(name: str, home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """Remove a DICOM node."""
    from kahu.actions import Actor, nodes

    with _open(_settings(home, database_url)) as kahu:
        nodes.remove_node(kahu, Actor.cli(), name)
    typer.echo(f"removed node {name}")


# -- audit ---------------------------------------------------------------------------------------

ActorOpt = Annotated[str | None, typer.Option(help="user name, AE title or run id")]
ActionOpt = Annotated[str | None, typer.Option(help="an action, or a prefix ending in '.' (run.)")]
SinceOpt = Annotated[str | None, typer.Option(help="ISO 8601 date or time (UTC)")]


def _audit_filters(
    actor: str | None, action: str | None, series: str | None, since: str | None
) -> dict[str, Any]:
    from datetime import UTC, datetime

    start = None
    if since:
        try:
            start = datetime.fromisoformat(since)
        except ValueError as exc:
            raise typer.BadParameter(f"--since {since!r} is not an ISO 8601 date") from exc
        start = start if start.tzinfo else start.replace(tzinfo=UTC)
    return {"actor": actor, "action": action, "series": series, "since": start}


@audit_app.command("list")
@_guard
def audit_list(
    actor: ActorOpt = None,
    action: ActionOpt = None,
    series: Annotated[str | None, typer.Option(help="a UID the action touched")] = None,
    since: SinceOpt = None,
    limit: Annotated[int, typer.Option(min=1)] = 100,
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """The audit records matching the filters, oldest first (one per line)."""
    with _open(_settings(home, database_url)) as kahu:
        for r in kahu.audit.query(**_audit_filters(actor, action, series, since), limit=limit):
            count = f"{len(r.series)} series" if r.series else ""
            line = f"{r.at:%Y-%m-%dT%H:%M:%SZ}\t{r.actor}\t{r.action}\t{r.path}\t{r.status}"
            typer.echo(f"{line}\t{count}")


@audit_app.command("export")
@_guard
def audit_export(
    actor: ActorOpt = None,
    action: ActionOpt = None,
    series: Annotated[str | None, typer.Option(help="a UID the action touched")] = None,
    since: SinceOpt = None,
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Every matching audit record as JSON lines on standard output."""
    with _open(_settings(home, database_url)) as kahu:
        for line in kahu.audit.export(**_audit_filters(actor, action, series, since)):
            sys.stdout.write(line)


@nodes_app.command("echo")
@_guard
def nodes_echo(name: str, home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """Send a C-ECHO to a node."""
    from pynetdicom import AE

    from kahu.dicom.sop import VERIFICATION

    settings = _settings(home, database_url)
    with _open(settings) as kahu:
        node = kahu.nodes.get(name)
    ae = AE(ae_title=settings.dicom.ae_title)
    ae.add_requested_context(VERIFICATION)
    assoc = ae.associate(node.host, node.port, ae_title=node.ae_title)
    if not assoc.is_established:
        _fail(f"no association with {node.ae_title}@{node.host}:{node.port}")
    status = assoc.send_c_echo()
    assoc.release()
    code = getattr(status, "Status", None)
    if code != 0:
        _fail(f"C-ECHO status {code}")
    typer.echo(f"C-ECHO {node.ae_title}@{node.host}:{node.port}: success")


# -- series --------------------------------------------------------------------------------------


@series_app.command("show")
@_guard
def series_show(uid: str, home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """Print a series' metadata document as JSON."""
    from kahu.catalog.scope import SeriesScope

    with _open(_settings(home, database_url)) as kahu:
        row = kahu.catalog.get_series(SeriesScope.system("cli"), uid)
    typer.echo(json.dumps(row.full_document(), indent=2, default=str))


@series_app.command("delete")
@_guard
def series_delete(uid: str, home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """Delete a series: its rows and its files."""
    from kahu.actions import Actor
    from kahu.actions.series import delete_series

    with _open(_settings(home, database_url)) as kahu:
        removed = delete_series(kahu, Actor.cli(), uid).result
    typer.echo(f"deleted series {uid} ({removed} files)")
