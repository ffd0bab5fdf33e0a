"""``python -m icnn_torch.selfcheck``: the original icnn's own Caffe test cases.

Two kinds of tests:

- ``test_real_weights_*``: the self-check proper, on the user's VGG19 and DeePSiM weights
  and the reference files of KamitaniLab/icnn (fetched once and cached). Skipped when
  the weights are absent (``net/`` under ``$ICNN_TORCH_ROOT`` or the repository root) or
  the reference files cannot be had. The 200/500-iteration cases run only on CUDA or with
  ``ICNN_TORCH_SELFCHECK_FULL=1`` (about an hour on a 2-core CPU).
- ``test_cached_real_references_*``: no weights needed; when the original's reference
  files are cached (after one self-check run), their md5 and that every pickled option
  reaches our engines. Skipped otherwise.
- everything else tests the **plumbing only**, not agreement with Caffe: references
  are built by our own engines on small random nets (``tests/_selfcheck_helpers.py``),
  written in the original's formats (Python 2 pickle, MATLAB files, PNG/JPEG) and served
  from the loopback server (``tests/_dl_server.py``).
"""

from __future__ import annotations

import copy
import hashlib
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _selfcheck_helpers as helpers  # noqa: E402
from _dl_server import FakeRemote  # noqa: E402

from icnn_torch import errors, selfcheck  # noqa: E402
from icnn_torch.selfcheck import cli as selfcheck_cli  # noqa: E402
from icnn_torch.selfcheck import references  # noqa: E402
from icnn_torch.models import VGG19  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
QUICK = [c for c in selfcheck.CASES if c.quick]


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def small_nets():
    return helpers.small_encoder(), helpers.SmallGenerator()


@pytest.fixture(scope="module")
def plumbing_tree(tmp_path_factory, small_nets):
    """A reference tree of all eight cases from our engines on the small nets, and its
    md5 table (the stand-in for :data:`selfcheck.REFERENCE_MD5`)."""
    root = tmp_path_factory.mktemp("icnn_repo")
    md5 = helpers.write_reference_tree(root, selfcheck.CASES, *small_nets, full_iterations=8)
    return root, md5


@pytest.fixture
def remote(plumbing_tree, monkeypatch):
    """The loopback server holding the tree under ``/<commit>/<path>``, as raw GitHub."""
    root, md5 = plumbing_tree
    server = FakeRemote().start()
    for path in md5:
        server.add_path(f"/{selfcheck.PINNED_COMMIT}/{path}", (root / path).read_bytes())
    monkeypatch.setenv("ICNN_TORCH_ICNN_RAW_URL", server.url)
    monkeypatch.setattr(references, "REFERENCE_MD5", dict(md5))  # read by fetch_references
    yield server
    server.stop()


def _fetch(cases, data_dir, md5):
    return selfcheck.fetch_references(cases, data_dir, progress=False, md5=md5)


# --------------------------------------------------------------------------- the reference table

def test_reference_md5_table_has_exactly_the_files_of_the_eight_cases(monkeypatch):
    expected = {selfcheck.ORIG_IMG_PATH} | {p for c in selfcheck.CASES for p in c.files}
    assert len(selfcheck.CASES) == 8 and len(expected) == 33
    assert set(selfcheck.REFERENCE_MD5) == expected
    assert all(len(v) == 32 and int(v, 16) >= 0 for v in selfcheck.REFERENCE_MD5.values())
    assert [c.name for c in selfcheck.CASES[:4]] == [
        "icnn_gd_quick", "icnn_lbfgs_quick", "icnn_dgn_gd_quick", "icnn_dgn_lbfgs_quick"]
    monkeypatch.delenv("ICNN_TORCH_ICNN_RAW_URL", raising=False)
    assert selfcheck.reference_url("test/icnn_gd/options.pkl") == (
        "https://raw.githubusercontent.com/KamitaniLab/icnn/"
        "793e58a98e89d9e834d5ae49cc9f8c69c9116337/test/icnn_gd/options.pkl")


