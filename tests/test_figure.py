"""Paper-style panels (matplotlib): structure, texts, cells in the right places, files.

The panels replaced a PIL drawing whose pixel geometry the earlier tests checked; these
tests check the structure of the matplotlib figure instead (size in inches, axes, the texts
of title, labels and caption, which image is in which cell, that no text is cut off or
covers an image) and the files written, without pixel-exact expectations.
"""

import re
import warnings

import numpy as np
import pytest
from PIL import Image

from _results_tree import panel_grid, panel_texts, save_png, save_recon, write_record
from icnn_torch import figure
from icnn_torch.analysis.figure import STIMULUS_ROW, make_figures, script_panels
from icnn_torch.analysis.panel import (GID_CAPTION, GID_COLUMN, GID_MISSING, GID_ROW, GID_TITLE,
                                       MISSING_TEXT, PanelStyle, compose_panel)
from icnn_torch.errors import OutputError

SCRIPT1 = "1_reconstruct_natural_image"
SCRIPT3 = "3_reconstruct_natural_image_different_combinations_of_CNN_layers"
SCRIPT4 = "4_reconstruct_shape_image"
SCRIPT5 = "5_reconstruct_shape_image_different_ROI"
TITLE1 = "Fig 2. Seen natural image reconstructions."

# distinct solid colours, one per image label
COLOURS = {
    "Img0009": (200, 30, 30), "Img0002": (30, 200, 30), "Img0001": (30, 30, 200),
    "Img0016": (200, 200, 30), "Img0036": (30, 200, 200), "Img0042": (200, 30, 200),
    "Img0004": (120, 60, 10), "Img0008": (10, 120, 60), "Img0011": (60, 10, 120),
}


def _solid(label, size=224):
    return np.broadcast_to(np.array(COLOURS[label], dtype=float), (size, size, 3)).copy()


def _build_tree(tmp_path, size=224):
    results = tmp_path / "results"
    write_record(results, SCRIPT1, figure_title=TITLE1)
    write_record(results, SCRIPT3, figure_title="")  # no title: the folder name stands in
    write_record(results, SCRIPT5)
    # script 1: two subjects, labels written in an order other than the script's
    for subject in ["S2", "S1"]:
        for label in ["Img0001", "Img0009", "Img0002"]:
            if (subject, label) != ("S2", "Img0002"):  # one missing cell
                save_recon(results / SCRIPT1 / subject / "VC", label, _solid(label, size),
                           with_jpg=subject == "S1")
    # script 3: layer sets as rows
    for layer_set in ["layers-1to7", "layers-1to1"]:
        for label in ["Img0042", "Img0016", "Img0036"]:
            save_recon(results / SCRIPT3 / layer_set / "S1" / "VC", label, _solid(label, size),
                       with_jpg=True)
    # script 5: ROIs as rows
    for roi in ["VC", "V1", "HVC"]:
        for label in ["Img0011", "Img0004", "Img0008"]:
            save_recon(results / SCRIPT5 / "S1" / roi, label, _solid(label, size),
                       with_jpg=True)
    stimuli = tmp_path / "stimuli"
    for label in ["Img0009", "Img0002", "Img0001", "Img0016", "Img0036", "Img0042"]:
        save_png(stimuli / "natural" / f"{label}.png", _solid(label, 300))
    return results, stimuli


def _colour(ax):
    """Mean RGB of a cell's image, or None for a cell marked missing."""
    if ax.get_gid() == GID_MISSING:
        return None
    return np.asarray(ax.get_images()[0].get_array(), dtype=float).reshape(-1, 3).mean(axis=0)


def _cell_inches(fig, ax):
    width, height = fig.get_size_inches()
    _, _, w, h = ax.get_position(original=True).bounds
    return w * width, h * height


def _check_texts_clear(fig):
    """Every text lies inside the figure, covers no image cell and no other text."""
    renderer = fig.canvas.get_renderer()
    figure_box = fig.bbox
    texts = [t for t in fig.texts if t.get_text()]
    boxes = [t.get_window_extent(renderer) for t in texts]
    for text, box in zip(texts, boxes):
        assert (box.x0 >= figure_box.x0 - 0.5 and box.y0 >= figure_box.y0 - 0.5
                and box.x1 <= figure_box.x1 + 0.5 and box.y1 <= figure_box.y1 + 0.5), \
            f"{text.get_text()!r} is cut off: {box} outside {figure_box}"
        for ax in fig.axes:
            assert not box.overlaps(ax.get_window_extent(renderer)), \
                f"{text.get_text()!r} covers an image cell"
    for i, (text, box) in enumerate(zip(texts, boxes)):
        for other, other_box in zip(texts[i + 1:], boxes[i + 1:]):
            assert not box.overlaps(other_box), \
                f"{text.get_text()!r} overlaps {other.get_text()!r}"


