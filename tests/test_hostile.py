"""Hostile and careless input (issue 14): not-audio files, one file name in two genre folders, damaged cache entries,
concurrent writers of the results store, options that must fail before any work, and what `quick` changes."""
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from genre_nb import core, data, features as F

ROOT = Path(__file__).resolve().parents[1]
GENRE_NB = str(Path(sys.executable).parent / "genre-nb")   # the console script installed beside this Python
SR = 22050


def genre_nb(*args, cwd=None, timeout=600):
    return subprocess.run([GENRE_NB, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout)


def _tone(f0: float, seconds: float = 4.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.2 * sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 4))).astype(np.float32)


# defect 6: bytes that are not audio


def test_random_bytes_and_text_are_not_audio(tmp_path):
    "Random bytes named .au/.snd/.wav/.mp3 and text named .au are unreadable (`not audio`); a real track beside them is ok."
    g = tmp_path / "d" / "blues"; g.mkdir(parents=True)
    sf.write(g / "blues.00000.wav", _tone(220), SR)
    junk = np.random.default_rng(0).bytes(200_000)
    for ext in ("au", "snd", "wav", "mp3"): (g / f"random.{ext}").write_bytes(junk)
    (g / "text.au").write_text("this is a text file, not sound\n" * 500)
    mpeg_like = np.random.default_rng(1).bytes(200_000)    # by chance these begin like an MPEG frame (ff e4 ...)
    (g / "mpeg_like.au").write_bytes(mpeg_like)
    r = genre_nb("audit", tmp_path / "d", "--out", tmp_path / "out", "--jobs", "1")
    assert r.returncode == 0, r.stderr
    a = pd.read_csv(tmp_path / "out" / "audit.csv").set_index("filename")
    assert a.loc["blues.00000.wav", "status"] == "ok"
    for f in ("random.au", "random.snd", "random.wav", "random.mp3", "text.au"):
        assert a.loc[f, "status"].startswith("unreadable: not audio"), (f, a.loc[f, "status"])
    # what passes the container check goes to the decoder, which refuses it: unreadable all the same, never 8 kHz audio
    assert a.loc["mpeg_like.au", "status"].startswith("unreadable: cannot decode"), a.loc["mpeg_like.au", "status"]
    assert a.drop("blues.00000.wav").duration_s.isna().all()


def test_a_damaged_mp3_is_said_plainly(tmp_path):
    "An MP3 that libsndfile cannot open is not called 'a pipe'."
    p = tmp_path / "song.mp3"
    p.write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x00" + np.random.default_rng(2).bytes(100_000))
    with pytest.raises(data.AudioError) as e:
        data.read_audio(p)
    assert "pipe" not in str(e.value) and "no valid MP3 audio data" in str(e.value)


# defect 2: one file name in two genre folders


def test_same_file_name_in_two_genre_folders_stays_two_tracks(tmp_path):
    "d/blues/01.wav and d/rock/01.wav: two rows, each with its own features; the audit names the collision."
    d = tmp_path / "d"
    for g, f0 in (("blues", 110.0), ("rock", 440.0)):
        (d / g).mkdir(parents=True); sf.write(d / g / "01.wav", _tone(f0), SR)
    sf.write(d / "rock" / "02.wav", _tone(330.0), SR)
    out = tmp_path / "mel.csv"
    r = genre_nb("extract", d, "--features", "mel", "--out", out, "--jobs", "1", "--cache-dir", tmp_path / "c")
    assert r.returncode == 0, r.stderr
    assert "left out" not in r.stdout and "3 tracks x 128" in r.stdout
    t = pd.read_csv(out).set_index("track_id")
    assert sorted(t.index) == ["02", "blues/01.wav", "rock/01.wav"]
    assert t.loc["blues/01.wav", "genre"] == "blues" and t.loc["rock/01.wav", "genre"] == "rock"
    for tid, path in (("blues/01.wav", d / "blues" / "01.wav"), ("rock/01.wav", d / "rock" / "01.wav")):
        mine = F.compute_features(data.load_audio(path), SR, ["mel"])["mel"].mean(axis=1)
        np.testing.assert_allclose(t.loc[tid, [f"mel_{i}" for i in range(128)]].to_numpy(float), mine, atol=1e-3)
    a = genre_nb("audit", d, "--out", tmp_path / "a", "--json")
    assert a.returncode == 0, a.stderr
    same = json.loads(a.stdout)["name_collisions"]
    assert sorted(x["track_id"] for x in same) == ["blues/01.wav", "rock/01.wav"]


# defect 4: damaged cache entries


