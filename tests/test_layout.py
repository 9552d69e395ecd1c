"""One job per chapter (issue 25): the names of the old warehouses stay importable where they were, and no module
of the package grows past the bar again."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# module -> names it held before the split by job, that now live in another module
MOVED = {
    "genre_nb.inference": ["train", "TransferModel", "Recipe", "labelled_tracks", "cv_groups", "protocol_cv", "calibrate",
                           "compare_recipes", "save_training", "load_model", "save_transfer", "load_transfer",
                           "shipped_model_path", "default_model_path", "set_default_model", "MODEL_FILES",
                           "trained_on", "accuracy_text", "decoded_blocks", "audio_windows", "as_mono", "MODEL_SR",
                           "MIN_SECONDS", "OUTPUT_COLUMNS"],
    "genre_nb.training": ["load_bundle", "save_bundle", "Bundle", "BundleError", "read_json", "read_arrays",
                          "refuse_pickles", "convert_legacy_bundle", "list_bundles", "models_dir", "run_id",
                          "BUNDLE_FORMAT"],
    "genre_nb.features": ["FeatureScaler", "FeatureSet", "feature_set", "unify", "unified_length"],
    "genre_nb.data": ["to_mono", "check_rate", "open_audio", "read_audio", "resample", "load_audio", "Loudness",
                      "audio_problem", "AudioError", "AUDIO_EXTS", "HEARD_SR", "SR_RANGE"],
}


@pytest.mark.parametrize("module", sorted(MOVED))
def test_old_names_still_import(module):
    code = f"from {module} import {', '.join(MOVED[module])}"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]


def test_unknown_name_is_still_an_attribute_error():
    import genre_nb.inference as I, genre_nb.training as T, genre_nb.features as F
    for m in (I, T, F):
        with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"): m.no_such_name


@pytest.mark.parametrize("low,high,name", [("training", "bundle", "load_bundle"),
                                           ("features", "featureset", "FeatureScaler")])
def test_a_module_and_the_one_split_from_it_import_in_either_order(low, high, name):
    for first, second in ((low, high), (high, low)):
        r = subprocess.run([sys.executable, "-c", f"import genre_nb.{first}, genre_nb.{second}; "
                            f"from genre_nb.{low} import {name}; from genre_nb.{high} import {name} as b; "
                            f"assert {name} is b"], capture_output=True, text=True, cwd=ROOT)
        assert r.returncode == 0, r.stderr[-2000:]


def test_predict_module_still_imports_no_tensorflow():
    r = subprocess.run([sys.executable, "-c", "import sys, genre_nb.inference; "
                        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]


def test_no_module_over_900_lines():
    long = {p.name: n for p in (ROOT / "genre_nb").glob("*.py") if p.name != "_modidx.py"
            if (n := len(p.read_text().splitlines())) > 900}
    assert not long, f"modules over 900 lines (split them by job): {long}"


def test_no_notebook_over_200_cells():
    import json
    long = {p.name: n for p in (ROOT / "nbs").glob("*.ipynb")
            if (n := len(json.loads(p.read_text())["cells"])) > 200}
    assert not long, f"notebooks over 200 cells (split them by job): {long}"


def test_every_module_is_a_public_name():
    import genre_nb
    mods = {p.stem for p in (ROOT / "genre_nb").glob("*.py") if not p.stem.startswith("_")}
    assert mods <= set(genre_nb._SUBMODULES), f"modules missing from genre_nb._SUBMODULES: {mods - set(genre_nb._SUBMODULES)}"
