"""genre_nb.features beyond the notebook: real GTZAN excerpts vs the Kaggle table, parallel extraction with bad files
on disk, cache hits / misses / corruption, embedding failures, the clip-level table and the train-only scaler, and
librosa's numba warm-up (all compiling under one lock)."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from genre_nb import data, features as F
from genre_nb.core import DataError, ParameterError, librosa_ready

SR = 22050


@pytest.fixture(scope="module")
def kaggle_root(gtzan_dir, kaggle_csv) -> Path:
    "The real GTZAN excerpts beside Kaggle's feature table (conftest skips when either is absent)."
    return gtzan_dir


def _tone_folder(root: Path, genres=("blues", "rock"), n=3, seconds=4.0) -> Path:
    "A Kaggle-layout folder of short, distinct, music-like WAVs."
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SR)) / SR
    for gi, g in enumerate(genres):
        (root / "genres_original" / g).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            f0 = 110 * 2 ** ((gi * 5 + i) / 12)
            y = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 4)) + 0.05 * rng.standard_normal(len(t))
            sf.write(root / "genres_original" / g / f"{g}.{i:05d}.wav", (0.2 * y / np.abs(y).max()).astype(np.float32),
                     SR, subtype="PCM_16")
    return root


@pytest.fixture
def tracks(tmp_path) -> pd.DataFrame:
    "An audited tracks table (content_hash, status) over 6 short tracks."
    ds = data.open_dataset(_tone_folder(tmp_path / "audio"))
    return data.prepare(ds, split=None, cache_dir=tmp_path / "cache", jobs=1)


def test_summary_matches_kaggle_table(kaggle_root):
    "All 57 summary columns agree with features_30_sec.csv on the 10 real excerpts, within the documented tolerance."
    agreement = F.kaggle_agreement(kaggle_root)
    assert agreement.n_excerpts.iloc[0] == 10
    assert set(agreement.index) == set(F.SUMMARY_COLUMNS)
    bad = agreement[~agreement.match]
    assert bad.empty, f"columns outside rtol={F.KAGGLE_RTOL}, atol={F.KAGGLE_ATOL}:\n{bad}"
    # the tolerance is not vacuous: librosa 0.11's zero padding breaks the agreement
    y = data.load_audio(kaggle_root / "audio/genres_original/blues/blues.00000.wav", SR)
    ref = pd.read_csv(kaggle_root / "features_30_sec.csv").set_index("filename").loc["blues.00000.wav", list(F.SUMMARY_COLUMNS)]
    other = F.summary_features(y, SR, pad_mode="constant")
    assert not np.allclose(other.to_numpy(float), ref.to_numpy(float), rtol=F.KAGGLE_RTOL, atol=F.KAGGLE_ATOL)


def test_shared_features_equal_librosa_on_real_audio(kaggle_root):
    librosa = librosa_ready()
    y = data.load_audio(kaggle_root / "audio/genres_original/metal/metal.00000.wav", SR)
    out = F.compute_features(y, SR, ["mel", "mfcc", "chroma"])
    np.testing.assert_allclose(out["mel"], librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=SR)), atol=1e-3)
    np.testing.assert_allclose(out["mfcc"], librosa.feature.mfcc(y=y, sr=SR, n_mfcc=40), atol=1e-2)
    np.testing.assert_allclose(out["chroma"], librosa.feature.chroma_stft(y=y, sr=SR, n_chroma=24, tuning=0.0), atol=1e-5)


_WARM_CHECK = textwrap.dedent("""
    import gc, numpy as np
    from numba.core.dispatcher import Dispatcher
    from genre_nb import core, data, embeddings as E, features as F
    def kernels():   # (function, argument types) of every numba kernel this process has compiled or loaded
        return {(d.py_func.__module__, d.py_func.__qualname__, str(sig)) for d in gc.get_objects()
                if Dispatcher in type(d).__mro__ for sig in d.overloads}
    core.librosa_ready()
    warm = kernels()
    for dtype in (np.float32, np.float64):
        y = (np.random.default_rng(1).standard_normal(22050 * 5) * 0.1).astype(dtype)
        F.summary_features(y, 22050)
        F.compute_features(y, 22050, [*F.DEFAULT_FEATURES, "summary"], params={"chroma": {"tuning": None}})
        data.simple_stats(y, 22050)
        E.musicnn_logmel(y, 22050)
    print(len(warm), sorted(kernels() - warm))
