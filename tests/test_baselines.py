"""Evaluation and baselines beyond the notebooks: exact reports, the results store on disk, no leakage, the real
Kaggle feature table against its reference accuracies, a synthetic run end to end, and the papermill interface."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genre_nb import core
from genre_nb.core import GENRES, ParameterError
from genre_nb.data import make_split
from genre_nb.evaluate import (RESULT_COLUMNS, accuracy, classification_report_df, confusion_df, confusion_heatmap,
                               evaluate_run, paper_accuracy, predictions_df)
from genre_nb.baselines import (BASELINES, KAGGLE_REFERENCE, FeatureMatrix, fit_predict, read_kaggle_csv,
                                reference_check, run_baselines)

ROOT = Path(__file__).resolve().parents[1]

# a tiny prediction set worked out by hand: 2 blues (1 right, 1 -> classical), 2 classical (both right),
# 2 country (1 right, 1 -> blues), 1 rock predicted as metal
Y_TRUE = [0, 0, 1, 1, 2, 2, 9]
Y_PRED = [0, 1, 1, 1, 2, 0, 6]


def prov(**kw):
    return core.provenance("synthetic", "fp0123456789", **{"split": "paper", "seed": 7, **kw})


def test_report_exact_values():
    rep = classification_report_df(Y_TRUE, Y_PRED).set_index("genre")
    assert list(rep.index) == ["blues", "classical", "country", "metal", "rock", "accuracy", "macro avg", "weighted avg"]
    np.testing.assert_allclose(rep.loc["blues", ["precision", "recall", "f1"]].astype(float), [1 / 2, 1 / 2, 1 / 2])
    np.testing.assert_allclose(rep.loc["classical", ["precision", "recall", "f1"]].astype(float), [2 / 3, 1, 4 / 5])
    np.testing.assert_allclose(rep.loc["country", ["precision", "recall", "f1"]].astype(float), [1, 1 / 2, 2 / 3])
    np.testing.assert_allclose(rep.loc["metal", ["precision", "recall", "f1", "support"]].astype(float), [0, 0, 0, 0])
    np.testing.assert_allclose(rep.loc["rock", ["precision", "recall", "f1", "support"]].astype(float), [0, 0, 0, 1])
    assert rep.loc["accuracy", "f1"] == pytest.approx(4 / 7) == accuracy(Y_TRUE, Y_PRED)
    assert rep.loc["macro avg", "recall"] == pytest.approx((1 / 2 + 1 + 1 / 2 + 0 + 0) / 5)
    assert rep.loc["weighted avg", "precision"] == pytest.approx((2 * 1 / 2 + 2 * 2 / 3 + 2 * 1 + 0) / 7)
    assert rep.support.tolist() == [2, 2, 2, 0, 1, 7, 7, 7]


def test_confusion_and_heatmap_exact_values():
    cm = confusion_df(Y_TRUE, Y_PRED)
    expected = np.zeros((10, 10), int)
    for t, p in zip(Y_TRUE, Y_PRED): expected[t, p] += 1
    np.testing.assert_array_equal(cm.values, expected)
    assert list(cm.index) == list(GENRES) == list(cm.columns)
    norm = confusion_df(Y_TRUE, Y_PRED, normalize=True)
    np.testing.assert_allclose(norm.loc["rock", "metal"], 1.0)
    np.testing.assert_allclose(norm.sum(axis=1).values, [1, 1, 1, 0, 0, 0, 0, 0, 0, 1])
    fig = confusion_heatmap(Y_TRUE, Y_PRED)
    counts_ax, norm_ax = fig.axes[0], fig.axes[1]
    assert [t.get_text() for t in counts_ax.texts] == [str(v) for v in expected.ravel()]   # every cell annotated
    assert [float(t.get_text()) for t in norm_ax.texts][9 * 10 + 6] == 1.0                 # rock -> metal
    assert [t.get_text() for t in counts_ax.get_yticklabels()] == list(GENRES)
    assert "0.571" in fig._suptitle.get_text()


def test_evaluate_run_writes_reports_with_provenance(tmp_path):
    P = np.full((7, 10), 0.1)
    res = evaluate_run("rf", Y_TRUE, Y_PRED, P, [f"t{i}" for i in range(7)], chapter="04_baselines", prov=prov(),
                       features="toy", reports_dir=tmp_path, val_accuracy=0.25, n_train=30, view="stats")
    for kind in ("report", "predictions", "heatmap"):
        p = res.paths[kind]
        assert p.parent == tmp_path / "04_baselines" and p.is_file()
        stamp = core.read_provenance(p)
        assert (stamp["dataset"], stamp["params"]["split"], stamp["params"]["seed"]) == ("synthetic", "paper", 7)
    assert res.paths["heatmap"].suffix == ".png"
    pred = core.read_report_csv(res.paths["predictions"])
    assert pred.columns.tolist() == ["track_id", "genre", "predicted", "correct"] + [f"p_{g}" for g in GENRES]
    assert pred.predicted.tolist() == ["blues", "classical", "classical", "classical", "country", "blues", "metal"]
    rep = core.read_report_csv(res.paths["report"])
    assert rep.loc[rep.genre == "accuracy", "f1"].item() == pytest.approx(4 / 7)
    assert (res.test_accuracy, res.paper_accuracy, res.n_test) == (pytest.approx(4 / 7), 0.55, 7)


def test_results_store_append_read_back_and_atomic(tmp_path, monkeypatch):
    store = tmp_path / "results.csv"
    r1 = evaluate_run("logreg", Y_TRUE, Y_PRED, chapter="c", prov=prov(), reports_dir=tmp_path, heatmap=False)
    r2 = evaluate_run("cnn", Y_TRUE, Y_TRUE, chapter="c", prov=prov(seed=8), reports_dir=tmp_path, heatmap=False,
                      epochs=3, quick=True)
    t = core.read_results(store)
    assert t.columns.tolist() == RESULT_COLUMNS
    assert t.model.tolist() == ["logreg", "cnn"] and t.seed.tolist() == [7, 8]
    assert t.test_accuracy.tolist() == pytest.approx([4 / 7, 1.0])
    assert t.paper_accuracy.tolist() == [paper_accuracy("logreg"), paper_accuracy("cnn")] == [0.45, 0.625]
    assert t.run_id.tolist() == [r1.run_id, r2.run_id] and t.run_id.nunique() == 2
    before = store.read_bytes()

    def crash(self, f, *a, **k):
        f.write("model,half a row"); raise OSError("disk full")
    monkeypatch.setattr(pd.DataFrame, "to_csv", crash)       # the next append dies half-way through writing
    with pytest.raises(OSError, match="disk full"):
        core.append_results(r1.to_row(), store)
    assert store.read_bytes() == before                      # earlier rows intact
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []   # no temporary file left


def test_bad_labels_are_one_clear_error():
    with pytest.raises(ParameterError, match="outside 0..9"): accuracy([0, 12], [0, 1])
    with pytest.raises(ParameterError, match="proba must have shape"): predictions_df(None, [0, 1], [0, 1], np.ones((2, 3)))
    with pytest.raises(ParameterError, match="unknown Result fields"):
        evaluate_run("rf", [0], [0], chapter="c", prov=prov(), colour="red")


def _toy_matrix(n_per_genre=20, seed=0) -> FeatureMatrix:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(10), n_per_genre)
    X = (rng.normal(size=(len(y), 12)) + 3.0 * np.eye(10, 12)[y] + 5.0).astype(np.float32)   # offset: mean != 0
    tracks = pd.DataFrame({"track_id": [f"{GENRES[k]}.{i:05d}" for k in range(10) for i in range(n_per_genre)],
                           "genre": [GENRES[k] for k in y]})
    return FeatureMatrix(X, tracks, "toy", "stats", "synthetic", "fp")


@pytest.mark.parametrize("model", ["logreg", "sgd", "rf"])
def test_scaler_is_fit_on_train_only(model):
    fm = _toy_matrix()
    lab = make_split(fm.tracks, "paper", 3)
    f = fit_predict(model, fm, lab, seed=3, n_estimators=20)
    train = fm.X[np.asarray(lab) == "train"]
    np.testing.assert_allclose(f.pipeline["scaler"].mean_, train.mean(0), rtol=1e-5)
    np.testing.assert_allclose(f.pipeline["scaler"].scale_, train.std(0), rtol=1e-4)
    assert not np.allclose(f.pipeline["scaler"].mean_, fm.X.mean(0), rtol=1e-4)   # the whole table would differ
    assert set(f.train).isdisjoint(f.test) and set(f.valid).isdisjoint(f.test)
    assert accuracy(fm.y[f.test], f.y_pred) > 0.5


def test_same_seed_same_numbers_new_seed_new_split(tmp_path):
    fm = _toy_matrix()
    a = run_baselines(fm, BASELINES, "paper", [1, 1, 2], reports_dir=tmp_path, n_estimators=20, heatmaps=False,
                      progress=False)
    assert [r.test_accuracy for r in a[:3]] == [r.test_accuracy for r in a[3:6]]
    ids = lambda r: set(core.read_report_csv(r.paths["predictions"]).track_id)
    assert ids(a[0]) != ids(a[6])


def test_kaggle_csv_is_read_as_57_features(kaggle_csv):
    fm = read_kaggle_csv(kaggle_csv)
    assert fm.X.shape == (1000, 57) and fm.features == "kaggle57" and fm.dataset == "kaggle_csv"
    assert "length" not in fm.columns and "label" not in fm.columns
    assert fm.tracks.track_id[0] == "blues.00000" and (fm.tracks.genre.value_counts() == 100).all()


@pytest.mark.parametrize("split", ["paper", "filtered"])
def test_kaggle_reference_accuracies(split, kaggle_csv):
    "The reference protocol (10 seeds; filtered: train+valid -> test) reproduces SOURCES.md within 0.03."
    chk = reference_check(read_kaggle_csv(kaggle_csv), split, range(10), n_jobs=2)
    assert chk.model.tolist() == list(BASELINES)
    assert (chk.reference == [KAGGLE_REFERENCE[split][m] for m in BASELINES]).all()
    assert (chk["diff"].abs() < 0.03).all(), chk.to_string()
    if split == "filtered":
        assert (chk.n_seeds == 10).all()


def test_synthetic_audio_run_is_above_chance(tmp_path):
    "Features extracted from the synthetic set (stats view) -> every baseline well above chance (0.1)."
    from genre_nb import data
    from genre_nb.baselines import audio_matrix
    ds = data.open_dataset(None, tmp_path / "cache", tracks_per_genre=10, duration=8.0, seed=42, jobs=2)
    tracks = data.prepare(ds, split=None, cache_dir=tmp_path / "cache", jobs=2)
    fm = audio_matrix(tracks, "stats", cache_dir=tmp_path / "cache", jobs=2)
    assert fm.dataset == "synthetic" and fm.features == "mel+chroma+wavelet+mfcc" and len(fm.X) == 100
    assert np.isfinite(fm.X).all()
    res = run_baselines(fm, BASELINES, "paper", [42], reports_dir=tmp_path / "reports", n_estimators=100,
                        progress=False, heatmaps=False)
    acc = {r.model: r.test_accuracy for r in res}
    assert all(a > 0.2 for a in acc.values()), acc
    assert np.mean(list(acc.values())) > 0.4, acc
    rows = core.read_results(tmp_path / "reports" / "results.csv")
    assert rows.dataset.unique().tolist() == ["synthetic"] and rows.view.unique().tolist() == ["stats"]


def _papermill(tmp_path, *params):
    args = [sys.executable, "-m", "papermill", str(ROOT / "nbs" / "04_baselines.ipynb"), str(tmp_path / "out.ipynb"),
            "-k", "python3", "-p", "reports_dir", str(tmp_path / "reports"), *params]
    env = {**os.environ, "IN_TEST": ""}
    return subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)


@pytest.mark.parametrize("params, message", [
    (("-p", "seeds", "0"), "ParameterError: seeds must be >= 1"),
    (("-p", "view", "raw"), "ParameterError: view='raw' is not allowed"),
    (("-p", "source", "kaggle_csv"), "ParameterError: source='kaggle_csv' needs csv_path="),
])
def test_notebook_bad_parameters_fail_at_once(tmp_path, params, message):
    r = _papermill(tmp_path, *params)
    assert r.returncode != 0 and message in r.stderr + r.stdout
    assert not (tmp_path / "reports").exists()          # nothing written before the check


def test_notebook_on_kaggle_csv_writes_every_report(tmp_path, kaggle_csv):
    r = _papermill(tmp_path, "-p", "source", "kaggle_csv", "-p", "csv_path", str(kaggle_csv), "-p", "quick", "True",
                   "-p", "seed", "0")
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path / "reports" / "04_baselines"
    for m in BASELINES:
        for kind in ("report.csv", "predictions.csv", "confusion.png"):
            p = out / f"{m}_kaggle_csv_table_paper_seed0_{kind}"
            assert p.is_file(), p
            assert core.read_provenance(p)["dataset"] == "kaggle_csv"
    rows = core.read_results(tmp_path / "reports" / "results.csv")
    assert rows.model.tolist() == list(BASELINES) and (rows.dataset == "kaggle_csv").all()
    assert (rows.test_accuracy > 0.55).all(), rows.test_accuracy
    summary = core.read_report_csv(out / "summary_kaggle_csv_table_paper_seed0x1.csv")
    assert summary.paper_accuracy.tolist() == [0.45, 0.38, 0.55]
