"""The discussion chapter beyond its notebook: the summary read back from a results store on disk, the confusion-pair
ranking, the README markers, the reports index, the split gap on Kaggle's real GTZAN feature table, and the notebook
run by papermill on an empty store."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genre_nb import core
from genre_nb.core import GENRES, GenreNBError
from genre_nb.data import make_split
from genre_nb.evaluate import confusion_df, genre_index
from genre_nb.report import (PAPER_MODELS, RESULTS_END, RESULTS_START, artist_leakage, confused_pairs, duplicate_groups,
                             feature_duplicates, measure_split_gap, readme_table, reports_index, results_markdown,
                             results_summary, split_gap, update_readme, write_reports_index)

ROOT = Path(__file__).resolve().parents[1]


def row(model, dataset, split, seed, acc, quick=False, date="2026-01-01T00:00:00", **kw):
    return dict(model=model, features=kw.pop("features", "f"), dataset=dataset, split=split, seed=seed, test_accuracy=acc,
                macro_f1=acc - 0.05, quick=quick, date=date, **kw)


def test_summary_of_a_store_on_disk_exact(tmp_path):
    store = tmp_path / "results.csv"
    core.append_results([row("rf", "gtzan", "paper", 1, 0.60), row("rf", "gtzan", "paper", 2, 0.70),
                         row("rf", "gtzan", "paper", 3, 0.80), row("rf", "gtzan", "filtered", 1, 0.40),
                         row("rf", "gtzan", "filtered", 2, 0.46), row("cnn", "synthetic", "paper", 1, 0.20, quick=True)], store)
    core.append_results([row("rf", "gtzan", "paper", 3, 0.50, date="2026-02-01T00:00:00")], store)  # seed 3 re-run: replaces 0.80
    s = results_summary(core.read_results(store), include_quick=False).set_index(["model", "split"])
    assert list(s.index) == [("rf", "paper"), ("rf", "filtered")]          # quick CNN left out, paper split first
    assert s.loc[("rf", "paper"), "n_seeds"] == 3
    assert s.loc[("rf", "paper"), "mean"] == pytest.approx(0.6)              # 0.6, 0.7, 0.5
    assert s.loc[("rf", "paper"), "std"] == pytest.approx(0.1)
    assert s.loc[("rf", "filtered"), "std"] == pytest.approx(np.std([0.40, 0.46], ddof=1))
    assert s.loc[("rf", "paper"), "paper_accuracy"] == 0.55
    g = split_gap(results_summary(core.read_results(store)))
    assert len(g) == 1 and g.gap[0] == pytest.approx(0.43 - 0.6)
    quick = results_summary(core.read_results(store))                        # read back from CSV: the flag is a bool
    assert quick.quick.dtype == bool and quick.set_index("model").loc["cnn", "quick"]


def test_markdown_names_dataset_and_never_calls_synthetic_gtzan():
    s = results_summary(pd.DataFrame([row("logreg", "synthetic", "paper", 0, 0.9), row("logreg", "synthetic", "paper", 1, 0.8),
                                      row("cnn", "kaggle_csv", "filtered", 0, 0.5)]))
    md = results_markdown(s)
    lines = {l.split("|")[1].strip(): l for l in md.splitlines() if l.startswith("| ") and "---" not in l}
    assert "synthetic (not GTZAN)" in lines["Logistic Regression"] and "GTZAN (" not in lines["Logistic Regression"]
    assert "0.850 ± 0.071" in lines["Logistic Regression"] and "| 2 |" in lines["Logistic Regression"]
    assert "GTZAN (Kaggle feature table)" in lines["CNN"] and "filtered: artist-filtered" in lines["CNN"]
    for m in ("SGD classifier", "Random Forest", "RNN (LSTM)"):
        assert "no runs yet" in lines[m]


def test_confused_pairs_ranking_from_predictions():
    # true -> predicted: 3 rock as metal, 1 metal as rock, 2 pop as disco, 2 disco as pop, 1 blues as jazz
    pairs = [("rock", "metal")] * 3 + [("metal", "rock")] + [("pop", "disco")] * 2 + [("disco", "pop")] * 2 + [("blues", "jazz")]
    right = [(g, g) for g in GENRES for _ in range(5)] + [("disco", "disco")] * 2   # disco+pop: 16 clips, metal+rock 14
    yt, yp = zip(*(pairs + right))
    cp = confused_pairs(confusion_df(genre_index(yt), genre_index(yp)), top=None)
    assert [(r.genre_a, r.genre_b, r.confusions) for r in cp.itertuples()] == [
        ("metal", "rock", 4), ("disco", "pop", 4), ("blues", "jazz", 1)]          # ties: the higher rate first
    assert cp.loc[0, "a_as_b"] == 1 and cp.loc[0, "b_as_a"] == 3
    assert cp.share_of_errors.sum() == pytest.approx(1.0)
    assert cp.rate[0] > cp.rate[1]                                               # metal+rock have fewer clips


def test_update_readme_changed_unchanged_missing(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# t\n{RESULTS_START}\n{RESULTS_END}\ntail\n")
    assert update_readme(readme, "| a | b |\n|---|---|\n| 1 | 2 |") is True
    assert readme.read_text() == f"# t\n{RESULTS_START}\n| a | b |\n|---|---|\n| 1 | 2 |\n{RESULTS_END}\ntail\n"
    mtime = readme.stat().st_mtime_ns
    assert update_readme(readme, "\n| a | b |\n|---|---|\n| 1 | 2 |\n") is False
    assert readme.stat().st_mtime_ns == mtime                                   # not rewritten
    assert update_readme(readme, readme_table(tmp_path / "reports")) is True    # an empty store: every model "no runs yet"
    assert readme.read_text().count("no runs yet") == len(PAPER_MODELS)
    bad = tmp_path / "BAD.md"; bad.write_text(f"{RESULTS_END}\n{RESULTS_START}\n")   # markers in the wrong order
    with pytest.raises(GenreNBError, match="markers") as e: update_readme(bad, "x")
    assert "\n" not in str(e.value)
    assert bad.read_text() == f"{RESULTS_END}\n{RESULTS_START}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["BAD.md", "README.md"]    # no temporary files left


def test_reports_index_lists_what_is_present(tmp_path):
    rd = tmp_path / "reports"
    prov = core.provenance("gtzan", "0123456789ab", split="filtered", seed=3)
    core.save_report(pd.DataFrame({"genre": ["blues"], "f1": [0.5]}), "rnn_gtzan_filtered_seed3_report.csv", "05b_rnn", prov, rd)
    core.save_report({"x": 1}, "metrics.json", "02_features", prov, rd)
    (rd / "notebooks").mkdir(); (rd / "notebooks" / "05b_rnn.ipynb").write_text("{}")
    idx = reports_index(rd).set_index("file")
    assert list(idx.index) == ["02_features/metrics.json", "05b_rnn/rnn_gtzan_filtered_seed3_report.csv"]
    assert idx.loc["05b_rnn/rnn_gtzan_filtered_seed3_report.csv", "paper"] == "Figure 7"
    assert idx.loc["05b_rnn/rnn_gtzan_filtered_seed3_report.csv", "provenance"].startswith("data: gtzan (fp 01234567) | split=filtered seed=3")
    text = write_reports_index(rd).read_text()
    assert "[05b_rnn/rnn_gtzan_filtered_seed3_report.csv](05b_rnn/rnn_gtzan_filtered_seed3_report.csv) | Figure 7 |" in text
    assert "README.md](" not in text
    head, rest = text.split("## Executed notebooks")
    notebooks, _, files_tables = rest.partition("\n## ")
    assert "notebooks/05b_rnn.ipynb" not in head + files_tables         # not in the files table ...
    assert "| [02_features/metrics.json](02_features/metrics.json) |" in files_tables
    assert "| [notebooks/05b_rnn.ipynb](notebooks/05b_rnn.ipynb) | 05b_rnn | 2 B |" in notebooks   # ... linked in its own section
    assert "genre-nb reproduce" in notebooks and text.count("notebooks/05b_rnn.ipynb]") == 1


def test_split_gap_on_real_gtzan_features(kaggle_csv):
    "Kaggle's GTZAN table: the artist-filtered split costs every baseline >= 8 points; LR matches the reference 0.534."
    from genre_nb.baselines import read_kaggle_csv
    fm = read_kaggle_csv(kaggle_csv)
    runs, f1 = measure_split_gap(fm, ("logreg", "sgd", "rf"), seeds=(0, 1, 2), n_estimators=100, n_jobs=2)
    assert len(runs) == 3 * 3 * 2 and set(runs.dataset) == {"kaggle_csv"}
    g = split_gap(results_summary(runs)).set_index("model")
    assert (g.gap < -0.08).all(), g[["paper_mean", "filtered_mean", "gap"]]
    assert g.loc["logreg", "filtered_mean"] == pytest.approx(0.534, abs=0.01)   # SOURCES.md reference figure
    assert g.loc["logreg", "paper_mean"] == pytest.approx(0.685, abs=0.05)
    assert set(f1.split) == {"paper", "filtered"} and f1.support.gt(0).all()
    leak = {sp: artist_leakage(fm.tracks, sp, 0) for sp in ("paper", "filtered")}
    assert leak["filtered"]["n_leaked"] == 0 and leak["filtered"]["n_test"] == 290
    assert leak["paper"]["share"] > 0.6
    dup = feature_duplicates(fm)
    groups = duplicate_groups(dup, {sp: pd.Series(make_split(fm.tracks, sp, 0).values, index=fm.tracks.track_id.values)
                                    for sp in ("paper", "filtered")})
    assert len(groups) >= 10 and groups.cross_genre.any()                       # Sturm: exact replicas, some across genres
    assert not groups.leak_filtered.any()                                       # the filtered split drops repetitions


def _papermill(tmp_path, *params):
    out = tmp_path / "out.ipynb"
    args = [sys.executable, "-m", "papermill", str(ROOT / "nbs" / "07_discussion.ipynb"), str(out), "-k", "python3",
            "--cwd", str(ROOT / "nbs"), "-p", "reports_dir", str(tmp_path / "reports"), "-p", "quick", "True", *params]
    return subprocess.run(args, capture_output=True, text=True, timeout=600)


def test_notebook_on_an_empty_store(tmp_path):
    r = _papermill(tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    rd = tmp_path / "reports"
    md = (rd / "results.md").read_text()
    assert md.count("no runs yet") == len(PAPER_MODELS)
    assert "synthetic (not GTZAN)" in md                                         # the direct split-gap measurement, labelled
    assert core.read_provenance(rd / "results_summary.csv")["params"]["quick"] is True
    assert "results.md" in (rd / "README.md").read_text()


def test_notebook_bad_parameter_is_one_line(tmp_path):
    r = _papermill(tmp_path, "-p", "seeds", "0")
    assert r.returncode != 0
    assert "seeds must be >= 1" in r.stderr
    assert not (tmp_path / "reports" / "results.md").exists()
