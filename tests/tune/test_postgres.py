"""cnntricks tune on a real PostgreSQL server (the storage for workers on several machines): a server is
started on loopback for these tests (Debian's postgresql, which scripts/setup.sh installs), and two
`cnntricks tune` processes with their own folders, as two machines would run them, share one study."""
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from cnntricks.rundir import read_json

TINY = ["data.source=digits", "model.depth=1", "train.epochs=2", "optim.batch_size=64", "doctor.mode=off",
        "train.monitor=off", "train.threads=1"]
SPACE = "optim.lr: {type: log, low: 0.03, high: 0.3}\nmodel.width: {type: int, low: 4, high: 8, step: 4}\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not binaries:
        pytest.skip("PostgreSQL is not installed: bash scripts/setup.sh installs Debian's postgresql")
    pytest.importorskip("psycopg", reason="psycopg[binary] is a test dependency: pip install -e '.[test]'")
    bin_dir = Path(binaries[-1]).parent
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []  # initdb refuses root
    data = Path(tempfile.mkdtemp(prefix="cnntricks-pg-"))
    if as_postgres:
        shutil.chown(data, "postgres", "postgres")
    port = free_port()
    run = lambda *args: subprocess.run([*as_postgres, *map(str, args)], check=True, capture_output=True,  # noqa: E731
                                       text=True, timeout=120)
    run(bin_dir / "initdb", "-D", data / "db", "-A", "trust", "-U", "postgres")
    run(bin_dir / "pg_ctl", "-D", data / "db", "-l", data / "log", "-w", "-o",
        f"-h 127.0.0.1 -p {port} -k {data}", "start")
    try:
        run(bin_dir / "createdb", "-h", "127.0.0.1", "-p", port, "-U", "postgres", "optuna")
        yield f"postgresql://postgres@127.0.0.1:{port}/optuna"
    finally:
        subprocess.run([*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(data / "db"), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(data, ignore_errors=True)


def test_two_machines_share_one_study_in_postgresql(postgres_url, tmp_path):
    (tmp_path / "space.yaml").write_text(SPACE)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    commands = [[sys.executable, "-m", "cnntricks.cli", "tune", "--space", str(tmp_path / "space.yaml"), "--trials",
                 "4", "--storage", postgres_url, "--pruner", "none", "--out", str(tmp_path / machine / "search"),
                 "--json", *TINY] for machine in ("a", "b")]
    started = [subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for command in commands]
    outputs = [process.communicate(timeout=240) for process in started]
    assert all(process.returncode == 0 for process in started), outputs
    records = [read_json(tmp_path / machine / "search" / "tune.json") for machine in ("a", "b")]
    assert records[0]["storage"] == records[1]["storage"] == postgres_url
    assert records[0]["name"] == records[1]["name"] == "search"  # the same study, by the folder's name
    last = records[int(records[1]["counts"]["complete"] > records[0]["counts"]["complete"])]
    assert last["counts"]["complete"] >= 4 and last["counts"]["fail"] == 0
    machines = {Path(row["run_dir"]).parents[2].name for row in last["ranking"]}
    assert machines == {"a", "b"}, last["ranking"]  # both machines trained trials of the one study
    assert sorted(row["number"] for row in last["ranking"]) == list(range(len(last["ranking"])))
