#!/usr/bin/env python3
"""The daemon's memory on a simulated fleet: RSS steady, its peak during a full reload and a
full resync, open files, and the slope per managed service between sizes.

For each size (servers x 11): generate the fleet, start the sim and `steward run` on it, wait
for the convergence plus `--settle` seconds, read RSS and open files; then reset the peak
(VmHWM), rewrite every file of the desired state (each gains a comment line, so the daemon
reads and parses the whole directory again: a full reload), wait, and read the peak; reset it
again, `POST /api/v1/reconcile` (every object reconciled once more), wait, read the peak.
Run it inside a network namespace of its own, as scripts/sim-figures.py:

    cargo build --release -p steward-daemon
    unshare -n sh -c 'ip link set lo up && scripts/sim-memory.py --sizes 10,100,300'

`--heaptrack` runs the daemon under heaptrack (its files go to `--heaptrack-dir`, /tmp);
`--env NAME=VALUE` adds to the daemon's environment (e.g. MALLOC_ARENA_MAX=2 to compare).
"""

import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("sim_figures", os.path.join(HERE, "sim-figures.py"))
figures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(figures)


def reset_peak(pid):
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS


def watch_peak(pid, seconds):
    """The highest VmHWM over `seconds` (it only grows after a reset)."""
    until = time.monotonic() + seconds
    peak = 0
    while time.monotonic() < until:
        peak = max(peak, figures.proc_status(pid, "VmHWM"))
        time.sleep(0.2)
    return peak


def rewrite_all(fleet, round_no):
    count = 0
    for root, _, files in os.walk(fleet):
        for name in files:
            if not name.endswith((".yaml", ".yml")):
                continue
            path = os.path.join(root, name)
            with open(path) as f:
                text = f.read()
            with open(path + ".tmp", "w") as f:
                f.write(text + f"# reload {round_no}\n")
            os.rename(path + ".tmp", path)
            count += 1
    return count


