"""Paper-style panels: size from the layout rule, labels drawn, cells in the right places."""

import numpy as np
import pytest
import scipy.io
from PIL import Image

from icnn_torch import figure
from icnn_torch.figure import PanelLayout, compose_panel, make_figures, script_panels

SCRIPT1 = "1_reconstruct_natural_image"
SCRIPT3 = "3_reconstruct_natural_image_different_combinations_of_CNN_layers"
SCRIPT5 = "5_reconstruct_shape_image_different_ROI"

# distinct solid colours, one per image label
COLOURS = {
    "Img0009": (200, 30, 30), "Img0002": (30, 200, 30), "Img0001": (30, 30, 200),
    "Img0016": (200, 200, 30), "Img0036": (30, 200, 200), "Img0042": (200, 30, 200),
    "Img0004": (120, 60, 10), "Img0008": (10, 120, 60), "Img0011": (60, 10, 120),
}
WHITE = np.array([255, 255, 255])


def _solid(label, size=224):
    return np.broadcast_to(np.array(COLOURS[label], dtype=float), (size, size, 3)).copy()


def _write_recon(folder, label, with_jpg=True):
    folder.mkdir(parents=True, exist_ok=True)
    img = _solid(label)
    scipy.io.savemat(folder / f"recon_img-{label}.mat", {"recon_img": img})
    if with_jpg:
        Image.fromarray(img.astype(np.uint8)).save(folder / f"recon_img_normalized-{label}.jpg")


def _build_tree(tmp_path):
    results = tmp_path / "results"
    # script 1: two subjects, labels written in an order other than the script's
    for subject in ["S2", "S1"]:
        for label in ["Img0001", "Img0009", "Img0002"]:
            if (subject, label) != ("S2", "Img0002"):  # one missing cell
                _write_recon(results / SCRIPT1 / subject / "VC", label, with_jpg=subject == "S1")
    # script 3: layer sets as rows
    for layer_set in ["layers-1to7", "layers-1to1"]:
        for label in ["Img0042", "Img0016", "Img0036"]:
            _write_recon(results / SCRIPT3 / layer_set / "S1" / "VC", label)
    # script 5: ROIs as rows
    for roi in ["VC", "V1", "HVC"]:
        for label in ["Img0011", "Img0004", "Img0008"]:
            _write_recon(results / SCRIPT5 / "S1" / roi, label)
    stimuli = tmp_path / "stimuli"
    for label in ["Img0009", "Img0002", "Img0001", "Img0016", "Img0036", "Img0042"]:
        (stimuli / "natural").mkdir(parents=True, exist_ok=True)
        Image.fromarray(_solid(label, 300).astype(np.uint8)).save(
            stimuli / "natural" / f"{label}.png")
    return results, stimuli


def _expected_size(layout, n_rows, n_cols):
    # the documented rule, written out independently of PanelLayout.size
    width = (2 * layout.margin + layout.row_header + n_cols * layout.cell
             + (n_cols - 1) * layout.gap)
    height = (2 * layout.margin + layout.title + layout.col_header + n_rows * layout.cell
              + (n_rows - 1) * layout.gap)
    return width, height


def _cell_box(layout, row, col):
    x = layout.margin + layout.row_header + col * (layout.cell + layout.gap)
    y = layout.margin + layout.title + layout.col_header + row * (layout.cell + layout.gap)
    return x, y


def _ink(pixels):
    """Number of non-white pixels in an RGB array region."""
    return int(np.any(pixels != 255, axis=-1).sum())


