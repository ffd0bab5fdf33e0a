"""Decoding from fMRI: BData reading, decoders against FastL2LiR, the features store,
chunk files and the tree, accuracy measures (all offline, on synthetic data)."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from icnn_torch.store import layout
from icnn_torch.store import features as store_features
from icnn_torch.decoding import accuracy, fmri, predict, store
from icnn_torch.decoding.decoders import (Fastl2lirDecoder, TorchDecoder,
                                          fastl2lir_needs_vector_solve)
from icnn_torch import download
from icnn_torch.errors import ConfigError, MissingDataError
from icnn_torch.fetch import items as fetch_items
from icnn_torch.fetch.ensure import Fetching
from icnn_torch.run.advice import Context, fix_for, render

from _decoding_helpers import (stimulus_id, stimulus_names, tiny_encoder, trials,
                               write_bdata, write_images)

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


# --------------------------------------------------------------------------- synthetic subject

N_LATENT, N_VOXELS, N_UNITS = 6, 48, 40


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    """A subject whose voxels and features are both linear in a 6-d latent per image:
    training 80 images x 3 trials, test 10 images x 4 trials, 48 voxels (4 ROIs of 12,
    V4 stored as ROI_hV4), 40 feature units."""
    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("fmri")
    train, test = stimulus_names(80), stimulus_names(10, first_synset=2000000)
    latent = {name: rng.standard_normal(N_LATENT) for name in train + test}
    to_voxels = rng.standard_normal((N_LATENT, N_VOXELS))
    to_units = rng.standard_normal((N_LATENT, N_UNITS)) * 3.0
    offset = rng.uniform(-2, 5, N_UNITS)
    features = {n: latent[n] @ to_units + offset + 0.1 * rng.standard_normal(N_UNITS)
                for n in train + test}

    def voxels(labels):
        return np.stack([latent[l] @ to_voxels for l in labels]) + \
            0.7 * rng.standard_normal((len(labels), N_VOXELS))

    train_trials, test_trials = trials(train, 3, rng), trials(test, 4, rng)
    paths = {"training": write_bdata(folder / "train.h5", voxels(train_trials), train_trials),
             "test": write_bdata(folder / "test.h5", voxels(test_trials), test_trials,
                                 label_form="stimulus_id")}
    return {"paths": paths, "train": train, "test": test, "features": features,
            "train_trials": train_trials, "test_trials": test_trials}


def _reference_fastl2lir(subject, alpha, num_voxel, dtype):
    """The lab's procedure written out here with fastl2lir called directly: voxels and
    features normalised with the training mean/SD (ddof 1), features per trial, test trials
    averaged per image (in stimulus-id order), predictions de-normalised."""
    import bdpy
    from fastl2lir import FastL2LiR
    train_bd, test_bd = bdpy.BData(str(subject["paths"]["training"])), \
        bdpy.BData(str(subject["paths"]["test"]))
    x = train_bd.select("ROI_VC = 1")
    x_labels = train_bd.get_labels("stimulus_name")
    x_mean, x_sd = x.mean(0), x.std(0, ddof=1)
    images = sorted(set(x_labels), key=stimulus_id)
    y = np.stack([subject["features"][l] for l in images])
    y_mean, y_sd = y.mean(0), y.std(0, ddof=1)
    y_trials = ((y - y_mean) / y_sd)[[images.index(l) for l in x_labels]]
    t = test_bd.select("ROI_VC = 1")
    t_labels = [fmri.stimulus_name_from_id(v) for v in test_bd.select("stimulus_id")[:, 0]]
    order = sorted(set(t_labels), key=stimulus_id)
    t_avg = np.stack([t[np.array(t_labels) == l].mean(0) for l in order])
    model = FastL2LiR()
    from icnn_torch.decoding.decoders import _fastl2lir_compatible  # NumPy >= 2.4 only
    with _fastl2lir_compatible(num_voxel < x.shape[1]):
        model.fit(((x - x_mean) / x_sd).astype(dtype), y_trials.astype(dtype), alpha=alpha,
                  n_feat=num_voxel, dtype=dtype)
    pred = model.predict(((t_avg - x_mean) / x_sd).astype(dtype), dtype=dtype)
    return pred * y_sd + y_mean, order


def _decode(subject, decoder_cls, alpha=100.0, num_voxel=20, dtype="float32", roi="VC"):
    train = fmri.load_fmri(subject["paths"]["training"], roi)
    test = fmri.load_fmri(subject["paths"]["test"], roi)
    images = sorted(set(train.labels), key=fmri.stimulus_sort_key)
    label_map = {s: s for s in subject["test"]}
    tset = predict.prepare_training_set(train, test, images, label_map)
    feats = np.stack([subject["features"][l] for l in images])
    decoder = decoder_cls(tset.x, alpha, num_voxel, dtype)
    return predict.decode_chunk(feats, tset, decoder, keep=True), tset


def test_decoders_recover_the_features_and_equal_fastl2lir_used_directly(subject):
    """fastl2lir through our pipeline equals fastl2lir called on the same arrays by the
    test's own normalisation code (float32 rounding of the two normalisations apart:
    their inputs differ by <1e-7 relative, which the ridge solve of condition < 1e3 keeps
    below 1e-4 of the feature scale); the decoded test features correlate with the true
    ones."""
    result, tset = _decode(subject, Fastl2lirDecoder)
    reference, order = _reference_fastl2lir(subject, 100.0, 20, np.float32)
    assert tset.item_stimuli == order
    scale = np.abs(reference).max()
    assert np.abs(result.prediction - reference).max() <= 1e-4 * scale
    true = np.stack([subject["features"][l] for l in order])
    profile = np.nanmean(accuracy.profile_correlation(result.prediction, true))
    print(f"profile correlation of the decoded test features: {profile:.3f}")
    assert profile > 0.8  # 6-d latent, 48 voxels, noise 0.7: well above chance (0)
    assert result.decoders.voxel_index.shape == (N_UNITS, 20)
    # the kept decoders predict what the decoder predicted (normalised space)
    norm = (result.prediction - result.y_mean) / result.y_sd
    assert np.allclose(result.decoders.predict(tset.x_test), norm, atol=1e-4)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_torch_decoder_equals_fastl2lir(subject, dtype, device):
    """Ours selects the same voxels and predicts what fastl2lir predicts: float64 to 1e-5
    of the prediction scale (rounding of a 21 x 21 solve, far below); float32 within 4x
    fastl2lir's own float32 error (its distance from its float64 result) plus 1e-6."""
    ours, _ = _decode(subject, lambda *a: TorchDecoder(*a, device=device), dtype=dtype)
    ref, _ = _decode(subject, Fastl2lirDecoder, dtype=dtype)
    assert np.array_equal(ours.decoders.voxel_index, ref.decoders.voxel_index)
    scale = np.abs(ref.prediction).max()
    if dtype == "float64":
        tolerance = 1e-5 * scale
    else:
        ref64, _ = _decode(subject, Fastl2lirDecoder, dtype="float64")
        tolerance = 4 * np.abs(ref.prediction - ref64.prediction).max() + 1e-6 * scale
    assert np.abs(ours.prediction - ref.prediction).max() <= tolerance


