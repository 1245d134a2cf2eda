"""The policy desk: the version that runs, in words and in YAML, with what each rule did in the
last 30 days; proposals from a text area or a file, checked at their lines, with their own tests
and their diff on the archive; approvals bound to the person logged in; activation after a
confirmation that says what it does to running leads; every version's diff to the one before; a
rollback proposed like any change. The same rules as `leadflow policy ...` and /v1/policies
(leadflow.operations.governance): the desk is another door, not another way."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from leadflow.api.deps import Ctx
from leadflow.db.per_ledger import per_ledger
from leadflow.governance import desk
from leadflow.governance.checks import ProposalRefused
from leadflow.governance.registry import Approvals, GovernanceError, Registry, Version
from leadflow.operations import governance
from leadflow.pages.deps import FormText, Missing, PageCaller, Refused, form_caller, page_for
from leadflow.pages.render import render
from leadflow.reports import variants
from leadflow.reports.proportions import Rate
from rules.compile import CompiledPolicy, compile_policy
from rules.validate import load_policy_bytes
from rules.variants import AbStep, ab_steps
from rules.words import GROUPS, in_words

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)

DeskReader = Annotated[PageCaller, Depends(page_for("approve_policies", "the policy desk"))]
Proposer = Annotated[PageCaller, Depends(form_caller("govern_policies", "propose or activate policies"))]
Approver = Annotated[PageCaller, Depends(form_caller("approve_policies", "approve policies"))]
MAX_FILE = 1 << 20  # bytes of a proposed policy file
MAX_VERSION = (1 << 31) - 1  # what a version number's column holds
PolicyText = Annotated[str, Form(max_length=MAX_FILE)]


def _registry(ctx: Ctx) -> Registry:
    if ctx.store.registry is None:
        raise Refused("This API does not read policies from the shared database: the desk needs it.")
    return ctx.store.registry


def _replays(ctx: Ctx) -> desk.Replays:
    replays = per_ledger(desk.Replays, ctx.ledger)
    replays.retention = ctx.settings.final_retention  # the workers' (LEADFLOW_FINAL_RETENTION)
    return replays


def _running(ctx: Ctx, registry: Registry, name: str) -> tuple[desk.Running, Version, CompiledPolicy]:
    """The version that runs: as the desk shows it, as kept, and compiled."""
    run = desk.running(registry, name)
    if run is None:
        raise Missing(f"policy {name}")
    active = _version(registry, name, run.version)
    # compiled as it was checked when proposed; neither its templates (one may have gone since)
    # nor its tests again
    return run, active, compile_policy(load_policy_bytes(active.text, active.file))


def _version(registry: Registry, name: str, version: int) -> Version:
    found = registry.version(name, version)
    if found is None:
        raise Missing(f"policy {name} v{version}")
    return found


@router.get("/policies")
async def policies(request: Request, _: DeskReader, ctx: Ctx) -> Response:
    found = await asyncio.to_thread(desk.names, _registry(ctx))
    if len(found) == 1:
        return RedirectResponse(f"/policies/{found[0]}", status_code=303)
    return render(request, "policies.html", names=found)


@router.get("/policies/{name}")
async def policy_page(request: Request, caller: DeskReader, ctx: Ctx, name: str) -> Response:
    return await _desk(request, caller, ctx, name)


async def _desk(request: Request, caller: PageCaller, ctx: Ctx, name: str, *, status: int = 200,
                draft: str | None = None, problems: list[tuple[int | None, str]] | None = None,
                note: str = "") -> Response:
    registry = _registry(ctx)
    now = time.time()

    def gather() -> dict[str, Any]:
        run, active, compiled = _running(ctx, registry, name)
        # the last 30 days, or since it was activated if that is later: what ran before it did
        # not fire its rules
        since = max(now - desk.WINDOW, run.activated_at)
        activity = _replays(ctx).activity(active, now, since)
        words = [{"id": w.id, "group": w.group, "sentence": w.sentence, "line": w.line,
                  "fired": activity[w.id].fired if w.id in activity else 0,
                  "leads": activity[w.id].shown() if w.id in activity else [],
                  "more": max(0, len(activity[w.id].leads) - desk.SHOWN_LEADS) if w.id in activity else 0}
                 for w in in_words(compiled.policy, run.text)]
        grouped = [(g, [w for w in words if w["group"] == g]) for g in GROUPS]
        pending = [v for v in registry.versions(name) if v.version > run.version]
        return {"run": run, "since": since, "grouped": [(g, ws) for g, ws in grouped if ws],
                "pending": pending,
                "approvals_of": {v.version: registry.approvals(v.sha) for v in pending},
                "ab_tests": [_ab_test(ctx, name, ab) for ab in ab_steps(compiled.policy)]}

    shown = await asyncio.to_thread(gather)
    lines = (draft if draft is not None else shown["run"].text).splitlines()
    by_line: dict[int, list[str]] = {}
    for line, message in problems or []:
        by_line.setdefault(line or 0, []).append(message)
    return render(request, "policy.html", status=status, name=name, **shown, draft=draft,
                  draft_lines=list(enumerate(lines, 1)), by_line=by_line, problems=problems or [],
                  note=note, when=_when, rate=_rate, proposes=caller.role in ("ops", "admin"))


def _ab_test(ctx: Ctx, name: str, ab: AbStep) -> dict[str, Any]:
    """An A/B test of the running version: each variant's figures from the shared database since
    the test began, and a verdict on each measure (sales-ready first: what the test is for)."""
    found = variants.figures(ctx.ledger, ab, variants.began(ctx.ledger, name, ab))
    measures: tuple[variants.Metric, ...] = ("sales_ready", "clicked", "opened")
    return {"ab": ab, "figures": found, "verdicts": {m: variants.verdict(found, m) for m in measures}}


def _rate(rate: Rate) -> str:
    """`12 of 98 (12%; 95%: 7-20%)`."""
    if not rate.of:
        return "-"
    low, high = rate.interval() or (0.0, 0.0)
    return f"{rate.count} of {rate.of} ({rate.count / rate.of:.0%}; 95%: {low:.0%}-{high:.0%})"


@router.post("/policies/{name}/proposals")
async def propose(request: Request, caller: Proposer, ctx: Ctx, name: str, text: PolicyText = "",
                  upload: Annotated[UploadFile | None, File()] = None) -> Response:
    raw = text.encode("utf-8")
    file = "desk.yaml"  # the name problems and the log give it
    if upload is not None and upload.filename:
        raw = await upload.read(MAX_FILE + 1)
        file = (Path(upload.filename).name.strip() or "upload.yaml")[:100]
        if len(raw) > MAX_FILE:
            return await _desk(request, caller, ctx, name, status=413, draft="",
                               problems=[(None, f"{file} is over {MAX_FILE // 1024} KB")])
    raw = raw.replace(b"\r\n", b"\n")  # a browser sends a text area's lines with CRLF
    draft = raw.decode("utf-8", errors="replace")
    if not raw.strip():
        return await _desk(request, caller, ctx, name, status=422, draft=draft,
                           problems=[(None, "Nothing to propose: paste the policy or choose a file.")])
    checked = await asyncio.to_thread(desk.check, raw, file, ctx.settings.content_dir)
    problems = checked.problems + [(None, f"its test {t.name!r} fails: {'; '.join(t.failures)}")
                                   for t in checked.tests if not t.ok]
    if checked.compiled is not None and checked.compiled.name != name:
        problems.append((None, f"this is policy {checked.compiled.name!r}, not {name!r}"))
    elif checked.compiled is not None and not problems:
        registry = _registry(ctx)
        same = await asyncio.to_thread(registry.by_sha, checked.compiled.sha)
        if same is not None:  # proposed before: its page
            return RedirectResponse(f"/policies/{name}/v{same.version}", status_code=303)
        number = await asyncio.to_thread(desk.next_version, registry, name)
        # a new text takes a number above every other: the numbers say which came after which
        if checked.compiled.version < number:
            problems.append((desk.version_line(draft), f"version {checked.compiled.version} is taken: "
                                                       f"give this text version {number}"))
    if problems:
        return await _desk(request, caller, ctx, name, status=422, draft=draft, problems=problems)
    try:
        proposed = await asyncio.to_thread(governance.propose, _registry(ctx), raw, file,
                                           ctx.settings.content_dir, caller.by(""))
    except ProposalRefused as err:  # what changed between the check and now (a template went)
        return await _desk(request, caller, ctx, name, status=422, draft=draft,
                           problems=[(None, p) for p in err.problems])
    except GovernanceError as err:  # the version number is taken by another text
        return await _desk(request, caller, ctx, name, status=409, draft=draft, problems=[(None, str(err))])
    return RedirectResponse(f"/policies/{name}/v{proposed['version']}", status_code=303)


@router.post("/policies/{name}/suggestion")
async def suggestion(request: Request, caller: Proposer, ctx: Ctx, name: str) -> Response:
    """`policy suggest` on the archive: its proposal opens in the desk's text area, to be read,
    changed and proposed like any other."""
    from leadflow.replay import suggest

    registry = _registry(ctx)

    def make() -> tuple[str, list[str]]:
        run, active, compiled = _running(ctx, registry, name)
        replays = _replays(ctx)
        leads, until = replays.history()
        results = replays.results(active, until)
        findings, _ = suggest.measure(leads, results)
        proposal = suggest.propose(compiled, findings, results)
        return desk.renumbered(proposal.text, desk.next_version(registry, name)), proposal.changes

    try:
        text, changes = await asyncio.to_thread(make)
    except ValueError as err:  # a running text leadflow cannot renumber
        return await _desk(request, caller, ctx, name, status=422, problems=[(None, str(err))])
    note = ("Suggested from the archive: " + "; ".join(changes) if changes else
            "The archive gives nothing sure enough to change: the text is the running version's.")
    return await _desk(request, caller, ctx, name, draft=text, note=note)


@router.post("/policies/{name}/promotion")
async def promotion(request: Request, caller: Proposer, ctx: Ctx, name: str, test: FormText = "",
                    variant: FormText = "") -> Response:
    """An A/B test's variant sent to everyone: the running text with that test's send replaced,
    as the next version, opened in the text area to be proposed like any change."""
    registry = _registry(ctx)

    def make() -> str:
        run, active, compiled = _running(ctx, registry, name)
        found = next((ab for ab in ab_steps(compiled.policy) if ab.name == test), None)
        if found is None or variant not in found.variants:
            raise Missing(f"A/B test {test} with a variant {variant} in {name} v{run.version}")
        promoted = desk.promoted(run.text, found.where, variant)
        return desk.renumbered(promoted, desk.next_version(registry, name))

    try:
        text = await asyncio.to_thread(make)
    except ValueError as err:  # where its send is written, leadflow cannot say
        return await _desk(request, caller, ctx, name, status=422, problems=[(None, str(err))])
    return await _desk(request, caller, ctx, name, draft=text,
                       note=f"{variant} for everyone in A/B test {test}: check the text and propose it.")


@router.get("/policies/{name}/v{version:int}")
async def version_page(request: Request, caller: DeskReader, ctx: Ctx, name: str, version: int) -> Response:
    return await _version_page(request, caller, ctx, name, version)


async def _version_page(request: Request, caller: PageCaller, ctx: Ctx, name: str, version: int,
                        error: str = "") -> Response:
    """A version's page; `error`: what a form of it was refused for (never from the address)."""
    registry = _registry(ctx)
    if version > MAX_VERSION:
        raise Missing(f"policy {name} v{version}")

    def gather() -> dict[str, Any]:
        found = _version(registry, name, version)
        run = desk.running(registry, name)
        checked = desk.check(found.text, found.file, ctx.settings.content_dir)
        active = _version(registry, name, run.version) if run is not None else None
        if active is not None and active.sha != found.sha:
            against: Version | None = active
            report = _replays(ctx).diff(active, found)
        else:  # the version that runs, or an earlier one: its change from the one before
            against = next((v for v in reversed(registry.versions(name)) if v.version < version), None)
            report = None
        words = in_words(checked.compiled.policy, found.text.decode("utf-8")) if checked.compiled else []
        owners = governance.approvers(registry, name, version)
        if run is not None and run.sha == found.sha:  # those that activated it
            approvals = Approvals(tuple(a.who for a in run.approvals if "marketing" in a.team.split(",")),
                                  tuple(a.who for a in run.approvals if "sales" in a.team.split(",")))
        else:  # those that count towards activating it
            approvals = registry.approvals(found.sha, owners)
        return {"found": found, "run": run, "checked": checked, "report": report, "words": words,
                "approvals": approvals, "owners": owners,
                "against": against, "text_diff": desk.text_diff(against, found),
                "rollout": governance.rollout_for(found)}

    shown = await asyncio.to_thread(gather)
    me = (caller.person or "").lower()
    approvals = shown["approvals"]
    owner = bool(me) and any(me in {o.lower() for o in shown["owners"].get(team, [])}
                             for team in ("marketing", "sales"))
    return render(request, "policy_version.html", status=422 if error else 200, name=name, error=error,
                  **shown, me=me, approved=me in approvals.marketing or me in approvals.sales, owner=owner,
                  when=_when, is_active=shown["run"] is not None and shown["run"].sha == shown["found"].sha,
                  governs=caller.role in ("ops", "admin"))


