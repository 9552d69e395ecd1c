"""A whole library through `genre-nb predict` (issue 19, and issue 20's `--out` and Ctrl-C cases): rows streamed to
`--out` as files finish, a run killed outright then resumed, Ctrl-C keeping every finished row, JSON Lines on stdout
as files finish, and refusals before any work (a Dask cluster's runs: tests/test_dask.py).

The libraries are short generated clips (3 s: one musicnn patch each), linked many times under distinct names (nothing
is committed); runs that are interrupted are kept to two CPUs, so that they are still going when the signal comes on
any machine (a 2,000-file run takes about a minute on two cores)."""
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from genre_nb import inference as I

GENRE_NB = str(Path(sys.executable).parent / "genre-nb")
SR = 22050
N_SOURCES = 20


def run(*args, env=None, timeout=600):
    return subprocess.run([GENRE_NB, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def _two_cpus():
    "Keep a run to two CPUs (where there are more), so that on any machine it is still going when it is interrupted."
    if hasattr(os, "sched_setaffinity"): os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:2])


def popen(*args, **kw) -> subprocess.Popen:
    "`genre-nb ARGS` started in the background, on two CPUs."
    return subprocess.Popen([GENRE_NB, *map(str, args)], preexec_fn=_two_cpus, **kw)


def _clip(k: int, seconds: float = 3.0) -> np.ndarray:
    "A distinct 3 s clip per k: a tone, a tremolo and a little noise."
    t = np.arange(int(SR * seconds)) / SR
    rng = np.random.default_rng(k)
    f0 = 110 * 2 ** (k / 5)
    y = 0.3 * np.sin(2 * np.pi * f0 * t) * (1 + np.sin(2 * np.pi * (1 + k % 4) * t)) / 2
    return (y + 0.02 * rng.standard_normal(len(t))).astype(np.float32)


def _library(root: Path, sources: Path, n: int) -> Path:
    "`n` files under `root` (100 per folder), each a link to one of the sources, plus one file that is not audio."
    for i in range(n):
        d = root / f"d{i // 100:02d}"
        d.mkdir(parents=True, exist_ok=True)
        src, dst = sources / f"s{i % N_SOURCES:02d}.wav", d / f"s{i % N_SOURCES:02d}_{i:05d}.wav"
        try: os.link(src, dst)
        except OSError: dst.write_bytes(src.read_bytes())
    (root / "d00" / "not_audio.wav").write_text("this is not a WAV file\n")
    return root


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("sources")
    for k in range(N_SOURCES): sf.write(d / f"s{k:02d}.wav", _clip(k), SR, subtype="PCM_16")
    return d


@pytest.fixture(scope="module")
def library(tmp_path_factory, sources) -> Path:
    "2,000 short files and one that is not audio."
    return _library(tmp_path_factory.mktemp("library"), sources, 2000)


@pytest.fixture(scope="module")
def small_library(tmp_path_factory, sources) -> Path:
    "300 short files and one that is not audio."
    return _library(tmp_path_factory.mktemp("small"), sources, 300)


@pytest.fixture(scope="module")
def reference(sources) -> dict:
    "An uninterrupted run's probabilities for each source clip: every copy of a source must get exactly these."
    import genre_nb
    df = genre_nb.predict(sorted(sources.glob("*.wav")))
    labels = I.model_labels(I.load_model())
    assert df.error.isna().all()
    return {Path(f).stem: [float(v) for v in row] for f, row in zip(df.file, df[labels].to_numpy())}


def _rows(path: Path) -> int:
    "Whole rows in an output so far (lines ended by a newline, the CSV header aside)."
    if not path.exists(): return 0
    n = path.read_bytes().count(b"\n")
    return n - 1 if path.suffix == ".csv" else n


def _wait_rows(path: Path, n: int, proc: subprocess.Popen, timeout: float = 300) -> int:
    t0 = time.monotonic()
    while _rows(path) < n:
        assert proc.poll() is None, f"the run ended before {n} rows ({_rows(path)})"
        assert time.monotonic() - t0 < timeout, f"no {n} rows after {timeout} s"
        time.sleep(0.1)
    return _rows(path)