def test_select_cases_groups_names_and_unknown_names():
    assert [c.name for c in selfcheck.select_cases("quick")] == [c.name for c in QUICK]
    assert len(selfcheck.select_cases("full")) == 4 and len(selfcheck.select_cases("all")) == 8
    assert [c.name for c in selfcheck.select_cases("icnn_dgn_gd,icnn_gd_quick")] == \
        ["icnn_gd_quick", "icnn_dgn_gd"]
    with pytest.raises(errors.ConfigError, match="icnn_gd_quick"):
        selfcheck.select_cases("icnn_gd_fast")


def test_target_layers_of_vgg19_are_the_16_conv_and_3_fc_blobs():
    with torch.device("meta"):
        net = VGG19()
    layers = selfcheck.target_layers(net)
    assert len(layers) == 19 and layers[-3:] == ["fc6", "fc7", "fc8"]
    assert all(name.startswith("conv") for name in layers[:16])


# --------------------------------------------------------------------------- file formats

def test_load_options_reads_python2_pickles_with_numpy_values(tmp_path):
    """Plumbing: a Python 2 style pickle loads only with latin1 and keeps numpy types."""
    options = helpers.original_options("icnn_dgn_gd", 3, {"conv1_1": np.float32(0.25)},
                                       np.array([2.0, 6.0]))
    path = tmp_path / "options.pkl"
    path.write_bytes(helpers.py2_pickle_dumps(options))
    with pytest.raises(UnicodeDecodeError):
        pickle.loads(path.read_bytes())  # the format the original files have
    loaded = selfcheck.load_options(path)
    assert loaded.keys() == options.keys()
    assert type(loaded["layer_weight"]["conv1_1"]) is np.float32
    assert loaded["layer_weight"]["conv1_1"] == np.float32(0.25)
    assert loaded["feat_upper_bound"].dtype == np.float64
    np.testing.assert_array_equal(loaded["feat_upper_bound"], [2.0, 6.0])
    assert loaded["loss_type"] == "l2" and loaded["iter_n"] == 3
    assert loaded["save_intermediate"] is True


def test_load_options_refuses_foreign_globals_and_garbage(tmp_path):
    bad = tmp_path / "evil.pkl"
    bad.write_bytes(pickle.dumps({"x": os.getcwd}, protocol=2))
    with pytest.raises(errors.DamagedFileError, match="not allowed"):
        selfcheck.load_options(bad)
    bad.write_bytes(b"\x00\x01 not a pickle")
    with pytest.raises(errors.DamagedFileError, match="options pickle"):
        selfcheck.load_options(bad)


def test_engine_kwargs_translates_the_pickled_options(plumbing_tree, tmp_path):
    """Plumbing: the one place where options change on their way to our engines."""
    root, _ = plumbing_tree
    by_name = {c.name: c for c in selfcheck.CASES}
    gd = by_name["icnn_gd_quick"]
    ref = selfcheck.read_reference(gd, root)
    kwargs, notes = selfcheck.engine_kwargs(gd, ref, tmp_path, device="cpu", display="quiet",
                                            accepted=None)
    from PIL import Image
    with Image.open(root / gd.path("initial_img.png")) as im:
        np.testing.assert_array_equal(kwargs["initial_image"], np.asarray(im))
    assert kwargs["initial_image"].dtype == np.uint8
    assert kwargs["save_intermediate_path"] == str(tmp_path) and kwargs["save_intermediate"] is True
    assert kwargs["disp_every"] == 0 and kwargs["device"] == "cpu" and notes == []
    assert kwargs["layer_weight"] is ref.options["layer_weight"]
    assert {k: kwargs[k] for k in ("iter_n", "lr_start", "decay_start", "sigma_start")} == \
        {"iter_n": 3, "lr_start": 2.0, "decay_start": 0.2, "sigma_start": 2.0}

    dgn = by_name["icnn_dgn_lbfgs"]
    ref = selfcheck.read_reference(dgn, root)
    kwargs, notes = selfcheck.engine_kwargs(
        dgn, ref, tmp_path, display="original",
        accepted=set(ref.options) - {"input_layer_gen"}
        | {"initial_gen_feat", "save_intermediate_path"})
    z0 = scipy.io.loadmat(root / dgn.path("initial_gen_feat.mat"))["initial_gen_feat"][0]
    np.testing.assert_array_equal(kwargs["initial_gen_feat"], z0)
    assert kwargs["output_layer_gen"] == "generated"  # as test.py, not the pickled 'deconv0'
    assert kwargs["disp"] is True and "device" not in kwargs
    assert kwargs["gen_feat_bounds"] == ref.options["gen_feat_bounds"]
    assert "input_layer_gen" not in kwargs and len(notes) == 1 and "input_layer_gen" in notes[0]
    kwargs, _ = selfcheck.engine_kwargs(dgn, ref, tmp_path, display="ours")
    assert "disp" not in kwargs


