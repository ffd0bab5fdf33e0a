"""Reading a results tree back: script folders by their run record (any name) or by the
original's ``<digits>_`` names, and the order of subjects, ROIs, layer sets and labels."""

import subprocess
import sys

import numpy as np
import pytest

from _results_tree import (PROJECT_ROOT, panel_grid, panel_texts, save_png, save_recon,
                           write_record)
from icnn_torch import evaluate, figure
from icnn_torch.analysis import cli as analysis_cli
from icnn_torch.analysis import evaluate as analysis_evaluate
from icnn_torch.analysis import figure as analysis_figure
from icnn_torch.analysis import panel as analysis_panel
from icnn_torch.analysis.panel import GID_CAPTION, GID_COLUMN, GID_ROW, GID_TITLE
from icnn_torch.errors import ConfigError, DamagedFileError
from icnn_torch.store.layout import RUN_RECORD_NAME
from icnn_torch.store.results import (find_reconstructions, find_script_results, natural_key,
                                order_labels, roi_key)

SCRIPT3 = "3_reconstruct_natural_image_different_combinations_of_CNN_layers"
SCRIPT4 = "4_reconstruct_shape_image"
VARIANT_LABELS = ["Img0011", "Img0003", "Img0008", "Img0001"]  # not in natural order
GREY = np.full((16, 16, 3), 100.0)


def test_sort_keys():
    assert sorted(["S10", "S2", "S1"], key=natural_key) == ["S1", "S2", "S10"]
    assert sorted(["VC", "HVC", "V4", "V1", "LOC", "FFA"], key=roi_key) == [
        "V1", "V4", "HVC", "VC", "FFA", "LOC"]
    assert order_labels(["Img0010", "b", "Img0002", "a", "Img0002"], ["b", "Img0010"]) == [
        "b", "Img0010", "Img0002", "a"]


def test_folders_are_found_by_record_or_original_name(tmp_path, capsys):
    root = tmp_path / "results"
    write_record(root, SCRIPT4, folder_name="any_name_at_all", subjects_list=["S1"])
    save_recon(root / "any_name_at_all" / "S1" / "VC", "Img0001", GREY)
    save_recon(root / "2_from_the_original_code" / "S1" / "VC", "Img0001", GREY)  # no record
    save_recon(root / "not_a_script" / "S1" / "VC", "Img0001", GREY)  # neither: ignored
    (root / "figures").mkdir()
    folders = find_script_results(root)
    assert [f.name for f in folders] == ["2_from_the_original_code", "any_name_at_all"]
    original, named = folders
    assert original.record is None and original.image_type is None
    assert original.figure_title == "2_from_the_original_code" and original.engine is None
    assert named.image_type == "color_shape" and named.engine == "icnn_lbfgs"
    assert named.iterations == 200 and named.network == "VGG19"
    # a script folder itself, with or without a record
    assert [f.name for f in find_script_results(root / "any_name_at_all")] == ["any_name_at_all"]
    assert [r.label for r in find_reconstructions(root / "2_from_the_original_code")] == [
        "Img0001"]
    # selection by name; unknown names are an error that lists the folders
    assert [f.name for f in find_script_results(root, ["any_name_at_all"])] == [
        "any_name_at_all"]
    with pytest.raises(ConfigError, match="no script folder nope in .* it has "
                                          "2_from_the_original_code, any_name_at_all"):
        find_script_results(root, ["nope"])
    with pytest.raises(ConfigError, match="nothing_here does not exist"):
        find_script_results(tmp_path / "nothing_here")
    # the command lines say what to do about it
    assert evaluate.main([str(tmp_path / "nothing_here"), "--stimuli", str(tmp_path)]) == 1
    assert figure.main([str(tmp_path / "nothing_here")]) == 1
    assert capsys.readouterr().err.count("does not exist; run a figure script first") == 2
    (root / "not_a_script" / "run.json").write_text("[1, 2]")
    with pytest.raises(DamagedFileError, match="not an icnn-torch run record"):
        find_script_results(root)


def test_order_comes_from_the_record_then_natural(tmp_path):
    root = tmp_path / "results"
    write_record(root, SCRIPT3, subjects_list=["S3", "S1"], rois_list=["VC", "V1"],
                 image_label_list=["Img0042", "Img0016"])
    folder = root / SCRIPT3
    for layer_set in ["layers-1to7", "layers-1to1", "layers-extra"]:
        for subject in ["S1", "S3", "S10"]:
            for roi in ["V1", "VC"]:
                for label in ["Img0016", "Img0042", "Img0100"]:
                    save_recon(folder / layer_set / subject / roi, label, GREY)
    save_recon(folder / "layers-1to1" / "S1" / "V1" / "snapshots" / "image-Img0016", "Img0016",
               GREY)  # not a result
    save_recon(folder / "S1", "Img0016", GREY)  # too shallow: ignored
    recs = find_reconstructions(root)
    assert len(recs) == 3 * 3 * 2 * 3
    assert all(r.image_type == "natural" and r.script == SCRIPT3 for r in recs)
    # by layer set (record order, then others), subject (S3 S1 from the record, S10 after),
    # ROI (VC V1 as recorded), label (Img0042 Img0016, then Img0100)
    assert list(dict.fromkeys(r.layer_set for r in recs)) == [
        "layers-1to1", "layers-1to7", "layers-extra"]
    first_set = [r for r in recs if r.layer_set == "layers-1to1"]
    assert list(dict.fromkeys(r.subject for r in first_set)) == ["S3", "S1", "S10"]
    assert list(dict.fromkeys(r.roi for r in first_set)) == ["VC", "V1"]
    assert [r.label for r in first_set[:3]] == ["Img0042", "Img0016", "Img0100"]
    assert recs[0].mat_path == folder / "layers-1to1" / "S3" / "VC" / "recon_img-Img0042.mat"
    assert recs[0].jpg_path.name == "recon_img_normalized-Img0042.jpg"


