"""A private single-node Slurm cluster for the tests (test_slurm.py): munged, slurmctld and slurmd
started as root with their configuration, sockets, spool and state in a temporary folder and a
free, non-default port pair, so that they touch nothing of the machine's own setup (and two test
runs on one machine do not collide). ProctrackType=proctrack/linuxproc and TaskPlugin=task/none
need neither cgroups nor systemd. tools/setup_slurm.sh installs the Debian packages.
"""
import os
import random
import shutil
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "scontrol", "sinfo")


def why_unavailable():
    """None when a cluster can be started here, else the reason."""
    if os.geteuid() != 0:
        return "Slurm tests start slurmctld/slurmd as root; not root here"
    missing = [d for d in DAEMONS if not shutil.which(d, path=os.environ.get("PATH", "") + ":/usr/sbin")]
    if missing:
        return f"Slurm/munge not installed (missing {', '.join(missing)}; run tools/setup_slurm.sh)"
    return None


def _free_port_pair():
    for _ in range(200):
        p = random.randrange(20000, 60000, 2)
        try:
            for q in (p, p + 1):
                with socket.socket() as s:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind(("", q))
            return p
        except OSError:
            continue
    raise RuntimeError("no free port pair for slurmctld/slurmd")


def _node_line(host):
    """This machine's CPUs and memory as slurmd reports them (slurmd -C), memory rounded down."""
    r = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, timeout=30)
    words = [w for w in r.stdout.split("\n")[0].split() if "=" in w]
    cfg = dict(w.split("=", 1) for w in words)
    mem = int(cfg.get("RealMemory", "1000")) * 9 // 10
    keep = ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore")
    return f"NodeName={host} NodeAddr=127.0.0.1 " + " ".join(f"{k}={cfg[k]}" for k in keep if k in cfg) + \
        f" RealMemory={mem} State=UNKNOWN"


class Cluster:
    def __init__(self, d):
        self.d = Path(d)
        self.env = dict(os.environ, SLURM_CONF=str(self.d / "slurm.conf"),
                        PATH=os.environ.get("PATH", "") + ":/usr/sbin")
        self.sock = self.d / "munge.sock"
        self.pids = []

    def conf(self):
        host = socket.gethostname().split(".")[0]
        port, d = _free_port_pair(), self.d
        for sub in ("state", "spool", "log"):
            (d / sub).mkdir(exist_ok=True)
        (d / "slurm.conf").write_text(f"""\
ClusterName=lpetest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={port}
SlurmdPort={port + 1}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.sock}
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
MailProg=/bin/true
InactiveLimit=0
MinJobAge=600
KillWait=2
{_node_line(host)}
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")

    def run(self, *cmd, check=True, timeout=60):
        r = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, env=self.env,
                           timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(map(str, cmd))}: exit {r.returncode}\n{r.stdout}{r.stderr}")
        return r

    def start(self):
        """Start the daemons; returns None, or why it failed (the daemons' logs included)."""
        d = self.d
        key = d / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        self.conf()
        try:
            self.run("munged", "--force", f"--socket={self.sock}", f"--key-file={key}",
                     f"--log-file={d}/log/munged.log", f"--pid-file={d}/munged.pid",
                     f"--seed-file={d}/munged.seed")
            self.run("slurmctld", "-c", "-f", d / "slurm.conf")
            self.run("slurmd", "-f", d / "slurm.conf")
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
            return f"Slurm did not start: {e}"
        t0 = time.time()
        while time.time() - t0 < 60:
            r = self.run("sinfo", "-h", "-o", "%T", check=False)
            if r.returncode == 0 and r.stdout.strip() == "idle":
                return None
            time.sleep(0.5)
        logs = "".join((d / "log" / f).read_text()[-2000:] for f in ("slurmctld.log", "slurmd.log")
                       if (d / "log" / f).exists())
        return f"Slurm started but its node never became idle:\n{logs}"

    def _pid(self, name):
        try:
            return int((self.d / f"{name}.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self):
        pids = [p for p in (self._pid("slurmctld"), self._pid("slurmd")) if p]
        self.run("scontrol", "shutdown", check=False)
        t0 = time.time()
        while time.time() - t0 < 15 and any(_alive(p) for p in pids):
            time.sleep(0.2)
        munge = self._pid("munged")
        self.run("munged", "--stop", f"--socket={self.sock}", check=False)
        for p in pids + ([munge] if munge else []):  # our own daemons only, by their pid files
            if _alive(p):
                time.sleep(1)
            if _alive(p):
                os.kill(p, 9)

    # ---- jobs -----------------------------------------------------------------------------

    def wait(self, *ids, timeout=240):
        """Until none of the jobs (array or not) is pending or running."""
        t0 = time.time()
        while time.time() - t0 < timeout:
            r = self.run("squeue", "-h", "-j", ",".join(map(str, ids)), "-o", "%i", check=False)
            if r.returncode == 0 and not r.stdout.strip():
                return
            time.sleep(0.5)
        raise TimeoutError(f"jobs {ids} still queued after {timeout} s:\n"
                           + self.run("squeue", check=False).stdout)

    def state(self, job):
        r = self.run("scontrol", "-o", "show", "job", job, check=False)
        for w in r.stdout.split():
            if w.startswith("JobState="):
                return w.split("=", 1)[1]
        return "GONE"


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False
