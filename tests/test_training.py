"""Training core: schedule, segments, determinism, exact resume, bundle round trip (tiny models, random arrays)."""
import json, math, subprocess, sys
from dataclasses import asdict

import numpy as np
import pytest

from genre_nb import training as T
from genre_nb.core import GENRES, ParameterError


def _clips(n, seed, n_classes=3, n_feat=6, frames=(60, 90)):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    arrs = []
    for c in y:
        a = rng.normal(size=(n_feat, int(rng.integers(*frames)))).astype(np.float32)
        a[c] += 1.5
        arrs.append(a)
    return T.ClipSet({"spec": arrs}, y, [f"{GENRES[c]}.{i:05d}" for i, c in enumerate(y)])


def _model(n_feat=6, n_classes=3, frames=20):
    import keras
    x = keras.Input((frames, n_feat), name="spec")
    h = keras.layers.Conv1D(8, 3, padding="same")(x)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.GlobalAveragePooling1D()(h)
    h = keras.layers.Dropout(0.3)(h)
    return keras.Model({"spec": x}, keras.layers.Dense(n_classes, activation="softmax")(h))


SEG = T.SegmentConfig(seconds=20 * 512 / 22050)
TRAIN, VALID = _clips(30, 1), _clips(12, 2)


def _cfg(**kw):
    return T.TrainConfig(**{"epochs": 5, "batch_size": 8, "learning_rate": 1e-2, "warmup_epochs": 2, "seed": 7, **kw})


def _weights_equal(m1, m2):
    w1, w2 = m1.get_weights(), m2.get_weights()
    return len(w1) == len(w2) and all(np.array_equal(a, b) for a, b in zip(w1, w2))


def test_schedule_known_epochs():
    assert math.isclose(T.lr_at(0, 250, 1e-3, 10), 1e-4)
    assert math.isclose(T.lr_at(9, 250, 1e-3, 10), 1e-3)
    assert math.isclose(T.lr_at(10, 250, 1e-3, 10), 1e-3)
    assert math.isclose(T.lr_at(130, 250, 1e-3, 10), 5e-4)        # half-way through the 240 cosine epochs
    assert math.isclose(T.lr_at(70, 250, 1e-3, 10), 0.5e-3 * (1 + math.cos(math.pi * 0.25)))
    assert T.lr_at(249, 250, 1e-3, 10) < 1e-6
    assert math.isclose(T.lr_at(250, 250, 2e-3, 10, min_lr=1e-4), 1e-4)
    assert T.effective_warmup(3, 10) == 1 and T.effective_warmup(250, 10) == 10


def test_segments_and_clip_aggregation():
    clips = T.ClipSet({"spec": [np.zeros((4, 1293), np.float32), np.ones((4, 300), np.float32)]}, [0, 1], ["a", "b"])
    seg = T.SegmentConfig(3.0)
    x, seg_clip = T.eval_arrays(clips, seg)
    assert x["spec"].shape == (12, 129, 4)                         # 10 + 2 non-overlapping 3 s segments
    assert seg_clip.tolist() == [0] * 10 + [1] * 2
    assert (x["spec"][:10] == 0).all() and (x["spec"][10:] == 1).all()   # no segment mixes clips
    probs = np.random.default_rng(0).dirichlet(np.ones(10), size=12)
    clip = T.aggregate_segments(probs, seg_clip, 2)
    np.testing.assert_allclose(clip[0], probs[:10].mean(0), rtol=1e-6)
    np.testing.assert_allclose(clip[1], probs[10:].mean(0), rtol=1e-6)
    np.testing.assert_allclose(clip.sum(1), 1, rtol=1e-5)


def test_train_crops_seeded_per_epoch():
    a, ya = T.train_arrays(TRAIN, SEG, epoch=3, seed=1)
    b, yb = T.train_arrays(TRAIN, SEG, epoch=3, seed=1)
    c, _ = T.train_arrays(TRAIN, SEG, epoch=4, seed=1)
    assert np.array_equal(a["spec"], b["spec"]) and np.array_equal(ya, yb)
    assert not np.array_equal(a["spec"], c["spec"])
    assert sorted(ya.tolist()) == sorted(TRAIN.labels.tolist())     # one crop per clip, shuffled


def test_same_seed_identical_metrics_other_seed_differs():
    r1 = T.fit(_model, TRAIN, VALID, SEG, _cfg(), verbose=False)
    r2 = T.fit(_model, TRAIN, VALID, SEG, _cfg(), verbose=False)
    r3 = T.fit(_model, TRAIN, VALID, SEG, _cfg(seed=8), verbose=False)
    cols = ["loss", "accuracy", "val_loss", "val_accuracy"]
    assert r1.history[cols].equals(r2.history[cols])
    assert _weights_equal(r1.model, r2.model)
    assert not _weights_equal(r1.model, r3.model)
    p1, p2 = T.predict_clips(r1.model, VALID, SEG)[0], T.predict_clips(r2.model, VALID, SEG)[0]
    assert np.array_equal(p1, p2)


