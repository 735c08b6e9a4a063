"""One fault run, in phases: clients (and a mirror, and a nemesis) start, run, stop; then the
final reads, the checks, a summary and the list of problems found.

tests/test_cluster_faults.py drives it for the real run, and also with a deliberately broken
node (its data directory rolled back) to prove that the checks catch what they claim to.
"""

import json
import resource
import subprocess
import threading
import time

from cluster_util import as_map
from conftest import wait_until
from faults.mirror import MirrorFollower
from faults.nemesis import Nemesis
from faults.workload import (Client, History, KeySpace, count_lost_writes, count_stale_reads,
                             final_reads)


def run_checker(checker, history_path, workdir):
    """Runs the Go checker; returns (exit code, its JSON summary with its wall seconds and
    the peak RSS of the largest child process so far, the checker being the largest)."""
    start = time.monotonic()
    proc = subprocess.Popen([str(checker), "-html-dir", str(workdir / "porcupine"),
                             str(history_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    out, err = proc.communicate(timeout=900)
    if proc.returncode == 3 or not out.strip():
        raise AssertionError(f"checker failed ({proc.returncode}): {err}")
    verdict = json.loads(out)
    verdict["seconds"] = round(time.monotonic() - start, 2)
    verdict["max_child_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
    return proc.returncode, verdict


class RunFailed(AssertionError):
    pass


class FaultRun:
    def __init__(self, cluster, checker, seed, clients=6, mirror=True, nemesis=True):
        self.cluster = cluster
        self.checker = checker
        self.seed = seed
        self.workdir = cluster.workdir
        self.history = History()
        self.keyspace = KeySpace()
        self.clients_stop, self.faults_stop, self.mirror_stop = (threading.Event()
                                                                 for _ in range(3))
        self.clients = [Client(i, cluster, self.keyspace, self.history, self.clients_stop,
                               seed + i) for i in range(clients)]
        self.mirror = MirrorFollower(cluster, self.mirror_stop) if mirror else None
        self.nemesis = Nemesis(cluster, self.faults_stop, seed) if nemesis else None
        self.started = None

    # -- phases ------------------------------------------------------------------------

    def start(self):
        self.started = time.monotonic()
        for t in self.clients + [self.mirror, self.nemesis]:
            if t is not None:
                t.start()

    def wait_ops(self, n, timeout=60):
        """Waits until n more operations have completed (progress, not time, is awaited)."""
        target = len(self.history.ops) + n
        try:
            wait_until(lambda: len(self.history.ops) >= target, timeout=timeout,
                       what=f"{n} more operations")
        except AssertionError as e:
            self.fail(str(e))

    def stop_nemesis(self):
        """Stops injecting faults, heals everything and waits for a leader."""
        if self.nemesis is None:
            return
        self.faults_stop.set()
        self.nemesis.join(300)      # a membership change in progress has 4 waits of 60 s
        if self.nemesis.is_alive() or self.nemesis.exception:
            self.fail(f"the cluster did not recover from a fault: {self.nemesis.exception!r}")
        self.nemesis.heal()

    def stop_clients(self):
        self.clients_stop.set()
        for t in self.clients:
            t.join(30)
        hung = [t.name for t in self.clients if t.is_alive()]
        crashed = [(t.name, t.exception) for t in self.clients if t.exception]
        if hung or crashed:
            self.fail(f"clients hung {hung} or crashed {crashed}")

    def fail(self, text):
        self.write_files()
        log = self.nemesis.log if self.nemesis else []
        raise RunFailed(f"{text}\nseed {self.seed}; files in {self.workdir}\ncluster now:\n"
                        f"{self.cluster.describe()}\nlast faults:\n" +
                        "\n".join(f"{t:8.2f}s {e}" for t, e in log[-15:]))

    def write_files(self):
        self.history.write(self.workdir / "history.jsonl")
        if self.nemesis:
            (self.workdir / "nemesis.log").write_text(
                "\n".join(f"{t:8.2f}s {e}" for t, e in self.nemesis.log))

    # -- the checks --------------------------------------------------------------------

    def check(self):
        """Final reads, mirror convergence, the checker and the counts. Returns
        (summary paragraph, problems, report dict)."""
        finals = final_reads(self.cluster, self.history, len(self.clients),
                             self.keyspace.all_keys())
        if finals is None:
            self.fail("no node answered the final reads")
        mirror_state, mirror_rev, room_rev, mirror_diff = {}, None, None, {}
        if self.mirror is not None:
            # The mirror must catch up with the room's last write, then equal the finals.
            leader = self.cluster.leader()
            room_rev = int(as_map(leader.cmd("ROOM.INFO"))["revision"])
            try:
                wait_until(lambda: (self.mirror.snapshot()[1] or 0) >= room_rev, timeout=60,
                           what=f"the mirror to reach revision {room_rev}")
            except AssertionError as e:
                self.fail(f"{e}; mirror at {self.mirror.snapshot()[1]}")
            self.mirror_stop.set()
            self.mirror.join(30)
            mirror_state, mirror_rev = self.mirror.snapshot()
            expected = {k: v for k, v in finals.items() if v is not None}
            mirror_diff = {k: (mirror_state.get(k), v) for k, v in expected.items()
                           if mirror_state.get(k) != v}
            mirror_diff.update({k: (v, None) for k, v in mirror_state.items()
                                if k not in expected})

        self.write_files()
        code, verdict = run_checker(self.checker, self.workdir / "history.jsonl", self.workdir)
        stale = count_stale_reads(self.history.ops)
        lost = count_lost_writes(self.history.ops, finals)
        ok, unknown, failed = self.history.counts()
        # A node that exits by itself is a finding, unless a crash failpoint did it (137).
        crash_failpoints = "crash" in self.cluster.env.get("DISTRI_FAILPOINTS", "")
        died = [(n, c) for n in self.cluster.nodes for how, c in n.exit_codes
                if how == "died" and not (crash_failpoints and c == 137)]
        errors = {}
        for c in self.clients:
            for k, v in c.errors.items():
                errors[k] = errors.get(k, 0) + v
        faults = self.nemesis.counts if self.nemesis else {}
        seconds = round(time.monotonic() - self.started)
        m = self.mirror
        report = dict(seed=self.seed, nodes=len(self.cluster.nodes), seconds=seconds,
                      ops=len(self.history.ops), ok=ok, unknown=unknown, failed=failed,
                      errors=errors, faults=faults,
                      client_moves=sum(c.moves for c in self.clients),
                      linearizable=verdict["linearizable"], checker_exit=code,
                      checker_seconds=verdict["seconds"],
                      checker_max_child_rss_mb=verdict["max_child_rss_mb"],
                      stale_reads=len(stale), lost_writes=len(lost))
        if m is not None:
            report.update(mirror_sessions=m.sessions, mirror_resumes=m.resumes,
                          mirror_snapshots=m.snapshots, mirror_changes=m.changes,
                          mirror_revision=mirror_rev, room_revision=room_rev,
                          mirror_violations=len(m.violations))
        (self.workdir / "summary.json").write_text(json.dumps(report, indent=1))

        lin = "linearizable" if verdict["linearizable"] else "NOT LINEARIZABLE"
        summary = (f"Fault run ({report['nodes']} node(s), {seconds} s, seed {self.seed}): "
                   f"{len(self.history.ops)} operations ({ok} ok, {unknown} unknown, {failed} "
                   f"failed; errors {errors}), faults {faults}, clients moved "
                   f"{report['client_moves']} times; checker: {lin} ({verdict['ops']} ops "
                   f"checked, {verdict['unknown']} pending, {verdict['seconds']} s); stale reads "
                   f"{len(stale)}, lost acknowledged writes {len(lost)}")
        if m is not None:
            copy = "equal" if not mirror_diff else "DIFFERENT"
            summary += (f"; mirror: {m.sessions} sessions ({m.resumes} resumed, {m.snapshots} "
                        f"by snapshot), {m.changes} changes, {len(m.violations)} violations, "
                        f"ends at revision {mirror_rev} = room {room_rev}, copy {copy}")
        summary += "."

        problems = []
        if code != 0 or not verdict["linearizable"]:
            bad = {k: v for k, v in verdict["keys"].items() if v["result"] != "Ok"}
            problems.append(f"history not linearizable (exit {code}): {bad}")
        if stale:
            problems.append(f"{len(stale)} stale reads, first: {stale[:3]}")
        if lost:
            problems.append(f"{len(lost)} acknowledged writes lost: {lost[:5]}")
        if m is not None and m.violations:
            problems.append(f"mirror violations: {m.violations[:5]}")
        if m is not None and m.exception:
            problems.append(f"mirror client crashed: {m.exception!r}")
        if mirror_diff:
            problems.append(f"mirror copy differs from the final state (mirror, final): "
                            f"{dict(list(mirror_diff.items())[:5])}")
        if died:
            problems.append(f"nodes exited on their own: {died}")
        return summary, problems, report
