"""What a careless user still found (issue 27, "nothing silently wrong, round three"), one test per numbered case: labels
named like run columns, silence inside a file, a tiny training set presented as certainty, the same audio twice, resume
by where a file is, odd inputs to the API, error rows without a genre, a full disk, odd scheduler addresses, resume's
messages and damaged outputs, --list comments, SIGTERM, noise on stderr, and joblib's warning when a run stops early.

The audio is short generated clips (a few seconds), the libraries a handful of files."""
import csv
import os
import resource
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

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
    assert [str(w.message) for w in seen] == []
    assert len(_read_csv(tmp_path / "genres.csv")) >= 1
