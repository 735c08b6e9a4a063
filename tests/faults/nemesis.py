"""The nemesis: one fault at a time, every few seconds, while the clients run.

Faults (the ones a cluster of one cannot have are left out for it):

  kill        kill -9 a node (the leader half of the time), restart it on the same data
              directory after a short downtime
  pause       SIGSTOP a node (the leader half of the time), SIGCONT it after a while
  partition   cut the cluster into a majority and a minority (the proxies reset the links
              and leave new connections hanging), heal after a while
  isolate     cut every link of the leader, heal after a while
  membership  CLUSTER.REMOVE a follower, wipe its data directory and start it again with
              --join through another member: it must come back as a new voter

After each fault the nemesis heals and waits (with a deadline) until the cluster has a
leader again, so that a cluster that cannot recover fails the run instead of wearing it out.
Every action is logged with its time, for the summary and for reading a failure.
"""

import random
import threading
import time

from conftest import RawError


class Nemesis(threading.Thread):
    def __init__(self, cluster, stop, seed, interval=(2.0, 4.0), hold=(0.5, 2.5),
                 recover_timeout=60.0):
        super().__init__(daemon=True, name="nemesis")
        self.cluster = cluster
        self.stop = stop
        self.rng = random.Random(seed)
        self.interval = interval
        self.hold = hold
        self.recover_timeout = recover_timeout
        self.faults = ["kill", "pause"]
        if cluster.clustered and len(cluster.nodes) >= 3:
            self.faults += ["partition", "isolate", "membership"]
        self.log = []               # (seconds since start, text)
        self.counts = {}
        self.t0 = time.monotonic()
        self.exception = None

    def note(self, text):
        self.log.append((round(time.monotonic() - self.t0, 2), text))

    def run(self):
        try:
            while not self.stop.wait(self.rng.uniform(*self.interval)):
                fault = self.rng.choice(self.faults)
                getattr(self, "_" + fault)()
                self.counts[fault] = self.counts.get(fault, 0) + 1
                self.heal()
        except Exception as e:      # surfaced by the test (a cluster that did not recover)
            self.exception = e
            self.note(f"nemesis failed: {e}")

    def _hold(self):
        self.stop.wait(self.rng.uniform(*self.hold))

    def _victim(self):
        """The leader half of the time, else any running node."""
        running = [n for n in self.cluster.running() if not n.paused]
        if self.rng.random() < 0.5:
            leader = self.cluster.leader_of()
            if leader is not None:
                return leader
        return self.rng.choice(running)

    def _kill(self):
        n = self._victim()
        self.note(f"kill -9 {n} (pid {n.pid})")
        n.kill9()
        self._hold()
        n.start()
        self.note(f"restarted {n} (pid {n.pid})")

    def _pause(self):
        n = self._victim()
        self.note(f"SIGSTOP {n}")
        n.pause()
        self._hold()
        n.resume()
        self.note(f"SIGCONT {n}")

    def _partition(self):
        nodes = list(self.cluster.nodes)
        self.rng.shuffle(nodes)
        minority = nodes[: (len(nodes) - 1) // 2]
        majority = nodes[len(minority):]
        self.note(f"partition {majority} | {minority}")
        self.cluster.net.partition(majority, minority)
        self._hold()

    def _isolate(self):
        leader = self.cluster.leader_of()
        if leader is None:
            return
        self.note(f"isolate leader {leader}")
        self.cluster.net.isolate(leader)
        self._hold()

    def _membership(self):
        leader = self.cluster.leader(timeout=self.recover_timeout)
        followers = [n for n in self.cluster.running() if n is not leader and not n.paused]
        if not followers:
            return
        victim = self.rng.choice(followers)
        info = victim.cluster_info()
        if info is None:
            return
        node_id = int(info["node_id"])
        reply = leader.cmd("CLUSTER.REMOVE", str(node_id), timeout=10)
        self.note(f"CLUSTER.REMOVE {node_id} ({victim}) on {leader}: {reply!r}")
        if isinstance(reply, RawError):
            return
        self.cluster.wait_for(lambda: node_id not in {
            int(v) for v in (self.cluster.infos([leader]).get(leader) or {}).get("voters", [])},
            self.recover_timeout, f"{victim} to leave the voters")
        victim.kill9()
        victim.wipe()
        victim.join = [self.rng.choice([n for n in self.cluster.nodes if n is not victim])
                       .proxy_address]
        victim.start()
        self.note(f"{victim} rejoining with a fresh data directory through {victim.join[0]}")
        self.cluster.wait_for(self.cluster.all_voters, self.recover_timeout,
                              f"{victim} to become a voter again")
        self.note(f"{victim} is a voter again")

    def heal(self):
        """Undoes every fault: links healed, nodes resumed and started; waits for a leader."""
        self.cluster.net.heal()
        for n in self.cluster.nodes:
            n.resume()
            if not n.alive():
                if n.proc is not None:          # died by itself: that is a finding
                    self.note(f"{n} exited by itself with {n.proc.returncode}")
                    n.exit_codes.append(("died", n.proc.returncode))
                    n.proc = None
                n.start()
        self.cluster.leader(timeout=self.recover_timeout)