def test_damaged_cache_entries_are_recomputed_and_counted(tmp_path):
    "NaN frames, garbage after a valid header, and finite values that are not what was written: never used by extract."
    d = tmp_path / "d" / "genres_original"
    for gi, g in enumerate(("blues", "rock")):
        (d / g).mkdir(parents=True)
        for i in range(2): sf.write(d / g / f"{g}.{i:05d}.wav", _tone(110.0 * (1 + gi + 0.3 * i)), SR)
    cache, first, second = tmp_path / "c", tmp_path / "first.csv", tmp_path / "second.csv"
    r = genre_nb("extract", d.parent, "--features", "mel", "--out", first, "--jobs", "1", "--cache-dir", cache)
    assert r.returncode == 0, r.stderr
    entries = sorted((cache / "features" / "mel").rglob("*.npy"))
    assert len(entries) == 4
    rng = np.random.default_rng(0)
    for k, p in enumerate(entries[:3]):
        b = p.read_bytes(); x = np.load(p); head = len(b) - 24 - x.nbytes
        if k == 0: x[:, 10:20] = np.nan; p.write_bytes(b[:head] + x.tobytes())              # NaN frames (no digest)
        if k == 1: p.write_bytes(b[:head] + rng.bytes(x.nbytes))                            # garbage after the header
        if k == 2: p.write_bytes(b[:head] + np.full_like(x, -40.0).tobytes() + b[-24:])     # plausible, but not what was written
    r = genre_nb("extract", d.parent, "--features", "mel", "--out", second, "--jobs", "1", "--cache-dir", cache)
    assert r.returncode == 0, r.stderr
    assert "recomputed 3 damaged cache entries" in r.stderr
    pd.testing.assert_frame_equal(pd.read_csv(second), pd.read_csv(first))
    assert np.isfinite(pd.read_csv(second).iloc[:, 2:].to_numpy(float)).all()


# defect 3: concurrent writers of the results store


def test_two_processes_appending_200_rows_each_keep_400(tmp_path):
    store = tmp_path / "reports" / "results.csv"
    code = textwrap.dedent(f"""
        import sys
        from genre_nb.core import append_results
        for i in range(200): append_results({{"model": sys.argv[1], "seed": i, "test_accuracy": 0.5}}, {str(store)!r})
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code, name], stderr=subprocess.PIPE, text=True) for name in ("a", "b")]
    for p in procs: assert p.wait(timeout=600) == 0, p.stderr.read()
    t = core.read_results(store)
    assert len(t) == 400 and list(t.columns) == ["model", "seed", "test_accuracy"]
    assert {m: sorted(g.seed) for m, g in t.groupby("model")} == {"a": list(range(200)), "b": list(range(200))}


# defect 7: options checked before any work


def test_extract_out_an_existing_folder_fails_before_any_work(tmp_path):
    d = tmp_path / "d" / "blues"; d.mkdir(parents=True); sf.write(d / "01.wav", _tone(220), SR)
    t0 = time.time()
    r = genre_nb("extract", tmp_path / "d", "--features", "mel", "--out", tmp_path, "--cache-dir", tmp_path / "c")
    assert r.returncode == 1 and "Traceback" not in r.stderr and r.stderr.strip().count("\n") == 0
    assert "is a folder; give a file name" in r.stderr
    assert not (tmp_path / "c").exists()                   # no audit, no features: nothing was done
    assert time.time() - t0 < 60


@pytest.mark.parametrize("argv, message", [
    (["audit", "{d}", "--out", "{file}"], "is a file, not a folder"),
    (["audit", "{d}", "--jobs", "0"], "--jobs must be >= 1"),
    (["audit", "{d}", "--min-duration", "-5"], "--min-duration must be >= 0"),
    (["audit", "--duration", "-1"], "--duration must be in [0.5, 600]"),
    (["extract", "{d}", "--jobs", "0"], "--jobs must be >= 1"),
    (["extract", "{d}", "--out", "{file}/x.csv"], "is a file, not a folder"),
    (["bench", "--n-tracks", "0"], "--n-tracks must be >= 1"),
    (["reproduce", "--seeds", "0"], "seeds must be >= 1"),
    (["reproduce", "--epochs", "-3"], "epochs must be >= 1"),
])
def test_bad_options_are_one_line_before_work(tmp_path, argv, message):
    d = tmp_path / "d" / "blues"; d.mkdir(parents=True); sf.write(d / "01.wav", _tone(220), SR)
    f = tmp_path / "a_file"; f.write_text("x")
    r = genre_nb(*[a.format(d=tmp_path / "d", file=f) for a in argv], cwd=tmp_path)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and r.stderr.strip().count("\n") == 0 and message in r.stderr, r.stderr
    assert not (tmp_path / "audit.csv").exists() and not (tmp_path / "reports").exists()


# defect 7: what quick changes is said


def test_quick_says_what_it_changes(tmp_path):
    "`-p quick True -p epochs 4`: the chapter says `epochs 4 -> 2` (here the run then stops at a missing data folder)."
    out = tmp_path / "out.ipynb"
    args = [sys.executable, "-m", "papermill", str(ROOT / "nbs" / "05a_cnn.ipynb"), str(out), "-k", "python3",
            "--cwd", str(ROOT / "nbs"), "-p", "quick", "True", "-p", "epochs", "4", "-p", "data_dir", str(tmp_path / "none"),
            "-p", "reports_dir", str(tmp_path / "reports")]
    r = subprocess.run(args, capture_output=True, text=True, timeout=600, env={**os.environ, "IN_TEST": ""})
    assert r.returncode != 0 and "data folder not found" in r.stderr + r.stdout
    outputs = [o for c in json.loads(out.read_text())["cells"] for o in c.get("outputs", []) if o.get("output_type") == "stream"]
    text = "".join("".join(o["text"]) if isinstance(o["text"], list) else o["text"] for o in outputs)
    assert text.count("quick: ") == 1 and "epochs 4 -> 2" in text, text[-2000:]
