"""Benchmark `genre-nb predict` (issues 13 and 19): not a test, it prints figures.

- import profile of `genre_nb.cli` (what every `genre-nb` command pays) and the heavy modules it loads;
- cold start: `/usr/bin/time -v genre-nb predict <one 30 s real excerpt>`, wall and peak memory, ONNX path (default)
  and TensorFlow path (GENRE_NB_BACKEND=tf), in the same run; with `--baseline DIR`, also DIR's code (another
  checkout, e.g. the commit before a change) on the ONNX path, interleaved run by run;
- 100 files of 30 s (copies of the 10 real GTZAN excerpts): seconds per file after the first, both paths;
- ONNX Runtime alone, one thread: milliseconds per 3 s patch for batches of 1 to 40 patches (why `predict` does not
  batch the patches of several files into one call);
- a library (issue 19): `genre-nb predict DIR --out x.csv` on `--library` files of 30 s (links to the real excerpts)
  kept to 1, 2 and all cores (CPU affinity), against bare ONNX Runtime on the same patches at the same cores in the
  same run, alternating in `--rounds` rounds (so that the machine's changing load weighs on both alike) (the patches computed beforehand, only `session.run` timed, one patch per call; the faster of one process
  per core with one thread each, and one process with one thread per core): files per second and their ratio (goal >= 0.8 on all
  cores). Peak memory of the whole run for 200 files and for `--library` files, at all cores: `/usr/bin/time -v`'s
  maximum RSS (the largest single process: the run or one worker) and the sum over the run and its workers, sampled.

Targets: cold start <= 2 s and < 500 MB; <= 0.3 s per file; library ratio >= 0.8; peak memory of 2,000 files within
10 % of 200. Needs the real GTZAN excerpts (`genre_nb.core.real_data`). Other work on the machine slows every figure.
Run: python tests/bench_predict.py [--runs 3] [--files 100] [--jobs N] [--library 2000] [--only cold,library]
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GENRE_NB = str(Path(sys.executable).parent / "genre-nb")
HEAVY = ("tensorflow", "keras", "librosa", "sklearn", "matplotlib", "scipy.signal", "numba", "onnxruntime", "seaborn")


def env(root: Path = ROOT, **kw) -> dict:
    "This checkout's package (or `root`'s), TensorFlow quiet, the default backend unless `kw` names one."
    e = {k: v for k, v in os.environ.items() if k != "GENRE_NB_BACKEND"}
    return {**e, "PYTHONPATH": str(root), "TF_CPP_MIN_LOG_LEVEL": "3", **kw}


CLI = "import sys; from genre_nb.cli import main; sys.exit(main(sys.argv[1:]))"   # genre-nb, from PYTHONPATH's package
# (run as `python -P -c CLI`: -P keeps the current folder off sys.path, so PYTHONPATH decides which checkout runs)


def time_v(cmd: list[str], root: Path = ROOT, **kw) -> tuple[float, float, str]:
    "(wall s, max RSS MB, stdout) of one run under /usr/bin/time -v."
    r = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, env=env(root, **kw), cwd=ROOT)
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", r.stderr)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr)
    if r.returncode != 0 or not wall or not rss: raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stdout}\n{r.stderr}")
    h, m, s = wall.groups()
    return int(h or 0) * 3600 + int(m) * 60 + float(s), int(rss.group(1)) / 1024, r.stdout.strip()


def cold_start(song: Path, runs: int, baseline: Path | None = None) -> None:
    print(f"## cold start: genre-nb predict {song.name} (30 s), {runs} runs each")
    paths = [("onnx", ROOT, {}), ("tf", ROOT, {"GENRE_NB_BACKEND": "tf"})]
    if baseline: paths.insert(1, (f"onnx, {baseline.name}", baseline, {}))
    res = {name: [] for name, *_ in paths}
    for _ in range(runs):                                  # interleaved: the machine's load drifts alike for each
        for name, root, kw in paths:
            res[name].append(time_v([sys.executable, "-P", "-c", CLI, "predict", str(song)], root, **kw))
    for name, _, _ in paths:
        walls, rss = [r[0] for r in res[name]], [r[1] for r in res[name]]
        answer = next((l for l in res[name][0][2].splitlines() if not l.startswith("#")), "?")
        print(f"{name:5s} wall median {statistics.median(walls):.2f} s (runs {', '.join(f'{w:.2f}' for w in walls)}), "
              f"max RSS {max(rss):.0f} MB; answer: {answer}")


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


BATCHES = """
import sys, time, numpy as np
from genre_nb.musicnn_onnx import ONNX_LAYERS, numpy_logmel, onnx_session
from genre_nb.embeddings import musicnn_patches
from genre_nb.data import load_audio
from genre_nb.inference import load_model, onnx_nets
X = np.concatenate([musicnn_patches(numpy_logmel(load_audio(p), 22050)) for p in sys.argv[1:]])[:40]
S = [(onnx_session(n, threads=1), list(ONNX_LAYERS[n])) for n in onnx_nets(load_model())]   # the shipped model's nets
for s, names in S: s.run(names, {"logmel": X[:2]})
for b in (1, 2, 5, 10, 20, 40):
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for i in range(0, 40, b):
            for s, names in S: s.run(names, {"logmel": X[i:i + b]})
        best = min(best, time.perf_counter() - t0)
    print(b, 1000 * best / 40)
