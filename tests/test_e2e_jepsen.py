"""The short CI variant of ``chainreaction jepsen``: real clusters of 3 DCs, every nemesis,
the real checker. The store must come out clean, and each whole-DC restart the nemesis
draws is done and reported as planned; with the unsafe switch the same runner must find
anomalies (the whole pipeline can fail)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from chainreaction.tools import manifest
from chainreaction.tools.jepsen import FRONTENDS_PER_DC
from tests.e2e_helpers import free_base_port

pytestmark = pytest.mark.e2e

# 3 DCs: manager, 3 nodes, the frontends (2 ports each), proxy
PORTS = 3 * (2 + 3 + 2 * FRONTENDS_PER_DC)
BULK = 300  # keys per DC in the bulk phase after the faults
TIME_S = 15
RESTARTS = ("restart-dc", "restart-dc-all")


def jepsen(tmp_path, seed: int, *extra: str, time_s: float = TIME_S) -> tuple[int, dict, str]:
    out = tmp_path / f"seed{seed}"
    argv = [sys.executable, "-m", "chainreaction", "jepsen", "--dcs", "3", "--nodes", "3",
            "--time", str(time_s), "--seed", str(seed), "--out", str(out),
            "--base-port", str(free_base_port(PORTS)), "--bulk", str(BULK), *extra]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=400)
    assert (out / "history.jsonl").exists(), done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    return done.returncode, summary, done.stdout


def workload_ok(out) -> int:
    """Operations of the workload (not the bulk phase, not the final reads) completed ok."""
    with open(out / "history.jsonl") as f:
        events = [json.loads(line) for line in f]
    return sum(1 for e in events if e["type"] == "ok" and not e.get("final")
               and not e["process"].startswith("bulk-"))


def check_restarts(out, summary: dict, stdout: str, kind: str) -> None:
    """Each whole-DC restart was done as planned: every planned kill and restart happened,
    in the planned order, and was logged; each such fault's DC went dark and has its window
    in the summary."""
    faults = json.loads((out / "faults.json").read_text())
    planned = [f for f in faults["planned"] if f["kind"] in RESTARTS]
    assert [f["kind"] for f in planned] == [kind]  # what the seed draws (see the docstring)
    processes = manifest.load(str(out / "cluster"))["processes"]
    for fault in planned:
        targets = fault["targets"]
        log = [e for e in faults["log"] if e["targets"] == targets]
        assert [e["action"] for e in log] == ["start"] + ["restart"] * len(targets) + ["heal"]
        assert [e["detail"].split()[0] for e in log[1:-1]] == targets  # in the planned order
        assert log[-1]["ok"], log[-1]  # every one of them runs again
        dc = fault["dc"]
        names = {p["name"] for p in processes
                 if p["dc"] == dc and (p["role"] == "node" or fault["kind"] == "restart-dc-all")}
        assert set(targets) == names
    windows = [w for w in summary["windows"]["faults"] if w["kind"] in RESTARTS]
    assert [(w["kind"], w["targets"]) for w in windows] == [
        (f["kind"], f["targets"]) for f in planned]
    for w, fault in zip(windows, planned):
        assert w["dc"] == fault["dc"]
        assert w["dc_outage_s"] > 0.1  # a whole DC down (>= 0.2 s): its clients saw it
    assert "fault windows" in stdout and kind in stdout.split("fault windows", 1)[1]


@pytest.mark.parametrize("seed, restart", [(3, "restart-dc"), (16, "restart-dc-all")])
def test_no_anomaly_and_no_lost_write_under_every_nemesis(tmp_path, seed, restart):
    """Every nemesis, whole-DC restarts and manager outages included: seed 3 draws
    restart-dc then manager-pause (7 s, cut to what is left), seed 16 restart-dc-all then
    a membership change (a node added and drained away again, or one replaced by an empty
    one; 15 s runs)."""
    out = tmp_path / f"seed{seed}"
    code, summary, stdout = jepsen(tmp_path, seed, "--nemesis", "all")
    assert summary["anomalies"] == {}, stdout[-4000:]
    assert code == 0 and summary["valid"] is True
    assert summary["core_crashes"] == {}, summary["core_crashes"]  # (tracebacks: logs)
    assert (out / "check.txt").read_text().strip()
    planned = json.loads((out / "faults.json").read_text())["planned"]
    assert len(planned) >= 2
    assert summary["faults_injected"] == {
        k: sum(f["kind"] == k for f in planned) for k in summary["faults_injected"]}
    check_restarts(out, summary, stdout, restart)
    log = json.loads((out / "faults.json").read_text())["log"]
    for fault in [f for f in planned if f["kind"] == "membership"]:  # (seed 16)
        actions = [e for e in log if e["kind"] == "membership"
                   and e["targets"] == fault["targets"]]
        assert [e["action"] for e in actions][-1] == "heal" and all(
            e["ok"] for e in actions), actions
    assert summary["quiescent"], summary["still_busy"]
    assert (out / "timeline.png").stat().st_size > 10_000
    # The bulk phase after the heal: every DC wrote its keys, every DC applied everything
    # (the final reads, checked above, cover the bulk keys in every DC).
    bulk = summary["bulk"]
    assert all(dc["ok"] == BULK for dc in bulk["by_dc"].values()), bulk
    # (Not judged here: a proxy the nemesis restarted ships its retained log again, and
    # partitions make resends; tests/test_proxy_costs.py holds 1.0 without faults.)
    assert bulk["converged_s"] is not None and bulk["sent_per_logged"] >= 1.0, bulk
    assert summary["history"]["ok"] > 3 * 3 * BULK  # bulk writes and final reads of them
    assert "jepsen: bulk load" in stdout
    # The workload really ran, through its faults: its rate against the bulk phase's, on
    # this machine in this run, all faults healed (measured 1.0 on 2 cores; an absolute
    # count failed on loaded machines). Sessions stuck for most of the run fall far below.
    workload_rate = workload_ok(out) / TIME_S
    bulk_rate = sum(dc["ok_per_s"] for dc in bulk["by_dc"].values())
    assert workload_rate >= 0.25 * bulk_rate, (workload_rate, bulk)
    assert not [p["name"] for p in manifest.load(str(out / "cluster"))["processes"]
                if manifest.running(p)]


def test_the_unsafe_switch_is_caught(tmp_path):
    """A 5 s run without faults is enough: it found 3 to 10 anomalies in every run we
    tried, on one core too."""
    code, summary, stdout = jepsen(tmp_path, 5, "--nemesis", "", "--bulk", "0",
                                   "--unsafe-skip-dependency-checks", time_s=5)
    assert code == 1, stdout[-4000:]
    assert summary["anomalies"], stdout[-4000:]
    assert "UNSAFE" in stdout


def test_fault_plans_name_their_targets_for_one_and_several_dcs():
    from chainreaction.tools.cluster import ClusterConfig, LocalCluster
    from chainreaction.tools.jepsen import JepsenConfig, plan_faults

    for dcs in (1, 3):
        cluster = LocalCluster(ClusterConfig(nodes=5, dcs=dcs, data_dir="/nonexistent"))
        config = JepsenConfig(dcs=dcs, nodes=5, time_s=300, nemeses=("partition",), seed=4)
        faults = plan_faults(config, cluster)
        assert faults and all(f.kind == "partition" for f in faults)
        for f in faults:
            names = set(cluster.processes) | {f"dc{d}" for d in range(dcs)}
            assert set(f.targets) <= names
            assert f.between_dcs == all(t not in cluster.processes for t in f.targets)
        assert any(not f.between_dcs for f in faults)
        assert (dcs > 1) == any(f.between_dcs for f in faults)


MANAGER_OUTAGES = ("manager-kill", "manager-pause")


def test_manager_outages_last_the_configured_time_and_are_cut_near_the_end():
    from chainreaction.tools.cluster import ClusterConfig, LocalCluster
    from chainreaction.tools.jepsen import JepsenConfig, plan_faults

    cluster = LocalCluster(ClusterConfig(nodes=3, dcs=3, data_dir="/nonexistent"))
    managers = {name: p.dc for name, p in cluster.processes.items() if p.role == "manager"}
    kinds, dcs, shortened, schedules = set(), set(), 0, set()
    for seed in range(1, 40):
        config = JepsenConfig(time_s=50, seed=seed, manager_outage_s=12.0,
                              nemeses=MANAGER_OUTAGES)
        faults = plan_faults(config, cluster)
        assert faults == plan_faults(config, cluster)  # a pure function of the seed
        schedules.add(tuple(faults))
        assert faults
        for f in faults:
            kinds.add(f.kind)
            dcs.add(f.dc)
            assert len(f.targets) == 1 and managers[f.targets[0]] == f.dc
            assert f.end <= config.time_s - 1.0
            if f.end - f.start != pytest.approx(12.0):  # only a last one, cut to what is left
                assert f is faults[-1] and f.end == pytest.approx(config.time_s - 1.0)
                assert 5.0 <= f.end - f.start < 12.0
                shortened += 1
            state = "down" if f.kind == "manager-kill" else "stopped"
            assert (f"{f.targets[0]} (dc{f.dc}'s manager, {state} {f.end - f.start:.1f} s)"
                    in f.describe())
        assert all(a.end < b.start for a, b in zip(faults, faults[1:]))  # one at a time
        # planning stopped only once the next outage could not start with 5 s left
        assert faults[-1].end + config.fault_gap_s[1] > config.time_s - 1.0 - 5.0
    assert len(schedules) == 39  # the seed draws them
    assert kinds == set(MANAGER_OUTAGES) and dcs == {0, 1, 2}
    assert 5 <= shortened <= 34  # some seeds left 5-12 s at the end, others did not


def test_a_manager_outage_that_does_not_fit_gives_way_to_the_other_nemeses():
    from chainreaction.tools.cluster import ClusterConfig, LocalCluster
    from chainreaction.tools.jepsen import JepsenConfig, plan_faults

    cluster = LocalCluster(ClusterConfig(nodes=3, dcs=3, data_dir="/nonexistent"))
    # 6.5 s: less than 5 s left after the first gap (1-3 s) and 1 s at the end
    for seed in range(1, 40):
        only = JepsenConfig(time_s=6.5, seed=seed, nemeses=MANAGER_OUTAGES)
        assert plan_faults(only, cluster) == []
    kinds = []
    for seed in range(1, 40):
        config = JepsenConfig(time_s=6.5, seed=seed, nemeses=("kill", *MANAGER_OUTAGES))
        faults = plan_faults(config, cluster)
        assert faults == plan_faults(config, cluster)
        kinds += [f.kind for f in faults]
    assert len(kinds) >= 30 and set(kinds) == {"kill"}  # a kill instead, not nothing
    # every nemesis, a long run: the whole 30 s (default) wherever it fits
    lengths = []
    for seed in range(1, 6):
        faults = plan_faults(JepsenConfig(time_s=300, seed=seed), cluster)
        lengths += [f.end - f.start for f in faults[:-1] if f.kind in MANAGER_OUTAGES]
    assert len(lengths) >= 5 and lengths == pytest.approx([30.0] * len(lengths))


def test_the_manager_outage_must_be_positive():
    from chainreaction.tools.cli import build_parser
    from chainreaction.tools.jepsen import JepsenConfig

    args = build_parser().parse_args(["jepsen", "--manager-outage", "12.5"])
    assert args.manager_outage == 12.5
    assert build_parser().parse_args(["jepsen"]).manager_outage == 30.0
    for bad in ("0", "-3"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["jepsen", "--manager-outage", bad])
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="--manager-outage"):
            JepsenConfig(manager_outage_s=bad).validate()
    JepsenConfig(manager_outage_s=0.5).validate()


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_sigterm_stops_the_run_and_every_cluster_process(tmp_path):
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "chainreaction", "jepsen", "--dcs", "1", "--nodes", "3",
            "--time", "120", "--nemesis", "", "--out", str(out),
            "--base-port", str(free_base_port(2 + 3 + 2))]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pids: list[int] = []
    history = out / "history.jsonl"
    try:
        # The workload is running once its history reaches the disk (the first progress
        # line comes only after 5 s).
        deadline = time.monotonic() + 120
        while not (history.exists() and history.stat().st_size > 0):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("jepsen ended before its workload ran: "
                            + proc.stderr.read()[-3000:])
            time.sleep(0.05)  # sleep-ok: polling a real process we cannot drive
        pids = [p["pid"] for p in json.loads((out / "cluster" / "cluster.json").read_text())
                ["processes"]]
        assert pids and all(_running(pid) for pid in pids)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 130
        assert "interrupted" in proc.stderr.read()
        assert not [pid for pid in pids if _running(pid)]
    finally:
        proc.kill()
        for pid in pids:  # whatever a failed run left behind
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
    checked = subprocess.run([sys.executable, "-m", "chainreaction", "check",
                              str(out / "history.jsonl")], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout[-2000:]