def test_target_features_resize_bicubic_and_skip_pools(plumbing_tree, small_nets):
    root, _ = plumbing_tree
    net = small_nets[0]
    features = selfcheck.target_features(net, root / selfcheck.ORIG_IMG_PATH)
    expected = helpers.independent_targets(net, root / selfcheck.ORIG_IMG_PATH)
    assert list(features) == ["conv1_1", "conv2_1", "fc6", "fc7"]  # no pool1
    for name in expected:
        np.testing.assert_array_equal(features[name], expected[name], err_msg=name)


# --------------------------------------------------------------------------- comparison logic

def _reference(img, losses, initial=None):
    return selfcheck.Reference({}, np.asarray(img), np.asarray(losses), initial)


def test_compare_judges_each_quantity_against_its_limit():
    """Each perturbation at twice a limit fails exactly that check; at half of it, passes."""
    by_name = {c.name: c for c in selfcheck.CASES}
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 255, (8, 8, 3))
    span = img.max() - img.min()
    losses = np.array([100.0, 80.0, 70.0])
    case = by_name["icnn_dgn_gd_quick"]
    limits = selfcheck.criteria_for(case)
    same = selfcheck.compare(case, img, losses, _reference(img, losses))
    assert same.passed and same.corr == pytest.approx(1.0) and same.img == 0 and same.loss == 0

    def failed(ours_img, ours_losses, which=case):
        return [f.split()[0] for f in
                selfcheck.compare(which, ours_img, ours_losses, _reference(img, losses)).failures]

    for factor, expected in ((2.0, ["img"]), (0.5, [])):
        off = img.copy()
        off[0, 0, 0] += factor * limits.img_max * span
        assert failed(off, losses) == expected
    for factor, expected in ((2.0, ["loss"]), (0.5, [])):
        assert failed(img, losses * [1, 1 + factor * limits.loss_max, 1]) == expected
    assert failed(img, losses * [1 + 2 * limits.loss0_max, 1, 1]) == ["loss0"]
    assert failed(img, losses[:2]) == ["n"]
    # a weakly related image: corr fails (img too)
    assert "corr" in failed(img + rng.normal(0, img.std(), img.shape), losses)
    # L-BFGS quick: the image's max difference is not judged (float32 spread ~0.1)
    lbfgs = by_name["icnn_lbfgs_quick"]
    assert selfcheck.criteria_for(lbfgs).img_max is None
    off = img.copy()
    off[0, 0, 0] += 0.3 * span
    assert failed(off, losses, lbfgs) == []

    # a long L-BFGS case: other lengths within 10% and other losses on the way are fine;
    # the start, the loss reached and the content are judged
    long_case = by_name["icnn_lbfgs"]
    long_losses = np.linspace(100.0, 10.0, 100)
    ours = np.concatenate([long_losses[:1], long_losses[1:95] * 1.3, [12.0]])
    noisy = img + rng.normal(0, 0.1 * img.std(), img.shape)
    result = selfcheck.compare(long_case, noisy, ours, _reference(img, long_losses))
    assert result.passed, result.failures
    assert result.n_ours == 96 and result.final == pytest.approx(1.2)
    result = selfcheck.compare(long_case, noisy, np.append(ours, 40.0),
                               _reference(img, long_losses))
    assert [f.split()[0] for f in result.failures] == ["final"]
    result = selfcheck.compare(long_case, noisy, np.append(ours[:80], 12.0),
                               _reference(img, long_losses))
    assert [f.split()[0] for f in result.failures] == ["n"]


