"""Sweeps whose workers are a Slurm job array, against a real single-node Slurm cluster on localhost.

The cluster (Debian's slurm-wlm and munge; .ci/run installs them) runs as root in a temp dir with its own
munge key and socket, ports and state; the tests that need it are skipped, saying why, where the binaries
are missing or the daemons do not start.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.execute.signals import handle_signals
from orchestrator.execute.slurm import (
    SlurmError,
    TaskStopped,
    _parse_tasks,
    array_tasks,
    parse_time,
)
from orchestrator.execute.workqueue import WorkQueue, find_sweep_queue, open_storage, sweep_status
from tests.orchestrator_tests.execute_tests import test_distributed as dist

REPO = Path(__file__).resolve().parents[3]
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "squeue", "scancel", "sinfo")

postgres_url = dist.postgres_url  # a throw-away PostgreSQL server on loopback (module scope)


def _find(tool: str) -> str | None:
    return shutil.which(tool) or next(
        (p for d in ("/usr/sbin", "/usr/bin") if os.access(p := f"{d}/{tool}", os.X_OK)), None
    )


def _slurm_conf(base: Path, ctld_port: int, slurmd_port: int) -> str:
    """A single-node cluster: this machine's CPUs and memory as node ``localhost``, partition ``debug``."""
    mem_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 - 512
    return f"""ClusterName=orchtest
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
AuthInfo=socket={base}/munge.socket
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
StateSaveLocation={base}/state
SlurmdSpoolDir={base}/spool
SlurmctldPidFile={base}/slurmctld.pid
SlurmdPidFile={base}/slurmd.pid
SlurmctldLogFile={base}/slurmctld.log
SlurmdLogFile={base}/slurmd.log
ReturnToService=2
KillWait=5
MailProg=/bin/true
NodeName=localhost NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={mem_mb} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


def _wait_for(check, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.5)
    return False


def _node_idle() -> bool:
    out = subprocess.run(["sinfo", "-h", "-n", "localhost", "-o", "%T"], capture_output=True, text=True)
    return out.returncode == 0 and out.stdout.strip() == "idle"


def _stop_cluster(procs: list[subprocess.Popen]) -> None:
    """Cancel every job of the cluster, wait for them to end, then stop the daemons this fixture started."""
    jobs = subprocess.run(["squeue", "-h", "-o", "%A"], capture_output=True, text=True, timeout=60)
    for job in set(jobs.stdout.split()):
        subprocess.run(["scancel", job], capture_output=True, timeout=60)
    _wait_for(lambda: not subprocess.run(["squeue", "-h"], capture_output=True, text=True).stdout, 60)
    for proc in reversed(procs):
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


@pytest.fixture(scope="module")
def slurm_cluster() -> Iterator[str]:
    """A single-node Slurm cluster on localhost, run as root in a temp dir; yields its slurm.conf (also
    ``SLURM_CONF`` for the module's tests and the processes they start)."""
    missing = [t for t in DAEMONS if _find(t) is None]
    if missing:
        pytest.skip(f"no Slurm/munge binaries ({', '.join(missing)}): install Debian's slurm-wlm and munge")
    if os.geteuid() != 0:
        pytest.skip("the test cluster's slurmd runs jobs as root: run the tests as root")
    base = Path(tempfile.mkdtemp(prefix="orch-slurm-", dir="/tmp"))
    (base / "state").mkdir()
    (base / "spool").mkdir()
    key = base / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    conf = base / "slurm.conf"
    conf.write_text(_slurm_conf(base, dist._free_port(), dist._free_port()))
    procs: list[subprocess.Popen] = []

    def start(*args: str, log: str) -> None:
        out = open(base / log, "w")  # the daemon writes it while it runs
        procs.append(subprocess.Popen(list(args), stdout=out, stderr=subprocess.STDOUT, cwd=base))

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLURM_CONF", str(conf))
        try:
            start(_find("munged"), "-F", "--force", f"--key-file={key}", f"--socket={base}/munge.socket",
                  f"--pid-file={base}/munged.pid", f"--seed-file={base}/munged.seed",
                  f"--log-file={base}/munged.log", log="munged.out")  # fmt: skip
            if not _wait_for(lambda: (base / "munge.socket").exists(), 20):
                pytest.skip(f"munged did not start: {(base / 'munged.out').read_text()[-500:]}")
            start(_find("slurmctld"), "-D", "-f", str(conf), log="slurmctld.out")
            start(_find("slurmd"), "-D", "-N", "localhost", "-f", str(conf), log="slurmd.out")
            if not _wait_for(_node_idle, 60):
                logs = "".join((base / f).read_text()[-400:] for f in ("slurmctld.out", "slurmd.out"))
                pytest.skip(f"the Slurm daemons did not start (node not idle within 60 s): {logs}")
            yield str(conf)
        finally:
            _stop_cluster(procs)
            shutil.rmtree(base, ignore_errors=True)


def _orch(*args: str, cwd: Path) -> subprocess.Popen:
    """`orch ...` in a process of its own; it and the Slurm tasks it submits import this checkout."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO), "COLUMNS": "120"}
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", *args], cwd=cwd, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip


def _queue(storage: optuna.storages.BaseStorage) -> WorkQueue | None:
    name = find_sweep_queue(storage, "dist")
    return WorkQueue(storage, name) if name else None


def test_a_cancelled_array_task_leaves_its_item_to_another(
    slurm_cluster: str, postgres_url: str, tmp_path: Path, tiny: dict
) -> None:
    # 2 cells x 2 seeds, 2 epochs; enough pairs that a run lasts a few seconds, so a task is cancelled mid-run
    path = dist._matrix(tmp_path, tiny, epochs=2, pairs=768)
    uri = f"sqlite:///{tmp_path}/shared/mlflow.db"
    t0 = time.monotonic()
    coord = _orch("--tracking-uri", uri, "sweep", str(path), "--launcher", "slurm", "--workers", "2",
                  "--storage", postgres_url, "--heartbeat", "2", cwd=tmp_path)  # fmt: skip
    storage = open_storage(postgres_url, heartbeat=2)
    deadline = time.monotonic() + 300
    while True:  # until both tasks hold an item (each runs one at a time): task 0 is mid-run
        assert coord.poll() is None, f"the coordinator exited early:\n{coord.communicate()[0]}"
        assert time.monotonic() < deadline, "the array tasks never claimed two items"
        work = _queue(storage)
        if work is not None and "slurm_job" in work.attrs and work.counts().get("RUNNING", 0) == 2:
            break
        time.sleep(0.3)
    job = work.attrs["slurm_job"]
    subprocess.run(["scancel", f"{job}_0"], check=True, timeout=60)
    cancelled_at = time.monotonic() - t0

    res = CliRunner().invoke(app, ["status", str(path), "--storage", postgres_url])
    assert res.exit_code == 0, res.output
    assert f"Slurm array job {job}" in res.output and f"{job}_0" in res.output and f"{job}_1" in res.output

    out, _ = coord.communicate(timeout=400)
    took = time.monotonic() - t0
    assert coord.returncode == 0, out  # every item finished: the cancelled task's attempt is no crash
    assert "crashed 0" in out and "verdict" in out

    runs = dist._finished_by_key(uri)
    assert len(runs) == 4
    for key, attempts in runs.items():
        assert sum(r.info.status == "FINISHED" for r in attempts) == 1, key  # exactly once
        assert not [r for r in attempts if r.info.status == "RUNNING"], key
    killed = [r for rs in runs.values() for r in rs if r.info.status == "KILLED"]
    assert killed, "the cancelled task's run was not recorded as KILLED"

    st = sweep_status(storage, "dist")
    assert (st.done, st.waiting, st.running, st.failed, st.retried) == (4, 0, 0, 0, 1), st
    assert not st.attrs["active"] and st.attrs["slurm_tasks"] == 2
    states = {t.task: t.state for t in array_tasks(job)}
    assert states[f"{job}_0"] == "CANCELLED", states
    logs = Path(st.attrs["slurm_logs"])
    assert logs.parent == tmp_path / "runs" / "slurm" and (logs / f"{job}_1_0_log.out").exists()
    print(f"\nscancel {job}_0 at {cancelled_at:.0f} s; sweep done at {took:.0f} s; killed: "
          f"{[r.data.tags['orch.cell'] + '/' + r.data.tags['orch.seed'] for r in killed]}")  # fmt: skip


def test_a_partition_slurm_rejects_exits_2_and_queues_nothing(
    slurm_cluster: str, postgres_url: str, tmp_path: Path, tiny: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = dist._matrix(tmp_path, tiny, epochs=2)
    before = len(optuna.get_all_study_summaries(open_storage(postgres_url), include_best_trial=False))
    args = ["sweep", str(path), "--launcher", "slurm", "--storage", postgres_url, "--partition", "nosuch"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.output
    assert "invalid partition" in res.output.lower() and "Traceback" not in res.output
    after = optuna.get_all_study_summaries(open_storage(postgres_url), include_best_trial=False)
    assert len(after) == before and not (tmp_path / "runs").exists()


# ------------------------------------------------------------------------------- without a cluster


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "sbatch not found on PATH"),
        (["--storage", None], "--launcher slurm needs --storage postgresql://"),
        (["--storage", "runs/q.journal"], "--launcher slurm needs --storage postgresql://"),
        (["--workers", "0"], "--workers is the number of array tasks"),
        (["--time", "four hours"], "--time 'four hours': not a Slurm time limit"),
    ],
)
def test_bad_slurm_input_exits_2_and_starts_nothing(
    tmp_path: Path, tiny: dict, monkeypatch: pytest.MonkeyPatch, args: list, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "no-slurm-here"))  # sbatch missing
    path = dist._matrix(tmp_path, tiny, epochs=2)
    storage = ["--storage", "postgresql://orch@127.0.0.1:1/orch"]  # never opened: the checks come first
    if args[:1] == ["--storage"]:
        storage, args = ([] if args[1] is None else args), []
    res = CliRunner().invoke(app, ["sweep", str(path), "--launcher", "slurm", *storage, *args])
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output
    assert not (tmp_path / "runs").exists()


def test_slurm_options_need_the_slurm_launcher(tmp_path: Path, tiny: dict) -> None:
    path = dist._matrix(tmp_path, tiny, epochs=2)
    res = CliRunner().invoke(app, ["sweep", str(path), "--partition", "gpu", "--time", "1:00:00"])
    assert res.exit_code == 2 and "--partition, --time only apply with --launcher slurm" in res.output


def test_time_limits_and_squeue_lines() -> None:
    assert [parse_time(t) for t in ("30", "1:30", "04:00:00", "1-0", "1-2:30", "0:0:59")] == [
        30, 2, 240, 1440, 1590, 1
    ]  # fmt: skip
    with pytest.raises(SlurmError):
        parse_time("0")
    text = "7_1|RUNNING|0:12|node2\n7_0|CANCELLED by 0|0:05|node1\n7_0.batch|CANCELLED|0:05|node1\n8_0|X||\n"
    tasks = _parse_tasks(text, "7")
    assert [(t.task, t.state, t.ended) for t in tasks] == [
        ("7_0", "CANCELLED", True),
        ("7_1", "RUNNING", False),
    ]


def test_sigusr2_stops_a_task_and_the_handler_is_restored() -> None:
    before = signal.getsignal(signal.SIGUSR2)
    with pytest.raises(TaskStopped, match="SIGUSR2"), handle_signals([signal.SIGUSR2], TaskStopped.by):
        os.kill(os.getpid(), signal.SIGUSR2)
        time.sleep(5)  # the handler raises before this ends
    assert signal.getsignal(signal.SIGUSR2) is before
