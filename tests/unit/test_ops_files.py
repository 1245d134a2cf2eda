"""The alert rules and the Grafana dashboard in ops/: `promtool` (Debian's prometheus package,
installed here when missing) checks the rules and runs their unit tests, and parses every query
the dashboard draws; each reads only metrics leadflow or the Temporal SDK serves."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.temporal_harness import ROOT

OPS = ROOT / "ops"
# what leadflow serves (ops/metrics.py's callers) and the Temporal SDK names the panels read
SERVED = {"leadflow_events_total", "leadflow_events_refused_total", "leadflow_transitions_total",
          "leadflow_evaluations_total", "leadflow_evaluation_seconds_bucket", "leadflow_handoffs_total",
          "leadflow_deliveries_total", "leadflow_leads", "temporal_num_pollers"}


def promtool() -> str:
    """promtool from PATH, or taken out of Debian's prometheus package (only the binary) into a
    cache beside the tests; nothing else of the package is installed."""
    found = shutil.which("promtool")
    if found:
        return found
    cache = Path.home() / ".cache" / "leadflow" / "promtool"
    binary = cache / "usr" / "bin" / "promtool"
    if not binary.exists():
        cache.mkdir(parents=True, exist_ok=True)
        download = ["apt-get", "download", "prometheus"]
        if subprocess.run(download, cwd=cache, capture_output=True).returncode != 0:
            if os.geteuid() != 0:
                pytest.skip("promtool is missing and only root may refresh apt (apt-get install prometheus)")
            subprocess.run(["apt-get", "update"], capture_output=True, check=True)
            subprocess.run(download, cwd=cache, capture_output=True, check=True)
        (deb,) = cache.glob("prometheus_*.deb")
        tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "./usr/bin/promtool"], cwd=cache, input=tar.stdout, check=True)
        deb.unlink()
    return str(binary)


def test_the_alert_rules_check_and_fire_on_what_they_are_for(tmp_path: Path) -> None:
    tool = promtool()
    checked = subprocess.run([tool, "check", "rules", str(OPS / "prometheus" / "alerts.yml")],
                             capture_output=True, text=True)
    said = checked.stdout + checked.stderr
    assert checked.returncode == 0 and "SUCCESS: 5 rules found" in checked.stdout, said
    tested = subprocess.run([tool, "test", "rules", "alerts_test.yml"], cwd=OPS / "prometheus",
                            capture_output=True, text=True)
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr
    # a broken rule is refused: the check can fail
    broken = tmp_path / "broken.yml"
    broken.write_text("groups: [{name: x, rules: [{alert: X, expr: 'sum(rate(leadflow_events_total[5m])'}]}]")
    assert subprocess.run([tool, "check", "rules", str(broken)], capture_output=True).returncode != 0


def test_the_dashboard_draws_queries_that_parse_over_metrics_that_exist(tmp_path: Path) -> None:
    dashboard = json.loads((OPS / "grafana" / "leadflow.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    titles = " | ".join(p["title"] for p in dashboard["panels"]).lower()
    for wanted in ("events", "refused", "transitions", "latency", "sla breaches", "delivery failures"):
        assert wanted in titles
    assert any("histogram_quantile(0.99" in e for e in exprs)
    assert any("histogram_quantile(0.5" in e for e in exprs)
    for expr in exprs:
        names = set(re.findall(r"\b((?:leadflow|temporal)_[a-z_]+)\b", expr))
        assert names and names <= SERVED, (expr, names - SERVED)
    # promtool parses PromQL only inside rules: every query as a recording rule
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"dashboard:panel_{i}", "expr": e}
                                                         for i, e in enumerate(exprs)]}]}
    as_rules = tmp_path / "dashboard-rules.json"
    as_rules.write_text(json.dumps(rules))
    checked = subprocess.run([promtool(), "check", "rules", str(as_rules)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize("name", sorted(SERVED - {"temporal_num_pollers"}))
def test_every_metric_the_dashboard_reads_is_made_somewhere(name: str) -> None:
    base = re.sub(r"_(total|bucket)$", "", name)
    made = [p for p in ROOT.glob("*/*.py") if f'"{base}"' in p.read_text()] + \
        [p for p in ROOT.glob("*.py") if f'"{base}"' in p.read_text()]
    assert made, f"no code makes {base}"