"""


def batches(excerpts: list[Path]) -> None:
    print("## ONNX Runtime alone, one thread: ms per 3 s patch by patches per call (best of 3 passes over 40 patches)")
    r = subprocess.run([sys.executable, "-c", BATCHES, *map(str, excerpts[:4])], capture_output=True, text=True,
                       env=env(), cwd=ROOT)
    if r.returncode: raise SystemExit(r.stderr[-3000:])
    print("  " + ", ".join(f"batch {b}: {float(ms):.1f} ms" for b, ms in (l.split() for l in r.stdout.splitlines())))


BARE = """
import json, sys, time
from multiprocessing import get_context
import numpy as np

def patches(paths):
    from genre_nb.data import load_audio
    from genre_nb.embeddings import musicnn_patches
    from genre_nb.inference import audio_windows
    from genre_nb.musicnn_onnx import numpy_logmel
    return [np.concatenate([musicnn_patches(numpy_logmel(w, 22050)) for *_, w in audio_windows(p, 29.92)])
            for p in paths]

def run(args):
    "One process: the ONNX calls of files i, i + step, ... (file i has the patches of excerpt i % len), timed alone."
    excerpts, first, n, step, threads = args
    import onnxruntime as ort
    from genre_nb.musicnn_onnx import ONNX_LAYERS, onnx_file
    from genre_nb.inference import load_model, onnx_nets
    o = ort.SessionOptions(); o.intra_op_num_threads = o.inter_op_num_threads = threads; o.log_severity_level = 3
    S = [(ort.InferenceSession(str(onnx_file(m)), o, providers=["CPUExecutionProvider"]), list(ONNX_LAYERS[m]))
         for m in onnx_nets(load_model())]                    # every network of the shipped model, as predict runs
    X = patches(excerpts)
    for s, names in S: s.run(names, {"logmel": X[0][:1]})
    t0 = time.time()
    for i in range(first, n, step):
        P = X[i % len(X)]
        for j in range(len(P)):                               # one patch per call: the fastest
            for s, names in S: s.run(names, {"logmel": P[j:j + 1]})
    return t0, time.time()

if __name__ == "__main__":
    excerpts, n, cores = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    with get_context("spawn").Pool(cores) as pool:            # one process per core, one thread each
        spans = pool.map(run, [(excerpts, k, n, cores, 1) for k in range(cores)])
    per_core = max(e for _, e in spans) - min(s for s, _ in spans)
    one = run((excerpts, 0, n, 1, cores)) if cores > 1 else (0.0, per_core)   # one process, one thread per core
    print(per_core, one[1] - one[0])
