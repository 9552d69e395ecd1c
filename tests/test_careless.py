"""What a careless or hostile user still broke (issue 20): `train --out` over the user's files or the package, near-silent
audio that audit, train and predict judged differently, damaged models and labels named like output columns, arrays in
soundfile's and librosa's layouts, train at its documented minimum, `readme` with a mistyped folder, FIFOs, links and
unreadable formats, a deleted default model. Each case: one clear line (or the right answer), nothing deleted."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from genre_nb import data, inference as I
from genre_nb.core import real_data

ROOT = Path(__file__).resolve().parents[1]
GENRE_NB = str(Path(sys.executable).parent / "genre-nb")   # the console script installed beside this Python
SR = 22050


def genre_nb(*args, env=None, cwd=None, timeout=900):
    return subprocess.run([GENRE_NB, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env={**os.environ, **(env or {})})


def one_line(r) -> str:
    "The one line a refused command prints on stderr (asserting there is exactly one, and no traceback)."
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


def _music(seconds: float = 6.0, f0: float = 220.0, seed: int = 0, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(seed)
    return (0.3 * np.sin(2 * np.pi * f0 * t) * (1 + np.sin(2 * np.pi * 2 * t)) / 2
            + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


# the hostile files: each is what the issue found classified or learnt from although the audit called it unusable
HOSTILE = {
    "silence.wav": lambda p: sf.write(p, np.zeros(SR * 6, np.float32), SR),
    "dither90.wav": lambda p: sf.write(p, np.random.default_rng(1).normal(0, 10 ** (-90 / 20), SR * 6), SR, subtype="FLOAT"),
    "lsb.wav": lambda p: sf.write(p, np.random.default_rng(2).integers(-1, 2, SR * 6).astype(np.int16), SR, subtype="PCM_16"),
    "one_sample.wav": lambda p: sf.write(p, np.r_[np.zeros(SR * 6 - 1), 1 / 32768], SR, subtype="PCM_16"),
    "tone61k.wav": lambda p: sf.write(p, 0.9 * np.sin(2 * np.pi * 61000 * np.arange(192000 * 6) / 192000), 192000),
    "rate1hz.wav": lambda p: sf.write(p, np.full(40, 0.5, np.float32), 1),
    "half_second.wav": lambda p: sf.write(p, _music(0.5), SR),
    "nan.wav": lambda p: sf.write(p, np.r_[_music(6.0)[:-1], np.nan].astype(np.float32), SR, subtype="FLOAT"),
    "junk.wav": lambda p: p.write_text("not a RIFF file\n" * 100),
    "junk.mp3": lambda p: p.write_bytes(np.random.default_rng(3).bytes(20_000)),
}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """Two labels with two usable GTZAN-named files each (the documented minimum; each label has one artist in Sturm's
    index, so neither can be checked on an unseen artist), and the hostile files spread over the two labels."""
    root = tmp_path_factory.mktemp("hostile") / "mine"
    for lab, f0 in (("blues", 180.0), ("jazz", 700.0)):
        (root / lab).mkdir(parents=True)
        for i in range(2): sf.write(root / lab / f"{lab}.{i:05d}.wav", _music(6.0, f0 * (1 + 0.1 * i), i), SR)
    for k, (name, make) in enumerate(HOSTILE.items()): make(root / ("blues", "jazz")[k % 2] / name)
    return root


@pytest.fixture(scope="module")
def trained(hostile, tmp_path_factory):
    "`genre-nb train` on the hostile folder: (the run, the model folder, the cache)."
    base = tmp_path_factory.mktemp("trained")
    r = genre_nb("train", hostile, "--out", base / "model", "--folds", "2", "--repeats", "1",
                 "--cache-dir", base / "cache", env={"GENRE_NB_CONFIG": str(base / "cfg")})
    return r, base / "model", base / "cache"


# case 2 and the acceptance: audit, train and predict agree on which hostile files are usable


def test_audit_train_and_predict_agree_on_the_hostile_files(hostile, trained, tmp_path):
    r = genre_nb("audit", hostile, "--out", tmp_path, "--json")
    assert r.returncode == 0, r.stderr
    status = {t["filename"]: t["status"] for t in json.loads(r.stdout, parse_constant=lambda c: 1 / 0)["tracks"]}
    audit_bad = {f for f, s in status.items() if s != "ok"}
    assert audit_bad == set(HOSTILE), status
    assert status["tone61k.wav"].startswith("silent") and status["dither90.wav"].startswith("silent")
    assert status["rate1hz.wav"] == "unreadable: sample rate 1 Hz is outside 8000-384000 Hz: not a usable recording"
    assert status["nan.wav"].startswith("invalid audio") and status["half_second.wav"].startswith("too short")

    r, model, _ = trained                                   # train leaves each of them out, in one line each
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "Warning" not in r.stderr, r.stderr          # no FitFailedWarnings either
    excluded = [l for l in r.stderr.splitlines() if l.endswith("; excluded")]
    assert sorted(l.split(": ", 2)[1].split("/")[1] for l in excluded) == sorted(HOSTILE), r.stderr
    assert all(sum(name in l for l in r.stderr.splitlines()) == 1 for name in HOSTILE), r.stderr
    assert json.loads((model / "model.json").read_text())["trained_on"]["tracks"] == 4

    files = sorted(p for p in hostile.rglob("*.wav")) + sorted(hostile.rglob("*.mp3"))
    r = genre_nb("predict", *files, "--json")               # the shipped model: the same files are errors
    assert r.returncode == 1
    lines = [json.loads(l, parse_constant=lambda c: 1 / 0) for l in r.stdout.splitlines()]   # JSON Lines, never a NaN
    results = [x for x in lines if "file" in x]
    predict_bad = {Path(x["file"]).name for x in results if "error" in x}
    assert predict_bad == audit_bad, results
    assert sum(1 for x in results if "top" in x) == 4
    assert len([l for l in r.stderr.splitlines() if l.startswith("genre-nb predict:")]) == len(HOSTILE)


def test_all_real_excerpts_stay_usable():
    "Every real excerpt of the shared material (GTZAN, GTZAN-mini, the extra sets) is usable: the floor keeps quiet music."
    folders = [p for p in (real_data("gtzan", "audio"), real_data("gtzan_mini"), real_data("extra")) if p is not None]
    if not folders: pytest.skip("no real material (genre_nb.core.real_data): nothing to check")
    paths = sorted(p for f in folders for p in f.rglob("*") if p.suffix.lower() in data.AUDIO_EXTS)
    aud = data.audit(pd.DataFrame({"track_id": [str(p) for p in paths], "genre": "x", "path": paths}), jobs=2)
    assert len(aud) >= 10 and aud.status.eq("ok").all(), aud[aud.status != "ok"][["path", "status"]]


# case 6: train at the documented minimum, with one artist per label, and junk files


def test_train_at_the_minimum_with_one_artist_per_label_works(trained, tmp_path):
    r, model, _ = trained
    assert r.returncode == 0, r.stderr
    assert "estimated accuracy" in r.stdout
    assert "not checked on unseen artists: blues (one artist (John Lee Hooker)), jazz (one artist (Leonard Bernstein))" in r.stdout
    doc = json.loads((model / "model.json").read_text())
    assert doc["labels"] == ["blues", "jazz"] and doc["cv"]["folds"] == 2
    song = tmp_path / "song.wav"; sf.write(song, _music(8.0, 190.0, 5), SR)
    r = genre_nb("predict", "--model", model, song)
    assert r.returncode == 0, r.stderr


# case 1: train --out never deletes what it did not write


def test_train_refuses_an_out_folder_holding_other_files_before_any_work(hostile, tmp_path):
    out = tmp_path / "keep"; (out / "eval").mkdir(parents=True)
    (out / "NOTES.txt").write_text("mine"); (out / "model.json").write_text("{}")
    t0 = time.time()
    r = genre_nb("train", hostile, "--out", out, "--force", "--cache-dir", tmp_path / "cache")
    assert r.returncode == 1
    assert "holds files that are not a model's (NOTES.txt, eval)" in one_line(r)
    assert (out / "NOTES.txt").read_text() == "mine" and (out / "eval").is_dir()          # nothing deleted
    assert not (tmp_path / "cache").exists() and time.time() - t0 < 60                      # before any work


def test_train_refuses_the_packages_own_folders(hostile):
    shipped = I.shipped_model_path()
    before = {p.name: p.stat().st_mtime_ns for p in shipped.iterdir()}
    for out in (shipped, shipped.parent / "mine", shipped.parents[3]):         # the model, its folder, what holds genre_nb
        r = genre_nb("train", hostile, "--out", out, "--force")
        assert r.returncode == 1 and "genre_nb package" in one_line(r), r.stderr
    assert {p.name: p.stat().st_mtime_ns for p in shipped.iterdir()} == before


def test_train_replaces_a_model_folder_only_with_force(hostile, trained, tmp_path):
    _, model, cache = trained
    out = tmp_path / "m"; shutil.copytree(model, out)
    stamp = (out / "model.json").read_text()
    r = genre_nb("train", hostile, "--out", out, "--cache-dir", cache)
    assert r.returncode == 1 and "is a model folder already: replace it with --force" in one_line(r)
    assert (out / "model.json").read_text() == stamp
    # two runs on one --out at the same time: both finish (no ENOENT on a temporary folder), one complete model stays
    runs = [subprocess.Popen([GENRE_NB, "train", str(hostile), "--out", str(out), "--force", "--folds", "2", "--repeats",
                              "1", "--cache-dir", str(cache), "--seed", str(s)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for s in (1, 2)]
    for p in runs:
        _, err = p.communicate(timeout=900)
        assert p.returncode == 0 and "Traceback" not in err, err
    assert json.loads((out / "model.json").read_text())["seed"] in (1, 2)
    assert sorted(p.name for p in out.iterdir()) == sorted(I.MODEL_FILES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]                 # no temporary folder left beside it


def test_train_checks_the_cache_before_work(hostile, tmp_path):
    f = tmp_path / "a_file"; f.write_text("x")
    r = genre_nb("train", hostile, "--out", tmp_path / "m", "--cache-dir", f / "cache")
    assert r.returncode == 1 and "--cache-dir" in one_line(r) and "is a file, not a folder" in r.stderr


# case 3: models and labels


def _edited_model(tmp_path, weights=None, labels=None) -> Path:
    m = tmp_path / "edited"; shutil.copytree(I.shipped_model_path(), m)
    if weights is not None:
        w = dict(np.load(m / "weights.npz")); w.update(weights); np.savez(m / "weights.npz", **w)
    if labels is not None:
        doc = json.loads((m / "model.json").read_text()); doc["labels"] = labels
        (m / "model.json").write_text(json.dumps(doc))
    return m


@pytest.mark.parametrize("edit, message", [
    (lambda w: {"mean": np.full_like(w["mean"], 1e308), "scale": np.full_like(w["scale"], 1e-300)},
     "the weights give non-finite probabilities"),
    (lambda w: {k: w[k][..., :50] if k in ("mean", "scale", "coef") else w[k] for k in w},
     "50 features, but the mean+std-pooled musicnn embedding gives 912"),
])
def test_a_model_that_cannot_give_finite_answers_is_one_line(tmp_path, edit, message):
    w = dict(np.load(I.shipped_model_path() / "weights.npz"))
    song = tmp_path / "song.wav"; sf.write(song, _music(), SR)
    r = genre_nb("predict", "--model", _edited_model(tmp_path, edit(w)), song, "--json")
    assert r.returncode == 1 and message in one_line(r), r.stderr
    assert "NaN" not in r.stdout


def test_labels_named_like_output_columns_are_refused(tmp_path):
    labels = json.loads((I.shipped_model_path() / "model.json").read_text())["labels"]
    song = tmp_path / "song.wav"; sf.write(song, _music(), SR)
    r = genre_nb("predict", "--model", _edited_model(tmp_path, labels=["file"] + labels[1:]), song)
    assert r.returncode == 1 and "label 'file' is named like a column of predict's output" in one_line(r)
    d = tmp_path / "mine"
    for lab in ("probability", "calm"):
        (d / lab).mkdir(parents=True)
        for i in range(2): sf.write(d / lab / f"{i}.wav", _music(4.0, 300.0 + 50 * i), SR)
    r = genre_nb("train", d, "--out", tmp_path / "m", "--cache-dir", tmp_path / "cache")
    assert r.returncode == 1 and "label folder 'probability' is named like a column" in one_line(r)
    assert not (tmp_path / "cache").exists()                                   # refused before any embedding


# case 4: arrays as soundfile and librosa return them


def test_api_takes_arrays_in_any_layout(tmp_path):
    import genre_nb
    y = _music(10.0)
    sf.write(tmp_path / "stereo.wav", np.stack([y, y], 1), SR, subtype="PCM_16")
    stereo, sr = sf.read(tmp_path / "stereo.wav", dtype="float32")              # (n, 2)
    raw, _ = sf.read(tmp_path / "stereo.wav", dtype="int16")
    t0 = time.time()
    df = genre_nb.predict([tmp_path / "stereo.wav", stereo, (stereo.T, sr), (raw, sr)])
    assert len(df) == 4 and df.error.isna().all() and time.time() - t0 < 120
    P = df[df.columns[4:-1]].to_numpy(float)
    np.testing.assert_allclose(P, np.repeat(P[:1], 4, 0), atol=1e-4)            # one answer, however it was given
    assert len(genre_nb.predict(stereo)) == 1                                   # one input, not n
    empty = genre_nb.predict([])
    assert len(empty) == 0 and list(empty.columns[:5]) == ["file", "duration_s", "silent_s", "genre", "probability"]


# case 7: readme with a mistyped or result-less folder


@pytest.mark.parametrize("folder", ["reportz", "empty"])
def test_readme_with_a_folder_without_results_leaves_the_readme_alone(tmp_path, folder):
    readme = ROOT / "README.md"
    before, stamp = readme.read_bytes(), readme.stat().st_mtime_ns
    target = tmp_path / folder
    if folder == "empty": target.mkdir()
    r = genre_nb("readme", "--reports-dir", target, cwd=ROOT)
    assert r.returncode == 1 and "no results in" in one_line(r)
    assert readme.read_bytes() == before and readme.stat().st_mtime_ns == stamp


# case 8: unclear or silent


def test_a_fifo_and_a_symlink_loop_named_directly_say_what_they_are(tmp_path):
    os.mkfifo(tmp_path / "pipe.wav"); (tmp_path / "loop.wav").symlink_to(tmp_path / "loop.wav")
    r = genre_nb("predict", tmp_path / "pipe.wav", tmp_path / "loop.wav", timeout=120)    # never blocks on the pipe
    lines = sorted(l for l in r.stderr.splitlines() if l.startswith("genre-nb predict:"))   # in the order they finish
    assert r.returncode == 1 and len(lines) == 2, r.stderr
    assert "loop.wav is a symbolic link that loops" in lines[0], lines
    assert "pipe.wav is a named pipe (FIFO), not an audio file" in lines[1], lines


def test_a_folder_reports_what_it_cannot_read_and_an_empty_one_aborts_nothing(tmp_path):
    lib = tmp_path / "lib"; (lib / "sub").mkdir(parents=True); (tmp_path / "empty").mkdir()
    sf.write(lib / "a.opus", _music(6.0, 48000 / 110, 0, 48000), 48000, format="OGG", subtype="OPUS")
    sf.write(lib / "sub" / "no_extension", _music(), SR, format="WAV")
    (lib / "b.m4a").write_bytes(b"\0\0\0\x20ftypM4A " + bytes(200))
    os.mkfifo(lib / "pipe"); (lib / "gone.flac").symlink_to(lib / "nothing.flac"); (lib / "cover.jpg").write_bytes(b"\xff\xd8")
    r = genre_nb("predict", tmp_path / "empty", lib, "--jobs", "1000", timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    said = {Path(l.split(": ")[1]).name: l for l in r.stderr.splitlines() if l.startswith("genre-nb predict:")}
    assert sorted(said) == ["b.m4a", "empty", "gone.flac", "pipe"], r.stderr
    assert "no audio files" in said["empty"] and "MP4/M4A (AAC or ALAC) audio, which soundfile cannot decode" in said["b.m4a"]
    assert "broken symbolic link" in said["gone.flac"] and "named pipe" in said["pipe"]
    assert "skipped 1 entries that are not audio (.jpg 1)" in r.stderr                     # said, not silent
    assert f"jobs 1000 -> {os.cpu_count()}" in r.stderr                                    # capped, and said
    answered = [l.split(": ")[0] for l in r.stdout.splitlines() if not l.startswith("# ")]  # not the model, summary
    assert sorted(Path(a).name for a in answered) == ["a.opus", "no_extension"]            # the rest is classified


def test_a_deleted_default_model_says_how_to_change_it(tmp_path):
    cfg, m = tmp_path / "cfg", tmp_path / "mymodel"
    shutil.copytree(I.shipped_model_path(), m)
    env = {"GENRE_NB_CONFIG": str(cfg)}
    r = genre_nb("default-model", m, env=env)
    assert r.returncode == 0 and str(m) in r.stdout and str(cfg / "default_model") in r.stdout
    shutil.rmtree(m)
    song = tmp_path / "song.wav"; sf.write(song, _music(), SR)
    r = genre_nb("predict", song, env=env)
    line = one_line(r)
    assert r.returncode == 1 and "is gone" in line and "default-model --reset" in line and str(cfg) in line
    r = genre_nb("default-model", "--reset", env=env)
    assert r.returncode == 0 and "the shipped one" in r.stdout
    r = genre_nb("predict", song, env=env)
    assert r.returncode == 0 and "shipped with genre_nb" in r.stdout


def test_audit_and_extract_take_any_label_folders(tmp_path):
    d = tmp_path / "my_music"
    for lab, f0 in (("calm", 200.0), ("upbeat", 600.0)):
        (d / lab).mkdir(parents=True)
        for i in range(2): sf.write(d / lab / f"{i}.wav", _music(4.0, f0 + 40 * i), SR)
    r = genre_nb("audit", d, "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Audit of 4 tracks (your folder my_music)" in r.stdout and "gtzan" not in r.stdout
    assert sorted(pd.read_csv(tmp_path / "audit.csv").genre) == ["calm", "calm", "upbeat", "upbeat"]
    r = genre_nb("extract", d, "--features", "mel", "--out", tmp_path / "t.csv", "--jobs", "1", "--cache-dir", tmp_path / "c")
    assert r.returncode == 0, r.stderr
    assert "your folder my_music" in r.stdout and "gtzan" not in r.stdout
    assert sorted(pd.read_csv(tmp_path / "t.csv").genre) == ["calm", "calm", "upbeat", "upbeat"]


def test_extract_on_only_junk_fails_and_writes_nothing(tmp_path):
    d = tmp_path / "d" / "rock"; d.mkdir(parents=True)
    (d / "a.wav").write_text("x"); sf.write(d / "b.wav", np.zeros(SR * 4, np.float32), SR)
    r = genre_nb("extract", tmp_path / "d", "--features", "mel", "--out", tmp_path / "t.csv", "--cache-dir", tmp_path / "c")
    assert r.returncode == 1
    assert "no usable track in" in [l for l in r.stderr.splitlines() if "error" in l][0]
    assert "Traceback" not in r.stderr and not (tmp_path / "t.csv").exists()
