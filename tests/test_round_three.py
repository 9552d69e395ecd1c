"""What a careless user still found (issue 27, "nothing silently wrong, round three"), one test per numbered case: labels
named like run columns, silence inside a file, a tiny training set presented as certainty, the same audio twice, resume
by where a file is, odd inputs to the API, error rows without a genre, a full disk, odd scheduler addresses, resume's
messages and damaged outputs, --list comments, SIGTERM, noise on stderr, and joblib's warning when a run stops early.

The audio is short generated clips (a few seconds), the libraries a handful of files."""
import csv
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import genre_nb
from genre_nb import inference as I, library as L

GENRE_NB = str(Path(sys.executable).parent / "genre-nb")
SR = 22050


def genre_nb_cli(*args, env=None, cwd=None, timeout=600, **kw):
    return subprocess.run([GENRE_NB, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env={**os.environ, **(env or {})}, **kw)


def one_line(r) -> str:
    "The one line a refused command prints on stderr (asserting there is exactly one, no traceback, no warning)."
    assert "Traceback" not in r.stderr and "Warning" not in r.stderr, r.stderr
    lines = [l for l in r.stderr.strip().splitlines() if not l.startswith("INFO ")]
    assert len(lines) == 1, r.stderr
    return lines[0]


def _music(seconds: float = 4.0, f0: float = 220.0, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(seed)
    return (0.3 * np.sin(2 * np.pi * f0 * t) * (1 + np.sin(2 * np.pi * 2 * t)) / 2
            + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    "Four distinct 3 s clips in one folder."
    d = tmp_path_factory.mktemp("clips") / "music"
    d.mkdir()
    for k in range(4): sf.write(d / f"c{k}.wav", _music(3.0, 150 * 1.5 ** k, k), SR, subtype="PCM_16")
    return d


def _labelled(root: Path, labels=("pop", "classical"), n: int = 3) -> Path:
    "A labelled folder: `n` short distinct clips per label."
    for lab in labels:
        (root / lab).mkdir(parents=True, exist_ok=True)
        f0 = 150 + sum(map(ord, lab)) % 50 * 13                          # a pitch of its own per label
        for i in range(n): sf.write(root / lab / f"{lab[:20]}{i}.wav", _music(6.0, f0 * (1 + 0.1 * i), i), SR)
    return root


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f: return list(csv.DictReader(f))


# case 1: a label named like a run column


@pytest.mark.parametrize("label", ["model", "size", "mtime", "window_s", "model_sha256"])
def test_1_a_label_named_like_a_run_column_is_refused_before_work(tmp_path, label):
    root = _labelled(tmp_path / "mine", (label, "jazz"), 2)
    t0 = time.monotonic()
    r = genre_nb_cli("train", root, "--out", tmp_path / "m", "--folds", "2", "--repeats", "1")
    assert r.returncode == 1 and "named like a column" in one_line(r) and repr(label) in r.stderr, r.stderr
    assert time.monotonic() - t0 < 60 and not (tmp_path / "m").exists()


# case 2: silence inside a file


def test_2_silent_windows_get_no_vote_and_the_output_says_how_much_was_silent(tmp_path):
    model = I.load_model()
    music = _music(10.0, 330.0, 3)
    alone = genre_nb.predict([(music, SR)], model, window_s=5.0)
    padded = np.concatenate([np.zeros(SR * 20, np.float32), music])
    df = genre_nb.predict([(padded, SR)], model, window_s=5.0)
    assert df.error.isna().all(), df.error
    assert df.genre[0] == alone.genre[0] and abs(df.probability[0] - alone.probability[0]) < 1e-6
    assert df.silent_s[0] == pytest.approx(20.0) and alone.silent_s[0] == 0.0
    seg = genre_nb.predict([(padded, SR)], model, window_s=5.0, segments=True)
    assert (seg.silent_s > 0).tolist() == [True] * 4 + [False] * 2 and seg.genre[:4].isna().all()
    f = tmp_path / "quiet_then_music.wav"
    sf.write(f, padded, SR)
    r = genre_nb_cli("predict", f, "--window", "5", "--json")
    item = json.loads(r.stdout.splitlines()[1])
    assert r.returncode == 0 and item["silent_s"] == pytest.approx(20.0) and item["top"][0]["genre"] == alone.genre[0]


# case 3 and case 14 (train's noise): a tiny training set


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    "`genre-nb train` on two labels of three short clips: (the run, the model folder)."
    base = tmp_path_factory.mktemp("tiny")
    root = _labelled(base / "mine")
    r = genre_nb_cli("train", root, "--out", base / "model", "--folds", "2", "--repeats", "1", "--cache-dir", base / "cache",
                     env={"GENRE_NB_CONFIG": str(base / "cfg")})
    return r, base / "model"


def test_3_a_tiny_training_set_is_never_presented_as_calibrated_certainty(tiny):
    r, model = tiny
    assert r.returncode == 0, r.stderr
    doc = json.loads((model / "model.json").read_text())
    assert doc["temperature"] >= 1.0, doc["temperature"]           # never sharpened on a handful of answers
    assert "too few" in r.stdout + r.stderr and "(calibrated probabilities)" not in r.stdout, r.stdout


def test_14_train_says_each_thing_once_and_never_below_0_00(tiny):
    r, _ = tiny
    info = [l for l in r.stderr.splitlines() if "features musicnn" in l and l.startswith("INFO")]
    assert len(info) == len(set(info)), info
    assert "below 0.00" not in r.stdout, r.stdout


# case 4: the same audio twice


def test_4_the_same_audio_under_two_labels_is_refused(tmp_path):
    root = _labelled(tmp_path / "mine")
    shutil.copy(root / "pop" / "pop0.wav", root / "classical" / "copy.wav")
    r = genre_nb_cli("train", root, "--out", tmp_path / "m", "--folds", "2", "--repeats", "1")
    line = one_line(r)
    assert r.returncode == 1 and "same audio" in line and "pop0.wav" in line and "copy.wav" in line, line


def test_4_the_same_files_in_two_folders_are_learnt_once(tmp_path):
    a = _labelled(tmp_path / "a")
    shutil.copytree(a, tmp_path / "b")
    _labelled(tmp_path / "a", ("rock",), 3)
    tracks = I.usable_labelled(I.labelled_tracks([a, tmp_path / "b"]))
    assert len(tracks) == 9 and tracks.source.value_counts().to_dict() == {"a": 9}, tracks


# case 5: --resume matches files by where they are


def test_5_resume_knows_a_folder_named_another_way(clips, tmp_path):
    out = tmp_path / "genres.csv"
    r = genre_nb_cli("predict", clips.name, "--out", out, cwd=clips.parent)
    assert r.returncode == 0, r.stderr
    r = genre_nb_cli("predict", clips, "--out", out, "--resume")                     # absolute
    assert r.returncode == 0 and "4 already in the output" in r.stdout, r.stdout
    (tmp_path / "elsewhere").mkdir()
    r = genre_nb_cli("predict", os.path.relpath(clips, tmp_path / "elsewhere"), "--out", out, "--resume",
                     cwd=tmp_path / "elsewhere")
    assert r.returncode == 0 and "4 already in the output" in r.stdout, r.stdout
    rows = _read_csv(out)
    assert sorted(r["file"] for r in rows) == sorted(str(p) for p in clips.glob("*.wav"))   # each once, where it is
    twice = tmp_path / "twice.csv"                                    # one file named twice: one row
    r = genre_nb_cli("predict", "music", "music/./c0.wav", str(clips / "c0.wav"), "--out", twice, cwd=clips.parent)
    assert r.returncode == 0 and len(_read_csv(twice)) == 4, r.stderr


# case 6, case 10: what the API is given


def test_6_a_rate_that_is_not_a_number_is_refused():
    y = _music(3.0)
    with pytest.raises(genre_nb.core.ParameterError, match="sample rate"): genre_nb.predict((y, "44100"))
    with pytest.raises(genre_nb.core.ParameterError, match="sample rate"): genre_nb.predict([(y, "44100")])


@pytest.mark.parametrize("x, message", [((np.zeros(SR * 3, np.float32), 1j), "sample rate"), (None, "nothing to classify"),
                                        (5, "a number"), (b"song.wav", "bytes")])
def test_10_odd_inputs_are_one_clear_error(x, message):
    with pytest.raises(genre_nb.core.GenreNBError, match=message): genre_nb.predict(x)


# case 7: error rows carry every column


def test_7_the_readme_loop_survives_a_file_that_fails(clips, tmp_path):
    (tmp_path / "bad.wav").write_text("not audio")
    rows = list(genre_nb.predict_iter([clips / "c0.wav", tmp_path / "bad.wav"]))
    for row in rows: print(row["file"], row["genre"])                  # README's example
    bad = next(r for r in rows if r["error"])
    assert bad["genre"] is None and set(bad) == set(rows[0]) == set(I.row_schema(I.model_labels(I.load_model())))


# case 8: the disk is full when --out is made


def _no_file_growth():
    "A child process that may not write a single byte into a file (as on a full disk): EFBIG, not SIGXFSZ."
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100))   # less than a row; a semaphore fits


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_8_a_full_disk_at_the_start_is_one_line_and_leaves_nothing(clips, tmp_path, suffix):
    out = tmp_path / f"genres{suffix}"
    r = genre_nb_cli("predict", clips / "c0.wav", clips / "c1.wav", "--out", out, preexec_fn=_no_file_growth)
    line = one_line(r)
    assert r.returncode == 1 and "File too large" in line and "free the space" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == [], list(tmp_path.iterdir())


# case 9: a scheduler address whose port is not a number


def test_9_a_scheduler_port_that_is_not_a_number_is_one_line(clips):
    pytest.importorskip("distributed", reason="needs dask[distributed]")
    r = genre_nb_cli("predict", clips / "c0.wav", "--scheduler", "tcp://127.0.0.1:notaport", timeout=120)
    assert r.returncode == 1 and "notaport" in one_line(r), r.stderr


# case 11: resume's messages, and outputs changed by hand or cut off


@pytest.fixture
def written(clips, tmp_path):
    "An output of the four clips (CSV), and its text."
    out = tmp_path / "genres.csv"
    assert genre_nb_cli("predict", clips, "--out", out).returncode == 0
    return out, out.read_text()


def test_11_another_model_or_window_is_said_once(clips, written, tmp_path):
    out, before = written
    other = tmp_path / "other_model"
    shutil.copytree(I.shipped_model_path(), other)
    w = dict(np.load(other / "weights.npz"))
    np.savez(other / "weights.npz", **{**w, "coef": w["coef"] * 2})
    line = one_line(genre_nb_cli("predict", clips, "--out", out, "--resume", "--model", other))
    assert "rows of two models must not mix" in line and "damaged" not in line and line.count("choose another file") == 1
    line = one_line(genre_nb_cli("predict", clips, "--out", out, "--resume", "--window", "6"))
    assert "pass --window 29.92" in line and "damaged" not in line, line
    assert out.read_text() == before


def test_11_reordered_columns_are_named_as_such(clips, written):
    out, text = written
    rows = list(csv.reader(text.splitlines()))
    out.write_text("\n".join(",".join(r[1:] + r[:1]) for r in rows) + "\n")
    line = one_line(genre_nb_cli("predict", clips, "--out", out, "--resume"))
    assert "another order" in line and "labels" not in line, line


def test_11_a_row_cut_inside_a_file_name_holding_a_newline_is_dropped_and_redone(clips, tmp_path):
    odd = tmp_path / "odd\nname.wav"
    shutil.copy(clips / "c1.wav", odd)
    out = tmp_path / "genres.csv"
    assert genre_nb_cli("predict", clips / "c0.wav", "--out", out).returncode == 0
    assert genre_nb_cli("predict", clips / "c0.wav", odd, "--out", out, "--resume").returncode == 0
    data = out.read_bytes()
    out.write_bytes(data[: data.rindex(b"odd\n") + 4])                 # killed right after the newline in its name
    r = genre_nb_cli("predict", clips / "c0.wav", odd, "--out", out, "--resume")
    assert r.returncode == 0 and "Traceback" not in r.stderr and "1 already in the output" in r.stdout, (r.stdout, r.stderr)
    assert "cut off" in r.stderr
    assert sorted(r["file"] for r in _read_csv(out)) == sorted([str(clips / "c0.wav"), str(odd)])


def test_11_a_row_repeated_by_hand_is_not_kept_twice(clips, written):
    out, text = written
    lines = text.splitlines(keepends=True)
    out.write_text("".join(lines + lines[1:2]))
    r = genre_nb_cli("predict", clips, "--out", out, "--resume")
    assert r.returncode == 0, r.stderr
    files = [r["file"] for r in _read_csv(out)]
    assert len(files) == len(set(files)) == 4


def test_11_a_line_added_by_hand_without_newline_is_kept_or_said(clips, written):
    out, text = written
    out.write_text(text.rstrip("\n"))                                  # a whole row, only its newline missing
    r = genre_nb_cli("predict", clips, "--out", out, "--resume")
    assert r.returncode == 0 and "4 already in the output" in r.stdout and out.read_text() == text, r.stdout
    out.write_text(text + "my own note")                               # not a row
    r = genre_nb_cli("predict", clips, "--out", out, "--resume")
    assert r.returncode == 0 and "cut off" in r.stderr and out.read_text() == text, r.stderr


# case 12: --list comments and names, --scheduler with --backend tf


def test_12_a_hash_inside_a_folder_name_is_not_a_comment(tmp_path):
    _labelled(tmp_path / "t#hash")
    lst = tmp_path / "folders.txt"
    lst.write_text("# my folders\nt#hash\n  # not this one\nnot_there\n")
    line = one_line(genre_nb_cli("train", "--list", lst, "--out", tmp_path / "m", cwd="/"))
    assert f"not found: {tmp_path / 'not_there'}" in line, line


def test_12_a_missing_folder_is_named_where_it_was_looked_for(tmp_path):
    line = one_line(genre_nb_cli("train", "../not_there", "--out", tmp_path / "m", cwd=tmp_path))
    assert f"not found: {tmp_path.parent / 'not_there'}" in line, line


def test_12_scheduler_with_backend_tf_blames_the_option(clips):
    pytest.importorskip("distributed", reason="needs dask[distributed]")
    line = one_line(genre_nb_cli("predict", clips / "c0.wav", "--scheduler", "tcp://127.0.0.1:9", "--backend", "tf"))
    assert "--backend tf" in line and "this one runs on TensorFlow" not in line, line


# case 13: SIGTERM, and a $GENRE_NB_MODEL that is not a model


def test_13_sigterm_to_predict_ends_like_ctrl_c(clips, tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    for k in range(300): os.link(clips / f"c{k % 4}.wav", lib / f"f{k:03d}.wav")
    out = tmp_path / "genres.csv"
    p = subprocess.Popen([GENRE_NB, "predict", lib, "--out", out, "--jobs", "1"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    while not out.exists() or out.read_bytes().count(b"\n") < 5:
        assert p.poll() is None and time.monotonic() - t0 < 120
        time.sleep(0.1)
    p.send_signal(signal.SIGTERM)
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 143 and "Traceback" not in stderr, stderr
    assert "terminated after" in stderr and "--resume" in stderr, stderr


def test_13_sigterm_to_train_leaves_no_worker_and_nothing_in_dev_shm(tmp_path):
    root = _labelled(tmp_path / "mine", n=6)
    before = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    p = subprocess.Popen([GENRE_NB, "train", root, "--out", tmp_path / "m", "--jobs", "2", "--cache-dir", tmp_path / "c"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    t0 = time.monotonic()
    while not _children(p.pid):                                        # its workers have started
        assert p.poll() is None and time.monotonic() - t0 < 120, p.communicate()
        time.sleep(0.2)
    time.sleep(0.3)
    kids = _children(p.pid)
    p.send_signal(signal.SIGTERM)
    try: _, stderr = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:                                  # its workers hold its pipes open: stop them all
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        raise AssertionError("60 s after SIGTERM its workers still ran") from None
    assert p.returncode == 143 and "Traceback" not in stderr, stderr
    time.sleep(2.0)
    alive = [k for k in kids if _alive(k)]
    try: assert alive == [], alive
    finally:
        for k in alive: os.kill(k, signal.SIGKILL)
    after = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    assert not [f for f in after - before if "joblib" in f or "loky" in f], after - before


def _children(pid: int) -> list[int]:
    "The worker processes (loky's) of `pid`'s session, not a helper it runs a moment at start-up."
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == pid: continue
        try: stat, cmd = (d / "stat").read_text().rsplit(")", 1)[1].split(), (d / "cmdline").read_bytes()
        except OSError: continue
        if int(stat[3]) == pid and stat[0] != "Z" and b"loky" in cmd: out.append(int(d.name))   # session id: field 6
    return out


def _alive(pid: int) -> bool:
    try: return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError: return False


def test_13_default_model_checks_genre_nb_model(tmp_path):
    (tmp_path / "not_a_model").mkdir()
    r = genre_nb_cli("default-model", env={"GENRE_NB_MODEL": str(tmp_path / "not_a_model")})
    assert r.returncode == 1 and "not a genre_nb model" in one_line(r), r.stdout


# case 14: noise on stderr


def test_14_no_python_warning_for_huge_amplitudes_or_long_labels(tmp_path):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        df = genre_nb.predict([np.full(SR * 3, 1e300)])
    assert df.error[0].startswith("invalid audio") and [str(w.message) for w in seen] == [], (df.error[0], seen)
    with pytest.raises(genre_nb.core.ParameterError, match="window_s"): genre_nb.predict([_music(3.0)], window_s=0)


def test_14_a_very_long_label_leaks_no_layout_warning(tmp_path):
    root = _labelled(tmp_path / "mine", ("x" * 255, "jazz"), 2)
    r = genre_nb_cli("train", root, "--out", tmp_path / "m", "--folds", "2", "--repeats", "1",
                     "--cache-dir", tmp_path / "c")
    assert r.returncode == 0 and "Warning" not in r.stderr, r.stderr


# case 15: a run that stops early stops its workers without joblib's warning


def test_15_a_run_stopped_early_says_nothing_more(clips, tmp_path):
    files = [clips / f"c{k % 4}.wav" for k in range(12)]
    names = []
    for k, f in enumerate(files):
        os.link(f, tmp_path / f"f{k:02d}.wav")
        names.append(tmp_path / f"f{k:02d}.wav")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        work = L.predict_to(tmp_path / "genres.csv", names, jobs=2)
        next(work)
        work.close()                                                   # a caller that stops reading, or Ctrl-C
        it = genre_nb.predict_iter(names, jobs=2)
        next(it)
        it.close()
    assert [str(w.message) for w in seen] == []
    assert len(_read_csv(tmp_path / "genres.csv")) >= 1
