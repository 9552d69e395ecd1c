"""Where the CPU work of `genre-nb predict --scheduler` and `genre-nb extract --backend dask --scheduler` runs, measured
from outside, and the throughput one more worker adds (issue 26).

For 1 and then 2 worker processes on 127.0.0.1 (`dask scheduler` / `dask worker --nthreads 1`, started here), each
command runs on N real excerpts (GTZAN-mini, symlinked into a temporary folder; a fresh feature cache per run). The
workers' CPU seconds are read with psutil before and after the run, the client's with `os.wait4` (the process and the
children it waited for): `worker share` = workers / (workers + client). Throughput = files / wall seconds of the client
run, start-up included; `worker_cores_used` = the workers' CPU seconds / wall seconds: how many cores they really got
(on a machine shared with other jobs, fewer than the workers). Nothing here trusts the package's own word.

    python tests/bench_dask.py [--files 12] [--what predict,extract] [--features summary] [--workers 1,2] [--warm]

With --warm, each cluster first runs the command on 2 files per worker (imports, networks built, librosa's kernels
compiled), and the measured run is what the files themselves cost: the steady state of a long run.
"""
import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from dask_procs import LocalDask, timed_run  # noqa: E402

GENRE_NB = str(Path(sys.executable).parent / "genre-nb")


def _excerpts(n: int) -> list[Path]:
    "n real 30 s excerpts, taken round-robin over GTZAN-mini's genres."
    from genre_nb.core import real_data
    root = real_data("gtzan_mini")
    genres = sorted(p for p in (Path(root) / "genres").iterdir() if p.is_dir()) if root else []
    if not genres: sys.exit("no GTZAN-mini here (core.real_data('gtzan_mini')): nothing to measure")
    per = [sorted(f for f in g.iterdir() if f.suffix in (".wav", ".flac", ".au")) for g in genres]
    return [per[i % len(per)][i // len(per)] for i in range(n)]


def _gtzan_like(files: list[Path], root: Path) -> Path:
    "A GTZAN-like folder (one subfolder per genre) of links to `files`."
    for f in files:
        (root / f.parent.name).mkdir(parents=True, exist_ok=True)
        (root / f.parent.name / f.name).symlink_to(f)
    return root


def command(what: str, tmp: Path, files: list[Path], features: str, run: str, scheduler: str | None,
            warm: bool = False) -> list:
    "The command line of one run (`warm`: on a folder of its own `files`, for extract)."
    if what == "extract" and warm:
        _gtzan_like(files, tmp / run / "lib")
        return [GENRE_NB, "extract", tmp / run / "lib", "--features", features, "--out", tmp / run / "out.csv",
                "--cache-dir", tmp / run / "cache", "--backend", "dask", "--scheduler", scheduler]
    if what == "predict":
        cmd = [GENRE_NB, "predict", *files, "--out", tmp / f"{run}.csv"]
        return cmd + (["--scheduler", scheduler] if scheduler else [])
    cmd = [GENRE_NB, "extract", tmp / "lib", "--features", features, "--out", tmp / f"{run}.csv",
           "--cache-dir", tmp / f"cache_{run}"]
    return cmd + (["--backend", "dask", "--scheduler", scheduler] if scheduler else [])


def measure(what: str, n_workers: int, files: list[Path], features: str, tmp: Path, warm: bool = False) -> dict:
    "One run of `what` on a fresh cluster of `n_workers`: CPU seconds of client and workers, wall seconds."
    run = f"{what}_{n_workers}w"
    with LocalDask(tmp / run, n_workers) as c:
        if warm:   # every worker imports, builds its networks, compiles librosa's kernels: not what a file costs
            w = timed_run(command(what, tmp, files[:2 * n_workers], features, f"warm_{run}", c.address, warm=True))[0]
            if w.returncode != 0: sys.exit(f"warm-up of {run} failed ({w.returncode}): {w.stderr[-2000:]}")
        before = c.cpu()
        t0 = time.perf_counter()
        r, client = timed_run(command(what, tmp, files, features, run, c.address))
        wall = time.perf_counter() - t0
        after = c.cpu()
    if r.returncode != 0: sys.exit(f"{run} failed ({r.returncode}): {r.stderr[-2000:]}")
    workers = {k: round(after[k] - before[k], 2) for k in after}
    total = sum(workers.values())
    return {"what": what, "workers": n_workers, "warm": warm, "files": len(files), "wall_s": round(wall, 2),
            "files_per_s": round(len(files) / wall, 3), "client_cpu_s": round(client, 2), "worker_cpu_s": workers,
            "worker_share": round(total / (total + client), 3), "worker_cores_used": round(total / wall, 2)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=12, help="real excerpts per run (default 12)")
    ap.add_argument("--what", default="predict,extract", help="predict, extract or both (default)")
    ap.add_argument("--features", default="summary", help="extract's --features (default summary)")
    ap.add_argument("--workers", default="1,2", help="worker counts to measure (default 1,2)")
    ap.add_argument("--warm", action="store_true",
                    help="a warm-up run on 2 files per worker first, so that the run measures files, not start-up")
    a = ap.parse_args(argv)
    files = _excerpts(a.files)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        _gtzan_like(files, tmp / "lib")
        for what in a.what.split(","):
            for n in map(int, a.workers.split(",")):
                results.append(measure(what, n, files, a.features, tmp, a.warm))
                print(json.dumps(results[-1]), flush=True)
    for what in a.what.split(","):
        rate = {r["workers"]: r["files_per_s"] for r in results if r["what"] == what}
        if 1 in rate and 2 in rate:
            print(f"{what}: 2 workers / 1 worker throughput = {rate[2] / rate[1]:.2f} "
                  f"({os.cpu_count()} CPUs here)", flush=True)


if __name__ == "__main__":
    main()