def test_compare_fails_on_nan_and_on_another_image_size():
    case = selfcheck.CASES[0]
    img = np.ones((4, 4, 3))
    img[0] = 2.0
    result = selfcheck.compare(case, img, [np.nan, 1.0, 1.0], _reference(img, [1.0, 1.0, 1.0]))
    assert not result.passed and any(f.startswith("loss0 nan") for f in result.failures)
    result = selfcheck.compare(case, np.ones((5, 4, 3)), [1.0] * 3, _reference(img, [1.0] * 3))
    assert any("image shape (5, 4, 3) differs from Caffe's (4, 4, 3)" in f for f in result.failures)


# --------------------------------------------------------------------------- download and cache

def test_fetch_verifies_md5_caches_and_refuses_corrupt_files(plumbing_tree, remote, tmp_path):
    """Plumbing: files come from <base>/<commit>/<path>, are md5-checked, cached, reused."""
    _, md5 = plumbing_tree
    cases = QUICK[:2]
    folder = _fetch(cases, tmp_path, md5)
    assert folder == tmp_path / "icnn_test_reference" / selfcheck.PINNED_COMMIT
    wanted = [selfcheck.ORIG_IMG_PATH] + [p for c in cases for p in c.files]
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) \
        == sorted(wanted)
    assert sorted(r[0] for r in remote.requests) == \
        sorted(f"/{selfcheck.PINNED_COMMIT}/{p}" for p in wanted)

    count = len(remote.requests)
    _fetch(cases, tmp_path, md5)
    assert len(remote.requests) == count  # second run: no request at all

    # a damaged cached file is fetched again (one request), the others are not
    damaged = folder / cases[0].path("loss_list.mat")
    damaged.write_bytes(b"damaged")
    _fetch(cases, tmp_path, md5)
    assert [r[0] for r in remote.requests[count:]] == \
        [f"/{selfcheck.PINNED_COMMIT}/{cases[0].path('loss_list.mat')}"]
    assert hashlib.md5(damaged.read_bytes()).hexdigest() == md5[cases[0].path("loss_list.mat")]

    # a server handing out other bytes: refused, nothing cached
    path = QUICK[2].path("options.pkl")
    remote.modes[f"/{selfcheck.PINNED_COMMIT}/{path}"] = "corrupt"
    with pytest.raises(errors.ChecksumError, match="md5"):
        _fetch([QUICK[2]], tmp_path, md5)
    assert not (folder / path).exists()


def test_fetch_reports_an_unreachable_server_as_a_download_error(tmp_path, monkeypatch):
    server = FakeRemote().start()  # knows no path: every request is a 404
    monkeypatch.setenv("ICNN_TORCH_ICNN_RAW_URL", server.url)
    try:
        with pytest.raises(errors.DownloadError, match="404"):
            _fetch(QUICK[:1], tmp_path, selfcheck.REFERENCE_MD5)
    finally:
        server.stop()


# --------------------------------------------------------------------------- whole runs

