#!/usr/bin/env python3
"""Chaos test of how `pepita run` stops (issue 19): a run always stops, promptly, leaving nothing.

For each backend — local processes, a real `pepita worker` over loopback, workers submitted to
the local Slurm cluster (tests/slurm/local-cluster.sh) — it runs a job of short and long tasks
and injects, at a random moment drawn from a printed seed, one of: SIGINT, SIGTERM, two SIGINTs,
kill -9 of the driver, kill -9 of a worker, a network partition of a worker (a worker in its own
network namespace, its veth link cut; then SIGINT while cut). After each injection it checks:

  * the driver exited within its stop deadline (--stop-timeout) plus a small slack, with the
    right status: 130 for SIGINT, 143 for SIGTERM, 0 when it was a worker that failed;
  * no task process and no Slurm worker job of the run is left (pgrep, squeue);
  * after `pepita run --resume`, every task has exactly one successful result in the journal.

Usage: chaos.py --pepita BUILD/tools/pepita/pepita [--injections N] [--seed S] [--budget SECONDS]
       [--backends local,remote,slurm]. Env: CHAOS_INJECTIONS, CHAOS_SEED, CHAOS_BACKENDS, CHAOS_KEEP (keep each run's files).
Exit status 0 when every check passed (skipped backends are printed), 1 otherwise.
"""
import argparse
import hashlib
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
STOP_TIMEOUT = 4.0  # --stop-timeout given to every run
SLACK = 2.0  # process start/exit and our polling, on a loaded 2-core machine
SUCCEEDED = 0  # executor::Status::Succeeded
SHORT, LONG = 10, 3


def log(msg):
    print(msg, flush=True)


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, capture_output=True, text=True, **kw)


# ---- journal (src/fault/journal.cpp: 8-byte magic, then [u32 len][u32 crc][payload]) ----
# Formats 1 and 2 share the record prefix read here (format 2 appends output byte counts to
# Finished records). Format 3 (src/fault/detail/journal_format.hpp) puts a chain header before
# that same body: [u8 keyed][u64 sequence][32-byte previous hash][32-byte MAC if keyed]; its End
# record's body starts with type 4.
def journal_successes(path):
    """{task name: number of Finished records with status Succeeded}."""
    out = {}
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] not in (b"PEPJRNL1", b"PEPJRNL2", b"PEPJRNL3"):
        raise ValueError(f"{path}: not a pepita journal")
    chained = data[:8] == b"PEPJRNL3"
    pos = 8
    while pos + 8 <= len(data):
        n, _crc = struct.unpack_from("<II", data, pos)
        if pos + 8 + n > len(data):
            break  # torn tail (a kill -9 mid-append): the journal drops it too
        p = data[pos + 8 : pos + 8 + n]
        pos += 8 + n
        if chained:
            p = p[1 + 8 + 32 + (32 if p[0] == 1 else 0) :]
        rtype = p[0]
        if rtype not in (1, 2, 3):
            continue  # format 3's End record
        q = 1
        (ln,) = struct.unpack_from("<I", p, q)
        name = p[q + 4 : q + 4 + ln].decode()
        q += 4 + ln
        (ld,) = struct.unpack_from("<I", p, q)
        q += 4 + ld + 4  # spec digest, attempt
        if rtype == 3:  # Finished
            status = p[q]
            out.setdefault(name, 0)
            if status == SUCCEEDED:
                out[name] += 1
    return out



def driver_handles_stop_signals(proc):
    """Whether the driver has taken over SIGINT and SIGTERM (blocked for its signal thread, or
    caught), read from /proc/PID/status. Before that a signal kills the process by default — its
    C runtime (or a sanitizer's) is still starting, and no task has been launched — which is the
    kernel's behaviour, not pepita's, so chaos waits for this before it injects."""
    try:
        with open(f"/proc/{proc.pid}/status") as f:
            fields = dict(l.split(":", 1) for l in f if ":" in l)
    except OSError:
        return True  # it has exited: nothing to wait for
    mask = int(fields.get("SigBlk", "0").strip(), 16) | int(fields.get("SigCgt", "0").strip(), 16)
    wanted = (1 << (signal.SIGINT - 1)) | (1 << (signal.SIGTERM - 1))
    return mask & wanted == wanted