def test_resume_after_interruption_gives_same_weights(tmp_path):
    full = T.fit(_model, TRAIN, VALID, SEG, _cfg(), checkpoint_dir=tmp_path / "full", verbose=False)

    class Killed(Exception): pass
    def kill(epoch, row):
        if epoch == 1: raise Killed
    with pytest.raises(Killed):
        T.fit(_model, TRAIN, VALID, SEG, _cfg(), checkpoint_dir=tmp_path / "cut", on_epoch_end=kill, verbose=False)
    assert json.loads((tmp_path / "cut" / "state.json").read_text())["epoch"] == 1
    res = T.fit(_model, TRAIN, VALID, SEG, _cfg(), checkpoint_dir=tmp_path / "cut", resume=True, verbose=False)
    assert res.resumed_from == 2 and len(res.history) == 5
    assert _weights_equal(full.model, res.model)
    # every variable, including the optimizer's moments and the dropout seed state
    for a, b in zip(full.model.optimizer.variables, res.model.optimizer.variables):
        assert np.array_equal(a.numpy(), b.numpy())
    assert full.history.drop(columns="seconds").equals(res.history.drop(columns="seconds"))
    # without resume the same folder starts again from scratch
    fresh = T.fit(_model, TRAIN, VALID, SEG, _cfg(), checkpoint_dir=tmp_path / "cut", verbose=False)
    assert fresh.resumed_from is None and _weights_equal(full.model, fresh.model)


def test_resume_refuses_other_parameters(tmp_path):
    T.fit(_model, TRAIN, VALID, SEG, _cfg(epochs=2), checkpoint_dir=tmp_path, verbose=False)
    with pytest.raises(ParameterError, match="resume=False"):
        T.fit(_model, TRAIN, VALID, SEG, _cfg(epochs=2, learning_rate=5e-3), checkpoint_dir=tmp_path, resume=True,
              verbose=False)


def test_early_stopping_restores_best(tmp_path):
    res = T.fit(_model, TRAIN, VALID, SEG, _cfg(epochs=30, learning_rate=0.3, warmup_epochs=0, patience=2),
                checkpoint_dir=tmp_path, verbose=False)
    assert res.stopped_early and len(res.history) < 30
    assert res.best_epoch == int(res.history.val_loss.idxmin())
    vloss, _ = T.clip_metrics(T.predict_clips(res.model, VALID, SEG)[0], VALID.labels)
    assert abs(vloss - res.history.val_loss.min()) < 1e-4


def test_bad_parameters_fail_with_one_line():
    for kw, msg in [({"epochs": 0}, "epochs must be >= 1"), ({"learning_rate": -1}, "learning_rate"),
                    ({"batch_size": "x"}, "batch_size must be an integer")]:
        with pytest.raises(ParameterError, match=msg) as e:
            T.TrainConfig(**kw)
        assert "\n" not in str(e.value)


def test_bundle_round_trip(tmp_path):
    res = T.fit(_model, TRAIN, VALID, SEG, _cfg(epochs=2), verbose=False)
    mu = np.float32(0.25)
    cfg = {"model": "toy", "genres": list(GENRES[:3]), "inputs": {"spec": ["mel"]}, "pooled": {},
           "segment": asdict(SEG)}
    scalers = {"mel": _shift(mu, VALID.inputs["spec"][3].shape[0])}
    T.save_bundle(tmp_path / "b", res.model, cfg, scalers, {"test_accuracy": 0.5}, res.history)
    b = T.load_bundle(tmp_path / "b")
    assert b.genres == list(GENRES[:3]) and b.metrics["test_accuracy"] == 0.5
    raw = VALID.inputs["spec"][3] + mu                               # unscaled features of one clip
    cp, sp = b.predict_features({"mel": raw})
    ref = T.ClipSet({"spec": [raw - mu]}, [0], ["x"])                   # scaled by hand
    ref_cp, ref_sp, _ = T.predict_clips(res.model, ref, SEG)
    assert np.array_equal(cp, ref_cp[0]) and np.array_equal(sp, ref_sp)
    assert sp.shape[0] == len(T.segment_starts(raw.shape[1], SEG.frames))
    b.extractor = lambda y, sr, f: raw
    assert np.array_equal(b.predict_proba(np.zeros(1000, np.float32)), cp)
    with pytest.raises(T.BundleError, match="model folder not found"):
        T.load_bundle(tmp_path / "missing")


def _shift(mu, rows):
    "A fitted scaler that subtracts `mu` (scale 1), stored in the bundle as arrays."
    from genre_nb.features import FeatureScaler
    s = FeatureScaler(); s.mean_, s.scale_ = np.full(rows, mu, np.float32), np.ones(rows, np.float32)
    return s


def test_import_does_not_import_tensorflow():
    code = "import sys, genre_nb.training; print('tensorflow' in sys.modules or 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


@pytest.mark.parametrize("chapter, epochs, learning_rate", [("05a_cnn", 40, 0.003), ("05b_rnn", 40, 0.002),
                                                            ("06_hybrid", 30, 0.003)])
def test_deep_chapters_keep_their_papermill_parameters(chapter, epochs, learning_rate):
    "Each deep chapter's `parameters` cell (papermill's interface) names exactly what `chapter_config` checks."
    import ast
    from pathlib import Path
    nb = json.loads((Path(__file__).parents[1] / "nbs" / f"{chapter}.ipynb").read_text())
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1
    tree = ast.parse("".join(cells[0]["source"]))
    values = {n.targets[0].id: ast.literal_eval(n.value) for n in tree.body}
    assert tuple(k for k in values if k != "embedding") == T.CHAPTER_PARAMS
    assert ("embedding" in values) == (chapter == "06_hybrid")   # only the hybrid has an embedding branch
    assert (values["epochs"], values["learning_rate"], values["seed"], values["split"]) == (epochs, learning_rate, 42,
                                                                                           "paper")
    p = T.chapter_config(chapter, **{**values, "quick": True})
    assert (p.chapter, p.train.epochs, p.train.learning_rate, p.tracks_per_genre) == (chapter, 2, learning_rate, 6)