def test_panels_are_written_as_png_and_pdf(tmp_path):
    results, _ = _build_tree(tmp_path, size=64)
    written = make_figures(results)  # the default resolution, 300 dpi
    names = [f"{script}.{ext}" for script in (SCRIPT1, SCRIPT3, SCRIPT5)
             for ext in ("png", "pdf")]
    assert [p.name for p in written] == names
    assert all(p.parent == results / "figures" for p in written)
    assert sorted(p.name for p in (results / "figures").iterdir()) == sorted(names)  # no temp
    panels = script_panels(results)
    for script in (SCRIPT1, SCRIPT3, SCRIPT5):
        width, height = panels[script].get_size_inches()
        with Image.open(results / "figures" / f"{script}.png") as png:
            assert png.mode in ("RGB", "RGBA")
            # the PNG is the print size at 300 dpi (matplotlib rounds to whole pixels)
            assert png.size == pytest.approx((width * 300, height * 300), abs=1)
        pdf = (results / "figures" / f"{script}.pdf").read_bytes()
        assert pdf.startswith(b"%PDF")
        media_box = re.search(rb"/MediaBox \[ *0 0 ([\d.]+) ([\d.]+) *\]", pdf)
        assert [float(v) for v in media_box.groups()] == pytest.approx(
            [width * 72, height * 72], abs=0.01)
        assert b"/FontFile2" in pdf  # fonts embedded as TrueType: text stays text


def test_panel_structure_follows_the_run_record(tmp_path):
    results, _ = _build_tree(tmp_path, size=32)
    panel = script_panels(results)[SCRIPT1]
    assert panel_texts(panel, GID_TITLE) == [TITLE1]
    # columns in the script's order (Img0009 Img0002 Img0001), rows S1 then S2
    assert panel_texts(panel, GID_COLUMN) == ["Img0009", "Img0002", "Img0001"]
    assert panel_texts(panel, GID_ROW) == ["S1\nVC", "S2\nVC"]
    assert panel_texts(panel, GID_CAPTION) == ["DGN + gradient descent, 200 iterations; network "
                                          "VGG19."]
    grid = panel_grid(panel)
    assert [len(row) for row in grid] == [3, 3] and len(panel.axes) == 6
    for col, label in enumerate(["Img0009", "Img0002", "Img0001"]):
        # S1 from its JPEGs (quality 95: a solid colour comes back within a few levels)
        assert _colour(grid[0][col]) == pytest.approx(COLOURS[label], abs=4)
    # S2 has no JPEG: its cells come from the .mat files, exactly
    assert _colour(grid[1][0]) == pytest.approx(COLOURS["Img0009"], abs=1e-9)
    assert _colour(grid[1][1]) is None  # S2 / Img0002 was never reconstructed
    assert [t.get_text() for t in grid[1][1].texts] == [MISSING_TEXT]
    # square cells of at most one inch, a panel no wider than the page
    for ax in panel.axes:
        assert _cell_inches(panel, ax) == pytest.approx((1.0, 1.0))
    assert panel.get_size_inches()[0] <= PanelStyle().page_width
    _check_texts_clear(panel)


def test_rows_name_subject_and_roi_or_layer_set(tmp_path):
    results, _ = _build_tree(tmp_path, size=32)
    panels = script_panels(results)
    # script 5: ROIs from low to high areas (the record's order)
    assert panel_texts(panels[SCRIPT5], GID_ROW) == ["S1\nV1", "S1\nHVC", "S1\nVC"]
    assert panel_texts(panels[SCRIPT5], GID_COLUMN) == ["Img0004", "Img0008", "Img0011"]
    assert panel_texts(panels[SCRIPT5], GID_CAPTION) == ["L-BFGS-B, 200 iterations; network VGG19."]
    # script 3: layer sets in the record's order; the one ROI goes to the caption
    assert panel_texts(panels[SCRIPT3], GID_ROW) == ["S1\nlayers-1to1", "S1\nlayers-1to7"]
    assert panel_texts(panels[SCRIPT3], GID_CAPTION) == [
        "L-BFGS-B, 200 iterations; network VGG19; ROI VC."]
    # no figure_title in the record: the folder name, broken after "_" to fit the width
    title_lines = panel_texts(panels[SCRIPT3], GID_TITLE)
    assert len(title_lines) == 2 and "".join(title_lines) == SCRIPT3
    grid = panel_grid(panels[SCRIPT3])
    for col, label in enumerate(["Img0016", "Img0036", "Img0042"]):
        assert _colour(grid[1][col]) == pytest.approx(COLOURS[label], abs=4)
    for panel in panels.values():
        _check_texts_clear(panel)