def test_decoders_without_voxel_selection(subject):
    """num_voxel >= voxels: every voxel is used (fastl2lir's own no-selection branch)."""
    ours, _ = _decode(subject, TorchDecoder, num_voxel=500, dtype="float64", roi="V1")
    ref, _ = _decode(subject, Fastl2lirDecoder, num_voxel=500, dtype="float64", roi="V1")
    assert ours.decoders.voxel_index.shape == (N_UNITS, 12)
    assert np.allclose(ours.prediction, ref.prediction, rtol=0, atol=1e-8)


def test_fastl2lir_compatibility_shim_only_where_needed():
    """The vector-solve shim is applied exactly when fastl2lir's selection fails on this
    NumPy; it changes nothing else (a 2-column right-hand side is passed through)."""
    from fastl2lir import FastL2LiR
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((30, 8)), rng.standard_normal((30, 3))
    from importlib.metadata import version
    needs = fastl2lir_needs_vector_solve()
    numpy_24 = tuple(int(v) for v in np.__version__.split(".")[:2]) >= (2, 4)
    if version("fastl2lir") == "0.11":  # its last release; fixed upstream after it
        assert needs == numpy_24
    from icnn_torch.decoding.decoders import _SolveVectorRhs
    a = rng.standard_normal((4, 4)) + 4 * np.eye(4)
    b = rng.standard_normal((4, 2))
    assert np.array_equal(_SolveVectorRhs.solve(a, b), np.linalg.solve(a, b))
    assert np.array_equal(_SolveVectorRhs.solve(a, b[:, :1]), np.linalg.solve(a, b[:, 0]))
    model = FastL2LiR()
    from icnn_torch.decoding.decoders import _fastl2lir_compatible
    with _fastl2lir_compatible(True):
        model.fit(x, y, alpha=1.0, n_feat=4)
    assert (np.count_nonzero(model.W, axis=0) == 4).all()


