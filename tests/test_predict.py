"""`genre-nb predict`, `genre-nb train` and `genre_nb.predict` end to end: the shipped real-data model, a deep bundle,
a user's own labels, hostile model folders and files on disk."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

GENRE_NB = str(Path(sys.executable).parent / "genre-nb")
GENRES = ["blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock"]


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


def _tone(f0: float, seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    rng = np.random.default_rng(seed)
    return (0.3 * np.sin(2 * np.pi * f0 * t) * (1 + np.sin(2 * np.pi * 2 * t)) / 2 + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture(scope="session")
def audio_files(tmp_path_factory) -> dict:
    "Our own files: stereo FLAC at 44.1 kHz, mono OGG at 16 kHz, a WAV, a too-short WAV, a corrupt MP3, random bytes."
    d = tmp_path_factory.mktemp("music"); rng = np.random.default_rng(0)
    tone = _tone(220, 7, 44100)
    sf.write(d / "stereo.flac", np.stack([tone, tone[::-1]], 1), 44100)
    sf.write(d / "mono16k.ogg", tone[::3][: 16000 * 7], 16000)
    sf.write(d / "plain.wav", tone[::2], 22050)
    sf.write(d / "short.wav", tone[:44100], 44100)                 # 1 s: shorter than one 3 s window
    (d / "corrupt.mp3").write_bytes(b"ID3" + bytes(rng.integers(0, 256, 2000, dtype=np.uint8)))
    return {p.stem: p for p in d.iterdir()}


def run(*args, env=None, cwd=None):
    return subprocess.run([GENRE_NB, *map(str, args)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})}, cwd=cwd)


def _notice(stderr: str) -> tuple[list[str], list[str]]:
    "stderr's lines: (the backend notice, the rest)."
    lines = stderr.strip().splitlines()
    return ([l for l in lines if l.startswith("INFO genre_nb.inference:")],
            [l for l in lines if not l.startswith("INFO genre_nb.inference:")])


def test_api_classifies_files_and_arrays_with_a_bundle(bundle, audio_files):
    import genre_nb
    y, sr = sf.read(audio_files["plain"], dtype="float32")
    df = genre_nb.predict([audio_files["stereo"], audio_files["mono16k"], (y, sr)], model=bundle)
    assert len(df) == 3 and df.error.isna().all()
    np.testing.assert_allclose(df[GENRES].sum(axis=1), 1.0, atol=1e-4)
    assert (df.genre == df[GENRES].idxmax(axis=1)).all()
    same = genre_nb.predict([audio_files["plain"], (y, sr)], model=bundle)    # a file and its samples: one answer
    np.testing.assert_allclose(same[GENRES].iloc[0], same[GENRES].iloc[1], atol=1e-5)


def test_api_segments_are_exact_windows_that_average_to_the_file(bundle, audio_files):
    import genre_nb
    clip = genre_nb.predict(audio_files["plain"], model=bundle, window_s=3.0)
    seg = genre_nb.predict(audio_files["plain"], model=bundle, segments=True, window_s=3.0)
    assert list(seg.segment) == [0, 1] and list(seg.start_s) == [0.0, 3.0] and list(seg.end_s) == [3.0, 6.0]
    np.testing.assert_allclose(seg[GENRES].mean().values, clip[GENRES].iloc[0].values, atol=1e-5)


def test_default_is_the_shipped_real_data_model_never_a_bundle_in_models(tmp_path, bundle, audio_files):
    (tmp_path / "settings.ini").write_text("[DEFAULT]\nlib_name = genre_nb\n")      # a project whose models/ holds a bundle
    shutil.copytree(bundle, tmp_path / "models" / "cnn-test")
    r = run("predict", audio_files["plain"], "--json", cwd=tmp_path, env={"GENRE_NB_CONFIG": str(tmp_path / "cfg")})
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout.splitlines()[0])["model"]
    assert info["name"] == "gtzan_emotify_musicnn_vgg" and info["chosen"] == "shipped with genre_nb"
    assert info["trained_on"].startswith("GTZAN-mini + more GTZAN blues/jazz + Emotify (real music) (399 tracks, 11 labels)")
    est = info["estimated_accuracy"]
    assert est[:4].replace(".", "").isdigit() and "grouped cross-validation" in est and "held out" in est, est
    assert "artists it did not learn from" in est and "gtzan 0." in est and "on a source it never heard" in est, est
    assert "not checked on unseen artists: reggae (one artist (Bob Marley))" in est


def test_cli_prints_model_topk_and_one_line_per_bad_file(bundle, audio_files):
    r = run("predict", audio_files["stereo"], audio_files["corrupt"], audio_files["short"], audio_files["mono16k"],
            "--model", bundle, "--top-k", "2")
    assert r.returncode == 1                                      # some files failed ...
    head, *out, summary = r.stdout.strip().splitlines()
    assert head.startswith("# model cnn-test (named with --model): trained on synthetic data (synthetic: not real music)")
    assert len(out) == 2 and {l.split(": ")[0] for l in out} == {str(audio_files["stereo"]), str(audio_files["mono16k"])}
    assert summary.startswith("# 4 files in ") and "2 classified, 2 failed" in summary   # ... the others were classified
    assert len(out[0].split(": ", 1)[1].split(", ")) == 2         # top-2
    notice, err = _notice(r.stderr)
    assert len(err) == 2 and "Traceback" not in r.stderr and "pipe" not in r.stderr
    assert len(notice) == 1 and "no ONNX path" in notice[0] and "TensorFlow" in notice[0]   # a Keras bundle, said once
    err = sorted(err)                                             # files finish in any order
    assert "corrupt.mp3" in err[0] and "cannot decode" in err[0] and "short.wav" in err[1] and "too short" in err[1]


def test_cli_json_segments_and_out_file(bundle, audio_files, tmp_path):
    r = run("predict", audio_files["plain"], "--model", bundle, "--json", "--segments", "--window", "3", "--out", tmp_path / "p.csv")
    assert r.returncode == 0, r.stderr
    model, res, summary = map(json.loads, r.stdout.splitlines())          # JSON Lines: the model, each file, a summary
    assert model["model"]["name"] == "cnn-test" and summary["summary"]["classified"] == 1
    assert [s["start_s"] for s in res["segments"]] == [0.0, 3.0] and len(res["top"]) == 3
    import pandas as pd
    t = pd.read_csv(tmp_path / "p.csv")
    assert len(t) == 2 and set(t.model) == {"cnn-test"} and t.model_sha256.nunique() == 1
    r = run("predict", audio_files["plain"], "--model", bundle, "--out", tmp_path / "p.txt")
    assert r.returncode == 1 and "--out must end in .csv, .jsonl, .parquet" in r.stderr


def test_a_folder_is_its_audio_files_and_a_folder_as_file_is_one_line(bundle, audio_files, tmp_path):
    import genre_nb
    d = tmp_path / "lib"; (d / "sub").mkdir(parents=True)
    shutil.copy(audio_files["plain"], d / "a.wav"); shutil.copy(audio_files["stereo"], d / "sub" / "b.flac")
    df = genre_nb.predict(d, model=bundle)
    assert [Path(f).name for f in df.file] == ["a.wav", "b.flac"] and df.error.isna().all()
    r = run("predict", tmp_path / "empty_dir_missing", "--model", bundle)
    err = _notice(r.stderr)[1]
    assert r.returncode == 1 and len(err) == 1 and "no such file" in err[0]


def test_a_pickle_in_a_model_folder_never_runs(bundle, tmp_path, audio_files):
    evil = tmp_path / "evil"; shutil.copytree(bundle, evil)
    marker = tmp_path / "pwned"
    payload = (f"import joblib, pathlib\nclass P:\n    def __reduce__(self): return (pathlib.Path.touch, (pathlib.Path({str(marker)!r}),))\n"
               f"joblib.dump({{'mel': P()}}, {str(evil / 'scalers.joblib')!r})\n")
    subprocess.run([sys.executable, "-c", payload], check=True)
    r = run("predict", "--model", evil, audio_files["plain"])
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "a pickle" in r.stderr and "convert-model" in r.stderr
    r = run("convert-model", evil)                                # without --trust: refused, still nothing runs
    assert r.returncode == 1 and "trust" in r.stderr
    assert not marker.exists()


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "model.keras").write_bytes((d / "model.keras").read_bytes()[:300]), "model.keras cannot be loaded"),
    (lambda d: (d / "config.json").write_text("{broken"), "config.json: not valid JSON"),
    (lambda d: (d / "scalers.npz").unlink(), "scalers.npz is missing"),
    (lambda d: (d / "config.json").write_text(json.dumps({**json.loads((d / "config.json").read_text()), "genres": ["a", "b"]})),
     "lists 2 genres, the model has 10 outputs"),
])
def test_damaged_bundles_give_one_line(bundle, tmp_path, audio_files, damage, message):
    d = tmp_path / "b"; shutil.copytree(bundle, d); damage(d)
    r = run("predict", "--model", d, audio_files["plain"])
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr


def test_train_on_three_made_up_labels_then_predict(tmp_path, audio_files):
    root = tmp_path / "mine"
    for lab, f0 in (("calm", 150), ("bright", 900), ("noisy", 0)):
        (root / lab).mkdir(parents=True)
        for k in range(4):
            y = _tone(f0 * (1 + 0.05 * k), 6, 22050, k) if f0 else np.random.default_rng(k).uniform(-0.3, 0.3, 22050 * 6).astype(np.float32)
            sf.write(root / lab / f"{k}.wav", y, 22050)
    env = {"GENRE_NB_CONFIG": str(tmp_path / "cfg")}
    r = run("train", root, "--out", tmp_path / "m", "--folds", "2", "--repeats", "1", "--set-default", env=env)
    assert r.returncode == 0, r.stderr
    assert "estimated accuracy" in r.stdout and "default model is now" in r.stdout
    doc = json.loads((tmp_path / "m" / "model.json").read_text())
    assert doc["labels"] == ["bright", "calm", "noisy"] and doc["trained_on"]["tracks"] == 12
    from genre_nb.inference import MODEL_FILES
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == sorted(MODEL_FILES)
    r = run("predict", root / "noisy" / "0.wav", "--json", env=env)            # the default set explicitly answers now
    assert r.returncode == 0, r.stderr
    model, res, _ = map(json.loads, r.stdout.splitlines())
    assert model["model"]["chosen"].startswith("your default") and model["model"]["labels"] == ["bright", "calm", "noisy"]
    assert res["top"][0]["genre"] in {"bright", "calm", "noisy"}
    r = run("train", root, "--out", audio_files["plain"])         # --out is a file: refused before any work
    assert r.returncode == 1 and "is a file, not a folder" in r.stderr


def test_train_merges_several_folders_by_label_and_holds_each_source_out(tmp_path):
    "Two folders (one named on the command line, one in a --list file) share a label: one model, two sources."
    for src, labels in (("studio", ("calm", "bright")), ("live", ("calm", "noisy"))):
        for lab in labels:
            (tmp_path / src / lab).mkdir(parents=True)
            for k in range(4):
                f0 = {"calm": 150, "bright": 900, "noisy": 400}[lab] * (1 + 0.05 * k) * (1.1 if src == "live" else 1)
                sf.write(tmp_path / src / lab / f"{k}.wav", _tone(f0, 6, 22050, k), 22050)
    (tmp_path / "more.txt").write_text("live\n")
    r = run("train", tmp_path / "studio", "--list", tmp_path / "more.txt", "--out", tmp_path / "m", "--folds", "2",
            "--repeats", "1")
    assert r.returncode == 0, r.stderr
    assert "2 sources (studio, live)" in r.stdout and "leave one source out" in r.stdout
    doc = json.loads((tmp_path / "m" / "model.json").read_text())
    assert doc["labels"] == ["bright", "calm", "noisy"] and doc["trained_on"]["sources"] == {"live": 8, "studio": 8}
    held = {x["held_out"]: x["n_test"] for x in doc["cv"]["leave_source_out"]}
    assert held == {"live": 4, "studio": 4}                          # each source's 'calm', trained without it
    assert "live held out" in r.stdout and "studio held out" in r.stdout


def test_shipped_model_same_genre_at_any_rate(gtzan_dir, tmp_path):
    "16 kHz and 44.1 kHz stereo copies of the real excerpts get the top genre of the original."
    import soxr
    import genre_nb
    originals = sorted((gtzan_dir / "audio" / "genres_original").glob("*/*.wav"))
    copies = []
    for p in originals:
        y, sr = sf.read(p, dtype="float32")
        sf.write(tmp_path / f"{p.stem}_16k.wav", soxr.resample(y, sr, 16000), 16000); copies.append(tmp_path / f"{p.stem}_16k.wav")
        y44 = soxr.resample(y, sr, 44100)
        sf.write(tmp_path / f"{p.stem}_44k.flac", np.stack([y44, y44], 1), 44100); copies.append(tmp_path / f"{p.stem}_44k.flac")
    df = genre_nb.predict(originals + copies).set_index("file")
    assert df.error.isna().all()
    for p in originals:
        o, lo, hi = (df.loc[str(f), GENRES].astype(float) for f in (p, tmp_path / f"{p.stem}_16k.wav", tmp_path / f"{p.stem}_44k.flac"))
        assert max((lo - o).abs().max(), (hi - o).abs().max()) < 0.1, p.stem            # the same probabilities, nearly
        if o.nlargest(2).diff().abs().iloc[-1] > 0.1:                                   # a clear answer stays the answer
            assert lo.idxmax() == o.idxmax() == hi.idxmax(), p.stem


@pytest.mark.parametrize("suffix", [".au", ".wav", ".mp3"])
def test_random_bytes_are_not_audio(tmp_path, suffix):
    f = tmp_path / f"noise{suffix}"; f.write_bytes(np.random.default_rng(0).integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    r = run("predict", f)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "not audio" in r.stderr, r.stderr


def test_a_model_with_both_ears_trains_saves_and_answers_alike_on_both_backends(tmp_path):
    "musicnn's 3 s patches and mn04's 10 s windows in one recipe: trained, saved, loaded, the same answers on onnx and tf."
    from genre_nb.models import load_model, save_training
    from genre_nb.inference import predict
    from genre_nb.transfer import Recipe, train
    for lab, f0 in (("low", 150), ("high", 900)):
        (tmp_path / "d" / lab).mkdir(parents=True)
        for k in range(4): sf.write(tmp_path / "d" / lab / f"{k}.wav", _tone(f0 * (1 + 0.05 * k), 12, 22050, k), 22050)
    recipe = Recipe(("MSD_musicnn/penultimate", "mn04/embedding", "mn04/logits"))
    rep = train(tmp_path / "d", folds=2, repeats=1, recipe=recipe, progress=False, cache_dir=tmp_path / "cache")
    model = load_model(save_training(rep, tmp_path / "m"))
    assert model.meta["embedding"]["views"] == list(recipe.views) and model.mean.shape == (2 * (200 + 384 + 527),)
    files = sorted((tmp_path / "d").glob("*/*.wav"))[::3]
    onnx, tf = (predict(files, model, backend=b) for b in ("onnx", "tf"))
    assert onnx.error.isna().all() and list(onnx.genre) == list(tf.genre)
    assert np.abs(onnx[model.labels].to_numpy() - tf[model.labels].to_numpy()).max() < 1e-3