class Backend:
    name = "?"
    token = "?"  # a string in the command line of every task process of this backend

    def __init__(self, pepita, work):
        self.pepita, self.work = pepita, work

    def setup(self):
        return None  # or why it is skipped

    def teardown(self):
        pass

    def run_args(self, partitioned=False):
        return []

    def backend_line(self):
        return ""

    def workers_left(self):
        return []

    def kill_worker(self, rng):
        return False

    def partition(self, cut):
        return False

    def job(self, d):
        """Writes the job file: short tasks and long ones, the long ones with priority."""
        sleep = self.task_binary(d)
        lines = ['[job]\nname = "chaos"\n[pool]\nprocess_slots = 4\nkill_grace = 0.5\n']
        lines.append(
            f'[[task]]\nname = "long"\ncount = {LONG}\npriority = 5\ncommand = "{sleep}"\n'
            f'args = ["1.5"]\n{self.backend_line()}'
        )
        lines.append(
            f'[[task]]\nname = "short"\ncount = {SHORT}\ncommand = "{sleep}"\n'
            f'args = ["0.${{i}}"]\n{self.backend_line()}'
        )
        path = os.path.join(d, "job.toml")
        with open(path, "w") as f:
            f.write("\n".join(lines))
        return path

    def task_binary(self, d):
        # A symlink with our token in its name: its processes show it in their command line.
        link = os.path.join(self.work, "chaos-task-sleep")
        if not os.path.exists(link):
            os.symlink(shutil.which("sleep"), link)
        return link

    def tasks_left(self):
        return [f"{pid} {cmd}" for pid, cmd in ours(self.token)]

    def ready_to_inject(self, proc):
        return driver_handles_stop_signals(proc)


class Local(Backend):
    name = "local"

    def setup(self):
        # The executor runs it with argv[0] = its base name; CHAOS_RUN tells our runs apart.
        self.token = "chaos-task-sleep"


