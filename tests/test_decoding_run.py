"""decode_features.py as a user runs it: subprocesses on synthetic project trees.

- a tiny encoder (constant ``encoder``, "another network") for the rank split and the
  error messages;
- end to end with a random-weight VGG19 caffemodel: images -> features -> decoders ->
  the .mat tree -> a copy of script 2 reconstructs from it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from icnn_torch.store import layout
from icnn_torch.store import features as store_features
from icnn_torch.decoding import fmri, predict
from icnn_torch.decoding.store import FeatureStore
from icnn_torch.download import VGG19_SIZE

from _decoding_helpers import (EXTRA, blocking_command, stimulus_names, trials, write_bdata,
                               write_images)

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SCRIPT = REPO / "decode_features.py"
TRAIN, TEST = stimulus_names(12), stimulus_names(3, first_synset=2000000)


def _fmri_from_pixels(root: Path, paths: dict, rng, n_voxels: int = 40) -> None:
    """S1's fMRI: voxels a noisy linear function of the 8x8 downsampled image of each
    trial (so the decoders have something to find), BData files in the published names."""
    import PIL.Image
    pixels = {l: np.asarray(PIL.Image.open(p).convert("RGB").resize((8, 8)), np.float64)
              .reshape(-1) / 255.0 for l, p in paths.items()}
    mixing = rng.standard_normal((192, n_voxels))
    folder = root / "data" / "fmri"
    folder.mkdir(parents=True, exist_ok=True)
    for kind, labels, repeats in (("training", TRAIN, 2), ("test", TEST, 3)):
        order = trials(labels, repeats, rng)
        voxels = np.stack([pixels[l] @ mixing for l in order])
        voxels += 0.2 * rng.standard_normal(voxels.shape)
        write_bdata(folder / fmri.fmri_file_name("S1", kind), voxels, order)


def _images_and_fmri(root: Path, size: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    paths = write_images(root / "data/images/training", TRAIN, rng, size=size)
    paths.update(write_images(root / "data/images/test", TEST, rng, size=size, ext=".jpg"))
    _fmri_from_pixels(root, paths, rng)


def _script_copy(folder: Path, text: str, **constants) -> Path:
    """``text`` with constants assigned again just before its ``__main__`` block."""
    lines = "".join(f"{k} = {v}\n" for k, v in constants.items())
    head, tail = text.split("\nif __name__ == '__main__':")
    path = folder / Path(SCRIPT).name
    path.write_text(head + "\n" + lines + "\nif __name__ == '__main__':" + tail)
    return path


def _run(script: Path, root: Path, *args: str, env=None, timeout: float = 300,
         blocked: tuple = ()):
    """Run ``script`` as a user does (no terminal); with ``blocked``, in a Python where
    those modules cannot be imported (standard error then ends with the attempts)."""
    env = dict(os.environ, ICNN_TORCH_ROOT=str(root), PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join([str(REPO), str(TESTS)]), **(env or {}))
    env.pop("ICNN_TORCH_ASSUME_YES", None)
    command = blocking_command([script, *args], blocked) if blocked else \
        [sys.executable, str(script), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


TINY = dict(subjects_list="['S1']", rois_list="['VC', 'V1']", network="'Tiny'",
            layers="['conv', 'fc']", num_voxel="10", units_per_chunk="300",
            encoder="__import__('_decoding_helpers').tiny_encoder")


@pytest.fixture(scope="module")
def tiny_project(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    _images_and_fmri(root, size=24)
    script = _script_copy(root, SCRIPT.read_text(), **TINY)
    return root, script


def _tree_arrays(root: Path) -> dict:
    tree = root / "data" / "decodedfeatures_from_fmri"
    return {str(p.relative_to(tree)): store_features.load_feat(p) for p in sorted(tree.rglob("*.mat"))}


def _chunk_arrays(root: Path) -> dict:
    chunks = root / "data" / "feature_decoders"
    return {str(p.relative_to(chunks)): predict.read_chunk(p, ("prediction", "y_mean"))
            for p in sorted(chunks.rglob("chunk-*.h5"))}


def test_help_is_fast_and_imports_no_torch():
    proc = subprocess.run([sys.executable, "-X", "importtime", str(SCRIPT), "--help"],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0 and "--units-per-chunk" in proc.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
    assert not {"torch", "bdpy", "h5py", "fastl2lir"} & imported
    # the defaults shown are the script's values, as the figure scripts show theirs
    help_text = " ".join(proc.stdout.split())
    assert "L2 regularisation (script: 100)" in help_text
    assert "voxels selected per unit (script: 500)" in help_text
    assert "subjects (script: S1,S2,S3)" in help_text and "(script: conv1_1,conv1_2," in help_text
    assert "default: alpha" not in help_text


def test_misspelled_constant_stops_with_the_closest_name(tmp_path):
    """A constant that is no setting stops the script before anything runs, naming the
    setting it resembles; helper values of one's own start with '_'."""
    text = SCRIPT.read_text()
    typo = _script_copy(tmp_path, text, subject_list="['S1']")
    proc = _run(typo, tmp_path, "--help")
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "error: decode_features.py defines subject_list (did you mean subjects_list?), which "
        "is not a setting of this script; a helper value of your own: start its name with '_'"]
    helper = _script_copy(tmp_path, text, _my_subjects="['S1']",
                          subjects_list="_my_subjects")
    proc = _run(helper, tmp_path, "--help")
    assert proc.returncode == 0 and "subjects (script: S1)" in " ".join(proc.stdout.split())