# --------------------------------------------------------------------------- fMRI files

def test_bdata_labels_rois_and_trial_averaging(subject, tmp_path):
    train = fmri.load_fmri(subject["paths"]["training"], "V4")  # stored as ROI_hV4
    assert train.voxels.shape == (240, 12) and train.labels == subject["train_trials"]
    test = fmri.load_fmri(subject["paths"]["test"], "VC")  # stimulus_id column, no vmap
    assert test.labels == subject["test_trials"]
    assert fmri.stimulus_name_from_id(1518878.010042) == "n01518878_10042"
    order = sorted(set(test.labels), key=fmri.stimulus_sort_key)
    mean = fmri.average_trials(test.voxels, test.labels, order)
    first = test.voxels[np.array(test.labels) == order[0]]
    assert len(first) == 4 and np.allclose(mean[0], first.mean(0))
    with pytest.raises(ConfigError, match="has no ROI 'LOC'.*its ROIs: V1, V2, V3, VC, hV4"):
        fmri.load_fmri(subject["paths"]["training"], "LOC")
    assert fmri.load_fmri(subject["paths"]["training"], "ROI_V1 = 1").voxels.shape[1] == 12
    with pytest.raises(ConfigError, match="no label column 'image_name'"):
        fmri.load_fmri(subject["paths"]["training"], "VC", label_key="image_name")


def test_stimulus_order_is_numeric_within_a_synset():
    names = ["n01443537_22563", "n01443537_5013", "n00000001_9"]
    assert sorted(names, key=fmri.stimulus_sort_key) == \
        ["n00000001_9", "n01443537_5013", "n01443537_22563"]


def test_fmri_download_through_the_download_layer(tmp_path, monkeypatch, subject):
    """Missing published files are fetched from figshare by id (here the loopback
    server), checked to be BData; a non-HDF5 answer is deleted and reported; without a
    terminal and without 'yes', the error names the files (their figshare ids)."""
    from _dl_server import FakeRemote
    server = FakeRemote().start()
    try:
        monkeypatch.setenv("ICNN_TORCH_FIGSHARE_FILES", f"{server.url}/files")
        body = Path(subject["paths"]["training"]).read_bytes()
        server.add_path(f"/files/{fmri.FMRI_FIGSHARE_IDS[('S1', 'training')]}", body)
        server.add_path(f"/files/{fmri.FMRI_FIGSHARE_IDS[('S1', 'test')]}", b"<html>oops</html>")
        files = fmri.published_fmri_files(tmp_path, ["S1"])
        with pytest.raises(MissingDataError, match="14830643"):
            fmri.ensure_fmri_files(files, Fetching(assume_yes=False))
        from icnn_torch.errors import DamagedFileError
        with pytest.raises(DamagedFileError, match="not an HDF5 file"):
            fmri.ensure_fmri_files(files, Fetching(assume_yes=True, progress=False))
        assert files[("S1", "training")].read_bytes() == body
        assert not files[("S1", "test")].exists()
    finally:
        server.stop()


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def fmri_remote(monkeypatch, subject):
    """The loopback server serving S1's two published fMRI files (BData bodies)."""
    from _dl_server import FakeRemote
    server = FakeRemote().start()
    monkeypatch.setenv("ICNN_TORCH_FIGSHARE_FILES", f"{server.url}/files")
    monkeypatch.delenv("ICNN_TORCH_ASSUME_YES", raising=False)
    bodies = {kind: Path(subject["paths"][kind]).read_bytes() for kind in ("training", "test")}
    for kind, body in bodies.items():
        server.add_path(f"/files/{fmri.FMRI_FIGSHARE_IDS[('S1', kind)]}", body)
    try:
        yield server, bodies
    finally:
        server.stop()


