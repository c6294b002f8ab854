"""``kahu site``, ``kahu federation`` and ``kahu egress``: this site among others."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from typing import Annotated, Any

import typer

from kahu.cli.common import DbOpt, HomeOpt, _fail, _guard, _open, _settings

federation_app = typer.Typer(
    help="Peer with other sites, set what they may ask, run federated studies.",
    no_args_is_help=True,
)
egress_app = typer.Typer(
    help="The egress ledger: every byte that left this site.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(federation_app, name="federation")
    app.add_typer(egress_app, name="egress")
    app.command("site")(_guard(site))


def _echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


def site(home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """This site's identity: name, id, URL and public key (what partners pin)."""
    with _open(_settings(home, database_url)) as kahu:
        _echo_json(kahu.identity.public())


@federation_app.command("invite")
@_guard
def invite(
    name: Annotated[str, typer.Argument(help="The partner's name here")],
    hours: Annotated[float | None, typer.Option(help="How long the token is valid")] = None,
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """A one-time join token for a partner (shown once; only its hash is kept)."""
    from kahu.actions import Actor
    from kahu.actions import federation as actions

    with _open(_settings(home, database_url)) as kahu:
        typer.echo(actions.invite(kahu, Actor.cli(), name, hours).message)


@federation_app.command("invites")
@_guard
def invites(home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """The invitations handed out, used or not (never their tokens)."""
    with _open(_settings(home, database_url)) as kahu:
        _echo_json(kahu.peers.invites())


@federation_app.command("join")
@_guard
def join(
    url: Annotated[str, typer.Argument(help="The coordinator's URL")],
    token: Annotated[str, typer.Argument(help="The token the coordinator gave this site")],
    name: Annotated[str | None, typer.Option(help="The coordinator's name here")] = None,
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Join a coordinator (this site then fetches work from it; nothing runs without policy)."""
    from kahu.actions import Actor
    from kahu.actions import federation as actions

    with _open(_settings(home, database_url)) as kahu:
        typer.echo(actions.join(kahu, Actor.cli(), url, token, name).message)


@federation_app.command("peers")
@_guard
def peers(home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """Partners and coordinators: role, name, site id, state, last seen."""
    with _open(_settings(home, database_url)) as kahu:
        for p in kahu.peers.all():
            state = "active" if p.active else f"revoked ({p.revoked_reason})"
            seen = p.last_seen_at.isoformat() if p.last_seen_at else "-"
            typer.echo(f"{p.role}\t{p.name}\t{p.site_id}\t{state}\t{p.url or '-'}\t{seen}")


@federation_app.command("revoke")
@_guard
def revoke(
    partner: str,
    reason: Annotated[str, typer.Option(help="Why (the partner is told)")] = "",
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """End a partner's peering: it fetches no more work and sends nothing more."""
    from kahu.actions import Actor
    from kahu.actions import federation as actions

    with _open(_settings(home, database_url)) as kahu:
        typer.echo(actions.revoke_partner(kahu, Actor.cli(), partner, reason).message)


@federation_app.command("leave")
@_guard
def leave(
    coordinator: str,
    reason: Annotated[str, typer.Option(help="Why (the coordinator is told)")] = "",
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """End this site's peering with a coordinator."""
    from kahu.actions import Actor
    from kahu.actions import federation as actions

    with _open(_settings(home, database_url)) as kahu:
        typer.echo(actions.leave(kahu, Actor.cli(), coordinator, reason).message)


@federation_app.command("allow")
@_guard
def allow(
    coordinator: str,
    workflow: str,
    version: Annotated[str | None, typer.Option(help="The installed version to pin")] = None,
    dataset: Annotated[
        list[str] | None, typer.Option(help="A dataset it may read (repeat)")
    ] = None,
    query: Annotated[str, typer.Option(help="Narrow every run to these series")] = "",
    mode: Annotated[str | None, typer.Option(help="auto or approval")] = None,
    runs_per_day: Annotated[int | None, typer.Option(help="At most this many a day")] = None,
    max_output_bytes: Annotated[
        int | None, typer.Option(help="Bytes that may leave per run")
    ] = None,
    min_cell_count: Annotated[int | None, typer.Option(help="Least count released (k)")] = None,
    share_logs: Annotated[bool | None, typer.Option(help="Share failure details")] = None,
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Pin this site's installed copy of WORKFLOW for COORDINATOR, on the given datasets."""
    from kahu.actions import Actor
    from kahu.actions import federation as actions

    changes: dict[str, Any] = {
        k: v
        for k, v in {
            "mode": mode,
            "runs_per_day": runs_per_day,
            "max_output_bytes": max_output_bytes,
            "min_cell_count": min_cell_count,
            "share_logs": share_logs,
        }.items()
        if v is not None
    }
    with _open(_settings(home, database_url)) as kahu:
        done = actions.allow(
            kahu,
            Actor.cli(),
            coordinator,
            workflow,
            version=version,
            datasets=dataset or [],
            query=query,
            changes=changes,
        )
        typer.echo(done.message)


@federation_app.command("disallow")
@_guard
def disallow(
    coordinator: str,
    workflow: str,
    version: Annotated[str | None, typer.Option()] = None,
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Take a workflow off what COORDINATOR may ask for."""
    from kahu.actions import Actor
    from kahu.actions import federation as actions

    with _open(_settings(home, database_url)) as kahu:
        typer.echo(actions.disallow(kahu, Actor.cli(), coordinator, workflow, version).message)


@federation_app.command("policy")
@_guard
def policy(
    coordinator: str,
    set_file: Annotated[
        typer.FileText | None, typer.Option("--set", help="Replace it with this JSON ('-': stdin)")
    ] = None,
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Show (or replace) what this site allows COORDINATOR, as JSON."""
    from kahu.actions import Actor
    from kahu.actions import federation as actions

    with _open(_settings(home, database_url)) as kahu:
        if set_file is not None:
            try:
                rules = json.load(set_file)
            except ValueError as exc:
                _fail(f"not JSON: {exc}")
            actions.set_policy(kahu, Actor.cli(), coordinator, rules)
        peer = kahu.peers.find(coordinator, "coordinator")
        found = kahu.policies.get(peer.site_id)
        _echo_json(found.rules() if found else None)


@federation_app.command("jobs")
@_guard
def jobs(
    state: Annotated[str | None, typer.Option(help="Only work in this state")] = None,
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Work this site's coordinators asked of it."""
    with _open(_settings(home, database_url)) as kahu:
        for j in kahu.agent.jobs(state):
            typer.echo(
                f"{j['id']}\t{j['state']}\t{j['workflow']} {j['version']}\t"
                f"{j['dataset']}\t{j['requested_by']}\t{j['reason']}"
            )


@federation_app.command("approvals")
@_guard
def approvals(home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """Work waiting for approval: who asks, which workflow, dataset and outputs."""
    with _open(_settings(home, database_url)) as kahu:
        _echo_json(kahu.agent.waiting())


@federation_app.command("approve")
@_guard
def approve(job: str, home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """Let waiting work run."""
    from kahu.actions import Actor
    from kahu.actions import federation as actions

    with _open(_settings(home, database_url)) as kahu:
        typer.echo(actions.approve(kahu, Actor.cli(), job).message)


@federation_app.command("refuse")
@_guard
def refuse(
    job: str,
    reason: Annotated[str, typer.Option(help="Why (the coordinator sees it)")] = "",
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Refuse waiting work."""
    from kahu.actions import Actor
    from kahu.actions import federation as actions

    with _open(_settings(home, database_url)) as kahu:
        typer.echo(actions.refuse(kahu, Actor.cli(), job, reason).message)


@federation_app.command("run")
@_guard
def run(
    workflow: str,
    site: Annotated[list[str], typer.Option(help="PARTNER=DATASET (repeat)")],
    param: Annotated[list[str] | None, typer.Option(help="key=value (repeat)")] = None,
    version: Annotated[str | None, typer.Option()] = None,
    project: Annotated[str, typer.Option(help="Where the aggregate result goes")] = "default",
    timeout: Annotated[float, typer.Option(help="Give up on silent sites after (s)")] = 3600.0,
    wait: Annotated[bool, typer.Option(help="Wait for the end and print the status")] = False,
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Ask partner sites to run WORKFLOW on their datasets; the result is aggregated here."""
    from kahu.actions import Actor
    from kahu.actions import federation as actions
    from kahu.cli.flow import _params

    sites = []
    for item in site:
        name, sep, dataset = item.partition("=")
        if not sep or not name or not dataset:
            _fail(f"--site wants PARTNER=DATASET, not {item!r}")
        sites.append((name, dataset))
    with _open(_settings(home, database_url)) as kahu:
        done = actions.launch(
            kahu,
            Actor.cli(),
            workflow,
            sites,
            _params(param),
            version=version,
            project=project,
            timeout_s=timeout,
        )
        run_id = done.result["id"]
        typer.echo(run_id)
        while wait:
            status = kahu.fed_runs.status(run_id)
            if status["state"] in ("done", "failed", "cancelled"):
                _echo_json(status)
                if status["state"] != "done":
                    raise typer.Exit(1)
                break
            time.sleep(0.5)


@federation_app.command("cancel")
@_guard
def cancel(
    run_id: str,
    reason: Annotated[str, typer.Option(help="Why (the sites see it)")] = "",
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Cancel a federated run: each site that took it stops its local run."""
    from kahu.actions import Actor
    from kahu.actions import federation as actions

    with _open(_settings(home, database_url)) as kahu:
        typer.echo(actions.cancel_run(kahu, Actor.cli(), run_id, reason).message)


@federation_app.command("status")
@_guard
def status(
    run_id: Annotated[str | None, typer.Argument(help="One run (else: the latest)")] = None,
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """A federated run with each site's part, or the list of runs."""
    with _open(_settings(home, database_url)) as kahu:
        if run_id:
            _echo_json(kahu.fed_runs.status(run_id))
            return
        for r in kahu.fed_runs.runs():
            typer.echo(
                f"{r['id']}\t{r['state']}\t{r['workflow']} {r['version']}\t{r['created_at']}"
            )


def _when(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        _fail(f"not an ISO time: {text!r}")
    return None


@egress_app.command("list")
@_guard
def egress_list(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="CSV with a header line")] = False,
    partner: Annotated[str | None, typer.Option(help="Only to this partner")] = None,
    run_id: Annotated[str | None, typer.Option("--run", help="Only of this run")] = None,
    since: Annotated[str | None, typer.Option(help="ISO time")] = None,
    until: Annotated[str | None, typer.Option(help="ISO time")] = None,
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Every release of bytes to another site: when, to whom, what, how many, SHA-256."""
    from kahu.federation.egress import as_csv as csv_lines

    with _open(_settings(home, database_url)) as kahu:
        entries = kahu.ledger.entries(
            partner=partner, run=run_id, since=_when(since), until=_when(until)
        )
        if as_csv:
            for chunk in csv_lines(entries):
                sys.stdout.write(chunk)
            return
        for e in entries:
            if as_json:
                typer.echo(json.dumps(e, default=str))
            else:
                typer.echo(
                    f"{e['at']}\t{e['partner']}\t{e['run']}\t{e['output']}\t{e['kind']}\t"
                    f"{e['bytes']}\t{e['sha256']}\t{e['approved_by']}"
                )


@egress_app.command("verify")
@_guard
def egress_verify(home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """Check the ledger's hash chain (exit 1 at the first entry that does not follow)."""
    with _open(_settings(home, database_url)) as kahu:
        count, problem = kahu.ledger.verify()
        if problem:
            _fail(f"the egress ledger is broken after {count - 1} entries: {problem}")
        typer.echo(f"{count} entries, chain intact")
