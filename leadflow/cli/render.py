"""Human-readable trail lines for `policy explain` and `policy test -v`."""

from __future__ import annotations

from rules.models import Decision


def render_decision(d: Decision, indent: str = "") -> str:
    when = d.at.strftime("%Y-%m-%d %H:%M")
    head = f"{indent}{when}  {d.event_type:<16} {d.state_before} -> {d.state}"
    if d.rejected:
        return f"{head}  REJECTED: {d.rejected}"
    s = d.scores
    lines = [f"{head}  fit {s.fit:g} interest {s.interest:g} intent {s.intent:g} "
             f"engagement {s.engagement:g} bant {s.bant}"]
    for f in d.fired:
        matched = ", ".join(f"{k}={v!r}" for k, v in f.matched.items())
        effects = ", ".join(f"{k}={v}" for k, v in f.effects.items())
        lines.append(f"{indent}    {f.kind:<10} {f.rule:<24} [{matched}] => {effects}")
    for a in d.actions:
        what = a.content or a.track or a.queue or a.reason or ""
        lines.append(f"{indent}    action     {a.kind} {what}")
    if d.next_check_at:
        lines.append(f"{indent}    next check {d.next_check_at.strftime('%Y-%m-%d %H:%M')}")
    return "\n".join(lines)