def _read_csv(path: Path) -> list[dict]:
    "Every record of a CSV output, checking that each line parses into the header's fields."
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = list(reader)
    assert all(len(r) == len(header) for r in rows), "a line that does not parse"
    return [dict(zip(header, r)) for r in rows]


def _labels() -> list[str]:
    return I.model_labels(I.load_model())


def test_a_run_killed_outright_then_resumed_holds_every_file_once_with_the_same_probabilities(library, reference, tmp_path):
    "2,000 files: SIGKILL part-way, then --resume: every file exactly once, an uninterrupted run's numbers, every line parses."
    out = tmp_path / "genres.csv"
    with open(tmp_path / "run1.err", "w") as err:
        p = popen("predict", library, "--out", out, stdout=subprocess.DEVNULL, stderr=err)
        _wait_rows(out, 300, p)
        p.kill()
        p.wait(timeout=60)
    killed = _rows(out)
    assert 300 <= killed < 2001, killed                               # part-way
    r = run("predict", library, "--out", out, "--resume")
    assert r.returncode in (0, 1) and "Traceback" not in r.stderr, r.stderr[-2000:]
    summary = r.stdout.strip().splitlines()[-1]
    assert f"{2001 - killed} files in " in summary and f"{killed} already in the output" in summary, summary
    rows = _read_csv(out)                                             # every line parses
    files = [r["file"] for r in rows]
    expected = {str(p) for p in library.rglob("*.wav")}
    assert len(files) == len(set(files)) == 2001 and set(files) == expected   # every file, exactly once
    labels = _labels()
    for r in rows:
        if Path(r["file"]).name == "not_audio.wav":
            assert r["error"].startswith("not audio") and r["genre"] == ""
            continue
        assert r["error"] == "" and [float(r[l]) for l in labels] == reference[Path(r["file"]).stem.split("_")[0]], r["file"]
        assert r["model"] == I.shipped_model_path().name and len(r["model_sha256"]) == 64
        assert int(r["size"]) == os.stat(r["file"]).st_size and float(r["mtime"]) == os.stat(r["file"]).st_mtime


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_ctrl_c_keeps_every_finished_row_and_resume_finishes(small_library, tmp_path, suffix):
    "SIGINT part-way: exit 130, one line naming --resume, every row finished before it kept and parsing; --resume ends it."
    out = tmp_path / f"genres{suffix}"
    stream = Path(str(out) + ".jsonl") if suffix == ".parquet" else out     # Parquet: rows stream to its journal
    with open(tmp_path / "err", "w+") as err:
        p = popen("predict", small_library, "--out", out, stdout=subprocess.DEVNULL, stderr=err)
        before = _wait_rows(stream, 40, p)
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=120) == 130
        err.seek(0)
        lines = [l for l in err.read().splitlines() if not l.startswith("INFO ")]
    assert len(lines) <= 2 and "Traceback" not in "\n".join(lines), lines   # the interruption (and the not-audio file)
    assert any("interrupted after" in l and "--resume" in l for l in lines), lines
    if suffix == ".csv": got = [r["file"] for r in _read_csv(out)]
    elif suffix == ".jsonl": got = [json.loads(l)["file"] for l in out.read_text().splitlines()]
    else:
        import pyarrow.parquet as pq
        got = pq.read_table(out).column("file").to_pylist()            # written on the way out
    assert len(got) >= before and len(got) == len(set(got)), (len(got), before)
    r = run("predict", small_library, "--out", out, "--resume")
    assert r.returncode in (0, 1) and "Traceback" not in r.stderr, r.stderr[-2000:]
    if suffix == ".parquet":
        import pyarrow.parquet as pq
        files = pq.read_table(out).column("file").to_pylist()
    elif suffix == ".jsonl": files = [json.loads(l)["file"] for l in out.read_text().splitlines()]
    else: files = [r["file"] for r in _read_csv(out)]
    assert len(files) == len(set(files)) == 301 and set(got) <= set(files)


