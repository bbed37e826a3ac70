#!/usr/bin/env python3
"""Scale figures of the daemon managing a simulated fleet (`steward sim`), printed as a table.

For each size (servers x 11 services): generate the fleet's desired state, start the sim
(sharded so no process nears the open-file limit), start `steward run` on it, then measure
cold converge, steady RSS / fds / CPU, /metrics and /api/v1/status latency (whole and
compact, timed by curl), a full resync (POST /api/v1/reconcile), the time from a file change
that touches every server to the first agent call, and the RSS peak over the resync, the
reload of that change and its first 15 s of work. Run it inside a network namespace of its own
(`unshare -n`, loopback up) so its addresses collide with nothing:

    cargo build --release -p steward-daemon
    unshare -n sh -c 'ip link set lo up && scripts/sim-figures.py --sizes 10,100,1000'

Figures are what one run on one machine saw; the load average is printed with each row.
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone

API = "127.0.0.1:9464"
TOKEN = "sim-figures-token"
SERVERS_PER_SHARD = 250
FIRST = "127.1.0.1"


def get(path, timeout=30.0):
    with urllib.request.urlopen(f"http://{API}{path}", timeout=timeout) as r:
        return r.read()


def post_reconcile():
    req = urllib.request.Request(
        f"http://{API}/api/v1/reconcile",
        method="POST",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status


def proc_status(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])  # kB
    return 0


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def load():
    return os.getloadavg()[0]


def metric_sum(text, name, **labels):
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        if not (head == name or head.startswith(name + "{")):
            continue
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


def percentile(samples, p):
    s = sorted(samples)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def latency(path, n):
    """p50/p99 in ms of `n` sequential GETs, timed by curl (its `time_total`: request sent
    to last byte read), so the client's own reading of megabytes stays out of the figure."""
    out = []
    for _ in range(n):
        r = subprocess.run(
            ["curl", "-sS", "-o", "/dev/null", "-w", "%{time_total}", f"http://{API}{path}"],
            check=True, capture_output=True, text=True, timeout=60,
        )
        out.append(float(r.stdout) * 1000)
    return percentile(out, 50), percentile(out, 99)


def wait_for(what, deadline, probe, poll=0.5):
    until = time.monotonic() + deadline
    while time.monotonic() < until:
        try:
            if probe():
                return True
        except Exception:
            pass
        time.sleep(poll)
    raise SystemExit(f"timed out waiting for {what}")


def converged_at(log_path):
    """Seconds the daemon reported for generation 1's convergence."""
    with open(log_path) as f:
        for line in f:
            m = re.search(r"converged in ([0-9.]+) s", line)
            if m:
                return float(m.group(1))
    return None


def first_agent_call_after(log_path, since):
    """Seconds from `since` (Unix time) to the first install the daemon logs after it."""
    with open(log_path) as f:
        for line in f:
            if "installing" not in line:
                continue
            stamp = line.split(" ", 1)[0]
            try:
                t = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
            except ValueError:
                continue
            if t.timestamp() >= since:
                return t.timestamp() - since
    return None


