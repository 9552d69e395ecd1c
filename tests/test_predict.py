"""`genre-nb predict` and `genre_nb.predict` end to end: a tiny CNN trained on the synthetic set, real files on disk."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

GENRE_NB = str(Path(sys.executable).parent / "genre-nb")


@pytest.fixture(scope="session")
def bundle(tmp_path_factory) -> Path:
    "A CNN bundle trained for one epoch on a small synthetic set (the pipeline, not the accuracy, is under test)."
    from genre_nb import data, training
    from genre_nb.cnn import build_cnn
    cache = tmp_path_factory.mktemp("cache")
    tracks = data.prepare(data.open_dataset(None, cache, tracks_per_genre=5, duration=4.0, seed=1), "paper", 1, cache_dir=cache, jobs=1)
    cd = training.load_inputs(tracks, {"spec": ["mel", "chroma"]}, 3.0, cache_dir=cache, jobs=1)
    cfg = training.TrainConfig(epochs=1, batch_size=16, warmup_epochs=0, seed=1)
    res = training.fit(lambda: build_cnn(cd.seg.frames, cd.n_features["spec"], widths=(8, 8, 8, 8)), cd.train, cd.valid, cd.seg, cfg, verbose=False)
    path = tmp_path_factory.mktemp("models") / "cnn-test"
    return training.save_run_bundle(path, res.model, cd, "cnn", None, res.history, {"dataset": "synthetic"}, cfg)


@pytest.fixture(scope="session")
def audio_files(tmp_path_factory) -> dict:
    "Our own files: stereo FLAC at 44.1 kHz, mono OGG at 16 kHz, a WAV, a too-short WAV and a corrupt one."
    d = tmp_path_factory.mktemp("music"); rng = np.random.default_rng(0)
    t = np.arange(int(44100 * 7)) / 44100
    tone = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 2 * t)) / 2 + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
    sf.write(d / "stereo.flac", np.stack([tone, tone[::-1]], 1), 44100)
    sf.write(d / "mono16k.ogg", tone[::3][: 16000 * 7], 16000)
    sf.write(d / "plain.wav", tone[::2], 22050)
    sf.write(d / "short.wav", tone[:44100], 44100)                 # 1 s: shorter than one 3 s segment
    (d / "corrupt.mp3").write_bytes(b"ID3" + bytes(rng.integers(0, 256, 2000, dtype=np.uint8)))
    return {p.stem: p for p in d.iterdir()}


def run(*args):
    return subprocess.run([GENRE_NB, *map(str, args)], capture_output=True, text=True, timeout=300)


def test_api_classifies_files_and_arrays(bundle, audio_files):
    import genre_nb
    y, sr = sf.read(audio_files["plain"], dtype="float32")
    df = genre_nb.predict([audio_files["stereo"], audio_files["mono16k"], (y, sr)], model=bundle)
    assert len(df) == 3 and df.error.isna().all()
    genres = [c for c in df.columns if c in {"blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock"}]
    assert len(genres) == 10
    np.testing.assert_allclose(df[genres].sum(axis=1), 1.0, atol=1e-4)
    assert (df.genre == df[genres].idxmax(axis=1)).all()
    # the same audio as a file and as an array gives the same answer
    same = genre_nb.predict([audio_files["plain"], (y, sr)], model=bundle)
    np.testing.assert_allclose(same[genres].iloc[0], same[genres].iloc[1], atol=1e-5)


def test_api_segments_are_3s_rows_that_average_to_the_clip(bundle, audio_files):
    import genre_nb
    clip = genre_nb.predict(audio_files["plain"], model=bundle)
    seg = genre_nb.predict(audio_files["plain"], model=bundle, segments=True)
    assert list(seg.segment) == [0, 1] and list(seg.start_s) == [0.0, 3.0]       # 7 s -> two whole 3 s segments
    genres = ["blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock"]
    np.testing.assert_allclose(seg[genres].mean().values, clip[genres].iloc[0].values, atol=1e-5)


def test_cli_prints_topk_and_fails_one_line_per_bad_file(bundle, audio_files):
    r = run("predict", audio_files["stereo"], audio_files["corrupt"], audio_files["short"], audio_files["mono16k"],
            "--model", bundle, "--top-k", "2")
    assert r.returncode == 1                                      # some files failed ...
    head, *out = r.stdout.strip().splitlines()
    assert head.startswith("# model cnn-test: cnn trained on synthetic data (synthetic: not GTZAN")
    assert len(out) == 2 and out[0].startswith(str(audio_files["stereo"]))   # ... the others were classified
    assert len(out[0].split(": ", 1)[1].split(", ")) == 2         # top-2
    err = r.stderr.strip().splitlines()
    assert len(err) == 2 and "Traceback" not in r.stderr
    assert "corrupt.mp3" in err[0] and "short.wav" in err[1] and "too short" in err[1]


def test_cli_json_parses_and_segments(bundle, audio_files):
    r = run("predict", audio_files["plain"], "--model", bundle, "--json", "--top-k", "3")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert "synthetic" in out["trained_on"]
    top = out["results"][0]["top"]
    assert len(top) == 3 and top[0]["probability"] >= top[1]["probability"] >= top[2]["probability"]
    r = run("predict", audio_files["plain"], "--model", bundle, "--json", "--segments")
    segs = json.loads(r.stdout)["results"][0]["segments"]
    assert [s["start_s"] for s in segs] == [0.0, 3.0]


def test_cli_without_any_model_says_how_to_train_one(tmp_path, audio_files, monkeypatch):
    (tmp_path / "settings.ini").write_text("[DEFAULT]\nlib_name = genre_nb\n")   # a project with an empty models/
    r = subprocess.run([GENRE_NB, "predict", str(audio_files["plain"])], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "no trained model" in r.stderr and "genre-nb reproduce" in r.stderr


def test_real_excerpts_get_a_genre_each(bundle, gtzan_dir):
    r = run("predict", *sorted((gtzan_dir / "audio" / "genres_original").glob("*/*.wav")), "--model", bundle, "--top-k", "1")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()[1:]
    assert len(lines) == 10 and all(": " in l and l.split(": ")[1].split(" ")[0] in
                                    {"blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock"} for l in lines)