def test_json_lines_arrive_as_files_finish(small_library):
    "--json: the model first (with its checksum), one object per file while the run is still going, a summary last."
    p = popen("predict", small_library, "--json", stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    first, second = json.loads(p.stdout.readline()), json.loads(p.stdout.readline())
    still_running = p.poll() is None
    rest = [json.loads(l) for l in p.stdout]                          # every line is JSON
    assert p.wait(timeout=300) == 1                                   # the not-audio file failed
    assert len(first["model"]["sha256"]) == 64 and "file" in second and still_running
    files, summary = [second, *rest[:-1]], rest[-1]["summary"]
    assert len(files) == 301 and len({f["file"] for f in files}) == 301
    assert sum("error" in f for f in files) == 1 and summary["classified"] == 300 and summary["failed"] == 1
    assert sum(summary["genres"].values()) == 300


def _read_only_place(tmp_path: Path) -> Path:
    "A folder where no file can be made: a chmod 555 folder, or (root passes permissions) /sys."
    if os.geteuid() != 0:
        d = tmp_path / "ro"
        d.mkdir()
        d.chmod(0o555)
        return d
    if Path("/sys").is_dir():
        try: open("/sys/genre_nb_probe", "w").close()
        except OSError: return Path("/sys")
    pytest.skip("no read-only place here: running as root without a read-only /sys")


@pytest.mark.parametrize("case", ["folder", "under_a_file", "read_only"])
def test_an_unusable_out_fails_in_one_line_before_any_work(library, tmp_path, case):
    "An existing folder, a path under a file, a read-only place: one line and no answer printed, before any file is read."
    (tmp_path / "a_file.txt").write_text("x")
    out, message = {"folder": (tmp_path, "is a folder; give a file name"),
                    "under_a_file": (tmp_path / "a_file.txt" / "genres.csv", "is a file, not a folder"),
                    "read_only": (None, "cannot write in")}[case]
    if out is None: out = _read_only_place(tmp_path) / "genres.csv"
    r = run("predict", library, "--out", out)
    assert r.returncode == 1 and r.stdout == "" and "Traceback" not in r.stderr, (r.stdout[:300], r.stderr)
    assert r.stderr.count("\n") == 1 and message in r.stderr, r.stderr


def test_resume_refuses_another_model_or_a_foreign_file_and_writes_nothing(sources, tmp_path):
    out = tmp_path / "genres.csv"
    files = sorted(sources.glob("*.wav"))[:4]
    assert run("predict", *files, "--out", out).returncode == 0
    before = out.read_bytes()
    r = run("predict", *files, "--out", out)                          # without --resume: refused
    assert r.returncode == 1 and "exists; add --resume" in r.stderr and out.read_bytes() == before
    other = tmp_path / "other_model"
    shutil.copytree(I.shipped_model_path(), other)
    w = dict(np.load(other / "weights.npz"))
    np.savez(other / "weights.npz", **{**w, "coef": w["coef"] * 2})
    r = run("predict", *files, sources / "s10.wav", "--out", out, "--resume", "--model", other)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "rows of two models must not mix" in r.stderr, r.stderr
    assert out.read_bytes() == before and r.stdout == ""
    foreign = tmp_path / "mine.csv"
    foreign.write_text("title,rating\nsong,5\n")
    r = run("predict", *files, "--out", foreign, "--resume")
    assert r.returncode == 1 and "is not an output of genre-nb predict" in r.stderr
    assert foreign.read_text() == "title,rating\nsong,5\n"
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    assert run("predict", bad, "--out", out, "--resume").returncode == 1              # a failed row ...
    r = run("predict", bad, *files, "--out", out, "--resume")
    assert r.returncode == 0 and "1 already in the output" not in r.stdout and "5 already in the output" in r.stdout
    r = run("predict", bad, *files, "--out", out, "--resume", "--retry-failed")      # ... retried only when asked
    assert r.returncode == 1 and "bad.wav" in r.stderr and "4 already in the output" in r.stdout
    rows = _read_csv(out)
    assert sorted(r["file"] for r in rows) == sorted(map(str, [*files, bad]))          # still one row per file


def test_the_scheduler_must_be_reachable(sources, tmp_path):
    pytest.importorskip("distributed", reason="needs dask[distributed]")
    r = run("predict", sources / "s00.wav", "--scheduler", "tcp://127.0.0.1:9", timeout=120)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "cannot reach the Dask scheduler" in r.stderr, r.stderr
