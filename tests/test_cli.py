"""`genre-nb` as a user runs it: a subprocess, real files on disk, exit codes and one-line errors."""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

GENRE_NB = str(Path(sys.executable).parent / "genre-nb")   # the console script installed beside this Python


def genre_nb(*args, cwd=None):
    return subprocess.run([GENRE_NB, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600)


def test_help_explains_every_command_and_option():
    r = genre_nb("--help")
    assert r.returncode == 0 and "audit" in r.stdout
    r = genre_nb("audit", "--help")
    assert r.returncode == 0
    for opt in ("--out", "--json", "--min-duration", "--jobs", "data_dir"):
        assert opt in r.stdout


def test_audit_lists_bad_files_with_reasons_and_audits_the_good(bad_folder, tmp_path):
    r = genre_nb("audit", bad_folder, "--out", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    a = pd.read_csv(tmp_path / "out" / "audit.csv").set_index("filename")
    assert list(a.columns) == ["genre", "duration_s", "sample_rate", "mean_amplitude", "rms_amplitude", "max_amplitude", "status"]
    assert a.loc["blues.00000.wav", "status"] == "ok"
    assert a.loc["blues.00000.wav", "duration_s"] == pytest.approx(6.0)
    assert a.loc["blues.00001.wav", "status"].startswith("truncated")
    assert a.loc["rock.00000.wav", "status"] == "unreadable: empty file (0 bytes)"
    assert a.loc["rock.00001.wav", "status"].startswith("unreadable: not audio")      # text named .wav
    assert a.loc["rock.00002.wav", "status"] == "silent (no sound above -60 dBFS)"
    assert a.loc["rock.00003.wav", "status"].startswith("too short")
    for f in ("blues.00001.wav", "rock.00000.wav", "rock.00001.wav"):
        assert f in r.stdout
    assert "1 groups of exact duplicates" in r.stdout     # blues.00000 == rock.00004


def test_audit_json_parses(bad_folder, tmp_path):
    r = genre_nb("audit", bad_folder, "--json", "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["dataset"] == "gtzan" and len(out["tracks"]) == 7
    assert {d["filename"] for d in out["duplicates"]} == {"blues.00000.wav", "rock.00004.wav"}


@pytest.mark.parametrize("make", ["missing", "wrong_layout", "file"])
def test_audit_bad_folder_is_one_line_and_nonzero(tmp_path, make):
    target = tmp_path / "nope"
    if make == "wrong_layout": (target / "some" / "thing").mkdir(parents=True); (target / "x.wav").write_text("x")
    if make == "file": target.write_text("not a folder")
    r = genre_nb("audit", target, "--out", tmp_path)
    assert r.returncode != 0
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
    assert ("not found" in r.stderr) or ("no GTZAN layout" in r.stderr) or ("no audio files" in r.stderr)


def test_audit_of_the_real_excerpts(gtzan_dir, tmp_path):
    r = genre_nb("audit", gtzan_dir / "audio", "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    a = pd.read_csv(tmp_path / "audit.csv")
    assert len(a) == 10 and set(a.status) == {"ok"} and set(a.sample_rate) == {22050}
    assert ((a.duration_s - 30.0).abs() < 0.2).all()          # GTZAN excerpts are 30.00-30.13 s
    assert sorted(a.genre) == sorted(set(a.genre))   # one per genre


def test_extract_writes_one_row_per_usable_track(bad_folder, tmp_path):
    out = tmp_path / "t.csv"
    r = genre_nb("extract", bad_folder, "--features", "mfcc,summary", "--out", out, "--jobs", "2", "--cache-dir", tmp_path / "c")
    assert r.returncode == 0, r.stderr
    t = pd.read_csv(out)
    assert sorted(t.track_id) == ["blues.00000", "rock.00004"]            # the bad files are left out, not fatal
    assert list(t.columns[:3]) == ["track_id", "genre", "mfcc_0"] and "mfcc_39" in t and "tempo" in t and "mfcc20_var" in t
    assert "2 tracks x" in r.stdout


def test_extract_unknown_feature_is_one_line(bad_folder, tmp_path):
    r = genre_nb("extract", bad_folder, "--features", "mel,colour", "--out", tmp_path / "x.csv")
    assert r.returncode == 1 and "colour" in r.stderr and r.stderr.strip().count("\n") == 0
    assert not (tmp_path / "x.csv").exists()


def test_extract_on_a_local_dask_cluster_matches_local_workers(bad_folder, tmp_path):
    pytest.importorskip("dask.distributed")
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    assert genre_nb("extract", bad_folder, "--features", "mel,wavelet", "--out", a, "--cache-dir", tmp_path / "c1").returncode == 0
    r = genre_nb("extract", bad_folder, "--features", "mel,wavelet", "--out", b, "--backend", "dask", "--cache-dir", tmp_path / "c2")
    assert r.returncode == 0, r.stderr
    pd.testing.assert_frame_equal(pd.read_csv(a), pd.read_csv(b))


def test_extract_vggish_without_a_model_is_one_line(bad_folder, tmp_path, monkeypatch):
    env = {**__import__("os").environ, "TFHUB_CACHE_DIR": str(tmp_path / "empty_hub")}
    env.pop("GENRE_NB_VGGISH", None)
    r = subprocess.run([GENRE_NB, "extract", str(bad_folder), "--features", "vggish", "--out", str(tmp_path / "v.csv")],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 1 and "VGGish is not available offline" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "v.csv").exists()


def test_extract_musicnn_on_the_real_excerpts(gtzan_dir, tmp_path):
    pytest.importorskip("musicnn", reason="musicnn's weights: pip install --no-deps musicnn==0.1.0")
    r = genre_nb("extract", gtzan_dir / "audio", "--features", "musicnn", "--out", tmp_path / "m.csv", "--jobs", "1")
    assert r.returncode == 0, r.stderr
    t = pd.read_csv(tmp_path / "m.csv")
    assert t.shape == (10, 202) and list(t.columns[-2:]) == ["musicnn_198", "musicnn_199"]


def test_bench_prints_the_speedup_table():
    r = genre_nb("bench", "--n-tracks", "1", "--repeats", "1")
    assert r.returncode == 0, r.stderr
    assert "mel+mfcc+chroma+wavelet" in r.stdout and "speedup" in r.stdout


def test_readme_is_rendered_from_the_index_notebook():
    "README.md is nbs/index.ipynb rendered (`genre-nb readme`), the results table aside: the two never drift apart."
    from genre_nb.reproduce import render_index
    root = Path(__file__).resolve().parents[1]
    def outside_results(text):
        for block in ("results", "results-gtzan-mini"):
            a, b = text.index(f"<!-- {block}:start -->"), text.index(f"<!-- {block}:end -->")
            text = text[:a] + text[b:]
        return text
    assert outside_results((root / "README.md").read_text()) == outside_results(render_index(root / "nbs" / "index.ipynb"))


def test_import_declares_the_public_api_without_tensorflow():
    "`import genre_nb` and `dir(genre_nb)` list the chapters' modules and `predict`, and import no TensorFlow."
    code = ("import genre_nb, sys; names = dir(genre_nb); assert 'tensorflow' not in sys.modules, 'tensorflow'; "
            "assert sorted(genre_nb.__all__) == names, names; "
            "assert {'core', 'data', 'reproduce', 'cli', 'inference', 'cnn', 'predict', '__version__'} <= set(names); "
            "from genre_nb import predict, reproduce; assert callable(predict) and reproduce.CHAPTERS; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow after reproduce'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-c", "import genre_nb; genre_nb.nothing"], capture_output=True, text=True)
    assert "module 'genre_nb' has no attribute 'nothing'" in r.stderr
