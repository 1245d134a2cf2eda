"""What the evaluator itself guarantees about marketing e-mail, whatever a policy says: an
unsubscribe or a hard bounce stops every track for good, consent the policy asks for is
respected, and a machine's open is no sign of life. And the profile a policy declares."""

from __future__ import annotations

from rules.evaluate import evaluate
from tests.support.policy import MINIMAL, T0, days, event, policy_from, problems

# No rule of this policy knows about unsubscribes; a later rule even starts a track again.
CARELESS = MINIMAL.replace("states: [captured, scored, nurturing, sales-ready, derailed]",
                           "states: [captured, scored, nurturing, sales-ready, derailed]\n"
                           "content: [hello, again]") + """\
  - {id: start, priority: 5, when: {state: nurturing, track: ""}, then: {track: drip}}
  - {id: ping, when: {event.type: reply}, then: {send: again}}
nurture:
  tracks:
    drip:
      steps:
        - {after: 0d, send: hello}
        - {after: 3d, send: again}
"""


def sends(decisions) -> list[tuple[str | None, str | None]]:
    return [(a.content, a.withheld) for d in decisions for a in d.actions if a.kind == "send"]


def test_an_unsubscribe_stops_every_track_and_withholds_every_send_whatever_the_policy_says():
    policy = policy_from(CARELESS)
    d1 = evaluate(policy, None, event("signup"), T0)
    d2 = evaluate(policy, d1.lead, event("page_view", T0), T0)
    assert d2.lead.track is not None and sends([d2]) == [("hello", None)]
    d3 = evaluate(policy, d2.lead, event("unsubscribe", T0 + days(1)), T0 + days(1))
    assert d3.lead.track is None and d3.lead.mail_stop == "unsubscribed"
    assert [a.kind for a in d3.actions] == ["stop_track"]
    assert any(s.rule == "mail.unsubscribed" for s in d3.story)
    later = [evaluate(policy, d3.lead, event("reply", T0 + days(5)), T0 + days(5))]
    later.append(evaluate(policy, later[0].lead, event("page_view", T0 + days(9)), T0 + days(9)))
    # the `start` rule matched again but started nothing; the rule's send is withheld
    assert later[-1].lead.track is None
    assert sends(later) == [("again", "the lead unsubscribed")]
    start = [f for d in later for f in d.fired if f.rule == "start"]
    assert start and "not started" in start[0].effects["track"]


def test_a_hard_bounce_stops_mail_and_a_soft_one_does_not():
    policy = policy_from(CARELESS)
    lead = evaluate(policy, None, event("signup"), T0).lead
    lead = evaluate(policy, lead, event("page_view", T0), T0).lead
    soft = evaluate(policy, lead, event("email_bounce", T0, hard=False), T0)
    assert soft.lead.mail_stop is None and soft.lead.track is not None
    hard = evaluate(policy, soft.lead, event("email_bounce", T0 + days(1)), T0 + days(1))
    assert hard.lead.mail_stop == "bounced" and hard.lead.track is None


def test_a_complaint_stops_mail_for_good_whatever_the_policy_says():
    policy = policy_from(CARELESS)
    lead = evaluate(policy, None, event("signup"), T0).lead
    lead = evaluate(policy, lead, event("page_view", T0), T0).lead
    complained = evaluate(policy, lead, event("complaint", T0 + days(1)), T0 + days(1))
    assert complained.lead.mail_stop == "complained" and complained.lead.track is None
    assert any(s.rule == "mail.complained" for s in complained.story)
    later = evaluate(policy, complained.lead, event("reply", T0 + days(2)), T0 + days(2))
    assert sends([later]) == [("again", "the lead complained")]


def test_consent_the_policy_asks_for_withholds_sends_until_it_is_given():
    text = CARELESS.replace("  tracks:\n", "  requires_consent: consent\n  tracks:\n", 1)
    policy = policy_from(text)
    lead = evaluate(policy, None, event("signup"), T0).lead
    first = evaluate(policy, lead, event("page_view", T0), T0)
    assert sends([first]) == [("hello", "no consent: lead.consent is not true")]
    given = evaluate(policy, first.lead, event("form_submit", T0 + days(1), lead={"consent": True}),
                     T0 + days(1))
    later = evaluate(policy, given.lead, event("check", T0 + days(3)), T0 + days(3))
    # the drip's second step goes out now (it ran out, and `start` began it again: hello too)
    assert sends([later])[0] == ("again", None) and all(w is None for _, w in sends([later]))


def test_a_machine_open_is_no_sign_of_life():
    policy = policy_from(MINIMAL)
    lead = evaluate(policy, None, event("signup"), T0).lead
    lead = evaluate(policy, lead, event("page_view", T0), T0).lead
    machine = evaluate(policy, lead, event("email_open", T0 + days(29), machine=True), T0 + days(29))
    assert machine.lead.last_activity == lead.last_activity
    quiet = evaluate(policy, machine.lead, event("check", T0 + days(31)), T0 + days(31))
    assert quiet.state == "derailed"


def test_a_declared_profile_is_what_rules_tests_and_consent_may_read():
    base = MINIMAL.replace("rules:", "profile: {role: text, consent: text}\nrules:") + """\
  - {id: vp, when: {lead.title: vp}, then: {set: {vp: true}}}
  - {id: dom, when: {lead.email_domain: acme.example}, then: {set: {acme: true}}}
nurture: {requires_consent: consent}
tests:
  - {name: t, lead: {email: a@b.example, shoe_size: 9}, events: [{type: signup}], expect: {state: scored}}
"""
    found = problems(base)
    assert any(":11: vp: lead field 'title' is not in the policy's profile (declared: consent, role)" in p
               for p in found), found
    assert any("consent field 'consent' is a text in the profile; consent is a boolean" in p for p in found)
    assert any("lead field 'shoe_size' is not in the policy's profile" in p for p in found)
    assert not any("email_domain" in p or "'email'" in p for p in found)
