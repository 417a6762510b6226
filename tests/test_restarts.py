"""Restarts without processes: what ``cluster.json`` records and how its tools refuse bad
input, the restart-dc fault plans, and the per-fault windows of the jepsen report. (The
real thing, with processes killed and restarted, is in tests/test_e2e_restarts.py and the
every-nemesis runs of tests/test_e2e_jepsen.py.)"""

from __future__ import annotations

import json
import os
import sys

import pytest
import trio

from chainreaction.tools import manifest
from chainreaction.tools.cli import build_parser, main
from chainreaction.tools.cluster import ClusterConfig, LocalCluster
from chainreaction.tools.jepsen import JepsenConfig, plan_faults
from chainreaction.tools.jepsen_report import fault_windows, format_windows
from chainreaction.tools.nemesis import Fault, Nemesis


def planned_cluster(tmp_path, **options) -> LocalCluster:
    cluster = LocalCluster(ClusterConfig(data_dir=str(tmp_path / "cluster"), **options))
    os.makedirs(cluster.data_dir)
    cluster.write_manifest()
    return cluster


def test_cluster_json_records_how_to_start_each_process_again(tmp_path):
    cluster = planned_cluster(tmp_path, dcs=2, frontends=2)
    entries = manifest.load(cluster.data_dir)["processes"]
    assert [p["name"] for p in entries] == list(cluster.processes)
    for p in entries:
        spec = cluster.processes[p["name"]]
        assert p["argv"] == [sys.executable, "-m", "chainreaction", *spec.args]
        assert p["cwd"] == os.getcwd() and p["log"] == cluster.log_path(p["name"])
        assert p["env"] == ({"PYTHONPATH": os.environ["PYTHONPATH"]}
                            if "PYTHONPATH" in os.environ else {})
        # ``data`` is where the process itself keeps its data, given that command line
        args = build_parser().parse_args(p["argv"][3:])
        expected = {"node": os.path.join(cluster.data_dir, p["name"]),
                    "proxy": os.path.join(cluster.data_dir, p["name"]),
                    "manager": os.path.join(cluster.data_dir, f"{p['name']}.state"),
                    "frontend": None}[p["role"]]
        assert p["data"] == expected
        if p["role"] != "frontend":
            assert args.data_dir == cluster.data_dir and args.name == p["name"]
            assert p["data"].startswith(os.path.join(args.data_dir, args.name))


def test_the_manifest_keeps_a_pid_recorded_by_cluster_restart(tmp_path):
    """``cluster up`` rewrites cluster.json when it starts a process; a pid that ``cluster
    restart`` recorded for a process it has no live child of stays."""
    cluster = planned_cluster(tmp_path)
    manifest.set_pid(cluster.data_dir, "n2", 4242)
    cluster.write_manifest()
    assert manifest.entry(manifest.load(cluster.data_dir), "n2")["pid"] == 4242