""")


def test_librosa_warmup_leaves_nothing_to_compile(tmp_path):
    "After `librosa_ready`'s warm-up (under its lock) the feature code loads no further kernel: none compiles unlocked."
    env = {**os.environ, "TMPDIR": str(tmp_path)}   # no marker here: this fresh process runs the warm-up itself
    out = subprocess.run([sys.executable, "-c", _WARM_CHECK], env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    n_warm, _, missed = out.stdout.strip().splitlines()[-1].partition(" ")
    assert int(n_warm) > 0 and missed == "[]", f"kernels compiled outside the warm-up: {missed}"


def test_parallel_extract_records_bad_audio(tracks, tmp_path):
    "A file that breaks after the audit is recorded with its reason; the other tracks are extracted; jobs=2."
    broken = tracks.path.iloc[1]
    Path(broken).write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    tracks = pd.concat([tracks, pd.DataFrame([{"track_id": "rock.00099", "genre": "rock", "path": broken,
                                               "status": "too short (1.00 s < 3 s)"}])], ignore_index=True)
    meta = F.extract(tracks, F.DEFAULT_FEATURES, jobs=2, cache_dir=tmp_path / "c", progress=False)
    by = meta.set_index("track_id")
    assert by.loc[tracks.track_id.iloc[1], "source"] == "failed"
    assert "decode" in by.loc[tracks.track_id.iloc[1], "status"] or "unreadable" in by.loc[tracks.track_id.iloc[1], "status"]
    assert by.loc["rock.00099", "source"] == "skipped" and by.loc["rock.00099", "status"].startswith("too short")
    assert (meta.source == "computed").sum() == 5
    n_files = {f: len(list((tmp_path / "c" / "features" / f).rglob("*.npy"))) for f in F.DEFAULT_FEATURES}
    assert n_files == {f: 5 for f in F.DEFAULT_FEATURES}
    with pytest.raises(DataError, match=tracks.track_id.iloc[1]):
        F.load_features(tracks, "mel", cache_dir=tmp_path / "c")


def test_cache_hit_miss_corruption_and_params(tracks, tmp_path):
    cache = tmp_path / "c"
    first = F.extract(tracks, ["mfcc", "wavelet"], jobs=1, cache_dir=cache, progress=False)
    assert set(first.source) == {"computed"}
    store = F.FeatureStore(cache)
    hashes = list(first.content_hash)
    ref = [store.load(h, "mfcc") for h in hashes]
    # hit: nothing recomputed, no audio read (the audio may even be gone)
    moved = tracks.assign(path=[str(tmp_path / "nowhere.wav")] * len(tracks))
    assert set(F.extract(moved, ["mfcc", "wavelet"], cache_dir=cache, progress=False).source) == {"cache"}
    # corruption: a truncated entry and a garbage entry are recomputed, to the same numbers
    p0, p1 = store.path(hashes[0], "mfcc"), store.path(hashes[1], "mfcc")
    p0.write_bytes(p0.read_bytes()[:200]); p1.write_bytes(b"\x00" * 64)
    again = F.extract(tracks, ["mfcc", "wavelet"], cache_dir=cache, progress=False)
    assert list(again.source) == ["computed", "computed"] + ["cache"] * (len(tracks) - 2)
    for h, r in zip(hashes, ref): np.testing.assert_array_equal(store.load(h, "mfcc"), r)
    # load_features also repairs an entry damaged after extract has checked it (finite check on full read)
    x = np.load(p0); x[0, 0] = np.nan; np.save(p0, x)
    np.testing.assert_array_equal(F.load_features(tracks, "mfcc", cache_dir=cache)[0], ref[0])
    # a changed parameter is a new entry, never the old one
    new = F.extract(tracks, ["mfcc"], cache_dir=cache, params={"mfcc": {"n_mfcc": 13}}, progress=False)
    assert set(new.source) == {"computed"}
    arrays = F.load_features(tracks, "mfcc", cache_dir=cache, params={"mfcc": {"n_mfcc": 13}})
    assert {a.shape[0] for a in arrays} == {13}
    assert len(list((cache / "features" / "mfcc").iterdir())) == 2


def test_file_hash_without_content_hash_column(tracks, tmp_path):
    "Without the audit's content_hash the file bytes key the cache: a copy elsewhere hits the same entries."
    plain = tracks[["track_id", "genre", "path"]]
    assert set(F.extract(plain, ["chroma"], cache_dir=tmp_path / "c", progress=False).source) == {"computed"}
    copy = tmp_path / "copy.wav"; copy.write_bytes(Path(plain.path.iloc[0]).read_bytes())
    moved = plain.head(1).assign(path=str(copy))
    assert F.extract(moved, ["chroma"], cache_dir=tmp_path / "c", progress=False).source.tolist() == ["cache"]


def test_bad_parameters_fail_before_work(tracks, tmp_path):
    cache = tmp_path / "c"
    with pytest.raises(ParameterError, match="unknown feature 'spectral_flux'; choose from: mel, mfcc, chroma"):
        F.extract(tracks, ["mel", "spectral_flux"], cache_dir=cache)
    with pytest.raises(ParameterError, match="no parameter n_mfc"):
        F.extract(tracks, ["mfcc"], cache_dir=cache, params={"mfcc": {"n_mfc": 3}})
    with pytest.raises(ParameterError, match="jobs must be >= 1"):
        F.extract(tracks, ["mfcc"], jobs=0, cache_dir=cache)
    assert not cache.exists()


def test_embedding_unavailable_propagates_once(tracks, tmp_path, monkeypatch):
    emb = pytest.importorskip("genre_nb.embeddings")
    calls = []
    def missing(y, sr):
        calls.append(1); raise emb.EmbeddingUnavailable("musicnn is not installed: pip install --no-deps musicnn==0.1.0")
    monkeypatch.setitem(emb.EMBEDDINGS, "musicnn", missing)
    with pytest.raises(emb.EmbeddingUnavailable, match="musicnn is not installed"):
        F.extract(tracks, ["mfcc", "musicnn"], jobs=1, cache_dir=tmp_path / "c", progress=False)
    assert len(calls) == 1


def test_embedding_dispatch_and_table(tracks, tmp_path, monkeypatch):
    "Embeddings go through the same cache and table (a stand-in model: no TensorFlow needed)."
    emb = pytest.importorskip("genre_nb.embeddings")
    monkeypatch.setitem(emb.EMBEDDINGS, "musicnn", lambda y, sr: np.tile(np.float32(np.abs(y).mean()), (200, 3)))
    t = F.feature_table(tracks, ["summary", "musicnn", "mfcc"], jobs=1, cache_dir=tmp_path / "c", progress=False)
    assert list(t.columns) == ["track_id", "genre", *F.SUMMARY_COLUMNS, *(f"musicnn_{i}" for i in range(200)),
                               *(f"mfcc_{i}" for i in range(40))]
    assert len(t) == len(tracks) and t.notna().all().all()
    assert t.musicnn_0.nunique() == len(tracks)


def test_feature_set_scaler_fit_on_train_only(tmp_path):
    ds = data.open_dataset(_tone_folder(tmp_path / "audio", genres=("blues", "rock", "jazz"), n=5, seconds=3.0))
    tr = data.prepare(ds, split="paper", cache_dir=tmp_path / "cache", jobs=1)
    fs = F.feature_set(tr, ["mfcc", "chroma"], cache_dir=tmp_path / "c")
    train = fs.X["mfcc"]["train"][..., 0]
    assert train.dtype == np.float32 and train.shape[1:] == (40, fs.lengths["mfcc"])
    frames = np.concatenate([x[:, : (1 + 3 * SR // 512)] for x in train], axis=1)
    np.testing.assert_allclose(frames.mean(axis=1), 0, atol=1e-3)
    np.testing.assert_allclose(frames.std(axis=1), 1, atol=1e-2)
    # replacing every held-out track's audio changes nothing about the scaler
    other = tr.copy(); held = other.split != "train"
    noise = tmp_path / "noise.wav"; sf.write(noise, np.random.default_rng(1).standard_normal(3 * SR).astype(np.float32) * 0.1, SR)
    other.loc[held, "path"] = str(noise); other.loc[held, "content_hash"] = F.file_hash(noise)
    fs2 = F.feature_set(other, ["mfcc"], cache_dir=tmp_path / "c")
    np.testing.assert_array_equal(fs2.scalers["mfcc"].mean_, fs.scalers["mfcc"].mean_)
    assert not np.allclose(fs2.X["mfcc"]["test"], fs.X["mfcc"]["test"])
    assert [GENRE for GENRE in fs.y] == ["train", "valid", "test"]


def test_bench_table():
    b = F.bench(None, n_tracks=1, repeats=1)
    assert list(b.columns) == ["feature", "shared_ms", "librosa_ms", "speedup", "max_abs_diff"]
    assert (b.max_abs_diff < 1e-2).all() and (b.shared_ms > 0).all()
