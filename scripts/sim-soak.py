#!/usr/bin/env python3
"""Soak: the daemon managing a simulated fleet under churn, with its RSS, open files and
probe lateness printed every minute.

Churn: every --commit-every seconds a commit moves one random server's JOB service to
another port (a reinstall), and every --kill-every seconds a random running service is
killed through the sim's control API (steward restarts it). Probe lateness is, over every
installed service, how long ago its last probe ran beyond its 10 s interval (0 when every
service was probed within its interval). Run it inside a network namespace of its own:

    cargo build --release -p steward-daemon
    unshare -n sh -c 'ip link set lo up && scripts/sim-soak.py --servers 1000 --minutes 60'

Goal: flat memory and open files, no probe later than its interval.
"""

import argparse
import importlib.util
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone

# The figures script's process handling, shared.
_spec = importlib.util.spec_from_file_location(
    "sim_figures", os.path.join(os.path.dirname(os.path.abspath(__file__)), "sim-figures.py"))
figures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(figures)

API = "127.0.0.1:9464"
FIRST = "127.1.0.1"
INTERVAL = 10.0
KINDS = ["PSIS", "PSWS", "CLIENT", "REPORT", "ADMIN", "EMERGENCY", "HEALTH", "FHIR", "EMPI", "JOB", "HL7"]


def get_json(url, timeout=60):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.load(r)


def post(url):
    req = urllib.request.Request(url, method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status


def kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def lateness(doc, now):
    """The largest (age of a service's last probe - its interval), and how many are late."""
    worst, late = 0.0, 0
    for server in doc.get("servers", []):
        for svc in server.get("services", []):
            probe = svc.get("lastProbe")
            if not svc.get("installed") or not probe:
                continue
            t = datetime.fromisoformat(probe["time"].replace("Z", "+00:00")).timestamp()
            over = now - t - INTERVAL
            worst = max(worst, over)
            late += over > 0
    return worst, late


def addresses(fleet):
    out = []
    for name in sorted(os.listdir(os.path.join(fleet, "servers"))):
        with open(os.path.join(fleet, "servers", name)) as f:
            out.append((name[:-5], re.search(r"agent: https://([0-9.]+):", f.read()).group(1)))
    return out


def commit(fleet, servers, rng):
    name, _ = rng.choice(servers)
    path = os.path.join(fleet, "servers", name + ".yaml")
    with open(path) as f:
        text = f.read()
    if "- kind: JOB\n      port: 7100" in text:
        text = text.replace("- kind: JOB\n      port: 7100\n", "- kind: JOB\n")
    else:
        text = text.replace("- kind: JOB\n", "- kind: JOB\n      port: 7100\n")
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", type=int, default=100)
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--commit-every", type=float, default=5)
    parser.add_argument("--kill-every", type=float, default=3)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--steward", default="target/release/steward")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    steward = os.path.abspath(args.steward)
    work = tempfile.mkdtemp(prefix="steward-soak-")
    fleet, state = os.path.join(work, "fleet"), os.path.join(work, "state")
    shards = max(1, -(-args.servers // 250))
    subprocess.run([steward, "sim", "generate", "--servers", str(args.servers), "--first-address", FIRST,
                    "--probe-interval", "10s", "--out", fleet], check=True, stdout=subprocess.DEVNULL)
    sim = subprocess.Popen([steward, "sim", "--servers", str(args.servers), "--first-address", FIRST,
                            "--shards", str(shards), "--state-dir", state, "--desired-state", fleet],
                           stdout=open(os.path.join(work, "sim.log"), "w"), stderr=subprocess.STDOUT)
    daemon = None
    try:
        servers = addresses(fleet)
        last = servers[-1][1]
        deadline = time.monotonic() + 600
        while True:
            try:
                get_json(f"http://{last}:7444/sim", 5)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise SystemExit("the sim did not start")
                time.sleep(1)
        log = os.path.join(work, "daemon.log")
        daemon = subprocess.Popen([steward, "run", "--desired-state", fleet, "--state-dir", state,
                                   "--listen", API],
                                  stdout=open(log, "w"), stderr=subprocess.STDOUT,
                                  env=dict(os.environ, NO_COLOR="1"))
        print(f"soak: {args.servers} servers x 11, seed {seed}, daemon pid {daemon.pid}, work {work}", flush=True)
        while True:
            with open(log) as f:
                if "converged in" in f.read():
                    break
            time.sleep(1)
        print("minute | RSS MB | peak MB | fds | CPU % | commits | kills | worst probe lateness s | late probes | load",
              flush=True)
        start = time.monotonic()
        next_commit, next_kill, next_report = start, start, start + 60
        commits = kills = 0
        cpu0, t0 = cpu_seconds(daemon.pid), start
        minute = 0
        while time.monotonic() - start < args.minutes * 60:
            now = time.monotonic()
            if now >= next_commit:
                commit(fleet, servers, rng)
                commits += 1
                next_commit += args.commit_every
            if now >= next_kill:
                _, addr = rng.choice(servers)
                try:
                    post(f"http://{addr}:7444/sim/services/{rng.choice(KINDS)}/kill")
                    kills += 1
                except Exception:
                    pass  # not running at this moment (being restarted): no kill
                next_kill += args.kill_every
            if now >= next_report:
                minute += 1
                pid = daemon.pid
                worst, late = lateness(get_json(f"http://{API}/api/v1/status"), time.time())
                cpu = (cpu_seconds(pid) - cpu0) / (now - t0) * 100
                cpu0, t0 = cpu_seconds(pid), now
                print(f"{minute} | {kb(pid, 'VmRSS') / 1024:.1f} | {kb(pid, 'VmHWM') / 1024:.1f} | "
                      f"{len(os.listdir(f'/proc/{pid}/fd'))} | {cpu:.1f} | {commits} | {kills} | "
                      f"{max(0.0, worst):.1f} | {late} | {os.getloadavg()[0]:.1f}", flush=True)
                next_report += 60
            time.sleep(0.1)
    finally:
        figures.stop(daemon, sim)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