def _check_labels_drawn(panel, layout, n_rows, n_cols):
    pixels = np.asarray(panel)
    # title strip
    assert _ink(pixels[layout.margin:layout.margin + layout.title]) > 20
    # one label above every column, centred: ink in the column's header strip, none in the
    # gaps between columns
    top = layout.margin + layout.title
    for col in range(n_cols):
        x, _ = _cell_box(layout, 0, col)
        assert _ink(pixels[top:top + layout.col_header, x:x + layout.cell]) > 20
        left_quarter = pixels[top:top + layout.col_header, x:x + layout.cell // 4]
        assert _ink(left_quarter) == 0  # short labels are centred
    # a header left of every row
    for row in range(n_rows):
        _, y = _cell_box(layout, row, 0)
        strip = pixels[y:y + layout.cell, layout.margin:layout.margin + layout.row_header]
        assert _ink(strip) > 20
    # nothing drawn in the outer margin
    assert _ink(pixels[:, :layout.margin // 2]) == 0
    assert _ink(pixels[-(layout.margin // 2):]) == 0


def _cell_colour(panel, layout, row, col):
    x, y = _cell_box(layout, row, col)
    centre = np.asarray(panel)[y + layout.cell // 4:y + 3 * layout.cell // 4,
                               x + layout.cell // 4:x + 3 * layout.cell // 4]
    return centre.reshape(-1, 3).mean(axis=0)


def test_panels_have_layout_size_labels_and_cells(tmp_path):
    results, _ = _build_tree(tmp_path)
    layout = PanelLayout()
    written = make_figures(results)
    assert [p.name for p in written] == [f"{SCRIPT1}.png", f"{SCRIPT3}.png", f"{SCRIPT5}.png"]
    assert all(p.parent == results / "figures" for p in written)
    assert sorted(p.name for p in (results / "figures").iterdir()) == sorted(
        p.name for p in written)  # no temporary files left

    panel1 = Image.open(written[0])
    assert panel1.mode == "RGB"
    assert panel1.size == _expected_size(layout, n_rows=2, n_cols=3)  # S1, S2 x 3 labels
    _check_labels_drawn(panel1, layout, 2, 3)
    # columns in the script's order Img0009 Img0002 Img0001, rows S1 then S2
    for col, label in enumerate(["Img0009", "Img0002", "Img0001"]):
        assert _cell_colour(panel1, layout, 0, col) == pytest.approx(COLOURS[label], abs=6)
    # S2 has no jpg: its cells come from the .mat files
    assert _cell_colour(panel1, layout, 1, 0) == pytest.approx(COLOURS["Img0009"], abs=1)
    # S2 / Img0002 is missing: white cell with a grey outline
    x, y = _cell_box(layout, 1, 1)
    pixels = np.asarray(panel1)
    assert np.all(pixels[y + 2:y + layout.cell - 2, x + 2:x + layout.cell - 2] == 255)
    assert np.all(pixels[y, x:x + layout.cell] == figure.MISSING_OUTLINE)

    panel3 = Image.open(written[1])
    assert panel3.size == _expected_size(layout, n_rows=2, n_cols=3)  # two layer sets
    _check_labels_drawn(panel3, layout, 2, 3)
    for col, label in enumerate(["Img0016", "Img0036", "Img0042"]):
        assert _cell_colour(panel3, layout, 1, col) == pytest.approx(COLOURS[label], abs=6)

    panel5 = Image.open(written[2])
    assert panel5.size == _expected_size(layout, n_rows=3, n_cols=3)  # V1, HVC, VC
    _check_labels_drawn(panel5, layout, 3, 3)


def test_row_headers_differ_by_row_content(tmp_path):
    results, _ = _build_tree(tmp_path)
    layout = PanelLayout()
    panels = script_panels(results)
    pixels = np.asarray(panels[SCRIPT5])
    strips = []
    for row in range(3):
        _, y = _cell_box(layout, row, 0)
        strips.append(pixels[y:y + layout.cell, layout.margin:layout.margin + layout.row_header])
    # "S1 / V1", "S1 / HVC", "S1 / VC": different text, different pixels
    assert not np.array_equal(strips[0], strips[1])
    assert not np.array_equal(strips[1], strips[2])
    # a layer-set row header has two lines ("S1", "layers-1to1") -> taller ink than one line
    pixels1 = np.asarray(panels[SCRIPT1])
    pixels3 = np.asarray(panels[SCRIPT3])
    _, y = _cell_box(layout, 0, 0)

    def ink_rows(p):
        strip = p[y:y + layout.cell, layout.margin:layout.margin + layout.row_header]
        return np.flatnonzero(np.any(strip != 255, axis=(1, 2)))

    assert np.ptp(ink_rows(pixels3)) > np.ptp(ink_rows(pixels1)) + 5


def test_ground_truth_row_on_top_with_stimuli(tmp_path):
    results, stimuli = _build_tree(tmp_path)
    layout = PanelLayout()
    out = tmp_path / "figs"
    assert figure.main([str(results), "--stimuli", str(stimuli), "--out-dir", str(out),
                        "--scripts", SCRIPT1, SCRIPT5]) == 0
    panel1 = Image.open(out / f"{SCRIPT1}.png")
    assert panel1.size == _expected_size(layout, n_rows=3, n_cols=3)
    _check_labels_drawn(panel1, layout, 3, 3)
    for col, label in enumerate(["Img0009", "Img0002", "Img0001"]):
        assert _cell_colour(panel1, layout, 0, col) == pytest.approx(COLOURS[label], abs=1)
    # script 5 is color_shape: no stimuli in the folder -> empty ground-truth cells
    panel5 = Image.open(out / f"{SCRIPT5}.png")
    assert panel5.size == _expected_size(layout, n_rows=4, n_cols=3)
    assert _cell_colour(panel5, layout, 0, 0) == pytest.approx(WHITE)
    assert not (out / f"{SCRIPT3}.png").exists()


def test_label_list_and_cell_size_options(tmp_path, capsys):
    results, _ = _build_tree(tmp_path)
    out = tmp_path / "figs"
    assert figure.main([str(results), "--out-dir", str(out), "--scripts", SCRIPT1,
                        "--labels", "Img0001", "Img9999", "Img0009", "--cell", "64"]) == 0
    assert f"wrote {out / (SCRIPT1 + '.png')}" in capsys.readouterr().out
    layout = PanelLayout(cell=64)
    panel = Image.open(out / f"{SCRIPT1}.png")
    assert panel.size == _expected_size(layout, n_rows=2, n_cols=2)  # Img9999 has no image
    assert _cell_colour(panel, layout, 0, 0) == pytest.approx(COLOURS["Img0001"], abs=6)
    assert _cell_colour(panel, layout, 0, 1) == pytest.approx(COLOURS["Img0009"], abs=6)


def test_compose_panel_directly_and_long_text():
    layout = PanelLayout(cell=40, row_header=50)
    cells = {(0, 0): np.full((10, 10, 3), 7.0), (1, 1): Image.new("L", (40, 40), 0)}
    panel = compose_panel([["a very long row header text"], ["S2"]], ["Img0001", "Img0002"],
                          cells, title="x" * 300, layout=layout)
    assert panel.size == _expected_size(layout, 2, 2)
    assert _cell_colour(panel, layout, 0, 0) == pytest.approx([7, 7, 7])
    assert _cell_colour(panel, layout, 1, 1) == pytest.approx([0, 0, 0])
    pixels = np.asarray(panel)
    # long texts are cut to their strips: nothing spills into the cells' columns or margin
    _, y = _cell_box(layout, 0, 0)
    assert _ink(pixels[y:y + layout.cell, layout.margin + layout.row_header - 4:
                       layout.margin + layout.row_header]) == 0
    assert _ink(pixels[:, -layout.margin:]) == 0
    with pytest.raises(ValueError, match="at least one row"):
        compose_panel([], ["a"], {}, layout=layout)


def test_cli_reports_missing_inputs(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert figure.main([str(tmp_path / "empty")]) == 1
    assert "no recon_img" in capsys.readouterr().err
    assert figure.main([str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert figure.main([str(tmp_path / "empty"), "--stimuli", str(tmp_path / "nostim")]) == 1
    assert "nostim" in capsys.readouterr().err