def test_without_bdpy_or_fastl2lir_one_line_and_status_1(tmp_path):
    """Where the decoding extra cannot be imported, decode_features.py says so in one line
    (its --help still answers)."""
    for blocked in (EXTRA, ("fastl2lir",)):
        proc = _run(SCRIPT, tmp_path, "--subjects", "S1", blocked=blocked)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 1 and proc.stdout == ""
        assert lines[:-1] == [
            f"error: decode_features.py needs bdpy and fastl2lir (not importable here: "
            f"{', '.join(blocked)}): pip install -e '.[decoding]'"], proc.stderr
        assert lines[-1] == f"blocked imports attempted: {sorted(blocked)}"
    proc = _run(SCRIPT, tmp_path, "--help", blocked=EXTRA)
    assert proc.returncode == 0 and "--units-per-chunk" in proc.stdout


_IMPORT_ALL = """
import importlib, pkgutil
import icnn_torch
names = [m.name for m in pkgutil.walk_packages(icnn_torch.__path__, "icnn_torch.")
         if not m.name.startswith("icnn_torch.decoding")]
for name in names:
    importlib.import_module(name)
print(len(names), "modules")
"""


def test_nothing_outside_decoding_imports_the_extra(tmp_path):
    """Every module of the package but icnn_torch.decoding imports, and a figure script's
    --help runs, where bdpy and fastl2lir cannot be imported, and none tries to (the
    figure scripts' reconstructions run so too: see the end-to-end tests below)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(blocking_command(["-c"], code=_IMPORT_ALL), env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert int(proc.stdout.split()[0]) > 40  # the walk found the package's modules
    assert proc.stderr.strip().splitlines()[-1] == "blocked imports attempted: []"
    script = REPO / "1_reconstruct_natural_image.py"
    proc = _run(script, tmp_path, "--help", blocked=EXTRA)
    assert proc.returncode == 0 and "--iterations" in proc.stdout
    assert proc.stderr.strip().splitlines()[-1] == "blocked imports attempted: []"


def _serve_fmri(root: Path, seed: int = 7) -> dict:
    """BData bytes of S1's two files (random voxels; 3 training, 2 test images)."""
    rng = np.random.default_rng(seed)
    folder = root / "served"
    folder.mkdir()
    bodies = {}
    for kind, labels in (("training", TRAIN[:3]), ("test", TEST[:2])):
        order = trials(labels, 2, rng)
        path = write_bdata(folder / f"{kind}.h5", rng.standard_normal((len(order), 48)), order)
        bodies[kind] = path.read_bytes()
    return bodies