@router.get("/policies/{name}/v{version:int}/report")
async def version_report(request: Request, _: DeskReader, ctx: Ctx, name: str, version: int) -> Response:
    """The diff's page with its charts, as `policy diff --report` writes it."""
    from leadflow.replay.diff import html_report

    registry = _registry(ctx)

    def make() -> str:
        found = _version(registry, name, version)
        run = desk.running(registry, name)
        if run is None or run.sha == found.sha:
            raise Missing(f"a diff of {name} v{version}: it is the version that runs")
        return html_report(_replays(ctx).diff(_version(registry, name, run.version), found))

    return HTMLResponse(await asyncio.to_thread(make))


@router.post("/policies/{name}/v{version:int}/approval")
async def approve(request: Request, caller: Approver, ctx: Ctx, name: str, version: int) -> Response:
    if caller.person is None:
        return await _refused(request, caller, ctx, name, version,
                              "Your key names no person, and an approval is a person's: ask for a key of "
                              "your own (role:you@example.com:key).")
    try:
        await asyncio.to_thread(governance.approve, _registry(ctx), name, version, caller.person,
                                f"page session of {caller.person} ({caller.role})")
    except GovernanceError as err:
        return await _refused(request, caller, ctx, name, version, str(err))
    return RedirectResponse(f"/policies/{name}/v{version}", status_code=303)