def test_plumbing_own_results_pass_and_a_perturbed_reference_fails(plumbing_tree, small_nets,
                                                                   tmp_path, device):
    """Plumbing, not agreement with Caffe: our engines rerun on the pickled options agree
    with the results they wrote (float32 on one machine: differences far below every
    limit); a reference with a perturbed image or loss list fails its row."""
    import io

    root, _ = plumbing_tree
    net, gen = (copy.deepcopy(m).to(device) for m in small_nets)  # the fixture stays on the CPU
    out = io.StringIO()
    results = selfcheck.run_selfcheck(selfcheck.CASES, net, gen, root, device=device, out=out,
                                      snapshots=tmp_path / "snaps")
    text = out.getvalue()
    assert [r.case.name for r in results] == [c.name for c in selfcheck.CASES]
    assert all(r.passed for r in results), text
    assert all(r.img < 1e-5 and r.loss < 1e-5 and r.corr > 1 - 1e-9 for r in results), text
    assert text.count(" PASS") == 8 and "8 of 8 cases passed" in text
    assert "Limits come from float32" in text and "corr >= 0.9999," in text  # the legend
    snaps = tmp_path / "snaps" / "icnn_dgn_gd_quick"
    assert (snaps / "initial_gen_feat.mat").is_file() and (snaps / "recon_img.mat").is_file()
    assert scipy.io.loadmat(snaps / "loss_list.mat")["loss_list"].shape == (1, results[2].n_ours)

    # perturbed references: every quick case FAILs on exactly what was changed
    case = {c.name: c for c in selfcheck.CASES}["icnn_gd_quick"]
    reference = selfcheck.read_reference(case, root)
    features = selfcheck.target_features(net, root / selfcheck.ORIG_IMG_PATH)
    span = np.ptp(reference.recon_img)
    limits = selfcheck.criteria_for(case)
    shifted = selfcheck.Reference(reference.options,
                                  reference.recon_img + 2 * limits.img_max * span,
                                  reference.loss_list, reference.initial)
    result = selfcheck.run_case(case, net, gen, features, shifted, device)
    assert not result.passed and [f[:3] for f in result.failures] == ["img"]
    scaled = selfcheck.Reference(reference.options, reference.recon_img,
                                 reference.loss_list * (1 + 2 * limits.loss_max), reference.initial)
    result = selfcheck.run_case(case, net, gen, features, scaled, device)
    assert not result.passed and {f.split()[0] for f in result.failures} == {"loss0", "loss"}
    assert "FAIL: loss0" in selfcheck.format_row(result)

    # --spread: a second run with the other convolution algorithm, compared with the first
    result = selfcheck.run_case(case, net, gen, features, reference, device, spread=True)
    assert result.passed and result.spread is not None
    assert result.spread.n_ours == result.n_ours == 3
    assert result.spread.corr > 0.9999 and result.spread.loss < 1e-4  # rounding only
    first, second = selfcheck.format_row(result).split("\n")
    assert first.startswith("icnn_gd_quick") and second.startswith("  spread")


def _args(tmp_path, *extra):
    return ["--data-dir", str(tmp_path / "data"), "--net-dir", str(tmp_path / "net"),
            "--no-progress", *extra]


def test_main_without_weights_names_the_download_command(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # default data/ and net/ folders, all absent
    status = selfcheck.main([])
    err = capsys.readouterr().err
    assert status == 1
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert "python -m icnn_torch.download vgg19 generator mean" in err
    assert "VGG_ILSVRC_19_layers.caffemodel" in err

    # only the pixel cases: the generator is not asked for; other folders are named
    elsewhere = tmp_path / "elsewhere"
    status = selfcheck.main(_args(elsewhere, "--cases", "icnn_gd_quick"))
    err = capsys.readouterr().err
    assert status == 1 and "generator" not in err.split("Download with:")[1]
    assert f"--data-dir {elsewhere / 'data'}" in err and "vgg19 mean" in err


def test_missing_references_are_facts_below_the_command_line_and_advice_in_it(
        tmp_path, monkeypatch, capsys):
    """read_reference names the case and no command; main adds the one to run (itself)."""
    empty = tmp_path / "cache"
    with pytest.raises(errors.MissingDataError) as caught:
        selfcheck.read_reference(QUICK[0], empty)
    assert len(caught.value.missing) == 4 and caught.value.items == ()
    assert QUICK[0].name in caught.value.detail
    assert "python" not in str(caught.value) and "--" not in str(caught.value)

    # the command line: weights 'found', the fetch skipped, so the cache stays empty
    weights = tmp_path / "net" / "VGG_ILSVRC_19_layers" / "VGG_ILSVRC_19_layers.caffemodel"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"stand-in")
    monkeypatch.setattr("icnn_torch.nets.weights.load_vgg19",
                        lambda path, device=None, img_mean=None: object())
    monkeypatch.setattr(selfcheck_cli, "fetch_references",
                        lambda cases, data_dir, progress=True: empty)
    argv = _args(tmp_path, "--cases", "icnn_gd_quick", "--device", "cpu")
    assert selfcheck.main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: 4 files are missing")
    assert "reference files of case icnn_gd_quick" in err
    assert f"run it again (python -m icnn_torch.selfcheck --data-dir {tmp_path / 'data'}" in err
    assert "--cases icnn_gd_quick --device cpu)" in err


