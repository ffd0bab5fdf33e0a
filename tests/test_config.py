"""The scripts' constants (ScriptConfig, RunPlan) and the pipeline's bookkeeping, without
running a reconstruction: fast, no torch needed for most of it."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from icnn_torch.errors import ConfigError
from icnn_torch.recon.engines import engine_info
from icnn_torch.run import reconstruct
from icnn_torch.run.cli import split_list
from icnn_torch.run.config import DEFAULT_FEATURES_DIR, ScriptConfig, find_script
from icnn_torch.run.jobs import Job
from icnn_torch.store import record as records
from icnn_torch.store.layout import job_dir, recon_mat_path
from icnn_torch.store.record import plain_values

REPO = Path(__file__).resolve().parents[1]
ALL19 = ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv3_4",
         "conv4_1", "conv4_2", "conv4_3", "conv4_4", "conv5_1", "conv5_2", "conv5_3", "conv5_4",
         "fc6", "fc7", "fc8"]

# The seven scripts as the original repository defines them (its README and scripts):
# figure, image type, labels in order, ROIs, engine, network.
ORIGINAL = {
    "1_reconstruct_natural_image": (
        "Fig 2.", "natural", ["Img0009", "Img0002", "Img0001", "Img0005", "Img0036", "Img0045",
                              "Img0031", "Img0043"], ["VC"], "icnn_dgn_gd", "VGG19"),
    "2_reconstruct_natural_image_without_DGN": (
        "Fig 3A.", "natural", ["Img0002", "Img0011", "Img0045", "Img0048"], ["VC"],
        "icnn_lbfgs", "VGG19"),
    "3_reconstruct_natural_image_different_combinations_of_CNN_layers": (
        "Fig 4.", "natural", ["Img0016", "Img0036", "Img0042"], ["VC"], "icnn_lbfgs", "VGG19"),
    "4_reconstruct_shape_image": (
        "Fig 6A.", "color_shape", [f"Img{i:04d}" for i in range(1, 16)], ["VC"], "icnn_lbfgs",
        "VGG19"),
    "5_reconstruct_shape_image_different_ROI": (
        "Fig 7A.", "color_shape", ["Img0004", "Img0008", "Img0011"],
        ["V1", "V2", "V3", "V4", "HVC", "VC"], "icnn_lbfgs", "VGG19"),
    "6_reconstruct_alphabet_image": (
        "Fig 6B.", "alphabet", ["Img0005", "Img0003", "Img0010", "Img0007", "Img0006"], ["VC"],
        "icnn_lbfgs", "VGG19"),
    "7_reconstruct_imagined_image": (
        "Fig 8.", "imagery", ["Img0001", "Img0005", "Img0009", "Img0008", "Img0003", "Img0010",
                              "Img0021", "Img0022", "Img0020"], ["VC"], "icnn_lbfgs",
        "VGG19_leaky"),
}


def _config(**changes) -> ScriptConfig:
    constants = dict(__file__=str(REPO / "my_script.py"), image_type="natural", network="VGG19",
                     subjects_list=["S1", "S2", "S3"], rois_list=["V1", "VC"],
                     image_label_list=["a", "b", "c"], engine="icnn_lbfgs",
                     opts={"loss_type": "l2", "maxiter": 200, "disp": None,
                           "initial_image": "mean"},
                     layers=["conv1_1", "fc8"])
    constants.update(changes)
    return ScriptConfig.from_constants(constants)


# --------------------------------------------------------------------------- the seven scripts

@pytest.mark.parametrize("name", list(ORIGINAL))
def test_script_constants_are_the_originals(name):
    figure, image_type, labels, rois, engine, network = ORIGINAL[name]
    cfg = ScriptConfig.from_file(REPO / f"{name}.py")
    assert cfg.script_name == name
    assert cfg.figure_title.startswith(figure)
    assert (cfg.image_type, cfg.image_label_list, cfg.rois_list) == (image_type, labels, rois)
    assert (cfg.engine, cfg.network) == (engine, network)
    assert cfg.subjects_list == ["S1", "S2", "S3"]
    assert cfg.results_dir == "./results" and cfg.decoded_features_dir == DEFAULT_FEATURES_DIR
    assert DEFAULT_FEATURES_DIR == "./data/decodedfeatures"  # the original's constant
    assert cfg.snapshot_every == 1  # the original saves every iteration / evaluation
    assert cfg.batch_size == 1 and cfg.overwrite is False and cfg.download == "ask"
    plan = cfg.plan()
    assert plan.iterations == 200
    if name.startswith("3_"):
        assert cfg.layers is None
        assert list(cfg.layers_sets) == ["layers-1to1", "layers-1to3", "layers-1to5",
                                         "layers-1to7"]
        assert cfg.layers_sets["layers-1to1"] == ALL19[:2]
        assert cfg.layers_sets["layers-1to3"] == ALL19[:8]
        assert cfg.layers_sets["layers-1to5"] == ALL19[:16]
        assert cfg.layers_sets["layers-1to7"] == ALL19[:18]
        assert plan.all_layers == tuple(ALL19[:18])
    else:
        assert cfg.layers == ALL19 and cfg.layers_sets is None


def test_find_script_by_number_name_and_path():
    assert find_script("5", REPO).name == "5_reconstruct_shape_image_different_ROI.py"
    assert find_script("4_reconstruct_shape_image", REPO).name == "4_reconstruct_shape_image.py"
    assert find_script(REPO / "6_reconstruct_alphabet_image.py") == \
        REPO / "6_reconstruct_alphabet_image.py"
    with pytest.raises(ConfigError, match="scripts there"):
        find_script("9", REPO)


# --------------------------------------------------------------------------- plan

def test_plan_applies_overrides_and_keeps_the_script_untouched():
    cfg = _config()
    plan = cfg.plan(subjects=["S2"], rois=["VC"], labels=["c", "a"], iterations=3)
    assert (plan.subjects, plan.rois, plan.labels) == (("S2",), ("VC",), ("c", "a"))
    assert plan.options["maxiter"] == 3 and plan.iterations == 3
    assert cfg.opts["maxiter"] == 200
    assert plan.layers == ("conv1_1", "fc8") and plan.layer_sets is None
    assert not plan.uses_generator
    assert _config(engine="icnn_dgn_gd", opts={"iter_n": 5}).plan(iterations=2).options == \
        {"iter_n": 2}


@pytest.mark.parametrize("changes, kwargs, message", [
    (dict(engine="icnn_nope"), {}, "unknown engine 'icnn_nope'"),
    ({}, dict(iterations=0), "at least 1"),
    ({}, dict(layer_sets=["x"]), "has no layer sets"),
    (dict(layers=None, layers_sets={"s1": ["conv1_1"]}), dict(layer_sets=["s2"]),
     "unknown layer set"),
    (dict(layers=None), {}, "neither `layers` nor `layers_sets`"),
    ({}, dict(labels=[]), "no image labels selected"),
])
def test_plan_rejects_what_cannot_run(changes, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        _config(**changes).plan(**kwargs)


def test_missing_constants_are_named():
    with pytest.raises(ConfigError, match="does not define engine, opts"):
        ScriptConfig.from_constants({"__file__": "x.py", "image_type": "natural",
                                     "network": "VGG19", "subjects_list": ["S1"],
                                     "rois_list": ["VC"], "image_label_list": ["a"]})


def test_record_fields_of_a_plan():
    cfg = _config(layers=None, layers_sets={"one": ["conv1_1"], "two": ["conv1_1", "fc8"]},
                  figure_title="Fig 9. Test", opts={"maxiter": 4, "initial_image": np.zeros(2)})
    record = cfg.plan(layer_sets=["two"]).to_record()
    assert record == {"script": "my_script", "figure_title": "Fig 9. Test",
                      "image_type": "natural", "network": "VGG19", "engine": "icnn_lbfgs",
                      "subjects": ["S1", "S2", "S3"], "rois": ["V1", "VC"],
                      "labels": ["a", "b", "c"], "layers": ["conv1_1", "fc8"],
                      "layer_sets": {"two": ["conv1_1", "fc8"]}, "iterations": 4,
                      "options": {"maxiter": 4, "initial_image": [0.0, 0.0]}}
    json.dumps(record)  # serialisable as it is
    assert _config().plan().figure_title == "my_script"  # default: the script's name


def test_plain_values_turn_arrays_and_numpy_scalars_into_python_values():
    value = plain_values({"a": np.arange(3), "b": (np.float32(1.5), [np.int64(2)]), "c": "x"})
    assert value == {"a": [0, 1, 2], "b": (1.5, [2]), "c": "x"}
    assert type(value["b"][0]) is float and type(value["b"][1][0]) is int


# --------------------------------------------------------------------------- command line

def _help(cfg: ScriptConfig) -> str:
    return reconstruct.build_parser(cfg).format_help()


def test_help_offers_layer_sets_and_batches_only_where_they_apply():
    lbfgs = _help(_config())
    assert "--layers-sets" not in lbfgs and "--batch-size" not in lbfgs
    assert "maxiter: L-BFGS iterations per image (script: 200)" in lbfgs
    gd = _help(_config(engine="icnn_gd", opts={"iter_n": 7}, batch_size=4))
    assert "--batch-size" in gd and "(script: 4)" in gd and "iter_n: iterations" in gd
    sets = _help(_config(layers=None, layers_sets={"one": ["conv1_1"], "two": ["fc8"]}))
    assert "--layers-sets" in sets and "of one,two" in sets


def test_lists_are_comma_separated_with_duplicates_dropped():
    assert split_list("S2, S1,,S2") == ["S2", "S1"]
    assert split_list(None) is None


@pytest.mark.parametrize("changes, argv, message", [
    (dict(batch_size=4), [], "icnn_lbfgs reconstructs one image at a time"),
    (dict(engine="icnn_gd", opts={"iter_n": 1}), ["--batch-size", "0"], "batch_size must be"),
    ({}, ["--snapshot-every", "-1"], "snapshot_every must be"),
    (dict(download="maybe"), [], "download must be"),
])
def test_settings_reject_what_cannot_run(changes, argv, message):
    cfg = _config(**changes)
    args = reconstruct.build_parser(cfg).parse_args(argv)
    with pytest.raises(ConfigError, match=message):
        reconstruct.settings_of(cfg, args, engine_info(cfg.engine))


def test_batches_share_a_layer_set_and_keep_the_order():
    jobs = [Job("S1", "VC", label, layer_set) for label in "ab" for layer_set in ("x", "y")]
    assert reconstruct._batches(jobs, 1) == [[j] for j in jobs]
    assert reconstruct._batches(jobs, 2) == [[jobs[0], jobs[2]], [jobs[1], jobs[3]]]


# --------------------------------------------------------------------------- the results folder

def _folder_state(tmp_path, cfg, plan, argv=(), redo=()):
    info = engine_info(cfg.engine)
    args = reconstruct.build_parser(cfg).parse_args(["--results-dir", str(tmp_path), *argv])
    settings = reconstruct.settings_of(cfg, args, info)
    return reconstruct.check_folder(plan, settings, info, list(redo)), settings


def _write_result(script_results: Path, subject="S1", roi="VC", label="a") -> Path:
    mat = recon_mat_path(job_dir(script_results, subject, roi), label)
    mat.parent.mkdir(parents=True, exist_ok=True)
    mat.write_bytes(b"")
    return mat


def test_results_of_other_options_stop_a_run_that_would_not_redo_them(tmp_path):
    cfg = _config()
    folder = tmp_path / "my_script"
    records.write_run_record(folder, cfg.plan(iterations=5).to_record())
    kept = _write_result(folder)
    with pytest.raises(ConfigError) as err:
        _folder_state(tmp_path, cfg, cfg.plan(iterations=6))
    message = str(err.value)
    assert "1 reconstruction(s) made with other settings" in message
    assert "maxiter: 5 there, 6 here" in message and "--force redoes them" in message
    state, _ = _folder_state(tmp_path, cfg, cfg.plan(iterations=6), ["--force"], redo=[kept])
    assert state.stale == {kept}


def test_an_options_clash_says_everything_in_one_message(tmp_path):
    """Issue case: the first hint said "add --force", and with --force the next said the old
    results lie outside the selection. Now the first message says both."""
    cfg = _config()
    folder = tmp_path / "my_script"
    records.write_run_record(folder, cfg.plan(iterations=5).to_record())
    inside = _write_result(folder, "S1", "VC", "a")
    outside = _write_result(folder, "S2", "VC", "b")
    plan = cfg.plan(subjects=["S1"], labels=["a"], iterations=6)
    with pytest.raises(ConfigError) as err:
        _folder_state(tmp_path, cfg, plan)
    message = str(err.value)
    assert "2 reconstruction(s) made with other settings" in message
    assert "1 of them are in this run's selection: --force redoes them" in message
    assert "1 lie outside this run's selection" in message
    assert str(outside.relative_to(folder)) in message and "--results-dir" in message
    # with --force, only the ones outside the selection remain in the way, as said
    with pytest.raises(ConfigError) as err:
        _folder_state(tmp_path, cfg, plan, ["--force"], redo=[inside])
    assert "1 lie outside this run's selection" in str(err.value)
    assert "--force redoes" not in str(err.value)


def test_display_option_is_not_a_difference(tmp_path):
    cfg = _config()
    folder = tmp_path / "my_script"
    old = _config(opts=dict(cfg.opts, disp=True)).plan().to_record()
    records.write_run_record(folder, old)
    _write_result(folder)
    state, _ = _folder_state(tmp_path, cfg, cfg.plan())  # no error: the same method
    assert state.stale == set()


def test_options_pkl_of_an_earlier_run_is_compared_and_a_foreign_one_ignored(tmp_path):
    cfg = _config()
    folder = tmp_path / "my_script"
    folder.mkdir()
    _write_result(folder)
    (folder / "options.pkl").write_bytes(pickle.dumps(dict(cfg.opts, maxiter=9)))
    with pytest.raises(ConfigError, match=r"maxiter: 9 there, 200 here; from its options.pkl"):
        _folder_state(tmp_path, cfg, cfg.plan())
    # the original's options.pkl holds numpy arrays: not read (no code runs), not compared
    (folder / "options.pkl").write_bytes(pickle.dumps({"initial_image": np.zeros(3)}, protocol=0))
    state, _ = _folder_state(tmp_path, cfg, cfg.plan())
    assert state.stale == set()


def test_other_layers_or_engine_are_differences():
    old = {"engine": "icnn_lbfgs", "layers": ["conv1_1"], "options": {"maxiter": 1}}
    new = {"engine": "icnn_gd", "layers": ["fc8"], "options": {"iter_n": 1}}
    diffs = records.differences(old, new)
    assert 'engine: "icnn_lbfgs" there, "icnn_gd" here' in diffs
    assert 'layers: ["conv1_1"] there, ["fc8"] here' in diffs
    assert "maxiter: 1 there, (unset) here" in diffs and "iter_n: (unset) there, 1 here" in diffs
    sets_old = {"layer_sets": {"x": ["conv1_1"], "y": ["fc8"]}, "options": {}}
    sets_new = {"layer_sets": {"x": ["conv1_1"], "z": ["fc7"]}, "options": {}}
    assert records.differences(sets_old, sets_new) == []  # shared sets are equal
    assert records.differences(sets_old, {"layer_sets": {"x": ["fc6"]}, "options": {}}) == \
        ['layer set x: ["conv1_1"] there, ["fc6"] here']


def test_merged_record_lists_the_selection_in_the_scripts_order():
    cfg = _config(layers=None, layers_sets={"one": ["conv1_1"], "two": ["conv1_1", "fc8"],
                                            "three": ["fc8"]})
    old = cfg.plan(subjects=["S3"], labels=["c"], layer_sets=["three"]).to_record()
    new = cfg.plan(subjects=["S2", "S1"], labels=["b"], layer_sets=["one"]).to_record()
    order = {"subjects": cfg.subjects_list, "rois": cfg.rois_list,
             "labels": cfg.image_label_list, "layer_sets": list(cfg.layers_sets)}
    merged = records.merge_selection(new, old, order)
    assert merged["subjects"] == ["S1", "S2", "S3"] and merged["labels"] == ["b", "c"]
    assert list(merged["layer_sets"]) == ["one", "three"]
    assert merged["layers"] == ["conv1_1", "fc8"]
    assert records.merge_selection(new, None, order)["subjects"] == ["S1", "S2"]
    # names the script does not list (a copy's earlier constants) come after, in order
    assert records._in_order(["a", "b"], ["x", "b"], ["a"]) == ["a", "b", "x"]
