"""The default policy (policies/lead-lifecycle.v1.yaml) written by hand as plain Python if/else.

It is the ceiling the engine-backed evaluator is measured against in bench/evaluator.py, and
the bench checks that both reach the same states. It keeps the same semantics: scores first,
due nurture steps, then stage rules by priority, each at most once per event, re-matching
after every change. Keep it in step with the policy file when the bench's agreement drops.
"""

from __future__ import annotations

from typing import Any

DAY = 86400.0
DISPOSABLE = {"mailinator.com", "guerrillamail.com", "10minutemail.com", "yopmail.com",
              "trashmail.com", "sharklasers.com", "tempmail.dev"}
COMPETITORS = {"rivalcrm.example", "pipelinepro.example"}
DECISION_ROLES = {"owner", "founder", "c-level", "vp", "director"}
NEAR = {"now", "this-quarter", "next-quarter"}
# rule: (event types, path prefix or None, points, signal, cap, half-life days)
ENGAGEMENT = {
    "email-open": ({"email_open"}, None, 1, "interest", 5, 7),
    "email-click": ({"email_click"}, None, 3, "interest", 12, 21),
    "blog-visit": ({"page_view"}, "/blog", 3, "interest", 15, 21),
    "ebook-download": ({"content_download"}, None, 8, "interest", 24, 21),
    "webinar": ({"webinar_attended"}, None, 12, "interest", None, 21),
    "pricing-page": ({"page_view"}, "/pricing", 15, "intent", 45, 14),
    "demo-request": ({"demo_request"}, None, 40, "intent", None, 21),
    "contact-sales": ({"contact_sales"}, None, 40, "intent", None, 21),
    "meeting-booked": ({"meeting_booked"}, None, 50, "intent", None, 21),
    "reply": ({"reply"}, None, 10, "intent", None, 21),
}
TRACKS = {
    "awareness": ([(0, "welcome-guide"), (3, "case-study"), (7, "roi-calculator"),
                   (14, "webinar-invite")], {"track": "consideration"}),
    "consideration": ([(0, "customer-story"), (7, "pricing-overview"), (21, "whats-new")], None),
    "re-engage": ([(0, "we-miss-you"), (14, "last-call")], {"set": {"dormant": True}}),
    "recycle": ([(7, "recycle-checkin")], None),
}
SYSTEM = {"check", "sales_accept", "sales_reject", "sla_breach"}
RE_ENGAGE_ON = {"email_click", "page_view", "form_submit", "content_download",
                "webinar_attended", "reply"}
REQUALIFY_ON = {"demo_request", "contact_sales", "meeting_booked"}


def new_lead(now: float) -> dict[str, Any]:
    return {"state": "captured", "since": now, "created": now, "profile": {}, "facts": {},
            "contrib": [], "last": None, "track": None, "handoff": False, "views": []}


def fit_score(p: dict[str, Any]) -> float:
    fit = 0.0
    budget = p.get("budget")
    if isinstance(budget, (int, float)) and budget >= 10000:
        fit += 20
        if budget >= 50000:
            fit += 10
    role = p.get("role")
    if role in DECISION_ROLES:
        fit += 25
    elif role in ("manager", "lead"):
        fit += 10
    if p.get("need") is not None:
        fit += 15
    if p.get("timeline") in NEAR:
        fit += 20
    size = p.get("company_size")
    if isinstance(size, (int, float)) and size >= 50:
        fit += 10
    return min(100.0, fit)


def scores(lead: dict[str, Any], now: float) -> tuple[float, float]:
    per: dict[str, float] = {}
    for rule, at, points, hl in lead["contrib"]:
        per[rule] = per.get(rule, 0.0) + points * 0.5 ** (max(0.0, now - at) / hl)
    interest = intent = 0.0
    for rule, value in per.items():
        _, _, _, signal, cap, _ = ENGAGEMENT[rule]
        value = min(value, cap) if cap is not None else value
        if signal == "intent":
            intent += value
        else:
            interest += value
    return interest, intent