def _variant_tree(tmp_path, rng):
    """``8_my_variant``: a copy of script 4 (colour shapes) with its labels in a custom order,
    and, as decoys, other images of the same labels in the natural/ and top stimulus folders."""
    root, stimuli = tmp_path / "results", tmp_path / "stimuli"
    write_record(root, SCRIPT4, folder_name="8_my_variant", subjects_list=["S1"],
                 rois_list=["V1", "VC"], image_label_list=VARIANT_LABELS,
                 figure_title="My variant of Fig 6")
    images = {}
    for label in VARIANT_LABELS:
        images[label] = np.round(rng.uniform(0, 255, size=(32, 32, 3)))
        save_png(stimuli / "color_shape" / f"{label}.png", images[label])
        save_png(stimuli / "natural" / f"{label}.png", 255 - images[label])
        save_png(stimuli / f"{label}.png", np.roll(images[label], 7, axis=0))
        for roi in ["V1", "VC"]:
            save_recon(root / "8_my_variant" / "S1" / roi, label, images[label])
    return root, stimuli, images


def test_a_copy_of_a_script_under_a_new_name_is_evaluated_and_drawn(tmp_path, capsys):
    root, stimuli, images = _variant_tree(tmp_path, np.random.default_rng(11))
    rows = evaluate.evaluate_results(root, stimuli, layers=())
    # the labels in the record's order; the color_shape stimuli (not the decoys) were used
    assert [row["label"] for row in rows] == VARIANT_LABELS + ["mean"] + VARIANT_LABELS + [
        "mean"]
    assert [row["roi"] for row in rows if row["label"] == "mean"] == ["V1", "VC"]
    assert all(row["script"] == "8_my_variant" for row in rows)
    for row in rows:
        assert row["pixcorr"] == pytest.approx(1.0) and row["ident_pixcorr"] == 1.0
    assert evaluate.main([str(root), "--stimuli", str(stimuli), "--no-features"]) == 0
    assert "8_my_variant" in capsys.readouterr().out

    panel = figure.script_panels(root, stimuli)["8_my_variant"]
    assert panel_texts(panel, GID_TITLE) == ["My variant of Fig 6"]
    assert panel_texts(panel, GID_COLUMN) == VARIANT_LABELS
    assert panel_texts(panel, GID_ROW) == [figure.STIMULUS_ROW, "S1\nV1", "S1\nVC"]
    for row in panel_grid(panel):  # the stimuli (color_shape, not the decoys), V1, VC
        for ax, label in zip(row, VARIANT_LABELS):
            assert np.array_equal(ax.get_images()[0].get_array(), images[label])
    written = figure.make_figures(root, stimuli_dir=stimuli, dpi=30)
    assert [p.name for p in written] == ["8_my_variant.png", "8_my_variant.pdf"]


def test_record_free_results_take_the_image_type_given(tmp_path):
    root, stimuli, images = _variant_tree(tmp_path, np.random.default_rng(12))
    (root / "8_my_variant" / RUN_RECORD_NAME).unlink()  # as the original leaves it
    recs = find_reconstructions(root)
    assert [r.label for r in recs[:4]] == sorted(VARIANT_LABELS)  # natural order now
    assert {r.image_type for r in recs} == {None}
    assert {r.image_type for r in find_reconstructions(root, image_type="color_shape")} == {
        "color_shape"}
    # without an image type the top-level decoys are what is found
    rows = evaluate.evaluate_results(root, stimuli, layers=())
    assert all(row["pixcorr"] < 0.9 for row in rows if row["label"] != "mean")
    rows = evaluate.evaluate_results(root, stimuli, layers=(), image_type="color_shape")
    assert all(row["pixcorr"] == pytest.approx(1.0) for row in rows)
    panel = figure.script_panels(root, stimuli, image_type="color_shape")["8_my_variant"]
    assert panel_texts(panel, GID_TITLE) == ["8_my_variant"]
    assert panel_texts(panel, GID_CAPTION) == []  # engine unknown: no caption


def test_the_faces_keep_their_names():
    # python -m icnn_torch.evaluate / .figure and the names they published
    assert evaluate.main is analysis_cli.evaluate_main
    assert figure.main is analysis_cli.figure_main
    for face in (evaluate, figure):
        for name in face.__all__:
            assert hasattr(face, name), f"icnn_torch.{face.__name__} lacks {name}"
    assert evaluate.evaluate_results is analysis_evaluate.evaluate_results
    assert evaluate.BASE_COLUMNS is analysis_evaluate.BASE_COLUMNS
    assert figure.make_figures is analysis_figure.make_figures
    assert figure.compose_panel is analysis_panel.compose_panel
    assert figure.GID_TITLE == analysis_panel.GID_TITLE


@pytest.mark.parametrize("command", ["evaluate", "figure"])
def test_help_imports_neither_torch_nor_matplotlib(command):
    code = ("import runpy, sys\n"
            f"sys.argv = ['icnn_torch.{command}', '--help']\n"
            "try:\n"
            f"    runpy.run_module('icnn_torch.{command}', run_name='__main__')\n"
            "except SystemExit as done:\n"
            "    assert done.code == 0, done.code\n"
            "print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"usage: python -m icnn_torch.{command}" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]"