"""


def _tree_rss(pid: int) -> float:
    "RSS of a process and all its descendants, MB (0 if it is gone)."
    try:
        import psutil
        p = psutil.Process(pid)
        return sum(q.memory_info().rss for q in [p, *p.children(recursive=True)]) / 2 ** 20
    except Exception: return 0.0


def run_library(folder: Path, cpus: list[int], out: Path) -> dict:
    "`genre-nb predict folder --out out` kept to `cpus`: wall, summary seconds, max RSS (time -v), peak tree RSS."
    out.unlink(missing_ok=True)
    p = subprocess.Popen(["/usr/bin/time", "-v", sys.executable, "-P", "-c", CLI, "predict", str(folder), "--out", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(), cwd=ROOT,
                         preexec_fn=lambda: os.sched_setaffinity(0, cpus))
    peak, stop = [0.0], threading.Event()
    def sample():
        while not stop.wait(0.2): peak[0] = max(peak[0], _tree_rss(p.pid))
    t = threading.Thread(target=sample, daemon=True)
    t.start()
    t0 = time.perf_counter()
    stdout, stderr = p.communicate()
    wall = time.perf_counter() - t0
    stop.set()
    t.join()
    summary = next((l for l in reversed(stdout.splitlines()) if l.startswith("# ")), "")
    m = re.match(r"# (\d+) files in ([\d.]+) s", summary)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr)
    if p.returncode not in (0, 1) or not m or not rss: raise SystemExit(f"failed: predict {folder}\n{stderr[-3000:]}")
    return {"files": int(m.group(1)), "seconds": float(m.group(2)), "wall": wall, "max_rss": int(rss.group(1)) / 1024,
            "tree_rss": peak[0]}


def _links(folder: Path, excerpts: list[Path], n: int) -> Path:
    "`n` files under `folder`, links (else copies) of the excerpts in turn."
    folder.mkdir()
    for i in range(n):
        dst = folder / f"{i:05d}_{excerpts[i % len(excerpts)].name}"
        try: os.link(excerpts[i % len(excerpts)], dst)
        except OSError: shutil.copy(excerpts[i % len(excerpts)], dst)
    return folder


def library(excerpts: list[Path], n: int, rounds: int) -> None:
    allc = sorted(os.sched_getaffinity(0))
    levels, k = sorted({1, min(2, len(allc)), len(allc)}), n // rounds
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        (root / "bare.py").write_text(BARE)                    # a file: spawned pool workers import its functions
        part = _links(root / "part", excerpts, k)
        print(f"## a library: {rounds * k} files of 30 s (links to the {len(excerpts)} real excerpts), genre-nb predict "
              f"--out x.csv against bare ONNX Runtime on the same patches, in {rounds} interleaved rounds of {k} files "
              f"(the machine's load drifts alike for both); cores {', '.join(map(str, levels))}")
        for c in levels:
            bare = {"per_core": 0.0, "one": 0.0}
            seconds = wall = 0.0
            for _ in range(rounds):
                r = subprocess.run([sys.executable, str(root / "bare.py"), json.dumps(list(map(str, excerpts))), str(k),
                                    str(c)], capture_output=True, text=True, env=env(), cwd=ROOT,
                                   preexec_fn=lambda c=c: os.sched_setaffinity(0, allc[:c]))
                if r.returncode: raise SystemExit(r.stderr[-3000:])
                per_core, one = map(float, r.stdout.split())
                bare["per_core"], bare["one"] = bare["per_core"] + per_core, bare["one"] + one
                run = run_library(part, allc[:c], root / "out.csv")
                seconds, wall = seconds + run["seconds"], wall + run["wall"]
            m, b = rounds * k, min(bare.values())
            print(f"cores {c}: predict {m / seconds:6.2f} files/s ({seconds:.1f} s; {wall:.1f} s with start-ups), bare "
                  f"ONNX Runtime {m / b:6.2f} files/s (one process per core {m / bare['per_core']:.2f}, one process "
                  f"with {c} thread{'s' * (c > 1)} {m / bare['one']:.2f}); ratio {b / seconds:.2f}")
        print(f"## peak memory, all {len(allc)} cores: 200 files vs {n} files, one run each")
        small = run_library(_links(root / "lib200", excerpts, 200), allc, root / "out.csv")
        big = run_library(_links(root / "lib", excerpts, n), allc, root / "out.csv")
        for name, r in (("200 files", small), (f"{n} files", big)):
            print(f"{name:>11}: max RSS {r['max_rss']:.0f} MB (time -v: the largest process), run + workers "
                  f"{r['tree_rss']:.0f} MB (sampled); {r['files'] / r['seconds']:.2f} files/s")
        print(f"{n} files / 200 files: {big['max_rss'] / small['max_rss']:.3f} (time -v), "
              f"{big['tree_rss'] / small['tree_rss']:.3f} (run + workers)")


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
    ap.add_argument("--library", type=int, default=2000, help="files of the library runs (issue 19)")
    ap.add_argument("--rounds", type=int, default=4, help="interleaved rounds of the library throughput figure")
    ap.add_argument("--baseline", type=Path, default=None,
                    help="another checkout (e.g. the commit before a change) whose cold start to show beside this one's")
    ap.add_argument("--only", default="import,cold,files,batch,library", help="comma-separated sections to run")
    a = ap.parse_args()
    only = set(a.only.split(","))
    sys.stdout.reconfigure(line_buffering=True)            # each figure as soon as it is measured
    from genre_nb.core import real_data
    root = real_data("gtzan", "audio", "genres_original")
    if root is None: raise SystemExit("no real GTZAN excerpts (set GENRE_NB_TEST_DATA; see genre_nb.core.real_data): nothing to measure")
    excerpts = sorted(root.glob("*/*.wav"))
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (other work slows every figure); "
          f"python {sys.version.split()[0]}; genre_nb from {ROOT}")
    if "import" in only: import_profile()
    if "cold" in only: cold_start(excerpts[0], a.runs, a.baseline)
    if "files" in only: many_files(excerpts, a.files, a.jobs)
    if "batch" in only: batches(excerpts)
    if "library" in only: library(excerpts, a.library, a.rounds)
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