def test_fmri_files_are_fetch_items(tmp_path, fmri_remote):
    """Each published fMRI file is a download item of its own (its name, its target in
    the fMRI folder, its figshare id, no size published); the download command takes the
    names (and ``fmri`` for all six) and puts them in <data-dir>/fmri."""
    server, _ = fmri_remote
    place = fetch_items.Place.at(tmp_path / "data", tmp_path / "net")
    name = fmri.fmri_file_name("S2", "test")
    entry = fetch_items.item(name, place)
    assert entry.targets(place) == [tmp_path / "data" / "fmri" / name]
    assert str(entry.size(place)) == "size unknown"
    assert entry.describe(place) == \
        f"{name} -> {tmp_path / 'data' / 'fmri' / name} (figshare file 14830697; size unknown)"
    assert entry.check(place).state == "absent"
    elsewhere = fetch_items.Place.at(tmp_path / "data", tmp_path / "net", fmri_dir=tmp_path / "f")
    assert entry.targets(elsewhere) == [tmp_path / "f" / name]
    assert len(fetch_items.expand_aliases(["fmri"])) == 6
    assert download.main(["--data-dir", str(tmp_path / "data"), "--dry-run", "fmri"]) == 0
    assert server.requests == []


def test_fmri_items_ask_with_the_size_line_or_stop_with_one_line(tmp_path, fmri_remote):
    """Without a terminal: nothing is fetched, the error carries the items and the
    decoding command line renders one line naming its fix (the command with --yes). On a
    terminal: one question listing the files, the size line (no size is published:
    unknown) and the free space; 'y' fetches them."""
    server, bodies = fmri_remote
    files = fmri.published_fmri_files(tmp_path / "fmri", ["S1"])
    names = [p.name for p in files.values()]
    with pytest.raises(MissingDataError) as info:
        fmri.ensure_fmri_files(files, Fetching(stdin=io.StringIO(), stderr=io.StringIO()))
    assert list(info.value.items) == names
    context = Context(rerun_command="python decode_features.py --subjects S1")
    line = render(info.value, context)
    assert "\n" not in line and "not asking: standard input is not a terminal" in line
    assert line.endswith("Download with: python decode_features.py --subjects S1 --yes")
    assert server.requests == []
    prompt = io.StringIO()
    fetched = fmri.ensure_fmri_files(files, Fetching(stdin=_Terminal("y\n"), stderr=prompt,
                                                     progress=False))
    assert fetched == list(files.values())
    text = prompt.getvalue()
    assert text.count("[y/N]") == 1
    assert f"{names[0]} -> {files[('S1', 'training')]} (figshare file 14830643; size unknown)" \
        in text
    assert "Total download: 0 bytes; 2 item(s) of unknown size." in text
    assert f"on the disk of {tmp_path}" in text and "(free: " in text
    assert all(files[("S1", k)].read_bytes() == bodies[k] for k in ("training", "test"))