def evaluate(lead: dict[str, Any] | None, event: dict[str, Any], now: float) -> dict[str, Any]:
    lead = new_lead(now) if lead is None else {**lead, "facts": dict(lead["facts"])}
    kind, data = event["type"], event.get("data", {})
    at = event.get("at", now)
    actions: list[tuple[str, str]] = []
    if event.get("lead"):
        lead["profile"] = {**lead["profile"], **event["lead"]}
    behaviour = kind not in SYSTEM
    if behaviour:
        lead["last"] = at if lead["last"] is None else max(lead["last"], at)
        if kind == "page_view":
            lead["views"] = [v for v in lead["views"] if v >= now - 7 * DAY] + [at]
        path = data.get("path", "")
        added = [
            (rule, at, points, hl * DAY)
            for rule, (types, prefix, points, _, _, hl) in ENGAGEMENT.items()
            if kind in types and (prefix is None or (isinstance(path, str) and path.startswith(prefix)))
        ]
        if added:
            lead["contrib"] = lead["contrib"] + added
    lead["contrib"] = [c for c in lead["contrib"] if now - c[1] < 20 * c[3]]
    fit = fit_score(lead["profile"])
    interest, intent = scores(lead, now)
    engagement = min(100.0, interest + intent)
    email = lead["profile"].get("email", "")
    domain = email.rsplit("@", 1)[1] if "@" in email else None
    facts = lead["facts"]
    views_7d = sum(1 for v in lead["views"] if v >= now - 7 * DAY)

    def start_track(name: str) -> None:
        lead["track"] = (name, now, 0)
        advance()

    def apply(fx: dict[str, Any]) -> None:
        for k, v in fx.get("set", {}).items():
            facts[k] = v
        if "track" in fx:
            start_track(fx["track"])

    def advance() -> None:
        if lead["track"] is None:
            return
        name, started, step = lead["track"]
        steps, exhausted = TRACKS[name]
        first = step
        while step < len(steps) and started + steps[step][0] * DAY <= now:
            actions.append(("send", steps[step][1]))
            step += 1
        if step == first:
            return
        lead["track"] = (name, started, step)
        if step == len(steps):
            lead["track"] = None
            if exhausted:
                apply(exhausted)

    def move(state: str, track: str | None = None) -> bool:
        if lead["state"] == state:
            return False
        lead["state"], lead["since"] = state, now
        if lead["track"] is not None and lead["track"][0] != track:
            lead["track"] = None
        return True

    def disqualify(reason: str) -> bool:
        moved = move("disqualified")
        lead["track"] = None
        changed = facts.get("disqualified_reason") != reason
        facts["disqualified_reason"] = reason
        return moved or changed

    def set_facts(**values: Any) -> bool:
        changed = any(facts.get(k) != v for k, v in values.items())
        facts.update(values)
        return changed

    def handoff() -> bool:
        if lead["handoff"]:
            return False
        lead["handoff"] = True
        actions.append(("handoff", "account-executives"))
        return True

    advance()
    fired: set[str] = set()
    while True:
        state = lead["state"]
        inactive = now - (lead["last"] if lead["last"] is not None else lead["created"])
        in_state = now - lead["since"]
        track = lead["track"][0] if lead["track"] else ""
        live = state not in ("disqualified", "converted")
        changed = False
        if "accept" not in fired and kind == "sales_accept" and lead["handoff"]:
            fired.add("accept")
            changed = move("converted")
        elif "reject" not in fired and kind == "sales_reject" and lead["handoff"]:
            fired.add("reject")
            a = move("nurturing", "recycle")
            b = set_facts(recycled=True)
            if track != "recycle":
                start_track("recycle")
            changed = a or b or track != "recycle"
        elif "disposable" not in fired and domain in DISPOSABLE and live:
            fired.add("disposable")
            changed = disqualify("disposable e-mail domain")
        elif "competitor" not in fired and domain in COMPETITORS and live:
            fired.add("competitor")
            changed = disqualify("works for a competitor")
        elif "student" not in fired and lead["profile"].get("role") == "student" and live:
            fired.add("student")
            changed = disqualify("a student, not a buyer")
        elif "unsub" not in fired and kind == "unsubscribe" and live:
            fired.add("unsub")
            a = move("derailed")
            b = lead["track"] is not None
            lead["track"] = None
            changed = set_facts(unsubscribed=True) or a or b
        elif "bounce" not in fired and kind == "email_bounce" and live:
            fired.add("bounce")
            a = move("derailed")
            b = lead["track"] is not None
            lead["track"] = None
            changed = set_facts(bounced=True) or a or b
        elif ("enterprise" not in fired and isinstance(lead["profile"].get("company_size"), (int, float))
              and lead["profile"]["company_size"] >= 1000):
            fired.add("enterprise")
            changed = set_facts(segment="enterprise")
        elif "researching" not in fired and views_7d >= 4 and state in ("nurturing", "derailed"):
            fired.add("researching")
            changed = set_facts(researching=True)
        elif "score-new" not in fired and state == "captured":
            fired.add("score-new")
            changed = move("scored")
        elif ("qualify" not in fired and state in ("scored", "nurturing", "derailed") and fit >= 50
              and intent >= 25 and facts.get("recycled") is not True
              and facts.get("unsubscribed") is not True):
            fired.add("qualify")
            changed = move("sales-ready") | handoff()
        elif ("requalify" not in fired and state == "nurturing" and facts.get("recycled") is True
              and kind in REQUALIFY_ON):
            fired.add("requalify")
            changed = move("sales-ready") | handoff() | set_facts(recycled=False)
        elif "start-nurture" not in fired and state == "scored":
            fired.add("start-nurture")
            move("nurturing", "awareness")
            start_track("awareness")
            changed = True
        elif ("deepen" not in fired and state == "nurturing" and track == "awareness"
              and interest >= 15):
            fired.add("deepen")
            start_track("consideration")
            changed = True
        elif "go-quiet" not in fired and state == "nurturing" and inactive >= 30 * DAY:
            fired.add("go-quiet")
            move("derailed", "re-engage")
            start_track("re-engage")
            changed = True
        elif ("fading" not in fired and state == "nurturing" and in_state >= 45 * DAY
              and engagement < 4):
            fired.add("fading")
            move("derailed", "re-engage")
            start_track("re-engage")
            changed = True
        elif ("re-engaged" not in fired and state == "derailed"
              and facts.get("unsubscribed") is not True and facts.get("bounced") is not True
              and kind in RE_ENGAGE_ON):
            fired.add("re-engaged")
            move("nurturing", "consideration")
            start_track("consideration")
            changed = True
        else:
            break
        del changed  # every branch above either changed the lead or is now marked fired
    if kind in ("sales_accept", "sales_reject"):
        lead["handoff"] = False
    lead["actions"] = actions
    lead["scores"] = (fit, interest, intent)
    return lead