def test_ground_truth_row_on_top_and_a_warning_per_missing_stimulus(tmp_path, capsys):
    results, stimuli = _build_tree(tmp_path, size=32)
    with pytest.warns(UserWarning) as caught:
        panels = script_panels(results, stimuli, scripts=[SCRIPT1, SCRIPT5])
    assert list(panels) == [SCRIPT1, SCRIPT5]
    # script 5 is color_shape: the folder has no stimuli/color_shape -> three warnings
    messages = [str(w.message) for w in caught]
    assert len(messages) == 3
    for label, message in zip(["Img0004", "Img0008", "Img0011"], messages):
        assert message.startswith(f"no stimulus image for {label} of {SCRIPT5}")
        assert str(stimuli / "color_shape" / f"{label}.*") in message
    panel1 = panels[SCRIPT1]
    assert panel_texts(panel1, GID_ROW) == [STIMULUS_ROW, "S1\nVC", "S2\nVC"]
    grid = panel_grid(panel1)
    assert len(grid) == 3
    for col, label in enumerate(["Img0009", "Img0002", "Img0001"]):
        assert _colour(grid[0][col]) == pytest.approx(COLOURS[label], abs=1e-9)
    # the ground-truth row stands apart: a wider gap below it than between the others
    y = [ax.get_position().y0 * panel1.get_size_inches()[1] for ax in (r[0] for r in grid)]
    assert y[0] - y[1] > y[1] - y[2] + 0.05
    assert all(_colour(ax) is None for ax in panel_grid(panels[SCRIPT5])[0])
    _check_texts_clear(panel1)

    # the command line: the same panels, and one warning line per missing stimulus
    out = tmp_path / "figs"
    assert figure.main([str(results), "--stimuli", str(stimuli), "--out-dir", str(out),
                        "--scripts", f"{SCRIPT1},{SCRIPT5}", "--dpi", "50"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("warning: no stimulus image for") == 3
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{s}.{e}" for s in (SCRIPT1, SCRIPT5) for e in ("png", "pdf"))
    assert f"wrote {out / (SCRIPT1 + '.pdf')}" in captured.out


def test_label_list_and_cell_size_options(tmp_path, capsys):
    results, _ = _build_tree(tmp_path, size=32)
    out = tmp_path / "figs"
    assert figure.main([str(results), "--out-dir", str(out), "--scripts", SCRIPT1,
                        "--labels", "Img0001,Img9999,Img0009", "--cell-inches", "0.5",
                        "--dpi", "50"]) == 0
    assert f"wrote {out / (SCRIPT1 + '.png')}" in capsys.readouterr().out
    panel = script_panels(results, scripts=[SCRIPT1], labels=["Img0001", "Img9999", "Img0009"],
                          style=PanelStyle(cell=0.5))[SCRIPT1]
    assert panel_texts(panel, GID_COLUMN) == ["Img0001", "Img0009"]  # Img9999 has no image
    grid = panel_grid(panel)
    assert _colour(grid[0][0]) == pytest.approx(COLOURS["Img0001"], abs=4)
    assert _colour(grid[0][1]) == pytest.approx(COLOURS["Img0009"], abs=4)
    assert _cell_inches(panel, grid[0][0]) == pytest.approx((0.5, 0.5))
    with Image.open(out / f"{SCRIPT1}.png") as png:
        assert png.size == pytest.approx(tuple(panel.get_size_inches() * 50), abs=1)
    with pytest.raises(SystemExit) as usage_error:
        figure.main([str(results), "--cell-inches", "0"])
    assert usage_error.value.code == 2


def test_large_panels_fit_the_page_with_legible_labels(tmp_path):
    # script 4's 15 labels for 3 subjects, and script 5's 6 ROIs for 3 subjects
    results = tmp_path / "results"
    plan4 = write_record(results, SCRIPT4)
    plan5 = write_record(results, SCRIPT5)
    grey = np.full((16, 16, 3), 128.0)
    for plan in (plan4, plan5):
        for subject in plan.subjects:
            for roi in plan.rois:
                for label in plan.labels:
                    save_recon(results / plan.script_name / subject / roi, label, grey)
    style = PanelStyle()
    panels = script_panels(results)
    for plan in (plan4, plan5):
        panel = panels[plan.script_name]
        width, height = panel.get_size_inches()
        assert width <= style.page_width + 1e-9 and height <= style.page_height + 1e-9
        assert len(panel.axes) == len(plan.subjects) * len(plan.rois) * len(plan.labels)
        assert panel_texts(panel, GID_COLUMN) == list(plan.labels)  # whole, not cut
        sizes = {t.get_fontsize() for t in panel.texts if t.get_gid() == GID_COLUMN}
        assert len(sizes) == 1 and sizes.pop() >= style.min_label_size
        w, h = _cell_inches(panel, panel.axes[0])
        assert w == pytest.approx(h)
        _check_texts_clear(panel)
    # 15 columns on 7.5 inches: the cells are narrower than an inch
    assert _cell_inches(panels[SCRIPT4], panels[SCRIPT4].axes[0])[0] < 0.5
    # 18 rows: the page height limits the cells
    assert panels[SCRIPT5].get_size_inches()[1] == pytest.approx(style.page_height, abs=0.05)


def test_compose_panel_directly_long_texts_and_errors():
    cells = {(0, 0): np.full((10, 10, 3), 7.0), (1, 1): Image.new("L", (40, 20), 0)}
    title = "A very long title " * 12
    labels = ["a_label_far_too_long_for_its_cell_" * 2, "Img0002"]
    panel = compose_panel([["a row header text"], ["S2"]], labels, cells, title=title,
                          caption="caption " * 40, style=PanelStyle(cell=0.6))
    assert len(panel_texts(panel, GID_TITLE)) > 1  # wrapped, not cut
    assert " ".join(panel_texts(panel, GID_TITLE)) == " ".join(title.split())
    column = [t for t in panel.texts if t.get_gid() == GID_COLUMN]
    assert all(t.get_rotation() == 90 for t in column)  # too wide even at the minimum size
    assert column[0].get_text().endswith("…") and column[1].get_text() == "Img0002"
    grid = panel_grid(panel)
    assert _colour(grid[0][0]) == pytest.approx([7, 7, 7])
    assert _colour(grid[1][1]) == pytest.approx([0, 0, 0])
    assert _colour(grid[0][1]) is None and _colour(grid[1][0]) is None
    _check_texts_clear(panel)
    # texts are text, never matplotlib mathtext
    money = compose_panel([["$S_1$"]], ["$x$"], {}, title="50$ and 20$")
    assert panel_texts(money, GID_TITLE) == ["50$ and 20$"]
    _check_texts_clear(money)
    with pytest.raises(ValueError, match="at least one row"):
        compose_panel([], ["a"], {})


def test_cli_reports_missing_inputs_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ICNN_TORCH_DEBUG", raising=False)
    (tmp_path / "empty").mkdir()
    cases = [([str(tmp_path / "empty")], "no recon_img"),
             ([str(tmp_path / "missing")], "does not exist"),
             ([str(tmp_path / "empty"), "--stimuli", str(tmp_path / "nostim")], "nostim")]
    for argv, expected in cases:
        assert figure.main(argv) == 1
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0]
    assert figure.main(cases[0][0] + ["--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_unwritable_output_is_one_line(tmp_path, capsys):
    results, _ = _build_tree(tmp_path, size=32)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no warnings on the way
        assert figure.main([str(results), "--out-dir", str(blocker / "figs"),
                            "--scripts", SCRIPT5, "--dpi", "20"]) == 1
    line, = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: cannot write") and "a_file" in line
    assert line.endswith("; choose a writable --out-dir")  # the command line's advice
    # the library's error names the file, not an option
    with pytest.raises(OutputError) as info:
        make_figures(results, blocker / "figs", scripts=[SCRIPT5], dpi=20)
    assert info.value.path == str(blocker / "figs" / f"{SCRIPT5}.png")
    assert "--" not in str(info.value)


def test_a_one_column_panel_keeps_its_title_legible(tmp_path):
    # figure 7A with one label: a panel one cell wide wrapped its 69-character title onto
    # five lines of 5 to 18 characters
    results = tmp_path / "results"
    plan = write_record(results, SCRIPT5)
    for subject in ("S1", "S2"):
        save_recon(results / SCRIPT5 / subject / "V1", "Img0004", _solid("Img0004", 32))
    title = plan.figure_title
    assert title.startswith("Fig 7A.") and len(title) > 60
    panel = script_panels(results, labels=["Img0004"])[SCRIPT5]
    lines = panel_texts(panel, GID_TITLE)
    assert " ".join(lines) == title
    # two lines, the first of 30 characters or more (9 pt bold: about 45 fit a line)
    assert len(lines) == 2 and len(lines[0]) >= 30
    caption = panel_texts(panel, GID_CAPTION)
    assert len(caption) == 1 and caption[0].startswith("L-BFGS-B, 200 iterations")
    assert _cell_inches(panel, panel.axes[0]) == pytest.approx((1.0, 1.0))  # cells as before
    _check_texts_clear(panel)
    # any script with one label: the title reads in at most two lines
    results1, _ = _build_tree(tmp_path / "one", size=32)
    panel1 = script_panels(results1, scripts=[SCRIPT1], labels=["Img0009"])[SCRIPT1]
    assert panel_texts(panel1, GID_TITLE) == [TITLE1]
    _check_texts_clear(panel1)