def test_fmri_verify_replaces_a_file_that_is_no_bdata(tmp_path, fmri_remote):
    """Present is enough without verify; with it, a file that is no BData file is
    damaged (the fix a failed read names: delete it, rerun with --yes) and replaced."""
    _, bodies = fmri_remote
    files = fmri.published_fmri_files(tmp_path, ["S1"])
    files[("S1", "training")].write_bytes(bodies["training"])
    files[("S1", "test")].write_bytes(b"not hdf5")
    assert fmri.ensure_fmri_files(files, Fetching(assume_yes=False)) == []
    from icnn_torch.errors import DamagedFileError
    with pytest.raises(DamagedFileError) as info:
        fmri.open_bdata(files[("S1", "test")])
    context = Context(rerun_command="python decode_features.py")
    assert fix_for(info.value, context) == \
        f"rm {files[('S1', 'test')]} && python decode_features.py --yes"
    log = io.StringIO()
    assert fmri.ensure_fmri_files(files, Fetching(assume_yes=True, verify=True, progress=False,
                                                  stderr=log)) == [files[("S1", "test")]]
    assert "intact (checked: reading as BData) (no md5 is published)" in log.getvalue()
    assert "replacing it (damaged: " in log.getvalue()
    assert files[("S1", "test")].read_bytes() == bodies["test"]
    # an HDF5 file cut short: damaged too (HDF5's own message), not a traceback
    cut = tmp_path / "cut" / files[("S1", "training")].name
    cut.parent.mkdir()
    cut.write_bytes(bodies["training"][:len(bodies["training"]) // 2])
    with pytest.raises(DamagedFileError, match="HDF5 cannot open it .*truncated"):
        fmri.open_bdata(cut)


# --------------------------------------------------------------------------- features store

def _images(tmp_path, n=12):
    rng = np.random.default_rng(3)
    labels = stimulus_names(n)
    paths = write_images(tmp_path / "images", labels, rng, size=20)
    return labels, [paths[l] for l in labels]


def test_store_layout_reads_and_refusals(tmp_path):
    labels, paths = _images(tmp_path)
    enc = tiny_encoder()
    path = tmp_path / "f.h5"
    st = store.compute_features(enc, "Tiny", paths, labels, path, ["conv", "fc"],
                                rows_per_block=5, progress=False)
    assert st.labels == labels and st.shape("conv") == (4, 16, 16) and st.complete()
    from _decoding_helpers import encoder_features
    true = encoder_features(enc, dict(zip(labels, paths)), ["conv", "fc"])
    conv = st.read_layer("conv")
    # the store ran batches of 5, the reference one image at a time: float32 convolution
    # sums in another order (about 1e-7 relative), hence 1e-5 of the feature scale
    tol = 1e-5 * np.abs(conv).max()
    assert np.allclose(conv[7], true[labels[7]]["conv"], rtol=0, atol=tol)
    assert np.array_equal(st.read_units("conv", 100, 300),
                          conv.reshape(len(labels), -1)[:, 100:300])
    assert np.allclose(st.read_layer("fc", rows=[9, 2])[0], true[labels[9]]["fc"],
                       rtol=0, atol=1e-5 * np.abs(true[labels[9]]["fc"]).max())
    # another encoder (other weights), another input size, other images: refused
    with pytest.raises(ConfigError, match="differ in weights_sha1"):
        store.compute_features(tiny_encoder(seed=1), "Tiny", paths, labels, path, ["fc"],
                               progress=False)
    with pytest.raises(ConfigError, match="differ in .*input_size"):
        store.compute_features(tiny_encoder(size=8), "Tiny", paths, labels, path, ["fc"],
                               progress=False)
    with pytest.raises(ConfigError, match="other images"):
        store.compute_features(enc, "Tiny", paths[:-1], labels[:-1], path, ["fc"],
                               progress=False)
    with pytest.raises(MissingDataError, match="on request"):
        store.find_images(tmp_path / "images", labels + ["n09999999_1"])


_KILLED_RUN = """
import sys, time
sys.path[:0] = [{repo!r}, {tests!r}]
from pathlib import Path
from icnn_torch.decoding import store
from _decoding_helpers import stimulus_names, tiny_encoder
enc = tiny_encoder()
forward = enc.forward
def slow(x, layers=None):
    time.sleep(0.15)
    return forward(x, layers)
enc.forward = slow
labels = {labels!r}
paths = {paths!r}
store.compute_features(enc, "Tiny", paths, labels, {path!r}, ["conv", "fc"], rows_per_block=2,
                       progress=False)
"""


def test_store_killed_while_computing_resumes_to_the_same_file(tmp_path):
    """SIGKILL during feature computation: the file stays readable, the next run computes
    only the missing blocks, and the result equals an uninterrupted run."""
    labels, paths = _images(tmp_path, n=16)
    path = tmp_path / "killed.h5"
    code = _KILLED_RUN.format(repo=str(REPO), tests=str(TESTS), labels=labels,
                              paths=[str(p) for p in paths], path=str(path))
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if path.is_file():
                try:
                    if 1 <= store.FeatureStore(path).missing_blocks("fc") <= 6:
                        break
                except Exception:  # noqa: BLE001 - being created: retry
                    pass
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    st = store.FeatureStore(path)
    missing = st.missing_blocks("conv")
    assert 0 < missing < 8, "the run was not killed midway; the test is void"
    enc = tiny_encoder()
    resumed = store.compute_features(enc, "Tiny", paths, labels, path, ["conv", "fc"],
                                     progress=False)
    fresh = store.compute_features(enc, "Tiny", paths, labels, tmp_path / "fresh.h5",
                                   ["conv", "fc"], rows_per_block=2, progress=False)
    for layer in ("conv", "fc"):  # same blocks of 2 images; the killed part ran in
        # another process, whose threads may sum in another order: 1e-6 of the scale
        a, b = resumed.read_layer(layer), fresh.read_layer(layer)
        assert np.allclose(a, b, rtol=0, atol=1e-6 * np.abs(b).max())


# --------------------------------------------------------------------------- chunks and tree

def test_chunks_assemble_into_the_original_tree(tmp_path, subject):
    """Chunk files in unit order assemble into one .mat per image: variable feat,
    float32, (C, H, W) for a conv layer and 1 x N for fc, read back by store_features.load_feat; a
    chunk made with other settings is refused."""
    rng = np.random.default_rng(5)
    items = ["Img0001", "Img0002", "Img0003"]
    full = rng.standard_normal((3, 2 * 3 * 4)).astype(np.float32)
    jobs = [predict.ChunkJob("S1", "VC", "conv9", a, b) for a, b in predict.unit_chunks(24, 10)]
    assert [(j.start, j.stop) for j in jobs] == [(0, 10), (10, 20), (20, 24)]
    settings = {"alpha": 100.0}
    files = []
    for job in jobs:
        result = predict.ChunkResult(full[:, job.start:job.stop],
                                     np.zeros(job.stop - job.start, np.float32),
                                     np.ones(job.stop - job.start, np.float32))
        files.append(predict.write_chunk(predict.chunk_path(tmp_path / "dec", "Net", job),
                                         result, items, settings))
    assert predict.chunk_done(files[0], settings)
    with pytest.raises(ConfigError, match="alpha: 100.0 there, 10.0 now"):
        predict.chunk_done(files[0], {"alpha": 10.0})
    tree = tmp_path / "d" / layout.DECODED_FEATURES_DIRNAME  # the layout of icnn_torch.store.layout
    written = predict.assemble_layer(tree, "natural", "Net", "conv9", "S1", "VC", (2, 3, 4),
                                     files)
    assert written[1] == layout.decoded_feature_path(tmp_path / "d", "natural", "Net", "conv9",
                                                   "S1", "VC", "Img0002")
    raw = scipy.io.loadmat(written[1])["feat"]
    assert raw.dtype == np.float32 and raw.shape == (2, 3, 4)
    assert np.array_equal(store_features.load_feat(written[1]), full[1].reshape(2, 3, 4))
    stamp = written[1].stat().st_mtime_ns
    assert predict.assemble_layer(tree, "natural", "Net", "conv9", "S1", "VC", (2, 3, 4),
                                  files)[1].stat().st_mtime_ns == stamp  # not rewritten
    fc = predict.write_feat(tmp_path / "fc.mat", full[0])
    assert scipy.io.loadmat(fc)["feat"].shape == (1, 24)
    assert store_features.load_feat(fc).shape == (24,)
    assert not list(tree.rglob(".*.tmp*"))


# --------------------------------------------------------------------------- accuracy

def test_accuracy_measures_against_bdpy():
    """Our one-pass profile correlation equals bdpy's per-unit loop (float64 rounding,
    1e-12); identical decoded and true features score 1; a shuffled decode scores about
    chance."""
    from bdpy.evals.metrics import profile_correlation as bdpy_profile
    rng = np.random.default_rng(2)
    true = rng.standard_normal((8, 3, 4, 5))
    pred = true + rng.standard_normal(true.shape)
    assert np.allclose(accuracy.profile_correlation(pred, true),
                       bdpy_profile(pred, true).reshape(-1), atol=1e-12)
    mean, sd = true.reshape(8, -1).mean(0), true.reshape(8, -1).std(0, ddof=1)
    perfect = accuracy.decoding_accuracy(true, true, mean, sd)
    assert perfect == pytest.approx({m: 1.0 for m in accuracy.METRICS})
    # a constant unit (training SD 0) is left out, not NaN
    const = np.concatenate([true.reshape(8, -1), np.ones((8, 1))], axis=1)
    scores = accuracy.decoding_accuracy(const, const, const.mean(0), const.std(0, ddof=1))
    assert np.isfinite(list(scores.values())).all()
    trial = accuracy.decoding_accuracy(np.repeat(true, 2, axis=0), true, mean, sd,
                                       pred_labels=[f"i{k}" for k in range(8) for _ in (0, 1)],
                                       true_labels=[f"i{k}" for k in range(8)])
    assert trial["identification_accuracy"] == pytest.approx(1.0)