@router.post("/policies/{name}/v{version:int}/activation")
async def activate(request: Request, caller: Proposer, ctx: Ctx, name: str, version: int,
                   confirm: FormText = "") -> Response:
    if confirm != "activate":
        return await _refused(request, caller, ctx, name, version,
                              "Nothing activated: tick the box that says what the activation does.")
    try:
        await asyncio.to_thread(governance.activate, _registry(ctx), name, version, caller.by(""), None)
    except GovernanceError as err:
        return await _refused(request, caller, ctx, name, version, str(err))
    await asyncio.to_thread(ctx.store.reload)  # this process shows it at once
    return RedirectResponse(f"/policies/{name}/v{version}", status_code=303)


@router.post("/policies/{name}/v{version:int}/rollback")
async def rollback(request: Request, caller: Proposer, ctx: Ctx, name: str, version: int) -> Response:
    """An earlier version's text proposed again as the next version: approved like any change."""
    registry = _registry(ctx)
    found = await asyncio.to_thread(_version, registry, name, version)
    number = await asyncio.to_thread(desk.next_version, registry, name)
    raw = desk.renumbered(found.text.decode("utf-8"), number).encode("utf-8")
    try:
        await asyncio.to_thread(governance.propose, registry, raw, f"rollback-to-v{version}.yaml",
                                ctx.settings.content_dir, caller.by(""))
    except (ProposalRefused, GovernanceError) as err:
        return await _refused(request, caller, ctx, name, version, str(err))
    return RedirectResponse(f"/policies/{name}/v{number}", status_code=303)


@router.get("/policies/{name}/log")
async def policy_log(request: Request, _: DeskReader, ctx: Ctx, name: str) -> Response:
    registry = _registry(ctx)

    def gather() -> dict[str, Any]:
        versions = [(v, desk.text_diff(before, v)) for before, v in desk.iter_versions(registry, name)]
        if not versions:
            raise Missing(f"policy {name}")
        return {"versions": versions, "entries": registry.log(name), "run": desk.running(registry, name)}

    return render(request, "policy_log.html", name=name, when=_when, **await asyncio.to_thread(gather))


async def _refused(request: Request, caller: PageCaller, ctx: Ctx, name: str, version: int,
                   why: str) -> Response:
    return await _version_page(request, caller, ctx, name, version, error=why)


def _when(at: float | None) -> str:
    return datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if at else ""