class Remote(Backend):
    """A real `pepita worker` on loopback; a second one in a network namespace for partitions."""

    name = "remote"

    def setup(self):
        self.key = os.path.join(self.work, "key")
        sh(f"{self.pepita} worker --gen-key {self.key}")
        # Shipped binaries run from the worker's blob cache under their SHA-256.
        with open(shutil.which("sleep"), "rb") as f:
            self.token = hashlib.sha256(f.read()).hexdigest()
        self.port = free_port()
        self.worker = None
        self.start_worker()
        self.netns = None
        if os.geteuid() == 0 and sh("ip netns add pepita-chaos").returncode == 0:
            ok = all(
                sh(c).returncode == 0
                for c in [
                    "ip link add pchaos0 type veth peer name pchaos1",
                    "ip link set pchaos1 netns pepita-chaos",
                    "ip addr add 10.213.251.1/30 dev pchaos0",
                    "ip link set pchaos0 up",
                    "ip netns exec pepita-chaos ip addr add 10.213.251.2/30 dev pchaos1",
                    "ip netns exec pepita-chaos ip link set pchaos1 up",
                    "ip netns exec pepita-chaos ip link set lo up",
                ]
            )
            self.netns = "pepita-chaos" if ok else None
        if self.netns is None:
            log("remote: no network namespace (needs root and iproute2): partitions skipped")
        return None

    def start_worker(self):
        self.worker = subprocess.Popen(
            [self.pepita, "worker", "--listen", f"127.0.0.1:{self.port}", "--key", self.key,
             "--slots", "4", "--cache", os.path.join(self.work, "cache")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port("127.0.0.1", self.port)

    def start_ns_worker(self):
        self.ns_worker = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, self.pepita, "worker", "--listen",
             "10.213.251.2:7071", "--key", self.key, "--slots", "4", "--cache",
             os.path.join(self.work, "cache-ns")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port("10.213.251.2", 7071)

    def teardown(self):
        for w in [self.worker, getattr(self, "ns_worker", None)]:
            if w and w.poll() is None:
                w.send_signal(signal.SIGINT)
                try:
                    w.wait(10)
                except subprocess.TimeoutExpired:
                    w.kill()
        if self.netns:
            sh("ip link del pchaos0")
            sh("ip netns del pepita-chaos")

    def run_args(self, partitioned=False):
        args = ["--worker", f"127.0.0.1:{self.port}", "--key", self.key]
        if partitioned:
            args = ["--worker", "10.213.251.2:7071", "--key", self.key]
        return args

    def backend_line(self):
        return 'backend = "remote"\n'

    def kill_worker(self, rng):
        self.worker.kill()
        self.worker.wait()
        time.sleep(rng.uniform(0.1, 1.0))
        self.start_worker()  # the driver redials the same address
        return True

    def partition(self, cut):
        state = "down" if cut else "up"
        return sh(f"ip netns exec {self.netns} ip link set pchaos1 {state}").returncode == 0


class Slurm(Backend):
    """Worker jobs on the local one-node Slurm cluster (started here unless SLURM_CONF works)."""

    name = "slurm"

    def setup(self):
        with open(shutil.which("sleep"), "rb") as f:
            self.token = hashlib.sha256(f.read()).hexdigest()
        self.cluster = None
        if os.environ.get("SLURM_CONF") and sh("sinfo -h").returncode == 0:
            return None
        if os.geteuid() != 0 or not shutil.which("slurmctld"):
            return "needs root and Slurm's packages (slurmctld, slurmd, munge)"
        self.cluster = os.path.join(self.work, "cluster")
        # Output to a file, not a pipe: munged, started by the script, keeps its descriptors.
        out = os.path.join(self.work, "cluster-start.log")
        with open(out, "w") as f:
            r = subprocess.run([f"{ROOT}/tests/slurm/local-cluster.sh", "start", self.cluster],
                               stdout=f, stderr=subprocess.STDOUT, timeout=60)
        if r.returncode != 0:
            with open(out) as f:
                return "local-cluster.sh start failed: " + f.read().strip()[-300:]
        os.environ["SLURM_CONF"] = os.path.join(self.cluster, "slurm.conf")
        return None

    def teardown(self):
        if self.cluster:
            subprocess.run([f"{ROOT}/tests/slurm/local-cluster.sh", "stop", self.cluster],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)

    def run_args(self, partitioned=False):
        return ["--slurm", "--nodes", "2", "--cpus-per-worker", "1", "--driver-address",
                "127.0.0.1"]

    def backend_line(self):
        return 'backend = "remote"\n'

    def workers_left(self):
        r = sh("squeue -h -n pepita-worker -o '%i %T'")
        return [l for l in r.stdout.splitlines() if l.strip()]

    def ready_to_inject(self, proc):
        # Inject once a worker job runs (before that, the moment is only "submitting").
        return driver_handles_stop_signals(proc) and any(
            "RUNNING" in l for l in self.workers_left())

    def kill_worker(self, rng):
        pids = [pid for pid, _ in ours("worker --connect")]
        if not pids:
            return False
        try:
            os.kill(rng.choice(pids), signal.SIGKILL)
        except ProcessLookupError:
            return False
        return True


def ours(pattern):
    """(pid, command line) of the processes matching `pattern` that this chaos run started —
    they carry CHAOS_RUN in their environment (Slurm jobs get the driver's) — so that other
    users of the machine, and their Slurm clusters, are left alone."""
    mark = ("CHAOS_RUN=" + os.environ["CHAOS_RUN"]).encode()
    out = []
    r = sh(f"pgrep -f -- '{pattern}'")
    for pid in (int(p) for p in r.stdout.split()):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if mark not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if pid != os.getpid():
            out.append((pid, cmd))
    return out


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(host, port, timeout=10):
    until = time.time() + timeout
    while time.time() < until:
        try:
            socket.create_connection((host, port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def wait_exit(proc, timeout):
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


def eventually(fn, timeout, step=0.1):
    until = time.time() + timeout
    while True:
        v = fn()
        if not v or time.time() >= until:
            return v
        time.sleep(step)


INJECTIONS = ["sigint", "sigterm", "double-sigint", "kill9-driver", "kill9-worker", "partition"]


class Chaos:
    def __init__(self, args):
        self.args = args
        self.counts = dict(injections=0, hangs=0, leftovers=0, lost=0, wrong_status=0, skipped=0,
                           orphans_of_kill9=0, worker_jobs_of_kill9=0)
        self.failures = []
        self.procs = []  # drivers of the current injection, killed if still running at its end

    def fail(self, kind, what):
        self.failures.append(what)
        log("  FAIL " + what)
        if kind:
            self.counts[kind] += 1

    def driver(self, be, d, job, resume=False, partitioned=False):
        cmd = [self.args.pepita, "run", "-q", "--json", "--state-dir", os.path.join(d, "state"),
               "--stop-timeout", str(STOP_TIMEOUT)] + be.run_args(partitioned) + (
                   ["--resume"] if resume else []) + [job]
        # Its own session: signals reach only the driver, as `kill PID` would; never through a
        # shell's background job (which POSIX lets ignore SIGINT).
        p = subprocess.Popen(cmd, stdout=open(os.path.join(d, "out.json"), "w"),
                             stderr=open(os.path.join(d, "err.txt"), "a"),
                             start_new_session=True, restore_signals=True)
        self.procs.append(p)
        return p

    def one(self, be, rng, n):
        kinds = ["sigint", "sigterm", "double-sigint", "kill9-driver"]
        if be.name != "local":
            kinds.append("kill9-worker")
        if be.name == "remote" and be.netns:
            kinds.append("partition")
        kind = rng.choice(kinds)
        d = tempfile.mkdtemp(prefix=f"inj{n}-", dir=be.work)
        job = be.job(d)
        partitioned = kind == "partition"
        if partitioned and getattr(be, "ns_worker", None) is None:
            be.start_ns_worker()
        proc = self.driver(be, d, job, partitioned=partitioned)
        t0 = time.time()
        # Wait until the backend is up (Slurm jobs running), then a random moment of the run:
        # queued, leasing, leased, running or finishing.
        eventually(lambda: proc.poll() is None and not be.ready_to_inject(proc), 60)
        delay = rng.uniform(0, 2.0)
        time.sleep(delay)
        expect = {0}
        last_signal = time.time()
        bound = STOP_TIMEOUT + SLACK
        desc = f"#{n} {be.name} {kind} at {time.time() - t0:.2f}s"
        if kind == "sigint":
            proc.send_signal(signal.SIGINT)
            expect = {130, 0}  # 0: the run had already finished
        elif kind == "sigterm":
            proc.send_signal(signal.SIGTERM)
            expect = {143, 0}
        elif kind == "double-sigint":
            proc.send_signal(signal.SIGINT)
            time.sleep(rng.uniform(0, 0.3))
            proc.send_signal(signal.SIGINT)
            last_signal = time.time()
            bound = SLACK  # the second one exits at once
            expect = {130, 0}
        elif kind == "kill9-driver":
            proc.kill()
            expect = {-9, 0}
        elif kind == "kill9-worker":
            if not be.kill_worker(rng):
                desc += " (no worker to kill yet)"
            bound = 90  # the run goes on elsewhere: it must finish, not stop
            expect = {0}
        elif kind == "partition":
            be.partition(True)
            time.sleep(rng.uniform(0.2, 1.5))
            proc.send_signal(signal.SIGINT)  # the cancel cannot reach the worker
            last_signal = time.time()
            expect = {130, 0}
        rc = wait_exit(proc, bound + (last_signal - time.time()) if kind != "kill9-worker" else bound)
        took = time.time() - last_signal
        if partitioned:
            be.partition(False)
        self.counts["injections"] += 1
        if rc is None:
            proc.kill()
            proc.wait()
            self.fail("hangs", f"{desc}: driver still running {bound:.1f}s after the signal "
                      f"(seed {self.args.seed}); stderr: {tail(d)}")
            self.cleanup(be)
            return
        if rc not in expect:
            self.fail("wrong_status", f"{desc}: exit status {rc}, expected {sorted(expect)}; "
                      f"stderr: {tail(d)}")
        if kind.startswith("kill9"):
            # SIGKILL gives pepita no chance to stop what that process started: its task
            # processes (own process groups) run out on their own. Counted, not hidden.
            orphans = len(be.tasks_left())
            self.counts["orphans_of_kill9"] += orphans
            if orphans:
                desc += f" ({orphans} orphaned task processes)"
        left = eventually(be.tasks_left, 3.0 if kind.startswith("kill9") else 0.5)
        jobs = []
        if kind == "kill9-driver":
            # Nobody could scancel them: the next run in the state dir (--resume) does.
            self.counts["worker_jobs_of_kill9"] += len(be.workers_left())
        elif kind != "kill9-worker":
            jobs = eventually(be.workers_left, 10.0)
        if left or jobs:
            self.fail("leftovers", f"{desc}: left behind: {left + jobs}")
            self.cleanup(be)
        # Resume to the end: every task exactly one successful result in the journal.
        r = self.driver(be, d, job, resume=True)
        rc2 = wait_exit(r, 120)
        if rc2 is None:
            r.kill()
            self.fail("hangs", f"{desc}: the --resume run did not finish in 120 s; {tail(d)}")
            return
        if rc2 != 0:
            self.fail("lost", f"{desc}: --resume exited {rc2}: {tail(d)}")
        try:
            ok = journal_successes(os.path.join(d, "state", "journal"))
        except (OSError, ValueError) as e:
            self.fail("lost", f"{desc}: journal unreadable: {e}")
            return
        names = [f"long-{i}" for i in range(LONG)] + [f"short-{i}" for i in range(SHORT)]
        bad = {t: ok.get(t, 0) for t in names if ok.get(t, 0) != 1}
        if bad:
            self.fail("lost", f"{desc}: successful results per task not 1: {bad}")
        left = eventually(be.tasks_left, 3.0) + eventually(be.workers_left, 10.0)
        if left:
            self.fail("leftovers", f"{desc}: left behind after --resume: {left}")
            self.cleanup(be)
        log(f"  ok {desc}: exit {rc} {took:.2f}s after the signal"
            if not self.failures or not self.failures[-1].startswith(desc)
            else f"  -- {desc}")
        if not os.environ.get("CHAOS_KEEP"):
            shutil.rmtree(d, ignore_errors=True)

    def cleanup(self, be):
        for pid, _ in ours(be.token):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if be.name == "slurm":
            sh("scancel -n pepita-worker")  # our cluster only (SLURM_CONF)


def tail(d):
    try:
        with open(os.path.join(d, "err.txt")) as f:
            return f.read()[-600:].replace("\n", " | ")
    except OSError:
        return "(no stderr)"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pepita", required=True)
    ap.add_argument("--injections", type=int, default=int(os.environ.get("CHAOS_INJECTIONS", 200)))
    ap.add_argument("--seed", type=int, default=int(os.environ.get("CHAOS_SEED", 0)) or None)
    ap.add_argument("--budget", type=float, default=float(os.environ.get("CHAOS_BUDGET", 0)),
                    help="seconds; start no injection after this (0: no limit)")
    ap.add_argument("--backends", default=os.environ.get("CHAOS_BACKENDS", "local,remote,slurm"))
    args = ap.parse_args()
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 2**31)
    args.pepita = os.path.abspath(args.pepita)
    log(f"chaos: seed {args.seed} (rerun with --seed {args.seed} or CHAOS_SEED={args.seed}), "
        f"{args.injections} injections over {args.backends}")
    rng = random.Random(args.seed)
    work = tempfile.mkdtemp(prefix="pepita-chaos-")
    os.chmod(work, 0o755)  # slurmctld (user slurm) keeps its state under it
    os.environ["CHAOS_RUN"] = work  # inherited by drivers, workers, worker jobs and tasks
    chaos = Chaos(args)
    backends = []
    for name in args.backends.split(","):
        cls = {"local": Local, "remote": Remote, "slurm": Slurm}[name]
        be = cls(args.pepita, os.path.join(work, name))
        os.makedirs(be.work, mode=0o755)
        why = be.setup()
        if why:
            log(f"chaos: {name} backend skipped: {why}")
            chaos.counts["skipped"] += 1
            continue
        backends.append(be)
    t0 = time.time()
    try:
        for n in range(args.injections):
            if args.budget and time.time() - t0 > args.budget:
                log(f"chaos: time budget of {args.budget:.0f}s spent after {n} injections")
                break
            try:
                chaos.one(backends[n % len(backends)], rng, n)
            except Exception as e:  # a harness error is a failure, never a silent pass
                chaos.fail(None, f"#{n}: harness error {e!r}")
            finally:
                for p in chaos.procs:
                    if p.poll() is None:
                        p.kill()
                        p.wait()
                chaos.procs.clear()
    finally:
        for be in backends:
            be.teardown()
        if os.environ.get("CHAOS_KEEP"):
            log(f"chaos: CHAOS_KEEP set: injection directories kept under {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    c = chaos.counts
    log(f"chaos: seed {args.seed}: {c['injections']} injections in {time.time() - t0:.0f}s over "
        f"{', '.join(b.name for b in backends)}: hangs = {c['hangs']}, leftovers = "
        f"{c['leftovers']}, results lost = {c['lost']}, wrong exit status = {c['wrong_status']}; "
        f"task processes orphaned by a kill -9 (ended on their own within 3 s): "
        f"{c['orphans_of_kill9']}; worker jobs left by a kill -9 of the driver (scancelled by "
        f"its --resume): {c['worker_jobs_of_kill9']}")
    return 1 if chaos.failures or not backends else 0


if __name__ == "__main__":
    sys.exit(main())