def stop(*procs):
    """SIGTERM each started process (None: not started), SIGKILL after 120 s."""
    for proc in procs:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def run_size(steward, servers, work, resync):
    fleet = os.path.join(work, "fleet")
    state = os.path.join(work, "state")
    shards = max(1, -(-servers // SERVERS_PER_SHARD))
    subprocess.run(
        [steward, "sim", "generate", "--servers", str(servers), "--first-address", FIRST,
         "--probe-interval", "10s", "--out", fleet],
        check=True, stdout=subprocess.DEVNULL,
    )
    sim_log = open(os.path.join(work, "sim.log"), "w")
    sim = subprocess.Popen(
        [steward, "sim", "--servers", str(servers), "--first-address", FIRST, "--shards",
         str(shards), "--state-dir", state, "--desired-state", fleet],
        stdout=sim_log, stderr=subprocess.STDOUT,
    )
    daemon = None
    try:
        last_server = os.path.join(fleet, "servers", f"sim{servers:04d}.yaml")
        with open(last_server) as f:
            agent = re.search(r"agent: https://([0-9.]+):", f.read()).group(1)
        wait_for("the sim", 600, lambda: urllib.request.urlopen(f"http://{agent}:7444/sim", timeout=5).status == 200, 1)
        log_path = os.path.join(work, "daemon.log")
        env = dict(os.environ, STEWARD_RECONCILE_TOKEN=TOKEN, NO_COLOR="1")
        daemon = subprocess.Popen(
            [steward, "run", "--desired-state", fleet, "--state-dir", state, "--listen", API,
             "--resync", resync],
            stdout=open(log_path, "w"), stderr=subprocess.STDOUT, env=env,
        )
        pid = daemon.pid
        started = time.monotonic()
        wait_for("convergence", 1800, lambda: converged_at(log_path) is not None, 1)
        cold = converged_at(log_path)
        cold_load = load()
        peak_converge = proc_status(pid, "VmHWM")

        time.sleep(30)  # let the first probe round and resyncs settle
        rss_steady = proc_status(pid, "VmRSS")
        fd_count = fds(pid)
        c0, t0 = cpu_seconds(pid), time.monotonic()
        time.sleep(60)
        cpu = (cpu_seconds(pid) - c0) / (time.monotonic() - t0) * 100
        steady_load = load()

        status_size = len(get("/api/v1/status"))
        compact_size = len(get("/api/v1/status?compact=auto"))
        m50, m99 = latency("/metrics", 100)
        s50, s99 = latency("/api/v1/status", 100)
        c50, c99 = latency("/api/v1/status?compact=auto", 100)

        # Full resync: every object reconciled once more, queues drained.
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        before = get("/metrics").decode()
        done_before = metric_sum(before, "steward_reconcile_total", controller="service")
        t = time.monotonic()
        post_reconcile()
        services = servers * 11

        def resynced():
            text = get("/metrics").decode()
            done = metric_sum(text, "steward_reconcile_total", controller="service") - done_before
            depth = metric_sum(text, "steward_reconcile_queue_depth")
            return done >= services and depth == 0

        try:
            wait_for("a full resync", 600, resynced, 0.1)
            resync_s = time.monotonic() - t
        except SystemExit:
            resync_s = None  # not drained within 600 s: the table says so

        # A file change touching every server: a new release for the installation.
        installation = os.path.join(fleet, "installation.yaml")
        with open(installation) as f:
            text = f.read()
        since = time.time()
        with open(installation + ".tmp", "w") as f:
            f.write(text.replace('release: "6.12.1"', 'release: "6.12.2"'))
        os.rename(installation + ".tmp", installation)
        wait_for("the first agent call", 300, lambda: first_agent_call_after(log_path, since) is not None, 0.05)
        first_call = first_agent_call_after(log_path, since)
        # The peak covers the resync and the reload of every file with a change touching
        # every service, and the first 15 s of applying it.
        time.sleep(15)
        rss_peak = proc_status(pid, "VmHWM")
        return {
            "servers": servers,
            "services": services,
            "cold_s": cold,
            "cold_load": cold_load,
            "resync_s": resync_s,
            "rss_steady_mb": rss_steady / 1024,
            "rss_peak_mb": rss_peak / 1024,
            "rss_converge_peak_mb": peak_converge / 1024,
            "fds": fd_count,
            "cpu_pct": cpu,
            "steady_load": steady_load,
            "status_mb": status_size / 1e6,
            "compact_mb": compact_size / 1e6,
            "metrics_p50": m50,
            "metrics_p99": m99,
            "status_p50": s50,
            "status_p99": s99,
            "compact_p50": c50,
            "compact_p99": c99,
            "first_call_ms": first_call * 1000,
            "elapsed": time.monotonic() - started,
        }
    finally:
        stop(daemon, sim)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--steward", default="target/release/steward")
    parser.add_argument("--resync", default="2s", help="the daemon's --resync")
    parser.add_argument("--json", action="store_true", help="print each row as JSON too")
    args = parser.parse_args()
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        work = tempfile.mkdtemp(prefix=f"steward-sim-{size}-")
        try:
            row = run_size(os.path.abspath(args.steward), size, work, args.resync)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)
        print(f"{size} servers done in {row['elapsed']:.0f} s", file=sys.stderr, flush=True)

    header = ("servers", "services", "cold s", "resync s", "RSS MB", "peak MB", "fds",
              "CPU %", "status MB whole/compact", "/metrics p50/p99 ms", "/status p50/p99 ms",
              "compact /status p50/p99 ms", "change->call ms", "load")
    print(" | ".join(header))
    for r in rows:
        print(" | ".join([
            str(r["servers"]), str(r["services"]), f"{r['cold_s']:.1f}",
            "not drained" if r["resync_s"] is None else f"{r['resync_s']:.1f}",
            f"{r['rss_steady_mb']:.1f}", f"{r['rss_peak_mb']:.1f}", str(r["fds"]),
            f"{r['cpu_pct']:.1f}", f"{r['status_mb']:.2f}/{r['compact_mb']:.2f}",
            f"{r['metrics_p50']:.1f}/{r['metrics_p99']:.1f}",
            f"{r['status_p50']:.1f}/{r['status_p99']:.1f}",
            f"{r['compact_p50']:.1f}/{r['compact_p99']:.1f}",
            f"{r['first_call_ms']:.0f}", f"{r['cold_load']:.1f}/{r['steady_load']:.1f}",
        ]))
    for a, b in zip(rows, rows[1:]):
        slope = (b["rss_steady_mb"] - a["rss_steady_mb"]) * 1024 / (b["services"] - a["services"])
        fd_slope = (b["fds"] - a["fds"]) / (b["services"] - a["services"])
        print(f"per managed service, {a['servers']} -> {b['servers']} servers: "
              f"{slope:.2f} KB RSS, {fd_slope:.2f} fds")


if __name__ == "__main__":
    main()
