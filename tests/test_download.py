"""Downloader against a real HTTP server on 127.0.0.1 (figshare API, files by id, Range)."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from icnn_torch import download as dl
from icnn_torch.data import (MissingDataError, decoded_feature_path, load_fc7_upper_bound,
                             load_feat)

from _data_matlab import write_mat_v5
from _dl_server import FakeRemote

SHARED = Path(__file__).resolve().parents[2] / "shared" / "original"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 5.0
IMAGERY_LABELS = ("Img0001", "Img0005", "Img0009", "Img0008", "Img0003", "Img0010", "Img0021",
                  "Img0022", "Img0020")


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def random_bytes(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


@pytest.fixture
def remote(monkeypatch):
    server = FakeRemote().start()
    monkeypatch.setenv("ICNN_TORCH_FIGSHARE_API", f"{server.url}/api")
    monkeypatch.setenv("ICNN_TORCH_FIGSHARE_FILES", f"{server.url}/files")
    monkeypatch.setenv("ICNN_TORCH_VGG19_URL", f"{server.url}/vgg/VGG_ILSVRC_19_layers.caffemodel")
    monkeypatch.setenv("ICNN_TORCH_DEEPSIM_URL", f"{server.url}/lmb/release_deepsim_v0.zip")
    monkeypatch.setenv("ICNN_TORCH_FC7_BOUNDS_URL", f"{server.url}/raw/fc7.txt")
    monkeypatch.delenv("ICNN_TORCH_ASSUME_YES", raising=False)
    monkeypatch.setattr(dl, "RETRY_WAIT", 0.01)
    try:
        yield server
    finally:
        server.stop()


def feature_zip(tmp_path: Path, image_type: str, network: str, layer: str, subject: str,
                labels=("Img0001", "Img0002"), rois=("VC", "V1"), layout: str = "full",
                seed: int = 0) -> tuple:
    """Zip bytes of decoded features plus the arrays, members laid out as ``layout``."""
    rng = np.random.default_rng(seed)
    arrays = {}
    buffer = io.BytesIO()
    work = tmp_path / f"zipwork-{layer}-{subject}-{layout}"
    work.mkdir(parents=True)
    prefix = {"full": f"decodedfeatures/{image_type}/{network}/{layer}/{subject}/",
              "from_image_type": f"{image_type}/{network}/{layer}/{subject}/",
              "roi_only": "",
              "wrapped": f"decodedfeatures-{image_type}-{network}-{layer}-{subject}/"}[layout]
    with zipfile.ZipFile(buffer, "w") as archive:
        if layout == "full":
            archive.writestr("decodedfeatures/", b"")  # a folder entry, as zip tools write
        for roi in rois:
            for label in labels:
                name = f"{image_type}-{network}-{layer}-{subject}-{roi}-{label}.mat"
                feat = rng.standard_normal((2, 3, 3)).astype(np.float32)
                write_mat_v5(work / name, {"feat": feat})
                archive.write(work / name, prefix + f"{roi}/{name}")
                arrays[(roi, label)] = feat
    return buffer.getvalue(), arrays


# --------------------------------------------------------------------------- fetch

def test_good_file_lands_with_md5_verified(remote, tmp_path):
    body = random_bytes(300_000)
    remote.add_figshare_file("estimated_vgg19_cnn_feat_std.mat", 13004384, body)
    path = dl.download_figshare_file("estimated_vgg19_cnn_feat_std.mat", tmp_path,
                                     progress=False, timeout=TIMEOUT)
    assert path == tmp_path / "estimated_vgg19_cnn_feat_std.mat"
    assert path.read_bytes() == body
    assert dl.file_md5(path) == md5(body)
    assert not list(tmp_path.glob("*.part"))
    assert [r[0] for r in remote.requests] == ["/api/articles/7033577/files", "/files/13004384"]


def test_corrupted_file_is_rejected_and_removed(remote, tmp_path):
    body = random_bytes(100_000, seed=1)
    remote.add_figshare_file("ilsvrc_2012_mean.npy", 13004387, body, mode="corrupt")
    with pytest.raises(dl.ChecksumError) as info:
        dl.download_figshare_file("ilsvrc_2012_mean.npy", tmp_path, progress=False,
                                  timeout=TIMEOUT)
    message = str(info.value)
    served = bytes((b + 1) % 256 for b in body)
    assert "ilsvrc_2012_mean.npy" in message
    assert md5(body) in message and md5(served) in message
    assert "deleted" in message
    assert not (tmp_path / "ilsvrc_2012_mean.npy").exists()
    assert not (tmp_path / "ilsvrc_2012_mean.npy.part").exists()


def test_cut_transfer_resumes_with_range_and_completes(remote, tmp_path):
    body = random_bytes(250_001, seed=2)
    remote.add_path("/blob", body, mode="cut_once")
    dest = dl.fetch(f"{remote.url}/blob", tmp_path / "blob.bin", md5=md5(body),
                    progress=False, timeout=TIMEOUT, retries=2)
    assert dest.read_bytes() == body
    requests = remote.requests_for("/blob")
    assert len(requests) == 2
    assert requests[0][1] is None
    assert requests[1][1] == f"bytes={len(body) // 2}-"


def test_cut_transfer_keeps_part_file_and_the_next_run_resumes(remote, tmp_path):
    body = random_bytes(200_000, seed=3)
    remote.add_path("/blob", body, mode="cut_always")  # cut whenever no Range is sent
    dest = tmp_path / "blob.bin"
    with pytest.raises(dl.DownloadError, match="resumes"):
        dl.fetch(f"{remote.url}/blob", dest, md5=md5(body), progress=False, timeout=TIMEOUT,
                 retries=0)
    part = tmp_path / "blob.bin.part"
    assert part.stat().st_size == len(body) // 2 and not dest.exists()
    dl.fetch(f"{remote.url}/blob", dest, md5=md5(body), progress=False, timeout=TIMEOUT,
             retries=0)
    assert dest.read_bytes() == body and not part.exists()
    assert remote.requests_for("/blob")[-1][1] == f"bytes={len(body) // 2}-"


def test_stalled_transfer_times_out_and_resumes(remote, tmp_path):
    body = random_bytes(100_000, seed=12)
    remote.add_path("/blob", body, mode="stall_once")
    remote.stall_seconds = 1.5
    dest = dl.fetch(f"{remote.url}/blob", tmp_path / "blob.bin", md5=md5(body), progress=False,
                    timeout=0.3, retries=1)
    assert dest.read_bytes() == body
    assert [r[1] for r in remote.requests_for("/blob")] == [None, f"bytes={len(body) // 2}-"]


def test_server_ignoring_range_restarts_the_file(remote, tmp_path):
    body = random_bytes(50_000, seed=4)
    remote.add_path("/blob", body, mode="ignore_range")
    (tmp_path / "blob.bin.part").write_bytes(b"stale bytes from some other file")
    dest = dl.fetch(f"{remote.url}/blob", tmp_path / "blob.bin", md5=md5(body),
                    progress=False, timeout=TIMEOUT)
    assert dest.read_bytes() == body
    assert remote.requests_for("/blob")[0][1] == "bytes=32-"


def test_existing_verified_file_is_not_fetched_again(remote, tmp_path):
    body = random_bytes(10_000, seed=5)
    remote.add_path("/blob", body)
    dest = tmp_path / "blob.bin"
    dest.write_bytes(body)
    dl.fetch(f"{remote.url}/blob", dest, md5=md5(body), progress=False, timeout=TIMEOUT)
    assert remote.requests_for("/blob") == []
    dest.write_bytes(b"damaged")
    dl.fetch(f"{remote.url}/blob", dest, md5=md5(body), progress=False, timeout=TIMEOUT)
    assert dest.read_bytes() == body and len(remote.requests_for("/blob")) == 1


def test_http_error_names_the_file_and_status(remote, tmp_path):
    with pytest.raises(dl.DownloadError, match="404"):
        dl.fetch(f"{remote.url}/nothing-here", tmp_path / "x.bin", progress=False,
                 timeout=TIMEOUT, retries=0)


# --------------------------------------------------------------------------- weights and bounds

def test_vgg19_size_check_and_download(remote, tmp_path, monkeypatch):
    body = random_bytes(120_000, seed=6)
    remote.add_path("/vgg/VGG_ILSVRC_19_layers.caffemodel", body)
    with pytest.raises(dl.ChecksumError, match=f"{len(body)} bytes, expected 574671192"):
        dl.download_vgg19(tmp_path, progress=False, timeout=TIMEOUT)
    assert not list(tmp_path.rglob("*.part"))
    monkeypatch.setattr(dl, "VGG19_SIZE", len(body))
    path = dl.download_vgg19(tmp_path, progress=False, timeout=TIMEOUT)
    assert path == tmp_path / "VGG_ILSVRC_19_layers" / "VGG_ILSVRC_19_layers.caffemodel"
    assert path.read_bytes() == body


def test_deepsim_generator_is_taken_from_the_release_zip(remote, tmp_path):
    fc7_generator, fc6_generator = random_bytes(40_000, seed=7), random_bytes(40_000, seed=8)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("release_deepsim_v0/fc6/generator.caffemodel", fc6_generator)
        archive.writestr("release_deepsim_v0/fc7/generator.caffemodel", fc7_generator)
        archive.writestr("release_deepsim_v0/fc7/generator.prototxt", b"name: 'gen'")
    remote.add_path("/lmb/release_deepsim_v0.zip", buffer.getvalue())
    net_dir = tmp_path / "net"
    path = dl.download_generator(net_dir, tmp_path / "data", progress=False, timeout=TIMEOUT)
    assert path == net_dir / "generator_for_inverting_fc7" / "generator.caffemodel"
    assert path.read_bytes() == fc7_generator
    assert sorted(p.name for p in path.parent.iterdir()) == ["generator.caffemodel"]


def test_fc7_bounds_from_the_raw_file(remote, tmp_path, monkeypatch):
    values = np.random.default_rng(9).integers(2, 7, 4096)
    body = " ".join(str(v) for v in values).encode() + b" "
    remote.add_path("/raw/fc7.txt", body)
    with pytest.raises(dl.ChecksumError, match=dl.FC7_BOUNDS_MD5):
        dl.download_fc7_bounds(tmp_path, progress=False, timeout=TIMEOUT)
    monkeypatch.setattr(dl, "FC7_BOUNDS_MD5", md5(body))
    path = dl.download_fc7_bounds(tmp_path, progress=False, timeout=TIMEOUT)
    assert path == tmp_path / "act_range" / "3x" / "fc7.txt"
    np.testing.assert_array_equal(load_fc7_upper_bound(path), values.astype(np.float32))


def test_fc7_bounds_md5_is_that_of_the_original_file():
    path = SHARED / "act_range" / "3x" / "fc7.txt"
    if not path.is_file():
        pytest.skip(f"{path} not available")
    assert dl.file_md5(path) == dl.FC7_BOUNDS_MD5


def test_kamitanilab_pytorch_files_as_alternative(remote, tmp_path, monkeypatch):
    vgg_state, gen_state = random_bytes(30_000, seed=10), random_bytes(30_000, seed=11)
    bounds = ("4 " * 4096).encode()
    vgg_zip, gen_zip = io.BytesIO(), io.BytesIO()
    with zipfile.ZipFile(vgg_zip, "w") as archive:
        archive.writestr("VGG_ILSVRC_19_layers/VGG_ILSVRC_19_layers.pt", vgg_state)
        archive.writestr("__MACOSX/VGG_ILSVRC_19_layers/._VGG_ILSVRC_19_layers.pt", b"meta")
    with zipfile.ZipFile(gen_zip, "w") as archive:
        archive.writestr("bvlc_reference_caffenet_generator_ILSVRC2012_Training/generator_relu7.pt",
                         gen_state)
        archive.writestr("bvlc_reference_caffenet_generator_ILSVRC2012_Training/act_range_3x.txt",
                         bounds)
    monkeypatch.setattr(dl, "KAMITANI_VGG19",
                        dataclasses.replace(dl.KAMITANI_VGG19, md5=md5(vgg_zip.getvalue())))
    monkeypatch.setattr(dl, "KAMITANI_GENERATOR",
                        dataclasses.replace(dl.KAMITANI_GENERATOR, md5=md5(gen_zip.getvalue())))
    remote.add_path(f"/files/{dl.KAMITANI_VGG19.id}", vgg_zip.getvalue())
    remote.add_path(f"/files/{dl.KAMITANI_GENERATOR.id}", gen_zip.getvalue())
    net_dir, data_dir = tmp_path / "net", tmp_path / "data"
    fetched = dl.ensure_files(names=["vgg19", "generator", "fc7_bounds"], data_dir=data_dir,
                              net_dir=net_dir, pytorch=True, assume_yes=True, progress=False,
                              timeout=TIMEOUT, stderr=io.StringIO())
    assert fetched == ["vgg19", "generator"]  # the generator bundle brought the bounds
    assert (net_dir / "VGG_ILSVRC_19_layers" / "VGG_ILSVRC_19_layers.pt").read_bytes() == vgg_state
    assert (net_dir / "generator_for_inverting_fc7" / "generator.pt").read_bytes() == gen_state
    np.testing.assert_array_equal(load_fc7_upper_bound(data_dir / "act_range/3x/fc7.txt"),
                                  np.full(4096, 4, np.float32))
    assert not list(net_dir.rglob("*.zip"))
    assert [r[0] for r in remote.requests] == [f"/files/{dl.KAMITANI_VGG19.id}",
                                               f"/files/{dl.KAMITANI_GENERATOR.id}"]


def test_pytorch_zip_with_unexpected_contents_is_reported(remote, tmp_path, monkeypatch):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.pt", b"1")
        archive.writestr("b.pt", b"2")
    monkeypatch.setattr(dl, "KAMITANI_VGG19",
                        dataclasses.replace(dl.KAMITANI_VGG19, md5=md5(buffer.getvalue())))
    remote.add_path(f"/files/{dl.KAMITANI_VGG19.id}", buffer.getvalue())
    with pytest.raises(dl.DownloadError, match="a.pt, b.pt"):
        dl.download_vgg19(tmp_path, pytorch=True, progress=False, timeout=TIMEOUT)


# --------------------------------------------------------------------------- zips

@pytest.mark.parametrize("layout", ["full", "from_image_type", "roi_only", "wrapped"])
def test_zip_unpacks_to_the_original_layout(remote, tmp_path, layout):
    name = "decodedfeatures-color_shape-VGG19-conv3_4-S2.zip"
    body, arrays = feature_zip(tmp_path, "color_shape", "VGG19", "conv3_4", "S2", layout=layout)
    remote.add_figshare_file(name, 13000001, body)
    data_dir = tmp_path / "data"
    folder = dl.download_figshare_file(name, data_dir, progress=False, timeout=TIMEOUT)
    assert folder == data_dir / "decodedfeatures" / "color_shape" / "VGG19" / "conv3_4" / "S2"
    for (roi, label), feat in arrays.items():
        path = decoded_feature_path(data_dir, "color_shape", "VGG19", "conv3_4", "S2", roi, label)
        np.testing.assert_array_equal(load_feat(path), feat)
    assert sorted(p.name for p in folder.iterdir()) == ["V1", "VC"]
    # no zip, no temporary folders left behind
    assert sorted(p.name for p in data_dir.iterdir()) == ["decodedfeatures", dl.MANIFEST_FILENAME]


def test_zip_with_a_foreign_layout_is_refused(tmp_path):
    data_dir = tmp_path / "data"
    for members in (["notes/readme.txt", "features/x.mat"], ["../evil.mat"]):
        zip_path = tmp_path / "decodedfeatures-natural-VGG19-fc7-S1.zip"
        with zipfile.ZipFile(zip_path, "w") as archive:
            for member in members:
                archive.writestr(member, b"0")
        with pytest.raises(dl.DownloadError):
            dl.unpack_decoded_features_zip(zip_path, data_dir)
        assert not (data_dir / "decodedfeatures").exists()
        assert not [p for p in data_dir.iterdir() if p.name.startswith(".unpack")]


def test_unpacking_into_an_existing_subject_folder_merges(tmp_path):
    data_dir = tmp_path / "data"
    body1, arrays1 = feature_zip(tmp_path, "natural", "VGG19", "fc8", "S3", rois=("VC",), seed=1)
    body2, arrays2 = feature_zip(tmp_path / "b", "natural", "VGG19", "fc8", "S3", rois=("V4",),
                                 seed=2)
    for body in (body1, body2):
        zip_path = tmp_path / "decodedfeatures-natural-VGG19-fc8-S3.zip"
        zip_path.write_bytes(body)
        dl.unpack_decoded_features_zip(zip_path, data_dir)
    for (roi, label), feat in {**arrays1, **arrays2}.items():
        path = decoded_feature_path(data_dir, "natural", "VGG19", "fc8", "S3", roi, label)
        np.testing.assert_array_equal(load_feat(path), feat)


# --------------------------------------------------------------------------- manifest

def test_manifest_is_cached_and_used_when_the_server_is_gone(remote, tmp_path, monkeypatch):
    remote.add_figshare_file("estimated_vgg19_cnn_feat_std.mat", 13004384, b"abc")
    remote.add_figshare_file("decodedfeatures-natural-VGG19-fc6-S1.zip", 13004001, b"defg")
    first = dl.load_manifest(tmp_path, timeout=TIMEOUT)
    assert first["decodedfeatures-natural-VGG19-fc6-S1.zip"] == dl.FigshareFile(
        "decodedfeatures-natural-VGG19-fc6-S1.zip", 13004001, 4, md5(b"defg"))
    assert remote.requests[0][0] == "/api/articles/7033577/files"
    assert (tmp_path / dl.MANIFEST_FILENAME).is_file()
    remote.stop()
    monkeypatch.setenv("ICNN_TORCH_FIGSHARE_API", "http://127.0.0.1:9/unreachable")
    assert dl.load_manifest(tmp_path, timeout=TIMEOUT) == first
    with pytest.raises(dl.DownloadError, match="figshare file list"):
        dl.load_manifest(tmp_path, refresh=True, timeout=TIMEOUT)
    assert dl.load_manifest(tmp_path, timeout=TIMEOUT) == first  # failed refresh kept cache


def test_unknown_name_is_reported(remote, tmp_path):
    remote.add_figshare_file("ilsvrc_2012_mean.npy", 13004387, b"x")
    with pytest.raises(dl.DownloadError, match="not a file of figshare article 7033577"):
        dl.download_figshare_file("decodedfeatures-natural-VGG19-pool1-S2.zip", tmp_path,
                                  progress=False, timeout=TIMEOUT)


# --------------------------------------------------------------------------- ensure_files

def _imagery_server(remote, tmp_path):
    """Serve what script 7 needs for S1, layers conv1_1 and fc7; return bodies."""
    bodies = {}
    for number, layer in enumerate(("conv1_1", "fc7")):
        name = f"decodedfeatures-imagery-VGG19_leaky-{layer}-S1.zip"
        bodies[name] = feature_zip(tmp_path, "imagery", "VGG19_leaky", layer, "S1",
                                   labels=IMAGERY_LABELS, rois=("VC",), seed=number)[0]
        remote.add_figshare_file(name, 13001015 + number, bodies[name])
    for file_id, name in ((13004381, "estimated_vgg19LeakyReluAvePool_cnn_feat_std.mat"),
                          (13004387, "ilsvrc_2012_mean.npy")):
        bodies[name] = random_bytes(5_000, seed=file_id)
        remote.add_figshare_file(name, file_id, bodies[name])
    return bodies


def test_ensure_files_fetches_only_what_is_missing(remote, tmp_path):
    bodies = _imagery_server(remote, tmp_path)
    data_dir, net_dir = tmp_path / "data", tmp_path / "net"
    # already present: VGG19 weights, the mean, the conv1_1 features
    vgg = net_dir / "VGG_ILSVRC_19_layers" / "VGG_ILSVRC_19_layers.caffemodel"
    vgg.parent.mkdir(parents=True)
    vgg.write_bytes(b"weights")
    data_dir.mkdir()
    (data_dir / "ilsvrc_2012_mean.npy").write_bytes(bodies["ilsvrc_2012_mean.npy"])
    conv_zip = tmp_path / "decodedfeatures-imagery-VGG19_leaky-conv1_1-S1.zip"
    conv_zip.write_bytes(bodies[conv_zip.name])
    dl.unpack_decoded_features_zip(conv_zip, data_dir)

    log = io.StringIO()
    fetched = dl.ensure_files("7_reconstruct_imagined_image", subjects=["S1"],
                              layers=["conv1_1", "fc7"], data_dir=data_dir, net_dir=net_dir,
                              assume_yes=True, progress=False, timeout=TIMEOUT, stderr=log)
    assert fetched == ["estimated_vgg19LeakyReluAvePool_cnn_feat_std.mat",
                       "decodedfeatures-imagery-VGG19_leaky-fc7-S1.zip"]
    assert [r[0] for r in remote.requests] == ["/api/articles/7033577/files", "/files/13004381",
                                               "/files/13001016"]
    for label in IMAGERY_LABELS:
        assert decoded_feature_path(data_dir, "imagery", "VGG19_leaky", "fc7", "S1", "VC",
                                    label).is_file()
    # everything present now: no network at all, even with the server gone
    remote.stop()
    assert dl.ensure_files("7", subjects="S1", layers="conv1_1,fc7", data_dir=data_dir,
                           net_dir=net_dir, assume_yes=None, stdin=io.StringIO(),
                           timeout=TIMEOUT) == []


def test_non_tty_without_assume_yes_raises_with_the_command(remote, tmp_path):
    _imagery_server(remote, tmp_path)
    for assume_yes in (None, False):
        with pytest.raises(MissingDataError) as info:
            dl.ensure_files("7_reconstruct_imagined_image.py", subjects=["S1"], layers=["fc7"],
                            data_dir=tmp_path / "d", net_dir=tmp_path / "n",
                            assume_yes=assume_yes, stdin=io.StringIO("y\n"), timeout=TIMEOUT)
        message = str(info.value)
        assert info.value.command == (
            f"python -m icnn_torch.download --script 7_reconstruct_imagined_image --subjects S1 "
            f"--layers fc7 --data-dir {tmp_path / 'd'} --net-dir {tmp_path / 'n'}")
        assert info.value.command in message
        assert "decodedfeatures-imagery-VGG19_leaky-fc7-S1.zip" in message
        assert "vgg19 (574.7 MB)" in message
    assert remote.requests == []


def test_environment_variable_can_say_yes(remote, tmp_path, monkeypatch):
    remote.add_figshare_file("ilsvrc_2012_mean.npy", 13004387, b"mean bytes")
    monkeypatch.setenv("ICNN_TORCH_ASSUME_YES", "1")
    assert dl.ensure_files(names=["mean"], data_dir=tmp_path, stdin=io.StringIO(),
                           progress=False, timeout=TIMEOUT, stderr=io.StringIO()) == \
        ["ilsvrc_2012_mean.npy"]


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("answer", ["n\n", "\n", "y\n"])
def test_terminal_is_asked_once(remote, tmp_path, answer):
    remote.add_figshare_file("estimated_vgg19_cnn_feat_std.mat", 13004384, b"std")
    remote.add_figshare_file("estimated_vgg19LeakyReluAvePool_cnn_feat_std.mat", 13004381, b"l")
    prompt = io.StringIO()
    kwargs = dict(names=["std"], data_dir=tmp_path, stdin=FakeTerminal(answer), stderr=prompt,
                  progress=False, timeout=TIMEOUT)
    if answer == "y\n":
        assert dl.ensure_files(**kwargs) == list(dl.FEAT_STD_FILENAMES.values())
    else:
        with pytest.raises(MissingDataError, match="estimated_vgg19_cnn_feat_std.mat"):
            dl.ensure_files(**kwargs)
        assert remote.requests == []
    assert prompt.getvalue().count("[y/N]") == 1


# --------------------------------------------------------------------------- script table

ALL_19 = ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv3_4",
          "conv4_1", "conv4_2", "conv4_3", "conv4_4", "conv5_1", "conv5_2", "conv5_3", "conv5_4",
          "fc6", "fc7", "fc8"]


def test_files_for_script_follow_the_spec_table():
    one = dl.files_for_script("1_reconstruct_natural_image")
    assert one[:5] == ["vgg19", "generator", "fc7_bounds", "ilsvrc_2012_mean.npy",
                       "estimated_vgg19_cnn_feat_std.mat"]
    assert one[5:] == [f"decodedfeatures-natural-VGG19-{layer}-{s}.zip"
                       for s in ("S1", "S2", "S3") for layer in ALL_19]
    three = dl.files_for_script("3", subjects="S2")
    assert three[3:] == [f"decodedfeatures-natural-VGG19-{layer}-S2.zip" for layer in ALL_19[:-1]]
    assert "generator" not in three
    seven = dl.files_for_script("7_reconstruct_imagined_image.py", subjects=["S3"], layers=["fc8"])
    assert seven == ["vgg19", "ilsvrc_2012_mean.npy",
                     "estimated_vgg19LeakyReluAvePool_cnn_feat_std.mat",
                     "decodedfeatures-imagery-VGG19_leaky-fc8-S3.zip"]
    assert dl.files_for_script("6", layers="pool1", subjects="S1")[-1] == \
        "decodedfeatures-alphabet-VGG19-pool1-S1.zip"
    with pytest.raises(ValueError, match="S1 only"):
        dl.files_for_script("6", layers="pool1")
    with pytest.raises(ValueError, match="unknown ROI"):
        dl.files_for_script("5", rois="V9")
    with pytest.raises(ValueError, match="unknown script"):
        dl.files_for_script("8_nothing")


def test_every_needed_figshare_name_exists_in_the_real_file_list():
    path = SHARED / "file_list.csv"
    if not path.is_file():
        pytest.skip(f"{path} not available")
    with open(path, newline="") as f:
        names = {row[0] for row in csv.reader(f) if row}
    needed = set()
    for script in dl.SCRIPTS:
        needed |= set(dl.files_for_script(script)) - {"vgg19", "generator", "fc7_bounds"}
    pools = {f"decodedfeatures-{it}-{net}-{pool}-S1.zip" for it, net in
             (("natural", "VGG19"), ("color_shape", "VGG19"), ("alphabet", "VGG19"),
              ("imagery", "VGG19_leaky")) for pool in dl.POOL_LAYERS}
    for script, image_type in (("2", "natural"), ("4", "color_shape"), ("6", "alphabet"),
                               ("7", "imagery")):
        pool_items = dl.files_for_script(script, subjects="S1", layers=dl.POOL_LAYERS)[3:]
        assert set(pool_items) == {n for n in pools if f"-{image_type}-" in n}
    needed |= pools
    assert needed <= names
    assert len(needed) == len(names) == 251  # every file of the article is reachable


# --------------------------------------------------------------------------- command line

def test_command_line_downloads_and_lists(remote, tmp_path):
    remote.add_figshare_file("estimated_vgg19_cnn_feat_std.mat", 13004384, b"std file")
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    data_dir = tmp_path / "data"
    command = [sys.executable, "-m", "icnn_torch.download", "--data-dir", str(data_dir),
               "--timeout", str(TIMEOUT)]
    done = subprocess.run(command + ["std"], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    # the second std file is not on this server: exit status 1 and a clear message
    assert done.returncode == 1, done.stderr
    assert "not a file of figshare article" in done.stderr
    assert (data_dir / "estimated_vgg19_cnn_feat_std.mat").read_bytes() == b"std file"
    listing = subprocess.run(command + ["--list"], env=env, cwd=tmp_path, capture_output=True,
                             text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.split("\t")[:3] == ["estimated_vgg19_cnn_feat_std.mat", "13004384", "8"]


def test_command_line_rejects_selection_without_script(tmp_path, capsys):
    with pytest.raises(SystemExit):
        dl.main(["--data-dir", str(tmp_path), "--subjects", "S1", "mean"])
    assert "--script" in capsys.readouterr().err


def test_command_line_without_anything_to_do(tmp_path, capsys):
    assert dl.main(["--data-dir", str(tmp_path)]) == 2
    assert "nothing to download" in capsys.readouterr().err
    (tmp_path / "ilsvrc_2012_mean.npy").write_bytes(b"x")
    assert dl.main(["--data-dir", str(tmp_path), "mean"]) == 0
    assert "present" in capsys.readouterr().err