def test_missing_fmri_is_asked_for_through_the_download_layer(tmp_path):
    """No fMRI and no terminal: one line naming the files and the fix (this command with
    --yes), no request; with --yes the published files are fetched by their figshare ids
    (the loopback server) and the run goes on."""
    from _dl_server import FakeRemote
    script = _script_copy(tmp_path, SCRIPT.read_text(), subjects_list="['S1']")
    server = FakeRemote().start()
    try:
        env = {"ICNN_TORCH_FIGSHARE_FILES": f"{server.url}/files"}
        proc = _run(script, tmp_path, "--stages", "accuracy", env=env)
        assert proc.returncode == 1 and server.requests == []
        lines = proc.stderr.strip().splitlines()
        training = tmp_path / "data" / "fmri" / fmri.fmri_file_name("S1", "training")
        assert len(lines) == 1 and lines[0].startswith(
            f"error: 2 files are missing (first: {training.name} -> {training} (figshare file "
            f"14830643; size unknown)). (not asking: standard input is not a terminal)")
        assert lines[0].endswith(f"Download with: python {script} --stages accuracy --yes")
        for kind, body in _serve_fmri(tmp_path).items():
            server.add_path(f"/files/{fmri.FMRI_FIGSHARE_IDS[('S1', kind)]}", body)
        proc = _run(script, tmp_path, "--stages", "accuracy", "--yes", "--quiet", env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "[1/2] " + training.name in proc.stderr and "accuracy: skipped" in proc.stdout
        assert training.read_bytes() == (tmp_path / "served" / "training.h5").read_bytes()
    finally:
        server.stop()


def test_two_processes_write_the_same_files_as_one(tiny_project, tmp_path):
    """The chunk jobs of one project split over two ranks (RANK/WORLD_SIZE, as torchrun
    sets them; rank 1 waits for rank 0's features) give the same chunk files and tree
    as one process."""
    root, script = tiny_project
    one = _run(script, root, "--quiet")
    assert one.returncode == 0, one.stdout[-2000:] + one.stderr[-2000:]
    assert "decoding accuracy" in one.stdout and "S1       V1     fc" in one.stdout
    split_root = tmp_path / "split"
    shutil.copytree(root / "data" / "fmri", split_root / "data" / "fmri")
    shutil.copytree(root / "data" / "images", split_root / "data" / "images")
    env = dict(os.environ, ICNN_TORCH_ROOT=str(split_root), WORLD_SIZE="2",
               PYTHONPATH=os.pathsep.join([str(REPO), str(TESTS)]))
    procs = [subprocess.Popen([sys.executable, str(script), "--quiet"],
                              env=dict(env, RANK=str(r)), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
             for r in (0, 1)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-2000:] for o in outputs)
    assert "for rank 1/2" in outputs[1] and "for rank 0/2" in outputs[0]
    jobs = {int(m) for o in outputs for m in re.findall(r"(\d+) for rank", o)}
    assert sum(int(re.search(r"(\d+) for rank", o).group(1)) for o in outputs) == \
        int(re.search(r"decode: (\d+) chunk jobs", outputs[0]).group(1)) and jobs
    a, b = _chunk_arrays(root), _chunk_arrays(split_root)
    assert a.keys() == b.keys() and len(a) == 2 * (4 + 1)  # (1024 conv + 10 fc units) x 2 ROIs
    for name in a:
        assert np.array_equal(a[name]["prediction"], b[name]["prediction"]), name
    ta, tb = _tree_arrays(root), _tree_arrays(split_root)
    assert ta.keys() == tb.keys() and len(ta) == 2 * 2 * len(TEST)
    assert all(np.array_equal(ta[k], tb[k]) for k in ta)
    assert ta["natural/Tiny/conv/S1/VC/natural-Tiny-conv-S1-VC-Img0001.mat"].shape == (4, 16, 16)
    # a rerun finds everything done
    again = _run(script, root, "--quiet", "--stages", "decode")
    assert again.returncode == 0 and "10 chunk(s) already done" in again.stdout


def test_user_errors_are_one_line(tiny_project, tmp_path):
    """A missing image, an ROI the file lacks, a features file of another encoder: one
    ``error:`` line each, exit status 1, nothing half-written."""
    root, script = tiny_project
    bad = tmp_path / "bad"
    shutil.copytree(root / "data" / "fmri", bad / "data" / "fmri")
    shutil.copytree(root / "data" / "images", bad / "data" / "images")
    missing = next((bad / "data/images/training").glob(f"{TRAIN[5]}.*"))
    missing.unlink()
    proc = _run(script, bad, "--quiet")
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and TRAIN[5] in last and "on request" in last
    assert not (bad / "data" / "features").exists()
    proc = _run(script, bad, "--quiet", "--rois", "LOC")
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1].startswith(
        "error: ") and "has no ROI 'LOC'" in proc.stderr
    # the features of the tiny project were made with seed 0; seed 1 is another encoder
    seed_1 = "lambda d: __import__('_decoding_helpers').tiny_encoder(d, seed=1)"
    other = _script_copy(tmp_path, script.read_text(), encoder=seed_1)
    proc = _run(other, root, "--quiet")
    assert proc.returncode == 1
    assert "differ in weights_sha1" in proc.stderr.strip().splitlines()[-1]
    assert not list(root.rglob("*.tmp*"))


# --------------------------------------------------------------------------- end to end

E2E_LAYERS = ["conv5_4", "fc8"]


@pytest.fixture(scope="module")
def vgg_project(tmp_path_factory):
    """A project tree with random VGG19 weights, the image mean, a std file for the two
    layers, S1's fMRI and the images (224 px)."""
    from caffe_writer import random_vgg19_layers, write_caffemodel
    from icnn_torch.models import load_vgg19
    from icnn_torch.utils import estimate_cnn_feat_std, get_cnn_features
    root = tmp_path_factory.mktemp("vgg")
    vgg_path = root / "net" / layout.VGG19_CAFFEMODEL_RELPATH
    vgg_path.parent.mkdir(parents=True)
    write_caffemodel(vgg_path, random_vgg19_layers(seed=0), fmt="v1", legacy_shapes=True,
                     pad_to=VGG19_SIZE)  # the published size, which the downloader checks
    _images_and_fmri(root, size=224, seed=1)
    data_dir = root / "data"
    mean = np.stack([np.full((256, 256), m) for m in (104.0, 116.7, 122.7)])
    np.save(layout.image_mean_path(data_dir), mean)
    net = load_vgg19(vgg_path, device="cpu")  # also writes the converted-weights cache
    import PIL.Image
    img = np.asarray(PIL.Image.open(next((data_dir / "images/test").glob("*.jpg"))), np.float32)
    feats = get_cnn_features(net, img, E2E_LAYERS)
    scipy.io.savemat(layout.feat_std_path(data_dir, "VGG19"),
                     {l: np.float32([[estimate_cnn_feat_std(f)]]) for l, f in feats.items()})
    return root


