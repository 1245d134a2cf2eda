"""Every bench in bench/ runs, with its smallest arguments, so none rots unseen between the times
someone measures with it: each runs as its own process (as `make bench-*` runs it), must exit 0
and end with one JSON object holding its key figures. The figures themselves are not judged
here, only the agreements a bench checks (the same final states whichever way it is measured).
All of them together take about half a minute."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import ROOT

TIMEOUT = 120  # seconds a bench may take here; each takes seconds alone, more on a busy machine

# bench: (its smallest arguments, the figures its JSON line must hold)
BENCHES: dict[str, tuple[list[str], set[str]]] = {
    "evaluator": (["--evals", "2000", "--leads", "50"],
                  {"evals", "evals_per_s", "baseline_evals_per_s", "ratio", "agreement", "rss_growth_mb"}),
    "policy_size": (["--leads", "20", "--rounds", "1", "--sizes", "40,200", "--never", "20"],
                    {"rules", "evals_per_s", "ratios", "ratio_largest", "never_matching_ratio",
                     "fired_per_event", "same_final_states"}),
    "backtest": (["--events", "2000", "--days", "10", "--processes", "2"],
                 {"events", "leads", "events_per_s", "single_events_per_s", "speedup", "agreement",
                  "seconds_per_million"}),
    "delivery": (["--messages", "40", "--rounds", "1", "--threads", "2"],
                 {"email_per_s", "email_bare_per_s", "email_ratio", "webhook_per_s", "webhook_bare_per_s",
                  "webhook_ratio"}),
    "intake": (["--rounds", "1", "--batches", "1", "--samples", "4", "--senders", "2", "--pool", "10"],
               {"http_events_per_s", "direct_events_per_s", "throughput_ratio", "wait_http_p50_ms",
                "wait_http_p99_ms", "submit_p50_ms", "submit_p99_ms", "events"}),
    "e2e": (["--leads", "2", "--events", "5", "--samples", "16", "--rounds", "1", "--open", "20"],
            {"events_per_s", "bare_events_per_s", "throughput_ratio", "p50_ms", "p99_ms", "bare_p99_ms",
             "floor_p99_ms", "saturated_p99_ms", "rss_mb_open_leads", "latency_samples"}),
    "collect": (["--rounds", "1", "--views", "20", "--senders", "4", "--known", "5"],
                {"collect_views_per_s", "intake_views_per_s", "ratio", "views"}),
    "retention": (["--leads", "10", "--events-per-lead", "2", "--settle", "1"],
                  {"leads", "kept", "ended", "running_ratio", "worker_rss_ratio", "db_ratio"}),
    "prune": (["--events", "2000", "--batch", "500", "--quiet", "0.3"],
              {"longest_batch_ms", "intake_p99_ms", "intake_max_ms", "left_over"}),
}
# figures that must be exactly 1: two ways of computing the same thing agreed
AGREEMENTS = {"evaluator": "agreement", "policy_size": "same_final_states", "backtest": "agreement"}


def test_every_bench_has_a_smoke_run():
    shipped = {p.stem for p in (ROOT / "bench").glob("*.py")
               if "json.dumps" in p.read_text() and '__name__ == "__main__"' in p.read_text()}
    assert shipped == set(BENCHES)
    # and each has the inner loop's short run, `--quick` (bench/quick.py)
    quick = {p.stem for p in (ROOT / "bench").glob("*.py")
             if "from bench.quick import parse" in p.read_text()}
    assert quick == shipped


def run(script: Path, args: list[str], tmp: Path) -> tuple[int, str, float]:
    """The bench in a process group of its own, so a timeout takes its workers and Temporal
    server with it; its exit code, its output and the seconds it took."""
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(script), *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{script.name} {' '.join(args)} took over {TIMEOUT} s:\n{out[-4000:]}{logs(tmp)}")
    finally:
        with contextlib.suppress(ProcessLookupError):  # whatever it started and left behind
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, out, time.perf_counter() - start


def logs(tmp: Path) -> str:
    """The ends of the logs a bench's workers and API wrote under its temporary home: where a
    bench that waits for a worker that died shows why."""
    return "".join(f"\n--- {log.relative_to(tmp)}:\n{log.read_text(errors='replace')[-3000:]}"
                   for log in sorted(tmp.rglob("*.log")))


@pytest.mark.parametrize("bench", list(BENCHES))
def test_bench_runs_and_ends_with_its_figures(bench, tmp_path):
    args, figures = BENCHES[bench]
    code, out, took = run(ROOT / "bench" / f"{bench}.py", args, tmp_path)
    shown = f"bench/{bench}.py {' '.join(args)} ({took:.1f} s), exit {code}:\n{out[-4000:]}"
    assert code == 0, shown + logs(tmp_path)
    lines = out.strip().splitlines()
    assert lines, shown
    try:
        result = json.loads(lines[-1])
    except json.JSONDecodeError:
        pytest.fail(f"the last line is not JSON: {shown}")
    assert isinstance(result, dict), shown
    assert result.get("bench") == bench, shown
    missing = figures - set(result)
    assert not missing, f"{sorted(missing)} missing from {shown}"
    if bench in AGREEMENTS:
        assert result[AGREEMENTS[bench]] == 1.0, shown
