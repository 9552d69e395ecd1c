"""Benchmark (a script, not a test): extract mel + MFCC + chroma + wavelet for N synthetic 30 s tracks into an empty
cache with `jobs` workers, then again from the cache; print wall time, tracks/s and peak memory (RSS of this process
plus every worker, sampled every 50 ms). Targets for 1000 tracks on 2 cores: <= 3 min, <= 2 GB, second run in seconds.

    .venv/bin/python tests/bench_extract.py                  # 1000 tracks, jobs=2, under /tmp/genre_nb_bench
    .venv/bin/python tests/bench_extract.py --n 100 --jobs 1
The audio is genre_nb.data's synthetic GTZAN-like set (rendered once, kept under --dir); --audio noise writes simpler
signals of our own instead (faster to make). The feature cache is made fresh for every run and deleted afterwards.
"""
import argparse, shutil, sys, threading, time
from pathlib import Path

import pandas as pd
import psutil
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from genre_nb import data, features as F  # noqa: E402
from genre_nb.core import GENRES  # noqa: E402


class PeakRSS:
    "Peak of the summed RSS of this process and all its descendants, sampled in a thread."
    def __init__(self, every: float = 0.05): self.every, self.peak, self._stop = every, 0, threading.Event()
    def _sample(self):
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for p in [me, *me.children(recursive=True)]:
                try: total += p.memory_info().rss
                except psutil.Error: pass
            self.peak = max(self.peak, total); time.sleep(self.every)
    def __enter__(self): self._t = threading.Thread(target=self._sample, daemon=True); self._t.start(); return self
    def __exit__(self, *a): self._stop.set(); self._t.join()


def noise_set(root: Path, n: int, seconds: float, sr: int = 22050) -> pd.DataFrame:
    rows, per = [], -(-n // len(GENRES))
    for i in range(n):
        g = GENRES[i % len(GENRES)]; tid = f"{g}.{i // len(GENRES):05d}"
        p = root / "genres_original" / g / f"{tid}.wav"
        if not p.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
            y = F._bench_audio(1, sr, seconds, seed=i)[0]
            sf.write(p, y, sr, subtype="PCM_16")
        rows.append({"track_id": tid, "genre": g, "path": str(p)})
    return pd.DataFrame(rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="tracks (default 1000)")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--seconds", type=float, default=30.0, help="track length (default 30)")
    ap.add_argument("--audio", choices=("synthetic", "noise"), default="synthetic", help="genre_nb.data's set or our own")
    ap.add_argument("--dir", default="/tmp/genre_nb_bench", help="where the audio (kept) and the cache (deleted) go")
    a = ap.parse_args(argv)
    root = Path(a.dir); cache = root / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    t0 = time.perf_counter()
    if a.audio == "synthetic":
        per = -(-a.n // len(GENRES))
        ds = data.open_dataset(None, root, tracks_per_genre=per, duration=a.seconds, seed=0, jobs=a.jobs)
        tracks = ds.tracks.head(a.n)[["track_id", "genre", "path"]]
    else:
        tracks = noise_set(root / f"noise_{a.seconds:g}s", a.n, a.seconds)
    print(f"audio: {len(tracks)} x {a.seconds:g} s ({a.audio}) ready in {time.perf_counter() - t0:.0f} s, "
          f"{sum(Path(p).stat().st_size for p in tracks.path) / 1e9:.2f} GB on disk")
    # no content_hash column: the workers hash the file bytes too (the worst case for the cache key)
    rows = []
    for run in ("empty cache", "from cache", "from cache, audited table"):
        if run == "from cache, audited table":       # with data.prepare's content_hash: no worker, no file read
            tracks = tracks.assign(content_hash=meta.content_hash.values)
        with PeakRSS() as mem:
            t = time.perf_counter()
            meta = F.extract(tracks, F.DEFAULT_FEATURES, jobs=a.jobs, cache_dir=cache, progress=True)
            dt = time.perf_counter() - t
        rows.append({"run": run, "tracks": len(meta), "computed": int((meta.source == "computed").sum()),
                     "from_cache": int((meta.source == "cache").sum()), "failed": int((meta.source == "failed").sum()),
                     "seconds": round(dt, 1), "tracks_per_s": round(len(meta) / dt, 1), "peak_rss_gb": round(mem.peak / 1e9, 3)})
    size = sum(p.stat().st_size for p in (cache / "features").rglob("*.npy")) / 1e9
    out = pd.DataFrame(rows)
    print(out.to_string(index=False))
    print(f"cache: {size:.2f} GB in {sum(1 for _ in (cache / 'features').rglob('*.npy'))} files; "
          f"jobs={a.jobs}, {psutil.cpu_count()} cpus, load average {psutil.getloadavg()[0]:.1f}")
    shutil.rmtree(cache, ignore_errors=True)
    return out


if __name__ == "__main__":
    main()