def test_help_imports_neither_torch_nor_scipy():
    import subprocess

    code = ("import runpy, sys\nsys.argv = ['selfcheck', '--help']\n"
            "try:\n    runpy.run_module('icnn_torch.selfcheck', run_name='__main__')\n"
            "except SystemExit as exit:\n    assert exit.code == 0\n"
            "print(sorted(m for m in ('torch', 'scipy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO_ROOT, check=True)
    assert "usage: python -m icnn_torch.selfcheck" in done.stdout
    assert done.stdout.rstrip().endswith("[]"), done.stdout


def test_main_end_to_end_over_loopback_then_offline(plumbing_tree, small_nets, remote,
                                                    tmp_path, monkeypatch, capsys):
    """Plumbing: weights 'found' (loaders replaced by the small nets), references fetched
    from the loopback server, table printed, exit 0; a second run makes no request;
    a reference perturbed in the cache (and in the md5 table) makes its case fail: exit 1."""
    net, gen = small_nets
    for rel in ("VGG_ILSVRC_19_layers/VGG_ILSVRC_19_layers.caffemodel",
                "generator_for_inverting_fc7/generator.caffemodel"):
        (tmp_path / "net" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "net" / rel).write_bytes(b"stand-in")
    loaded = []
    monkeypatch.setattr("icnn_torch.nets.weights.load_vgg19",
                        lambda path, device=None, img_mean=None: loaded.append(path) or net)
    monkeypatch.setattr("icnn_torch.nets.weights.load_generator",
                        lambda path, device=None: loaded.append(path) or gen)
    argv = _args(tmp_path, "--cases", "quick", "--device", "cpu")
    assert selfcheck.main(argv) == 0
    out = capsys.readouterr().out
    assert "4 of 4 cases passed" in out and "built-in constants" in out  # no mean file
    assert len(loaded) == 2
    requests = len(remote.requests)
    assert requests == 1 + 4 * 4

    folder = selfcheck.reference_folder(tmp_path / "data")
    path = folder / QUICK[0].path("recon_img.mat")
    img = scipy.io.loadmat(path)["recon_img"]
    limit = selfcheck.criteria_for(QUICK[0]).img_max
    scipy.io.savemat(path, {"recon_img": img + 2 * limit * np.ptp(img)})
    monkeypatch.setitem(references.REFERENCE_MD5, QUICK[0].path("recon_img.mat"),
                        hashlib.md5(path.read_bytes()).hexdigest())
    assert selfcheck.main(argv) == 1
    out = capsys.readouterr().out
    assert len(remote.requests) == requests  # everything came from the cache
    assert "icnn_gd_quick" in out and "FAIL: img" in out and "3 of 4 cases passed" in out


def test_main_reports_corrupt_downloads_and_damaged_weights_in_one_line(plumbing_tree, remote,
                                                                       tmp_path, capsys):
    weights = tmp_path / "net" / "VGG_ILSVRC_19_layers" / "VGG_ILSVRC_19_layers.caffemodel"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"not a caffemodel")
    argv = _args(tmp_path, "--cases", "icnn_gd_quick", "--device", "cpu")
    served = f"/{selfcheck.PINNED_COMMIT}/{selfcheck.ORIG_IMG_PATH}"
    remote.modes[served] = "corrupt"
    status = selfcheck.main(argv)
    err = capsys.readouterr().err
    assert status == 1 and err.count("\n") == 1 and "corrupt" in err and "md5" in err
    assert not (selfcheck.reference_folder(tmp_path / "data") / selfcheck.ORIG_IMG_PATH).exists()

    remote.modes[served] = "good"
    status = selfcheck.main(argv)
    err = capsys.readouterr().err
    assert status == 1 and err.count("\n") == 1
    assert f"{weights} is damaged" in err and "icnn_torch.download" in err and "vgg19" in err


