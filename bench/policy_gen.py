"""Grow the default policy to a given number of rules, the way real policies grow.

Ops add rules in families: company-size bands (up to 100 thresholds over one field, of which a
big company passes dozens: past the 64 the engine could once take), territories and
industries (one rule per value), a scoring rule per content page, asset and webinar, and stage
rules that tag segments, size tiers and campaigns. A policy grows in breadth (more values,
pages, campaigns), so most rules do not match a given event; a few more do. Generated rules add
no fit points beyond a token and set facts no other rule reads, so the lifecycle stays that of
the default policy: a bigger policy should cost what matches, not what exists.

    python bench/policy_gen.py 4000 > /tmp/big.yaml
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from rules.yaml_lines import load_yaml  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT / "policies" / "lead-lifecycle.v1.yaml"
REGIONS = 40
INDUSTRIES = 30
BANDS = 100  # thresholds over company size: a family that grows in depth, so it stops early


def rule_count(doc: dict[str, Any]) -> int:
    scoring = doc.get("scoring", {})
    return len(scoring.get("fit", [])) + len(scoring.get("engagement", [])) + len(doc.get("rules", []))


def grow(total: int, version: int = 1, never: bool = False) -> dict[str, Any]:
    """The default policy with generated rules added until it holds about `total` rules; with
    `never`, rules that match no lead and no event."""
    doc = load_yaml(DEFAULT.read_bytes()).data  # YAML 1.2 keys: `on` stays a string
    doc["version"] = version
    doc.pop("tests", None)  # its own examples stay with the default file
    # the lead fields the territory, industry and segment rules read: a policy that grows such
    # rules declares them in its profile, as validation asks
    profile = doc.setdefault("profile", {})
    for field in ("region", "country", "industry"):
        profile.setdefault(field, "text")
    extra = max(0, total - rule_count(doc))
    fit, engagement, stage = doc["scoring"]["fit"], doc["scoring"]["engagement"], doc["rules"]
    families = [_size_band, _territory, _industry, _page, _asset, _webinar, _segment, _campaign,
                _size_tier]
    if never:
        families = [_never_fit, _never_page, _never_stage]
    members = dict.fromkeys(families, 0)
    for i in range(extra):
        family = families[i % len(families)]
        if family is _size_band and members[family] >= BANDS:
            family = families[1 + i % (len(families) - 1)]
        kind, rule = family(members[family])
        members[family] += 1
        {"fit": fit, "engagement": engagement, "stage": stage}[kind].append(rule)
    return doc


# Each family returns (section, rule) for its n-th member.

def _size_band(n: int) -> tuple[str, dict[str, Any]]:
    threshold = 10 * (n + 1)  # every lead above the threshold passes it: many match at once
    return "fit", {"id": f"gen-size-{n}", "when": {"lead.company_size": {"gte": threshold}},
                   "points": 0.001}


def _territory(n: int) -> tuple[str, dict[str, Any]]:
    return "fit", {"id": f"gen-territory-{n}",
                   "when": {"lead.region": f"r{n % REGIONS}", "lead.country": f"c{n}"},
                   "points": 0.001}


def _industry(n: int) -> tuple[str, dict[str, Any]]:
    return "fit", {"id": f"gen-industry-{n}",
                   "when": {"lead.industry": {"in": [f"i{n}", f"x{n}"]},
                            "lead.company_size": {"gte": 20}},
                   "points": 0.001}


def _page(n: int) -> tuple[str, dict[str, Any]]:
    return "engagement", {"id": f"gen-page-{n}", "on": "page_view",
                          "when": {"event.path": {"prefix": f"/docs/p{n}/"}},
                          "points": 0.001, "signal": "interest", "cap": 1}


def _asset(n: int) -> tuple[str, dict[str, Any]]:
    return "engagement", {"id": f"gen-asset-{n}", "on": "content_download",
                          "when": {"event.asset": f"a{n}"}, "points": 0.001, "signal": "interest",
                          "cap": 1}


def _webinar(n: int) -> tuple[str, dict[str, Any]]:
    return "engagement", {"id": f"gen-webinar-{n}", "on": ["webinar_attended", "form_submit"],
                          "when": {"event.webinar": f"w{n}"}, "points": 0.001, "signal": "interest",
                          "cap": 1}


def _segment(n: int) -> tuple[str, dict[str, Any]]:
    return "stage", {"id": f"gen-segment-{n}", "priority": 55,
                     "when": {"lead.region": f"r{n % REGIONS}", "lead.industry": f"i{n % INDUSTRIES}",
                              "lead.country": f"c{n}", "state": {"in": ["nurturing", "derailed"]}},
                     "then": {"set": {f"gen_segment_{n}": True}}}


def _campaign(n: int) -> tuple[str, dict[str, Any]]:
    return "stage", {"id": f"gen-campaign-{n}", "priority": 55,
                     "when": {"event.campaign": f"k{n}", "state": {"not_in": ["disqualified"]}},
                     "then": {"set": {"gen_campaign": f"k{n}"}}}


def _size_tier(n: int) -> tuple[str, dict[str, Any]]:
    low = n * 13  # exclusive bands: one matches
    return "stage", {"id": f"gen-tier-{n}", "priority": 55,
                     "when": {"lead.company_size": {"gte": low, "lt": low + 13},
                              "state": {"in": ["scored", "nurturing"]}},
                     "then": {"set": {"gen_tier": n}}}


def _never_fit(n: int) -> tuple[str, dict[str, Any]]:
    return "fit", {"id": f"never-fit-{n}", "when": {"lead.country": f"nowhere-{n}"}, "points": 1}


def _never_page(n: int) -> tuple[str, dict[str, Any]]:
    return "engagement", {"id": f"never-page-{n}", "on": "page_view",
                          "when": {"event.path": {"prefix": f"/nowhere/{n}/"}}, "points": 1,
                          "signal": "interest"}


def _never_stage(n: int) -> tuple[str, dict[str, Any]]:
    return "stage", {"id": f"never-stage-{n}", "priority": 55,
                     "when": {"event.campaign": f"nowhere-{n}"}, "then": {"set": {"nowhere": n}}}


def main() -> None:
    total = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    yaml.safe_dump(grow(total), sys.stdout, sort_keys=False, width=120)


if __name__ == "__main__":
    main()