@pytest.mark.parametrize("content, says", [
    (None, "no "),
    ("{not json", "not valid JSON"),
    ('{"processes": 3}', "no list of processes"),
    ('{"processes": [{"role": "node", "name": "n1", "address": "x", "pid": 1}]}',
     "n1 lacks argv, cwd, env, data, log (written by an older"),
    ('{"processes": [{"role": "node", "name": "n1", "address": "x", "pid": 1, "argv": [],'
     ' "cwd": "/", "env": {}, "data": null, "log": "l"}]}', "n1 has no command line"),
])
def test_restart_and_kill_explain_a_missing_or_broken_cluster_json(tmp_path, capsys, content,
                                                                     says):
    if content is not None:
        (tmp_path / "cluster.json").write_text(content)
    for command in (["restart", "n1"], ["kill", "n1", "--signal", "STOP"]):
        assert main(["cluster", *command, "--cluster", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("chainreaction: error: ") and says in err, err


def test_restart_and_kill_name_the_processes_when_the_name_is_unknown(tmp_path, capsys):
    cluster = planned_cluster(tmp_path)
    assert main(["cluster", "restart", "n7", "--cluster", cluster.data_dir]) == 2
    assert "no process named 'n7' in this cluster; its processes: manager, n1, n2, n3, f1" \
        in capsys.readouterr().err


def test_kill_refuses_a_process_that_does_not_run(tmp_path):
    cluster = planned_cluster(tmp_path)  # planned, never started: no pid runs its argv
    with pytest.raises(ValueError, match="n1 is not running .* cluster restart n1 --cluster"):
        manifest.send_signal(cluster.data_dir, "n1", "KILL")
    with pytest.raises(ValueError, match="unknown signal 'HUP'"):
        manifest.send_signal(cluster.data_dir, "n1", "HUP")


def test_a_process_is_found_by_its_whole_command_line_never_by_its_pid_alone():
    with open("/proc/self/cmdline", "rb") as f:
        argv = [os.fsdecode(a) for a in f.read().split(b"\0")[:-1]]
    assert os.getpid() in manifest.pids_of({"pid": os.getpid(), "argv": argv})
    assert manifest.pids_of({"pid": os.getpid(), "argv": argv})[0] == os.getpid()
    # the pid is ours, but the command line is another's: a reused pid, not the process
    assert manifest.pids_of({"pid": os.getpid(), "argv": [*argv, "--name", "n1"]}) == []
    assert manifest.pids_of({"pid": None, "argv": [*argv, "--other"]}) == []


def test_restart_dc_kills_one_whole_dc_and_restarts_it_in_a_drawn_order():
    cluster = LocalCluster(ClusterConfig(nodes=3, dcs=3, data_dir="/nonexistent"))
    dcs_hit = set()
    for seed in range(1, 30):
        config = JepsenConfig(dcs=3, nodes=3, time_s=60, seed=seed,
                              nemeses=("restart-dc", "restart-dc-all"))
        faults = plan_faults(config, cluster)
        assert faults == plan_faults(config, cluster)  # a pure function of the seed
        assert faults
        for f in faults:
            dcs_hit.add(f.dc)
            roles = {"restart-dc": {"node"},
                     "restart-dc-all": {"node", "manager", "frontend", "proxy"}}[f.kind]
            assert sorted(f.targets) == sorted(n for n, p in cluster.processes.items()
                                               if p.dc == f.dc and p.role in roles)
            gaps = [b - a for a, b in zip((f.start, *f.restarts), f.restarts)]
            assert all(config.restart_gap_s[0] <= g <= config.restart_gap_s[1] for g in gaps)
            assert f.end == f.restarts[-1] <= config.time_s - 1.0
            assert f"kill -9 every {'node' if f.kind == 'restart-dc' else 'process'} of " \
                   f"dc{f.dc}" in f.describe()
        assert all(a.end < b.start for a, b in zip(faults, faults[1:]))  # one at a time
    assert dcs_hit == {0, 1, 2}


def test_the_other_nemeses_draw_the_same_schedules_as_before_restart_dc():
    """Adding nemeses changed no other schedule: the seeds of earlier reports still replay
    (a schedule drawn before restart-dc existed, seed 1, 3 DCs, 15 s)."""
    cluster = LocalCluster(ClusterConfig(nodes=3, dcs=3, data_dir="/nonexistent"))
    config = JepsenConfig(time_s=15, seed=1,
                          nemeses=("kill", "pause", "partition", "clock", "isolate"))
    assert [(f.kind, f.targets, round(f.start, 2)) for f in plan_faults(config, cluster)] \
        == BEFORE_SEED_1


BEFORE_SEED_1 = [("kill", ("dc0-proxy",), 1.27), ("clock", ("dc0-n1",), 6.8),
                 ("clock", ("dc2-n1",), 10.21)]


def test_fault_windows_give_the_rate_in_each_fault_and_the_outage_of_its_dc(tmp_path):
    history = tmp_path / "history.jsonl"
    events = []
    for i in range(100):  # one ok per 0.1 s in each of two DCs; dc1 dark from 2.0 to 3.5 s
        t = i / 10 + 0.05
        for dc in (0, 1):
            if dc == 1 and 2.0 <= t < 3.5:
                continue
            events.append({"time": t, "type": "ok", "dc": dc})
    events.append({"time": 2.5, "type": "info", "dc": 1})
    events.append({"time": 10.5, "type": "ok", "dc": 1, "final": True})  # not workload
    history.write_text("".join(json.dumps(e) + "\n" for e in events))
    log = [{"time": 2.0, "kind": "restart-dc", "action": "start", "targets": ["b1", "b2"]},
           {"time": 2.5, "kind": "restart-dc", "action": "restart", "targets": ["b1", "b2"]},
           {"time": 3.0, "kind": "restart-dc", "action": "restart", "targets": ["b1", "b2"]},
           {"time": 3.0, "kind": "restart-dc", "action": "heal", "targets": ["b1", "b2"]},
           {"time": 6.0, "kind": "partition", "action": "start", "targets": ["dc0", "dc1"]},
           {"time": 7.0, "kind": "partition", "action": "heal", "targets": ["dc0", "dc1"]}]
    windows = fault_windows(str(history), log, 10.0, {"a1": 0, "b1": 1, "b2": 1})
    quiet_s = 10.0 - 2 * 1.0  # the workload, less the two windows
    assert windows["quiet"] == {"ok_per_s": round(155 / quiet_s, 1),
                                "by_dc": {"0": 10.0, "1": round(75 / quiet_s, 1)}}
    restart, partition = windows["faults"]
    assert restart["kind"] == "restart-dc" and restart["dc"] == 1
    assert (restart["start"], restart["end"], restart["info"]) == (2.0, 3.0, 1)
    assert restart["ok_per_s"] == 10.0 and restart["dc_ok_per_s"] == 0.0  # all in dc0
    assert restart["dc_outage_s"] == 1.55  # from the fault's start to dc1's next ok
    assert restart["dc_back"]
    assert "dc" not in partition and partition["ok_per_s"] == 20.0
    text = format_windows(windows)
    assert "restart-dc" in text and "dc1 completed nothing for 1.6 s" in text


def test_fault_windows_give_each_dcs_rate_and_its_share_of_the_rate_with_no_fault(tmp_path):
    history = tmp_path / "history.jsonl"
    events = []
    for i in range(100):  # one ok per 0.1 s in dc0-dc2 with no fault on: 10/s each
        t = round(i / 10 + 0.05, 2)
        for dc in (0, 1, 2):
            if 2.0 <= t <= 4.0 and (dc == 0 and i % 10 >= 3 or dc == 1 and i % 2):
                continue  # the manager outage: its own dc0 at 3/s, dc1 (not hit) at 5/s
            if 6.0 <= t <= 7.0 and dc == 2:
                continue  # the partition: dc2 completes nothing
            events.append({"time": t, "type": "ok", "dc": dc})
    events.append({"time": 2.5, "type": "ok", "dc": 3})  # dc3: nothing with no fault on
    events.append({"time": 3.0, "type": "fail", "dc": 1})
    history.write_text("".join(json.dumps(e) + "\n" for e in events))
    log = [{"time": 2.0, "kind": "manager-kill", "action": "start", "targets": ["dc0-manager"]},
           {"time": 4.0, "kind": "manager-kill", "action": "heal", "targets": ["dc0-manager"]},
           {"time": 6.0, "kind": "partition", "action": "start", "targets": ["dc1", "dc2"]},
           {"time": 7.0, "kind": "partition", "action": "heal", "targets": ["dc1", "dc2"]}]
    windows = fault_windows(str(history), log, 10.0, {"dc0-manager": 0, "dc1-n1": 1})
    assert windows["quiet"]["by_dc"] == {"0": 10.0, "1": 10.0, "2": 10.0, "3": 0.0}
    manager, partition = windows["faults"]
    assert manager["kind"] == "manager-kill" and manager["dc"] == 0
    assert (manager["ok"], manager["fail"], manager["dc_ok_per_s"]) == (6 + 10 + 20 + 1, 1, 3.0)
    assert manager["by_dc"] == {"0": {"ok_per_s": 3.0, "ratio": 0.3},
                                "1": {"ok_per_s": 5.0, "ratio": 0.5},
                                "2": {"ok_per_s": 10.0, "ratio": 1.0},
                                "3": {"ok_per_s": 0.5, "ratio": None}}
    assert manager["min_ratio_unfaulted"] == 0.5  # dc1: its own dc0 (0.3) does not count
    assert "dc" not in partition  # between DCs: both ends are hit
    assert partition["by_dc"] == {"0": {"ok_per_s": 10.0, "ratio": 1.0},
                                  "1": {"ok_per_s": 10.0, "ratio": 1.0},
                                  "2": {"ok_per_s": 0.0, "ratio": 0.0},
                                  "3": {"ok_per_s": 0.0, "ratio": None}}
    # dc1 and dc2 are its ends; dc0's manager came back 2 s before it began (RECOVERY_S):
    # only dc3 has no fault, and it has no rate of its own to compare with
    assert partition["dcs_hit"] == [0, 1, 2] and partition["min_ratio_unfaulted"] is None
    assert windows["lowest_unfaulted"] == {"ratio": 0.5, "dc": 1, "fault": 0}
    text = format_windows(windows).splitlines()
    assert text[2].split(": ", 1)[1] == "dc0 3 (30%)  dc1 5 (50%)  dc2 10 (100%)  dc3 0.5 (-)"
    assert text[4].split(": ", 1)[1] == "dc0 10 (100%)  dc1 10 (100%)  dc2 0 (0%)  dc3 0 (-)"
    # the same partition long after the manager's outage: dc0 counts, at 100%
    later = [*log[:2], *({**e, "time": e["time"] + 10} for e in log[2:])]
    assert fault_windows(str(history), later, 20.0, {"dc0-manager": 0})["faults"][1][
        "dcs_hit"] == [1, 2]
    # without the partition, the manager outage is the lowest: dc1's 50%, not dc0's 30%
    alone = fault_windows(str(history), log[:2], 10.0, {"dc0-manager": 0})
    assert alone["lowest_unfaulted"] == {"ratio": 0.5, "dc": 1, "fault": 0}
    assert ("dc1 at 50% of its rate with no fault on, in manager-kill dc0-manager (2.0-4.0 s)"
            in format_windows(alone))


def test_fault_windows_count_sessions_by_home_dc_as_well_as_where_they_were_served(tmp_path):
    """A session of dc0 that visited dc1 while dc1 was cut off is served there until the
    heal (dc0 cannot apply what it wrote there yet): dc0 serves less, yet its sessions lose
    nothing. One of dc2's sessions waits in dc1 instead: its home's sessions lose it."""
    history = tmp_path / "history.jsonl"
    events = []
    for i in range(100):  # 10/s per session, 2 sessions per DC
        t = round(i / 10 + 0.05, 2)
        for process, home in (("a1", 0), ("a2", 0), ("b1", 1), ("b2", 1), ("c1", 2),
                              ("c2", 2)):
            cut = 4.0 <= t <= 6.0
            if cut and process == "c2":
                continue  # held hostage: fails over nowhere
            served = 1 if cut and process == "a2" else home
            events.append({"time": t, "type": "ok", "dc": served, "process": process})
    history.write_text("".join(json.dumps(e) + "\n" for e in events))
    log = [{"time": 4.0, "kind": "isolate", "action": "start", "targets": ["dc1", "dc2", "dc0"]},
           {"time": 6.0, "kind": "isolate", "action": "heal", "targets": ["dc1", "dc2", "dc0"]}]
    home_of = {"a1": 0, "a2": 0, "b1": 1, "b2": 1, "c1": 2, "c2": 2}
    (isolate,) = fault_windows(str(history), log, 10.0, {"dc1-n1": 1}, home_of)["faults"]
    assert isolate["dcs_hit"] == [1]
    assert {d: v["ratio"] for d, v in isolate["by_dc"].items()} == {"0": 0.5, "1": 1.5, "2": 0.5}
    assert {d: v["ratio"] for d, v in isolate["by_home"].items()} == {
        "0": 1.0, "1": 1.0, "2": 0.5}
    assert (isolate["min_ratio_unfaulted"], isolate["min_ratio_unfaulted_home"]) == (0.5, 0.5)
    windows = fault_windows(str(history), log, 10.0, {"dc1-n1": 1}, home_of)
    assert windows["lowest_unfaulted_home"] == {"ratio": 0.5, "dc": 2, "fault": 0}
    text = format_windows(windows)
    assert "sessions by home DC (% of its rate with no fault on): dc0 20 (100%)  dc1 20 " \
           "(100%)  dc2 10 (50%)" in text
    assert "lowest rate of the sessions of a DC without a fault" in text
    assert "by_home" not in fault_windows(str(history), log, 10.0, {"dc1-n1": 1})["faults"][0]


def test_fault_windows_say_how_low_the_rate_goes_with_no_fault_on(tmp_path):
    """The noise beside the faults' ratios: dc0 has a slow second (5 ops instead of 10)
    with no fault on, so a 1 s window with no fault can show it at half its rate; dc1's
    own recovery after its fault (RECOVERY_S) is left out, dc0's dip is not."""
    history = tmp_path / "history.jsonl"
    events = []
    for i in range(200):  # 10/s in each DC, for 20 s
        t = round(i / 10 + 0.05, 2)
        for dc in (0, 1):
            if dc == 0 and 15.0 <= t < 16.0 and i % 2:
                continue  # dc0's slow second, no fault on
            if dc == 1 and (2.0 <= t < 3.0 or 3.0 <= t < 8.0 and i % 2):
                continue  # dc1's fault, then its slow recovery
            events.append({"time": t, "type": "ok", "dc": dc})
    history.write_text("".join(json.dumps(e) + "\n" for e in events))
    log = [{"time": 2.0, "kind": "kill", "action": "start", "targets": ["dc1-n1"]},
           {"time": 3.0, "kind": "kill", "action": "heal", "targets": ["dc1-n1"]}]
    windows = fault_windows(str(history), log, 20.0, {"dc1-n1": 1})
    noise = windows["noise"]
    assert noise["min"] == round(5 / (185 / 19), 3)  # dc0: 5 ops in its slow second
    # 1 s windows, 0.5 s apart: dc0 in 0-2 s and 3-20 s, dc1 in 0-2 s and 8-20 s only
    assert noise["windows"] == (3 + 33) + (3 + 23)
    assert "noise: with no fault on, in 62 windows as long as the faults', DCs served " \
           "down to 51% of their rate with no fault on" in format_windows(windows)
    # one fault as long as the whole time with no fault on: no window to compare with
    everything = [{**log[0], "time": 0.0}, {**log[1], "time": 19.5}]
    assert fault_windows(str(history), everything, 20.0, {"dc1-n1": 1})["noise"] is None
    # a fault healed as it began (a long membership change pushed it to its end; jepsen
    # seed 247 divided by its zero length): left out of the noise, the rest measured
    instant = [{"time": 12.0, "kind": "pause", "action": a, "targets": ["dc0-n1"]}
               for a in ("start", "heal")]
    assert fault_windows(str(history), log + instant, 20.0,
                         {"dc1-n1": 1, "dc0-n1": 0})["noise"]["windows"] > 0


async def test_an_isolation_probe_still_reading_does_not_push_the_next_faults_back(
        autojump_clock):
    """The probe of an isolate fault reads on after the heal. The schedule went on only
    once it was done: later faults ran late, squeezed into a fraction of their length
    (jepsen seed 212: a 3 s isolation lasted 0.09 s), and their windows meant nothing."""
    nemesis = Nemesis(cluster=None, t0=trio.current_time(), clock=trio.current_time)

    async def wan(controls):
        return True

    nemesis._wan = wan  # the proxies' answers: not what this test is about
    probed = []

    async def probe(fault):
        probed.append(fault.start)
        await trio.sleep(20)  # sleep-ok: mock clock; a probe reading long after the heal

    faults = [Fault("isolate", 2.0, 5.0, ("dc0", "dc1", "dc2"), stage=3.0),
              Fault("isolate", 8.0, 11.0, ("dc1", "dc0", "dc2"), stage=9.0),
              Fault("isolate", 30.0, 33.0, ("dc2", "dc0", "dc1"), stage=31.0)]
    await nemesis.run(faults, probe)
    times = {action: [e["time"] for e in nemesis.log if e["action"] == action]
             for action in ("start", "stage", "heal")}
    assert times == {"start": [2.0, 8.0, 30.0], "stage": [3.0, 9.0, 31.0],
                     "heal": [5.0, 11.0, 33.0]}
    # one probe at a time: the second isolation came while the first probe still read
    assert probed == [2.0, 30.0]