# --------------------------------------------------------------------------- the real thing

def _project_root() -> Path:
    return Path(os.environ.get("ICNN_TORCH_ROOT") or REPO_ROOT)


def _real_setup():
    root = _project_root()
    from icnn_torch.store.layout import generator_weights_path, vgg19_weights_path
    vgg19, gen = vgg19_weights_path(root / "net"), generator_weights_path(root / "net")
    absent = [str(p) for p in (vgg19, gen) if not p.is_file()]
    if absent:
        pytest.skip(f"real weights absent ({', '.join(absent)}; set ICNN_TORCH_ROOT to the "
                    "project root holding net/, or run python -m icnn_torch.download vgg19 "
                    "generator mean)")
    return root, vgg19, gen


def test_cached_real_references_are_whole_and_every_option_reaches_our_engines():
    """Without weights: when the original's reference files are cached (after one run of
    the self-check), their md5 match and every pickled option is accepted by our engines."""
    import inspect

    folder = selfcheck.reference_folder(_project_root() / "data")
    absent = [p for p in selfcheck.REFERENCE_MD5 if not (folder / p).is_file()]
    if absent:
        pytest.skip(f"reference files not cached in {folder} ({len(absent)} absent; "
                    "python -m icnn_torch.selfcheck fetches them)")
    for path, md5 in selfcheck.REFERENCE_MD5.items():
        assert hashlib.md5((folder / path).read_bytes()).hexdigest() == md5, path
    for case in selfcheck.CASES:
        reference = selfcheck.read_reference(case, folder)
        accepted = inspect.signature(case.info.load().reconstruct_image).parameters
        _, notes = selfcheck.engine_kwargs(case, reference, "/nowhere", accepted=accepted)
        assert notes == [], (case.name, notes)
        assert reference.recon_img.shape == (224, 224, 3)
        assert reference.initial.shape == ((4096,) if case.uses_generator else (224, 224, 3))
        iterations = reference.options.get("iter_n", reference.options.get("maxiter"))
        assert iterations == (3 if case.quick else 200 if case.info.batched else 500)
        if case.info.batched:
            assert len(reference.loss_list) == iterations
        else:
            assert len(reference.loss_list) > iterations


@pytest.fixture(scope="module")
def real_setup():
    root, vgg19_path, gen_path = _real_setup()
    from icnn_torch.store.layout import image_mean_path
    from icnn_torch.store.net_data import load_image_mean
    from icnn_torch.models import default_device, load_generator, load_vgg19
    try:
        folder = selfcheck.fetch_references(selfcheck.CASES, root / "data", progress=False)
    except errors.DownloadError as err:
        pytest.skip(f"reference files of KamitaniLab/icnn not available: {err}")
    device = default_device()
    mean, _ = load_image_mean(image_mean_path(root / "data"))
    net = load_vgg19(vgg19_path, device=device, img_mean=mean)
    gen = load_generator(gen_path, device=device)
    features = selfcheck.target_features(net, folder / selfcheck.ORIG_IMG_PATH)
    return folder, net, gen, features, device


@pytest.mark.slow
@pytest.mark.parametrize("case", selfcheck.CASES, ids=lambda c: c.name)
def test_real_weights_case_matches_caffe(case, request):
    if not case.quick and not torch.cuda.is_available() and \
            os.environ.get("ICNN_TORCH_SELFCHECK_FULL", "") != "1":
        pytest.skip("200/500-iteration case: runs on CUDA, or on CPU with "
                    "ICNN_TORCH_SELFCHECK_FULL=1 (about an hour)")
    folder, net, gen, features, device = request.getfixturevalue("real_setup")
    reference = selfcheck.read_reference(case, folder)
    result = selfcheck.run_case(case, net, gen, features, reference, device)
    print(selfcheck.format_row(result))
    assert result.passed, selfcheck.format_row(result)