def run_size(steward, servers, work, args):
    fleet = os.path.join(work, "fleet")
    state = os.path.join(work, "state")
    shards = max(1, -(-servers // figures.SERVERS_PER_SHARD))
    subprocess.run(
        [steward, "sim", "generate", "--servers", str(servers), "--first-address", figures.FIRST,
         "--probe-interval", "10s", "--out", fleet],
        check=True, stdout=subprocess.DEVNULL,
    )
    sim = subprocess.Popen(
        [steward, "sim", "--servers", str(servers), "--first-address", figures.FIRST,
         "--shards", str(shards), "--state-dir", state, "--desired-state", fleet],
        stdout=open(os.path.join(work, "sim.log"), "w"), stderr=subprocess.STDOUT,
    )
    daemon = None
    try:
        last = os.path.join(fleet, "servers", f"sim{servers:04d}.yaml")
        with open(last) as f:
            agent = re.search(r"agent: https://([0-9.]+):", f.read()).group(1)
        figures.wait_for("the sim", 600, lambda: urllib.request.urlopen(
            f"http://{agent}:7444/sim", timeout=5).status == 200, 1)
        log_path = os.path.join(work, "daemon.log")
        env = dict(os.environ, STEWARD_RECONCILE_TOKEN=figures.TOKEN, NO_COLOR="1")
        for pair in args.env:
            name, _, value = pair.partition("=")
            env[name] = value
        command = [steward, "run", "--desired-state", fleet, "--state-dir", state,
                   "--listen", figures.API, "--resync", args.resync]
        if args.heaptrack:
            command = ["heaptrack", "-o", os.path.join(args.heaptrack_dir, f"heaptrack.steward.{servers}")] + command
        daemon = subprocess.Popen(command, stdout=open(log_path, "w"),
                                  stderr=subprocess.STDOUT, env=env)
        figures.wait_for("the daemon's API", 120, lambda: figures.get("/metrics", 5) is not None, 0.5)
        pid = daemon_pid(daemon.pid, steward if args.heaptrack else None)
        figures.wait_for("convergence", 1800, lambda: figures.converged_at(log_path) is not None, 1)
        cold = figures.converged_at(log_path)
        converge_peak = figures.proc_status(pid, "VmHWM")
        time.sleep(args.settle)
        steady = figures.proc_status(pid, "VmRSS")
        # RSS counts the binary's code pages too (shared with the sim, the same file):
        # the anonymous part is what grows with the fleet.
        anon = figures.proc_status(pid, "RssAnon")
        fds = figures.fds(pid)
        sockets = connections(pid)
        load = figures.load()

        reset_peak(pid)
        files = rewrite_all(fleet, 1)
        reload_peak = watch_peak(pid, args.watch)
        after_reload = figures.proc_status(pid, "VmRSS")

        reset_peak(pid)
        figures.post_reconcile()
        resync_peak = watch_peak(pid, args.watch)
        return {
            "servers": servers, "services": servers * 11, "cold_s": cold,
            "converge_peak": converge_peak / 1024, "steady": steady / 1024, "fds": fds,
            "sockets": sockets, "anon": anon / 1024,
            "files": files, "reload_peak": reload_peak / 1024,
            "after_reload": after_reload / 1024, "resync_peak": resync_peak / 1024,
            "load": load, "load_end": figures.load(),
        }
    finally:
        figures.stop(daemon, sim)


def daemon_pid(pid, under_heaptrack):
    """heaptrack runs the daemon (`under_heaptrack`) among its descendants: measure that
    one, not the wrapper."""
    if under_heaptrack is None:
        return pid
    for _ in range(100):
        for child in descendants(pid):
            try:
                if os.readlink(f"/proc/{child}/exe") == under_heaptrack:
                    return child
            except OSError:
                pass
        time.sleep(0.1)
    raise SystemExit("no steward under heaptrack")


def descendants(pid):
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        for child in open(f"/proc/{pid}/task/{task}/children").read().split():
            out.append(int(child))
            out.extend(descendants(int(child)))
    return out


def connections(pid):
    """The daemon's TCP sockets by what they are: agent (remote port 7443), API (local
    9464), listening, or probe (the rest)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    kinds = {"agent": 0, "api": 0, "listen": 0, "probe": 0}
    for table in ("tcp", "tcp6"):
        with open(f"/proc/{pid}/net/{table}") as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields[9] not in inodes:
                    continue
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if fields[3] == "0A":
                    kinds["listen"] += 1
                elif remote_port == 7443:
                    kinds["agent"] += 1
                elif local_port == int(figures.API.rsplit(":", 1)[1]):
                    kinds["api"] += 1
                else:
                    kinds["probe"] += 1
    return kinds


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,100,300")
    parser.add_argument("--steward", default="target/release/steward")
    parser.add_argument("--resync", default="2s")
    parser.add_argument("--settle", type=float, default=60, help="seconds after converging")
    parser.add_argument("--watch", type=float, default=20, help="seconds a peak is watched")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the daemon")
    parser.add_argument("--heaptrack", action="store_true")
    parser.add_argument("--heaptrack-dir", default=tempfile.gettempdir(), help="where its files go")
    args = parser.parse_args()
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        work = tempfile.mkdtemp(prefix=f"steward-mem-{size}-")
        try:
            row = run_size(os.path.abspath(args.steward), size, work, args)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        rows.append(row)
        print(row, file=sys.stderr, flush=True)
    print("servers | services | cold s | RSS steady MB (anonymous) | peak converge | peak reload "
          "| peak resync | open files (agent/probe connections) | load")
    for r in rows:
        print(f"{r['servers']} | {r['services']} | {r['cold_s']:.1f} | {r['steady']:.1f} "
              f"({r['anon']:.1f}) | "
              f"{r['converge_peak']:.1f} | {r['reload_peak']:.1f} | {r['resync_peak']:.1f} | "
              f"{r['fds']} ({r['sockets']['agent']}/{r['sockets']['probe']}) | "
              f"{r['load']:.1f}-{r['load_end']:.1f}")
    for a, b in zip(rows, rows[1:]):
        slope = (b["steady"] - a["steady"]) * 1024 / (b["services"] - a["services"])
        anon_slope = (b["anon"] - a["anon"]) * 1024 / (b["services"] - a["services"])
        fd_slope = (b["fds"] - a["fds"]) / (b["services"] - a["services"])
        print(f"per managed service, {a['servers']} -> {b['servers']} servers: "
              f"{slope:.1f} KB RSS ({anon_slope:.1f} KB anonymous), {fd_slope:.2f} open files")


if __name__ == "__main__":
    main()
