"""A one-node Slurm cluster in a temporary folder, for tests/test_slurm.py.

Debian's slurm-wlm and munge packages, run as root without cgroups: a munged of our own (its own socket, started with
--force because the package's log folder ownership makes it refuse otherwise), slurmctld and slurmd on free ports,
every state, spool, log and pid file under the folder. The daemons are stopped by the PIDs in their pid files.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "sinfo", "scancel", "scontrol")
SBIN = ("/usr/sbin", "/sbin")          # where Debian puts the daemons; not always on a user's PATH
INSTALL = "apt-get install -y slurm-wlm munge"
MUNGE_KEY = Path("/etc/munge/munge.key")
START_TIMEOUT = 60.0                   # for the node to come up idle
STOP_TIMEOUT = 15.0                    # for a daemon to exit after SIGTERM, before SIGKILL


class ClusterProblem(Exception):
    """The cluster could not be set up; the message says what to install or look at."""


def find(program: str) -> str | None:
    return shutil.which(program) or next((f"{d}/{program}" for d in SBIN if os.access(f"{d}/{program}", os.X_OK)),
                                         None)


def missing_programs() -> list[str]:
    return [program for program in DAEMONS + CLIENTS if find(program) is None]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _node_line() -> str:
    """slurmd's own view of this machine (CPUs, sockets, memory), so the node is never drained for a mismatch."""
    described = subprocess.run([find("slurmd"), "-C"], capture_output=True, text=True, timeout=60)
    line = next((l for l in described.stdout.splitlines() if l.startswith("NodeName=")), None)
    if line is None:
        raise ClusterProblem(f"`slurmd -C` did not describe this machine: {described.stdout}{described.stderr}")
    return line


class Cluster:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.conf = self.root / "slurm.conf"
        self.munge_socket = self.root / "munge" / "munge.socket"
        self.pid_files = {"munged": self.root / "munge" / "munged.pid",
                          "slurmctld": self.root / "slurmctld.pid", "slurmd": self.root / "slurmd.pid"}
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    def write_conf(self) -> None:
        host = socket.gethostname().split(".")[0]
        for folder in ("state", "spool", "munge"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        settings = {
            "ClusterName": "backpropninjatest", "SlurmctldHost": host,
            "SlurmctldPort": _free_port(), "SlurmdPort": _free_port(),
            "SlurmUser": "root", "SlurmdUser": "root",
            "AuthType": "auth/munge", "CredType": "cred/munge", "AuthInfo": f"socket={self.munge_socket}",
            "StateSaveLocation": self.root / "state", "SlurmdSpoolDir": self.root / "spool",
            "SlurmctldPidFile": self.pid_files["slurmctld"], "SlurmdPidFile": self.pid_files["slurmd"],
            "SlurmctldLogFile": self.root / "slurmctld.log", "SlurmdLogFile": self.root / "slurmd.log",
            "ProctrackType": "proctrack/linuxproc", "TaskPlugin": "task/none",
            "JobAcctGatherType": "jobacct_gather/none", "MpiDefault": "none",
            "SchedulerType": "sched/builtin", "SelectType": "select/cons_tres", "SelectTypeParameters": "CR_Core",
            "ReturnToService": 2,
        }
        lines = [f"{name}={value}" for name, value in settings.items()]
        lines += [_node_line(), f"PartitionName=main Nodes={host} Default=YES State=UP MaxTime=INFINITE"]
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        if os.geteuid() != 0:
            raise ClusterProblem("the one-node Slurm cluster runs its daemons as root; run this test as root (CI "
                                 "does)")
        if not MUNGE_KEY.is_file():
            raise ClusterProblem(f"{MUNGE_KEY} is missing; reinstall munge ({INSTALL})")
        self.write_conf()
        munge = self.root / "munge"
        self._run([find("munged"), "--force", f"--socket={self.munge_socket}", f"--pid-file={self.pid_files['munged']}",
                   f"--log-file={munge / 'munged.log'}", f"--seed-file={munge / 'munged.seed'}"], "munged")
        self._run([find("slurmctld"), "-f", str(self.conf)], "slurmctld")
        self._run([find("slurmd"), "-f", str(self.conf)], "slurmd")
        self._wait_for_idle_node()

    def _run(self, command: list[str], name: str) -> None:
        started = subprocess.run(command, capture_output=True, text=True, env=self.env, timeout=60)
        if started.returncode != 0:
            raise ClusterProblem(f"{name} did not start ({started.returncode}): {started.stderr.strip()}\n"
                                 f"{self.logs()}")
        deadline = time.monotonic() + START_TIMEOUT
        while self.pid(name) is None:  # a daemon writes its pid file once it has forked
            if time.monotonic() > deadline:
                raise ClusterProblem(f"{name} wrote no pid file at {self.pid_files[name]}\n{self.logs()}")
            time.sleep(0.1)

    def _wait_for_idle_node(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        state = ""
        while time.monotonic() < deadline:
            state = self.client("sinfo", "-h", "-o", "%T", check=False).stdout.strip()
            if state == "idle":
                return
            time.sleep(0.5)
        raise ClusterProblem(f"the node is not idle after {START_TIMEOUT:.0f} s (sinfo says {state!r})\n{self.logs()}")

    def client(self, program: str, *args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        done = subprocess.run([find(program), *args], capture_output=True, text=True, env=self.env, timeout=60,
                              **kwargs)
        if check and done.returncode != 0:
            raise ClusterProblem(f"{program} {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
        return done

    def jobs_left(self, job_ids: list[str]) -> list[str]:
        listed = self.client("squeue", "-h", "-o", "%i %T", "-j", ",".join(job_ids), check=False)
        return listed.stdout.split("\n") if listed.stdout.strip() else []

    def wait_for(self, job_ids: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.jobs_left(job_ids):
            if time.monotonic() > deadline:
                raise ClusterProblem(f"jobs {job_ids} still queued or running after {timeout:.0f} s: "
                                     f"{self.jobs_left(job_ids)}\n{self.logs()}")
            time.sleep(1.0)

    def pid(self, name: str) -> int | None:
        try:
            return int(self.pid_files[name].read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self, job_ids: list[str] = ()) -> None:
        """Cancel our jobs, then stop the daemons by their pid files (slurmd first, munged last)."""
        if job_ids and self.pid("slurmctld"):
            self.client("scancel", *job_ids, check=False)
            try:
                self.wait_for(list(job_ids), STOP_TIMEOUT)
            except ClusterProblem:
                pass  # stopping the daemons below is what matters now
        for name in ("slurmd", "slurmctld", "munged"):
            pid = self.pid(name)
            if pid is not None:
                _stop_process(pid)

    def logs(self) -> str:
        parts = []
        for log in sorted(self.root.rglob("*.log")) + sorted(self.root.rglob("*.out")):
            text = log.read_text(errors="replace")
            parts.append(f"--- {log.name} (last lines)\n" + "\n".join(text.splitlines()[-15:]))
        return "\n".join(parts)


def _stop_process(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _alive(pid: int) -> bool:
    """Running, and not a zombie waiting for a parent that may never reap it (PID 1 of some containers)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status