def _script2_copy(folder: Path, features_dir: str) -> Path:
    text = (REPO / "2_reconstruct_natural_image_without_DGN.py").read_text()
    text = re.sub(r"subjects_list = \[.*?\]", "subjects_list = ['S1']", text)
    text = re.sub(r"image_label_list = \[.*?\]", "image_label_list = ['Img0001']", text)
    text, n = re.subn(r"layers = \[.*?\](  # all conv and fc layers)?",
                      f"layers = {E2E_LAYERS!r}\ndecoded_features_dir = {features_dir!r}",
                      text, flags=re.S)
    assert n == 1
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "2_reconstruct_natural_image_without_DGN.py"
    path.write_text(text)
    return path


def _reconstruct(script: Path, root: Path):
    """A figure script's run, in a Python where bdpy and fastl2lir cannot be imported."""
    proc = _run(script, root, "--iterations", "1", "--snapshot-every", "0", "--quiet",
                blocked=EXTRA)
    assert proc.stderr.strip().splitlines()[-1] == "blocked imports attempted: []"
    out = root / "results" / script.stem / "S1" / "VC" / "recon_img-Img0001.mat"
    return proc, out


@pytest.fixture(scope="module")
def decoded_vgg(vgg_project):
    """decode_features.py (defaults but one subject, two layers, 20 voxels per unit) into
    the tree at data/decodedfeatures, where today's pipeline reads."""
    script = _script_copy(vgg_project, SCRIPT.read_text(), subjects_list="['S1']",
                          layers=repr(E2E_LAYERS), num_voxel="20",
                          decoded_features_dir="'./data/decodedfeatures'")
    proc = _run(script, vgg_project, "--quiet")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_end_to_end_images_to_tree_to_reconstruction(vgg_project, decoded_vgg):
    """images -> VGG19 features -> FastL2LiR decoders -> the .mat tree (shapes and dtype of
    the published files) -> a copy of script 2 reconstructs Img0001 from it."""
    tree_file = layout.decoded_feature_path(vgg_project / "data", "natural", "VGG19", "conv5_4",
                                          "S1", "VC", "Img0001")
    raw = scipy.io.loadmat(tree_file)["feat"]
    assert raw.dtype == np.float32 and raw.shape == (512, 14, 14)
    fc8 = layout.decoded_feature_path(vgg_project / "data", "natural", "VGG19", "fc8", "S1",
                                    "VC", "Img0003")
    assert scipy.io.loadmat(fc8)["feat"].shape == (1, 1000)
    assert store_features.load_feat(fc8).shape == (1000,)
    store = FeatureStore(vgg_project / "data/features/VGG19/training.h5")
    assert store.labels == TRAIN and store.record["network"] == "VGG19"
    csv = (vgg_project / "data/decodedfeatures/natural/VGG19/decoding_accuracy.csv").read_text()
    assert csv.splitlines()[0].startswith("subject,roi,layer,n_items,n_units,profile_correlation")
    assert "S1,VC,conv5_4,3,100352," in csv
    script = _script2_copy(vgg_project / "copy", "./data/decodedfeatures")
    proc, out = _reconstruct(script, vgg_project)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    img = scipy.io.loadmat(out)["recon_img"]
    assert img.shape == (224, 224, 3) and np.isfinite(img).all()


def test_script_reads_the_tree_named_by_its_constant(vgg_project, decoded_vgg, tmp_path):
    """The same tree elsewhere, named by the script copy's decoded_features_dir constant,
    in a project whose data/decodedfeatures does not exist."""
    other = tmp_path / "project"
    (other / "data").mkdir(parents=True)
    os.symlink(vgg_project / "net", other / "net")
    for name in (layout.IMAGE_MEAN_FILENAME, layout.FEAT_STD_FILENAMES["VGG19"]):
        shutil.copy(vgg_project / "data" / name, other / "data" / name)
    shutil.copytree(vgg_project / "data" / "decodedfeatures", other / "our_tree")
    script = _script2_copy(other / "copy", str(other / "our_tree"))
    proc, out = _reconstruct(script, other)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert scipy.io.loadmat(out)["recon_img"].shape == (224, 224, 3)
