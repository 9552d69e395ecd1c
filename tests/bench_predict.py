"""Benchmark `genre-nb predict` (issue 13): not a test, it prints figures.

- cold start: `/usr/bin/time -v genre-nb predict <one 30 s real excerpt>`, wall and peak memory, ONNX path (default)
  and TensorFlow path (GENRE_NB_BACKEND=tf), in the same run;
- 100 files of 30 s (copies of the 10 real GTZAN excerpts): seconds per file after the first, both paths;
- import profile of `genre_nb.cli` (what every `genre-nb` command pays) and the heavy modules it loads.

Targets: cold start <= 2 s and < 500 MB; <= 0.3 s per file. Needs the real GTZAN excerpts (`genre_nb.core.real_data`).
Run: python tests/bench_predict.py [--runs 3] [--files 100] [--jobs N]
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GENRE_NB = str(Path(sys.executable).parent / "genre-nb")
HEAVY = ("tensorflow", "keras", "librosa", "sklearn", "matplotlib", "scipy.signal", "numba", "onnxruntime", "seaborn")


def env(**kw) -> dict:
    "This checkout's package, TensorFlow quiet, the default backend unless `kw` names one."
    e = {k: v for k, v in os.environ.items() if k != "GENRE_NB_BACKEND"}
    return {**e, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", **kw}


def time_v(cmd: list[str], **kw) -> tuple[float, float, str]:
    "(wall s, max RSS MB, stderr) of one run under /usr/bin/time -v."
    r = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, env=env(**kw), cwd=ROOT)
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", r.stderr)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr)
    if r.returncode != 0 or not wall or not rss: raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stdout}\n{r.stderr}")
    h, m, s = wall.groups()
    return int(h or 0) * 3600 + int(m) * 60 + float(s), int(rss.group(1)) / 1024, r.stdout.strip()


def cold_start(song: Path, runs: int) -> None:
    print(f"## cold start: genre-nb predict {song.name} (30 s), {runs} runs each")
    for name, kw in (("onnx", {}), ("tf", {"GENRE_NB_BACKEND": "tf"})):
        res = [time_v([GENRE_NB, "predict", str(song)], **kw) for _ in range(runs)]
        walls, rss = [r[0] for r in res], [r[1] for r in res]
        print(f"{name:5s} wall median {statistics.median(walls):.2f} s (runs {', '.join(f'{w:.2f}' for w in walls)}), "
              f"max RSS {max(rss):.0f} MB; answer: {res[0][2].splitlines()[-1] if res[0][2] else '?'}")


PER_FILE = """
import sys, time
import genre_nb.inference as I
files, backend, jobs = sys.argv[1:-2], sys.argv[-2], None if sys.argv[-1] == 'auto' else int(sys.argv[-1])
t0 = time.perf_counter(); first = I.predict(files[:1], backend=backend); t1 = time.perf_counter()
rest = I.predict(files[1:], backend=backend, jobs=jobs); t2 = time.perf_counter()
assert first.error.isna().all() and rest.error.isna().all()
print(f"{t1 - t0:.3f} {(t2 - t1) / (len(files) - 1):.4f}")
"""


def many_files(excerpts: list[Path], n: int, jobs: list[str]) -> None:
    with tempfile.TemporaryDirectory() as d:
        files = []
        for i in range(n):
            src = excerpts[i % len(excerpts)]
            files.append(Path(d) / f"{i:03d}_{src.name}")
            shutil.copy(src, files[-1])
        print(f"## {n} files of 30 s (copies of the {len(excerpts)} real excerpts): seconds per file after the first")
        for backend, js in (("onnx", jobs), ("tf", ["auto"])):
            for j in js:
                r = subprocess.run([sys.executable, "-c", PER_FILE, *map(str, files), backend, j],
                                   capture_output=True, text=True, env=env(), cwd=ROOT)
                if r.returncode: raise SystemExit(r.stderr[-3000:])
                first, per = map(float, r.stdout.split()[-2:])
                print(f"{backend:5s} jobs={j:4s}: first file {first:.2f} s (imports, session), then {per:.3f} s/file")


def import_profile() -> None:
    print("## import profile: python -X importtime -c 'import genre_nb.cli' (cumulative ms, top-level entries)")
    code = f"import sys, genre_nb.cli; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    r = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, env=env(), cwd=ROOT)
    rows = []
    for line in r.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m and len(m.group(3)) <= 3: rows.append((int(m.group(2)) / 1000, m.group(4)))
    for ms, name in sorted(rows, reverse=True)[:12]: print(f"{ms:8.1f} ms  {name}")
    print(f"heavy modules loaded by `import genre_nb.cli`: {r.stdout.strip()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="cold-start runs per path")
    ap.add_argument("--files", type=int, default=100, help="files for the per-file figure")
    ap.add_argument("--jobs", nargs="+", default=["auto", "1"], help="worker counts to try on the ONNX path")
    a = ap.parse_args()
    from genre_nb.core import real_data
    root = real_data("gtzan", "audio", "genres_original")
    if root is None: raise SystemExit("no real GTZAN excerpts (set GENRE_NB_TEST_DATA; see genre_nb.core.real_data): nothing to measure")
    excerpts = sorted(root.glob("*/*.wav"))
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (other work slows every figure); "
          f"python {sys.version.split()[0]}; genre_nb from {ROOT}")
    import_profile()
    cold_start(excerpts[0], a.runs)
    many_files(excerpts, a.files, a.jobs)
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
