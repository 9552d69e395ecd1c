"""The data layer on real files: layouts, bad input, the real excerpts, splits over real ids, the synthetic set."""
import numpy as np
import pytest
import soundfile as sf

from genre_nb.core import DataError
from genre_nb.data import (GTZAN_MINI, SplitError, audit, dataset_name, filtered_lists, find_tracks, load_audio, make_split,
                           open_dataset, prepare)


def test_marsyas_layout_and_resampling(tmp_path):
    root = tmp_path / "genres" / "jazz"; root.mkdir(parents=True)
    t = np.arange(16000 * 4) / 16000
    st = np.stack([np.sin(2 * np.pi * 440 * t), np.zeros_like(t)], 1).astype(np.float32)
    sf.write(root / "jazz.00000.au", st, 16000, subtype="PCM_16")
    tracks = find_tracks(tmp_path)
    assert tracks.attrs["layout"] == "marsyas" and list(tracks.track_id) == ["jazz.00000"]
    assert tracks.artist.iloc[0] == "Leonard Bernstein"        # from Sturm's index
    y = load_audio(tracks.path.iloc[0])
    assert y.dtype == np.float32 and len(y) == 22050 * 4
    assert abs(np.abs(y).max() - 0.5) < 0.02                # stereo -> mono averages the channels


def test_bad_files_are_excluded_with_reasons(bad_folder):
    a = audit(find_tracks(bad_folder)).set_index("track_id")
    assert (a.status == "ok").sum() == 2
    assert a.loc["rock.00000", "status"].startswith("unreadable")
    assert np.isnan(a.loc["rock.00000", "duration_s"])


def test_wrong_layout_names_what_was_expected(tmp_path):
    (tmp_path / "music").mkdir()
    with pytest.raises(DataError, match="genres_original/<genre>"):
        find_tracks(tmp_path)


def test_gtzan_mini_names_itself(gtzan_mini_dir):
    "GTZAN-mini's 100 real FLACs are `gtzan_mini`; a subset of them (no jazz) is `gtzan`."
    ds = open_dataset(gtzan_mini_dir)
    assert (ds.name, len(ds.tracks)) == ("gtzan_mini", 100)
    assert set(ds.tracks.track_id) == GTZAN_MINI
    assert dataset_name(ds.tracks[ds.tracks.genre != "jazz"]) == "gtzan"


def test_real_excerpts_audit(gtzan_dir):
    ds = open_dataset(gtzan_dir / "audio")
    assert ds.name == "gtzan" and len(ds.tracks) == 10
    a = prepare(ds, split=None)
    assert set(a.status) == {"ok"}
    assert (a.sample_rate == 22050).all() and ((a.duration_s - 30.0).abs() < 0.2).all()
    with pytest.raises(SplitError, match="needs at least 5 usable tracks per genre"):
        prepare(ds, split="paper")


def test_filtered_split_on_the_real_excerpts_follows_the_lists(gtzan_dir, caplog):
    a = prepare(open_dataset(gtzan_dir / "audio"), split=None)
    lists = {tid: part for part, ids in filtered_lists().items() for tid in ids}
    with caplog.at_level("INFO", logger="genre_nb"):
        s = make_split(a, "filtered")
    assert list(s) == [lists.get(t) for t in a.track_id]    # each excerpt on the side the published lists put it
    assert "920 listed tracks are not usable here" in caplog.text   # the 920 absent tracks are reported, not fatal


def test_synthetic_set_is_deterministic_and_labelled(tmp_path):
    a = open_dataset(None, tmp_path / "c1", tracks_per_genre=5, duration=3.0, seed=3)
    b = open_dataset(None, tmp_path / "c2", tracks_per_genre=5, duration=3.0, seed=3)
    assert a.name == "synthetic" and a.fingerprint == b.fingerprint and len(a.tracks) == 50
    for p, q in zip(a.tracks.path, b.tracks.path):
        assert open(p, "rb").read() == open(q, "rb").read()
    t = prepare(a, "paper", seed=0)
    assert t.split.value_counts().to_dict() == {"train": 30, "valid": 10, "test": 10}
    assert t.attrs["dataset"] == "synthetic"
