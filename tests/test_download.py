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

from icnn_torch import _util
from icnn_torch import download as dl
from icnn_torch.errors import ConfigError, DamagedFileError, MissingDataError
from icnn_torch.fetch import http as fetch_http
from icnn_torch.fetch import weights as fetch_weights
from icnn_torch.nets.tables import GENERATOR_PARAMETERS
from icnn_torch.run.advice import Context, fix_for, render
from icnn_torch.run.config import RunPlan, ScriptConfig, script_context
from icnn_torch.store import layout, published
from icnn_torch.store.features import load_feat
from icnn_torch.store.layout import decoded_feature_path
from icnn_torch.store.net_data import load_fc7_upper_bound

from _data_matlab import write_mat_v5
from _dl_server import FakeRemote

SHARED = Path(__file__).resolve().parents[2] / "shared" / "original"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 5.0
UNREACHABLE = "http://127.0.0.1:9/unreachable"
SHIPPED = published.published_files()
IMAGERY_LABELS = ("Img0001", "Img0005", "Img0009", "Img0008", "Img0003", "Img0010", "Img0021",
                  "Img0022", "Img0020")
ALL_19 = ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv3_4",
          "conv4_1", "conv4_2", "conv4_3", "conv4_4", "conv5_1", "conv5_2", "conv5_3", "conv5_4",
          "fc6", "fc7", "fc8"]
VGG_REL = Path("VGG_ILSVRC_19_layers", "VGG_ILSVRC_19_layers.caffemodel")


def md5(body: bytes) -> str:
    return hashlib.md5(body).hexdigest()


def random_bytes(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def script_path(number: str) -> Path:
    return next(PROJECT_ROOT.glob(f"{number}_*.py"))


def point_sources_at(monkeypatch, base: str) -> None:
    """Every remote source below ``base`` (the loopback server, or nowhere)."""
    monkeypatch.setenv("ICNN_TORCH_FIGSHARE_API", f"{base}/api")
    monkeypatch.setenv("ICNN_TORCH_FIGSHARE_FILES", f"{base}/files")
    monkeypatch.setenv("ICNN_TORCH_VGG19_URL", f"{base}/vgg/VGG_ILSVRC_19_layers.caffemodel")
    monkeypatch.setenv("ICNN_TORCH_DEEPSIM_URL", f"{base}/lmb/release_deepsim_v0.zip")
    monkeypatch.setenv("ICNN_TORCH_FC7_BOUNDS_URL", f"{base}/raw/fc7.txt")


@pytest.fixture
def remote(monkeypatch):
    """The loopback server for every source. The article's file list is the shipped one,
    with the id, size and md5 of each figshare file this server is given."""
    server = FakeRemote().start()
    point_sources_at(monkeypatch, server.url)
    monkeypatch.delenv("ICNN_TORCH_ASSUME_YES", raising=False)
    monkeypatch.delenv("ICNN_TORCH_ROOT", raising=False)
    monkeypatch.setattr(fetch_http, "RETRY_WAIT", 0.01)
    monkeypatch.setattr(published, "published_files", lambda: {**SHIPPED, **{
        e["name"]: published.FigshareFile(e["name"], e["id"], e["size"], e["computed_md5"])
        for e in server.manifest}})
    try:
        yield server
    finally:
        server.stop()


def serve(remote, name: str, body: bytes, mode: str = "good") -> int:
    """Serve ``body`` as the article's file ``name`` (under its published id)."""
    remote.add_figshare_file(name, SHIPPED[name].id, body, mode)
    return SHIPPED[name].id


def serve_weights(remote, monkeypatch) -> dict:
    """Serve a VGG19 caffemodel, the DeePSiM zip and fc7.txt, whose size and md5 become
    the known ones; return the bodies."""
    vgg = random_bytes(50_000, seed=20)
    generator = random_bytes(20_000, seed=21)
    bounds = " ".join(str(v) for v in np.random.default_rng(22).integers(2, 7, 4096)).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("release_deepsim_v0/fc6/generator.caffemodel", b"fc6 generator")
        archive.writestr(dl.DEEPSIM_GENERATOR_MEMBER, generator)
    remote.add_path("/vgg/VGG_ILSVRC_19_layers.caffemodel", vgg)
    remote.add_path("/lmb/release_deepsim_v0.zip", buffer.getvalue())
    remote.add_path("/raw/fc7.txt", bounds)
    monkeypatch.setattr(fetch_weights, "VGG19_SIZE", len(vgg))
    monkeypatch.setattr(fetch_weights, "VGG19_MD5", md5(vgg))
    monkeypatch.setattr(fetch_weights, "FC7_BOUNDS_MD5", md5(bounds))
    monkeypatch.setattr(fetch_weights, "FC7_BOUNDS_SIZE", len(bounds))
    return {"vgg19": vgg, "generator": generator, "fc7_bounds": bounds}


def feature_zip(tmp_path: Path, image_type: str, network: str, layer: str, subject: str,
                labels=("Img0001", "Img0002"), rois=("VC", "V1"), layout: str = "full",
                seed: int = 0) -> tuple:
    """Zip bytes of decoded features plus the arrays, members laid out as ``layout``."""
    rng = np.random.default_rng(seed)
    arrays = {}
    buffer = io.BytesIO()
    work = tmp_path / f"zipwork-{layer}-{subject}-{layout}-{seed}"
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


def normal_mode(folder: Path, directory: bool = False) -> int:
    """Permission bits of a file (or folder) created the ordinary way (umask) in ``folder``."""
    probe = folder / ".probe"
    probe.mkdir() if directory else probe.write_bytes(b"")
    mode = probe.stat().st_mode & 0o777
    probe.rmdir() if directory else probe.unlink()
    return mode


def quiet(**kwargs) -> dict:
    return dict(progress=False, timeout=TIMEOUT, stderr=io.StringIO(), **kwargs)


def dl_context(data_dir):
    """The advice context of the download command with ``--data-dir``."""
    return Context(data_dir=data_dir)


def ensure(names, data_dir="data", net_dir="net", pytorch=False, expected=None, **how):
    """:func:`icnn_torch.fetch.ensure.ensure_files` with the folders as keywords."""
    return dl.ensure_files(names, dl.Place.at(data_dir, net_dir, pytorch), dl.Fetching(**how),
                           expected)


def ensure_plan(plan, data_dir="data", net_dir="net", features_dir=None, pytorch=False, **how):
    """:func:`icnn_torch.fetch.ensure.ensure_plan_files` with the folders as keywords."""
    return dl.ensure_plan_files(plan, dl.Place.at(data_dir, net_dir, pytorch),
                                dl.Fetching(**how), features_dir)


# --------------------------------------------------------------------------- fetch

def test_good_file_lands_with_md5_verified(remote, tmp_path):
    body = random_bytes(300_000)
    file_id = serve(remote, "estimated_vgg19_cnn_feat_std.mat", body)
    assert ensure(["estimated_vgg19_cnn_feat_std.mat"], data_dir=tmp_path,
                           assume_yes=True, **quiet()) == ["estimated_vgg19_cnn_feat_std.mat"]
    path = tmp_path / "estimated_vgg19_cnn_feat_std.mat"
    assert path.read_bytes() == body
    assert _util.file_md5(path) == md5(body)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no .part, no temp
    assert [r[0] for r in remote.requests] == [f"/files/{file_id}"]  # no API request
    assert path.stat().st_mode & 0o777 == normal_mode(tmp_path)


def test_corrupted_file_is_rejected_and_removed(remote, tmp_path):
    body = random_bytes(100_000, seed=1)
    serve(remote, "ilsvrc_2012_mean.npy", body, mode="corrupt")
    with pytest.raises(dl.ChecksumError) as info:
        ensure(["mean"], data_dir=tmp_path, assume_yes=True, **quiet())
    message = str(info.value)
    served = bytes((b + 1) % 256 for b in body)
    assert "ilsvrc_2012_mean.npy" in message
    assert md5(body) in message and md5(served) in message
    assert "deleted" in message
    assert list(tmp_path.iterdir()) == []


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
    assert dest.stat().st_mode & 0o777 == normal_mode(tmp_path)


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
    # a file of the wrong size is replaced when only the size is known
    dest.write_bytes(body[:100])
    dl.fetch(f"{remote.url}/blob", dest, size=len(body), progress=False, timeout=TIMEOUT)
    assert dest.read_bytes() == body and len(remote.requests_for("/blob")) == 2


def test_http_error_names_the_file_and_status(remote, tmp_path):
    with pytest.raises(dl.DownloadError, match="x.bin: HTTP 404"):
        dl.fetch(f"{remote.url}/nothing-here", tmp_path / "x.bin", progress=False,
                 timeout=TIMEOUT, retries=0)


# --------------------------------------------------------------------------- weights and bounds

def test_vgg19_size_check_and_download(remote, tmp_path, monkeypatch):
    body = random_bytes(120_000, seed=6)
    remote.add_path("/vgg/VGG_ILSVRC_19_layers.caffemodel", body)
    with pytest.raises(dl.ChecksumError, match=f"{len(body)} bytes, expected 574671192"):
        ensure(["vgg19"], net_dir=tmp_path, assume_yes=True, **quiet())
    assert not list(tmp_path.rglob("*.part"))
    monkeypatch.setattr(fetch_weights, "VGG19_SIZE", len(body))
    monkeypatch.setattr(fetch_weights, "VGG19_MD5", md5(body))
    assert ensure(["vgg19"], net_dir=tmp_path, assume_yes=True, **quiet()) == ["vgg19"]
    assert (tmp_path / VGG_REL).read_bytes() == body


def test_truncated_caffemodel_is_reported_and_fetched_again(remote, tmp_path, monkeypatch,
                                                            capsys):
    """The issue's case: a cut caffemodel used to count as present."""
    bodies = serve_weights(remote, monkeypatch)
    vgg = tmp_path / "net" / VGG_REL
    vgg.parent.mkdir(parents=True)
    vgg.write_bytes(bodies["vgg19"][:len(bodies["vgg19"]) // 5])
    args = ["vgg19", "--net-dir", str(tmp_path / "net"), "--no-progress"]
    assert dl.main(args + ["--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert out == (f"vgg19 -> {vgg} ({len(bodies['vgg19']):,} bytes) [damaged: {vgg} has "
                   f"{len(bodies['vgg19']) // 5:,} bytes, expected {len(bodies['vgg19']):,}]\n")
    assert "1 item(s) would be fetched" in err and remote.requests == []
    assert dl.main(args + ["--yes"]) == 0
    assert "done: 1 item(s) downloaded" in capsys.readouterr().err
    assert vgg.read_bytes() == bodies["vgg19"]
    assert dl.main(args) == 0
    assert "all requested files are present" in capsys.readouterr().err
    assert len(remote.requests) == 1


def test_deepsim_generator_is_taken_from_the_release_zip(remote, tmp_path, monkeypatch):
    bodies = serve_weights(remote, monkeypatch)
    net_dir = tmp_path / "net"
    assert ensure(["generator"], net_dir=net_dir, assume_yes=True, **quiet()) == \
        ["generator"]
    path = net_dir / "generator_for_inverting_fc7" / "generator.caffemodel"
    assert path.read_bytes() == bodies["generator"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["generator.caffemodel"]
    assert path.stat().st_mode & 0o777 == normal_mode(path.parent)


def test_fc7_bounds_from_the_raw_file(remote, tmp_path, monkeypatch):
    values = np.random.default_rng(9).integers(2, 7, 4096)
    body = " ".join(str(v) for v in values).encode() + b"\n"  # 8192 bytes, as the original
    assert len(body) == fetch_weights.FC7_BOUNDS_SIZE
    remote.add_path("/raw/fc7.txt", body)
    with pytest.raises(dl.ChecksumError, match=dl.FC7_BOUNDS_MD5):
        ensure(["fc7_bounds"], data_dir=tmp_path, assume_yes=True, **quiet())
    monkeypatch.setattr(fetch_weights, "FC7_BOUNDS_MD5", md5(body))
    ensure(["fc7_bounds"], data_dir=tmp_path, assume_yes=True, **quiet())
    path = tmp_path / "act_range" / "3x" / "fc7.txt"
    np.testing.assert_array_equal(load_fc7_upper_bound(path), values.astype(np.float32))


def test_fc7_bounds_md5_is_that_of_the_original_file():
    path = SHARED / "act_range" / "3x" / "fc7.txt"
    if not path.is_file():
        pytest.skip(f"{path} not available")
    assert _util.file_md5(path) == dl.FC7_BOUNDS_MD5


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
    monkeypatch.setattr(fetch_weights, "KAMITANI_VGG19",
                        dataclasses.replace(dl.KAMITANI_VGG19, md5=md5(vgg_zip.getvalue())))
    monkeypatch.setattr(fetch_weights, "KAMITANI_GENERATOR",
                        dataclasses.replace(dl.KAMITANI_GENERATOR, md5=md5(gen_zip.getvalue())))
    remote.add_path(f"/files/{dl.KAMITANI_VGG19.id}", vgg_zip.getvalue())
    remote.add_path(f"/files/{dl.KAMITANI_GENERATOR.id}", gen_zip.getvalue())
    original = (" ".join(["3"] * 4096) + "\n").encode()  # stands for the original fc7.txt
    remote.add_path("/raw/fc7.txt", original)
    monkeypatch.setattr(fetch_weights, "FC7_BOUNDS_MD5", md5(original))
    net_dir, data_dir = tmp_path / "net", tmp_path / "data"
    fetched = ensure(["vgg19", "generator", "fc7_bounds"], data_dir=data_dir,
                     net_dir=net_dir, pytorch=True, assume_yes=True, **quiet())
    # the bundle's bounds are other values than the original's: kept apart, never used as
    # fc7.txt, which comes from the original source
    assert fetched == ["vgg19", "generator", "fc7_bounds"]
    assert (net_dir / "VGG_ILSVRC_19_layers" / "VGG_ILSVRC_19_layers.pt").read_bytes() == vgg_state
    assert (net_dir / "generator_for_inverting_fc7" / "generator.pt").read_bytes() == gen_state
    kept = data_dir / "act_range" / "3x" / fetch_weights.BUNDLE_BOUNDS_NAME
    assert kept.read_bytes() == bounds
    assert (data_dir / "act_range" / "3x" / "fc7.txt").read_bytes() == original
    assert not list(net_dir.rglob("*.zip"))
    assert [r[0] for r in remote.requests] == [f"/files/{dl.KAMITANI_VGG19.id}",
                                               f"/files/{dl.KAMITANI_GENERATOR.id}",
                                               "/raw/fc7.txt"]


def test_pytorch_bundle_bounds_equal_to_the_original_serve_as_fc7(remote, tmp_path, monkeypatch):
    """The case where the bundle's act_range_3x.txt is the original file: it is fc7.txt."""
    bounds = (" ".join(["5"] * 4096) + "\n").encode()
    gen_zip = io.BytesIO()
    with zipfile.ZipFile(gen_zip, "w") as archive:
        archive.writestr("bundle/generator_relu7.pt", b"state")
        archive.writestr("bundle/act_range_3x.txt", bounds)
    monkeypatch.setattr(fetch_weights, "FC7_BOUNDS_MD5", md5(bounds))
    monkeypatch.setattr(fetch_weights, "KAMITANI_GENERATOR",
                        dataclasses.replace(dl.KAMITANI_GENERATOR, md5=md5(gen_zip.getvalue())))
    remote.add_path(f"/files/{dl.KAMITANI_GENERATOR.id}", gen_zip.getvalue())
    data_dir = tmp_path / "data"
    assert ensure(["generator", "fc7_bounds"], data_dir=data_dir, net_dir=tmp_path / "net",
                  pytorch=True, assume_yes=True, **quiet()) == ["generator"]
    assert (data_dir / "act_range" / "3x" / "fc7.txt").read_bytes() == bounds
    assert [r[0] for r in remote.requests] == [f"/files/{dl.KAMITANI_GENERATOR.id}"]


def test_pytorch_zip_with_unexpected_contents_is_reported(remote, tmp_path, monkeypatch):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.pt", b"1")
        archive.writestr("b.pt", b"2")
    monkeypatch.setattr(fetch_weights, "KAMITANI_VGG19",
                        dataclasses.replace(dl.KAMITANI_VGG19, md5=md5(buffer.getvalue())))
    remote.add_path(f"/files/{dl.KAMITANI_VGG19.id}", buffer.getvalue())
    with pytest.raises(dl.DownloadError, match="a.pt, b.pt"):
        ensure(["vgg19"], net_dir=tmp_path, pytorch=True, assume_yes=True, **quiet())


# --------------------------------------------------------------------------- zips

@pytest.mark.parametrize("layout", ["full", "from_image_type", "roi_only", "wrapped"])
def test_zip_unpacks_to_the_original_layout(remote, tmp_path, layout):
    name = "decodedfeatures-color_shape-VGG19-conv3_4-S2.zip"
    body, arrays = feature_zip(tmp_path, "color_shape", "VGG19", "conv3_4", "S2", layout=layout)
    serve(remote, name, body)
    data_dir = tmp_path / "data"
    assert ensure([name], data_dir=data_dir, assume_yes=True, **quiet()) == [name]
    folder = data_dir / "decodedfeatures" / "color_shape" / "VGG19" / "conv3_4" / "S2"
    for (roi, label), feat in arrays.items():
        path = decoded_feature_path(data_dir, "color_shape", "VGG19", "conv3_4", "S2", roi, label)
        np.testing.assert_array_equal(load_feat(path), feat)
        assert path.stat().st_mode & 0o777 == normal_mode(data_dir)
    assert sorted(p.name for p in folder.iterdir()) == ["V1", "VC"]
    # no zip, no temporary folders left behind
    assert sorted(p.name for p in data_dir.iterdir()) == ["decodedfeatures"]
    for made in (folder, folder / "VC"):
        assert made.stat().st_mode & 0o777 == normal_mode(data_dir, directory=True)


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


# --------------------------------------------------------------------------- the file list

def test_shipped_list_is_the_articles_file_list():
    path = SHARED / "file_list.csv"
    if not path.is_file():
        pytest.skip(f"{path} not available")
    with open(path, newline="") as f:
        rows = {row[0]: (int(row[1]), row[2]) for row in csv.reader(f) if row}
    assert len(rows) == len(SHIPPED) == 251
    assert {n: (f.id, f.md5) for n, f in SHIPPED.items()} == rows


def test_every_published_file_is_reachable_from_a_plan():
    """The 251 files: what the 7 scripts need, plus every layer (pools for S1 only)."""
    needed = set()
    for number in "1234567":
        plan = ScriptConfig.from_file(script_path(number)).plan()
        items = dl.items_for_plan(plan)
        assert set(items) - set(dl.WEIGHT_ITEMS) <= set(SHIPPED), number
        needed |= set(items) - set(dl.WEIGHT_ITEMS)
    for image_type, network in (("natural", "VGG19"), ("color_shape", "VGG19"),
                                ("alphabet", "VGG19"), ("imagery", "VGG19_leaky")):
        for subjects, layers in ((("S1", "S2", "S3"), ALL_19),
                                 (("S1",), [f"pool{i}" for i in range(1, 6)])):
            plan = RunPlan("x", image_type, network, "icnn_lbfgs", "", subjects, ("VC",),
                           ("Img0001",), tuple(layers))
            published.check_plan(plan)
            needed |= set(dl.items_for_plan(plan)) - {"vgg19"}
    assert needed == set(SHIPPED)


def test_list_needs_no_network(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("ICNN_TORCH_FIGSHARE_API", UNREACHABLE)
    assert dl.main(["--list", "--data-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 251
    entry = SHIPPED["estimated_vgg19_cnn_feat_std.mat"]
    assert f"estimated_vgg19_cnn_feat_std.mat\t{entry.id}\t\t{entry.md5}" in lines


def test_refresh_list_checks_and_caches_the_sizes(remote, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(published, "published_files", lambda: dict(SHIPPED))
    remote.manifest = [{"id": f.id, "name": f.name, "size": 1000 + i, "computed_md5": f.md5,
                        "download_url": f"{remote.url}/files/{f.id}"}
                       for i, f in enumerate(SHIPPED.values())]
    assert dl.main(["--refresh-list", "--list", "--data-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    first = sorted(SHIPPED.values(), key=lambda f: f.name)[0]
    index = list(SHIPPED).index(first.name)
    assert lines[0] == f"{first.name}\t{first.id}\t{1000 + index}\t{first.md5}"
    cache = tmp_path / dl.MANIFEST_FILENAME
    assert cache.stat().st_mode & 0o777 == normal_mode(tmp_path)  # not mkstemp's 0600
    assert remote.requests[0][0] == "/api/articles/7033577/files"
    # the cache serves without the API; the sizes now show in --dry-run and are checked
    monkeypatch.setenv("ICNN_TORCH_FIGSHARE_API", UNREACHABLE)
    assert dl.article_files(tmp_path)[first.name].size == 1000 + index
    assert dl.main(["mean", "--dry-run", "--data-dir", str(tmp_path)]) == 0
    size = 1000 + list(SHIPPED).index("ilsvrc_2012_mean.npy")
    assert capsys.readouterr().out == f"ilsvrc_2012_mean.npy ({size:,} bytes)\n"
    # a list that differs from the shipped one is reported and not cached
    monkeypatch.setenv("ICNN_TORCH_FIGSHARE_API", f"{remote.url}/api")
    remote.manifest[3]["computed_md5"] = "0" * 32
    before = cache.read_bytes()
    with pytest.raises(dl.DownloadError, match=f"{remote.manifest[3]['name']}: id"):
        dl.refresh_file_list(tmp_path, timeout=TIMEOUT)
    assert cache.read_bytes() == before
    monkeypatch.setenv("ICNN_TORCH_FIGSHARE_API", UNREACHABLE)
    with pytest.raises(dl.DownloadError, match="figshare file list"):
        dl.refresh_file_list(tmp_path, timeout=TIMEOUT)


def test_unknown_name_is_reported_before_any_request(remote, tmp_path):
    with pytest.raises(dl.DownloadError, match="not a file of figshare article 7033577"):
        ensure(["decodedfeatures-natural-VGG19-pool1-S2.zip"], data_dir=tmp_path,
                        assume_yes=True, **quiet())
    assert remote.requests == []


# --------------------------------------------------------------------------- plans

def test_items_for_plan_follow_the_scripts():
    one = dl.items_for_plan(ScriptConfig.from_file(script_path("1")).plan())
    assert one[:5] == ["vgg19", "generator", "fc7_bounds", "ilsvrc_2012_mean.npy",
                       "estimated_vgg19_cnn_feat_std.mat"]
    assert one[5:] == [f"decodedfeatures-natural-VGG19-{layer}-{s}.zip"
                       for s in ("S1", "S2", "S3") for layer in ALL_19]
    three = dl.items_for_plan(ScriptConfig.from_file(script_path("3")).plan(subjects=["S2"]))
    assert three[3:] == [f"decodedfeatures-natural-VGG19-{layer}-S2.zip" for layer in ALL_19[:-1]]
    assert "generator" not in three
    seven = dataclasses.replace(ScriptConfig.from_file(script_path("7")).plan(subjects=["S3"]),
                                layers=("fc8",))
    assert dl.items_for_plan(seven) == ["vgg19", "ilsvrc_2012_mean.npy",
                                        "estimated_vgg19LeakyReluAvePool_cnn_feat_std.mat",
                                        "decodedfeatures-imagery-VGG19_leaky-fc8-S3.zip"]
    # another decoded-feature tree: no zips
    assert dl.items_for_plan(seven, "data", "my_tree")[-1].startswith("estimated")


def test_selection_is_checked_against_the_published_data():
    six = ScriptConfig.from_file(script_path("6"))
    pools = dataclasses.replace(six.plan(subjects=["S1", "S2"]), layers=("conv1_1", "pool1"))
    with pytest.raises(ConfigError, match="subject S2: not in the published alphabet features "
                                          "of layer pool1; valid: S1$"):
        published.check_plan(pools)
    published.check_plan(dataclasses.replace(pools, subjects=("S1",)))
    with pytest.raises(ConfigError, match="ROI V9.*valid: V1, V2, V3, V4, HVC, VC"):
        published.check_plan(six.plan(rois=["VC", "V9"]))
    with pytest.raises(ConfigError, match="network VGG19: .* imagery .*valid: VGG19_leaky"):
        published.check_plan(dataclasses.replace(six.plan(), image_type="imagery",
                                            labels=("Img0001",)))
    with pytest.raises(ConfigError, match="Img0051.*Img0001, Img0002, ..., Img0050 "
                                          r"\(50 in all\)"):
        published.check_plan(dataclasses.replace(six.plan(), image_type="natural",
                                            labels=("Img0051",)))
    with pytest.raises(ConfigError, match="no script '8_nothing'"):
        ScriptConfig.from_file("8_nothing", root=PROJECT_ROOT)


def test_label_outside_the_published_images_is_one_line_before_any_request(
        remote, tmp_path, capsys):
    """The issue's case: --labels Img9999 used to offer 19 zips that cannot hold it."""
    script = tmp_path / "6_reconstruct_alphabet_image.py"
    script.write_text(script_path("6").read_text())
    assert dl.main(["--script", str(script), "--labels", "Img9999", "--yes"]) == 1
    err = capsys.readouterr().err
    assert err == ("error: image label Img9999: not in the published alphabet images; valid: "
                   + ", ".join(f"Img{i:04d}" for i in range(1, 11)) + "\n")
    assert remote.requests == [] and not (tmp_path / "data").exists()


def _copy_script(number: str, folder: Path, name: str, overrides: str) -> Path:
    """A copy of a script under another name, its constants edited (appended overrides)."""
    text = script_path(number).read_text()
    marker = "\nif __name__ == '__main__':"
    assert marker in text
    path = folder / name
    path.write_text(text.replace(marker, f"\n{overrides}\n{marker}"))
    return path


SCRIPT_COPIES = {
    # script 1 as pixel L-BFGS on letters: no generator, no bounds
    "my_letters_lbfgs.py": ("1", """
image_type = 'alphabet'
subjects_list = ['S2']
image_label_list = ['Img0003', 'Img0007']
layers = ['conv1_1', 'fc7']
engine = 'icnn_lbfgs'
opts = {'maxiter': 3, 'initial_image': 'mean'}
""", ["vgg19", "ilsvrc_2012_mean.npy", "estimated_vgg19_cnn_feat_std.mat",
      "decodedfeatures-alphabet-VGG19-conv1_1-S2.zip", "decodedfeatures-alphabet-VGG19-fc7-S2.zip"]),
    # script 2 with the DGN on imagined images: the generator and the fc7 bounds too
    "8_my_variant.py": ("2", """
image_type = 'imagery'
network = 'VGG19_leaky'
subjects_list = ['S1']
image_label_list = ['Img0025']
layers = ['pool5', 'fc8']
engine = 'icnn_dgn_gd'
opts = {'iter_n': 3, 'initial_gen_feat': 'zeros', 'feat_upper_bound': 'fc7_3x'}
""", ["vgg19", "generator", "fc7_bounds", "ilsvrc_2012_mean.npy",
      "estimated_vgg19LeakyReluAvePool_cnn_feat_std.mat",
      "decodedfeatures-imagery-VGG19_leaky-pool5-S1.zip",
      "decodedfeatures-imagery-VGG19_leaky-fc8-S1.zip"]),
}


@pytest.mark.parametrize("name", list(SCRIPT_COPIES))
def test_script_copy_dry_run_then_download(remote, tmp_path, monkeypatch, capsys, name):
    number, overrides, items = SCRIPT_COPIES[name]
    script = _copy_script(number, tmp_path, name, overrides)
    config = ScriptConfig.from_file(script)
    plan = config.plan()
    bodies = serve_weights(remote, monkeypatch)
    for item in items[len(items) - 4:]:
        key = layout.parse_decoded_feature_zip_name(item)
        body = random_bytes(3_000, seed=len(item)) if key is None else \
            feature_zip(tmp_path, *key, labels=plan.labels, rois=("VC",))[0]
        serve(remote, item, body)
    files = published.published_files()
    net, data_dir = tmp_path / "net", tmp_path / "data"
    described = {"vgg19": f"vgg19 -> {net / VGG_REL} ({len(bodies['vgg19']):,} bytes)",
                 # no size of the DeePSiM release is published: the fc7 generator's float32
                 # weights (56.1 M parameters) as an estimate
                 "generator": f"generator -> {net}/generator_for_inverting_fc7/"
                              "generator.caffemodel (from release_deepsim_v0.zip; "
                              f"~{GENERATOR_PARAMETERS * 4 / 1e6:.1f} MB, estimated)",
                 "fc7_bounds": f"fc7_bounds -> {data_dir}/act_range/3x/fc7.txt "
                               f"({len(bodies['fc7_bounds']):,} bytes)"}
    expected = [described.get(i) or f"{i} ({files[i].size:,} bytes)" for i in items]

    # the dry run, every remote unreachable: the list, from the script file alone
    point_sources_at(monkeypatch, UNREACHABLE)
    monkeypatch.chdir(tmp_path)
    assert dl.main(["--script", name, "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == expected
    assert f"{len(items)} item(s) would be fetched" in err
    assert remote.requests == [] and not data_dir.exists() and not net.exists()

    # the download from the loopback server
    point_sources_at(monkeypatch, remote.url)
    assert dl.main(["--script", name, "--yes", "--no-progress"]) == 0
    assert f"done: {len(items)} item(s) downloaded" in capsys.readouterr().err
    assert (net / VGG_REL).read_bytes() == bodies["vgg19"]
    for subject in plan.subjects:
        for layer in plan.layers:
            for label in plan.labels:
                assert decoded_feature_path(data_dir, plan.image_type, plan.network, layer,
                                            subject, "VC", label).is_file()
    served = len(remote.requests)
    assert served == len(items)
    assert dl.main(["--script", name, "--dry-run"]) == 0
    assert capsys.readouterr().out == ""
    ensure_plan(plan, data_dir=data_dir, net_dir=net, assume_yes=False, **quiet())
    assert len(remote.requests) == served  # all present: no network


def test_plan_fetches_only_what_is_missing(remote, tmp_path, monkeypatch):
    plan = dataclasses.replace(ScriptConfig.from_file(script_path("7")).plan(subjects=["S1"]),
                               layers=("conv1_1", "fc7"))
    bodies = {}
    for number, layer in enumerate(("conv1_1", "fc7")):
        name = f"decodedfeatures-imagery-VGG19_leaky-{layer}-S1.zip"
        bodies[name] = feature_zip(tmp_path, "imagery", "VGG19_leaky", layer, "S1",
                                   labels=IMAGERY_LABELS, rois=("VC",), seed=number)[0]
        serve(remote, name, bodies[name])
    for name in ("estimated_vgg19LeakyReluAvePool_cnn_feat_std.mat", "ilsvrc_2012_mean.npy"):
        bodies[name] = random_bytes(5_000, seed=len(name))
        serve(remote, name, bodies[name])
    data_dir, net_dir = tmp_path / "data", tmp_path / "net"
    # already present: VGG19 weights, the mean, the conv1_1 features
    vgg = net_dir / VGG_REL
    vgg.parent.mkdir(parents=True)
    vgg.write_bytes(b"weights")
    monkeypatch.setattr(fetch_weights, "VGG19_SIZE", len(b"weights"))
    data_dir.mkdir()
    (data_dir / "ilsvrc_2012_mean.npy").write_bytes(bodies["ilsvrc_2012_mean.npy"])
    conv_zip = tmp_path / "decodedfeatures-imagery-VGG19_leaky-conv1_1-S1.zip"
    conv_zip.write_bytes(bodies[conv_zip.name])
    dl.unpack_decoded_features_zip(conv_zip, data_dir)

    fetched = ensure_plan(plan, data_dir=data_dir, net_dir=net_dir, assume_yes=True,
                                   **quiet())
    assert fetched == ["estimated_vgg19LeakyReluAvePool_cnn_feat_std.mat",
                       "decodedfeatures-imagery-VGG19_leaky-fc7-S1.zip"]
    assert [r[0] for r in remote.requests] == [
        f"/files/{SHIPPED['estimated_vgg19LeakyReluAvePool_cnn_feat_std.mat'].id}",
        f"/files/{SHIPPED['decodedfeatures-imagery-VGG19_leaky-fc7-S1.zip'].id}"]
    for label in IMAGERY_LABELS:
        assert decoded_feature_path(data_dir, "imagery", "VGG19_leaky", "fc7", "S1", "VC",
                                    label).is_file()
    # everything present now: no network at all, even with the server gone
    remote.stop()
    assert ensure_plan(plan, data_dir=data_dir, net_dir=net_dir, assume_yes=None,
                                stdin=io.StringIO(), timeout=TIMEOUT) == []


def test_non_tty_without_assume_yes_raises_with_the_command(remote, tmp_path):
    arg = str(script_path("7").relative_to(Path.cwd())) if Path.cwd() in \
        script_path("7").parents else str(script_path("7"))
    plan = ScriptConfig.from_file(arg).plan(subjects=["S1"])
    for assume_yes in (None, False):
        with pytest.raises(MissingDataError) as info:
            ensure_plan(plan, data_dir=tmp_path / "d", net_dir=tmp_path / "n",
                        assume_yes=assume_yes, stdin=io.StringIO("y\n"), timeout=TIMEOUT)
        message = str(info.value)
        context = script_context(arg, plan, tmp_path / "d", tmp_path / "n")
        command = (f"python -m icnn_torch.download --script {arg} --subjects S1 --yes "
                   f"--data-dir {tmp_path / 'd'} --net-dir {tmp_path / 'n'}")
        assert fix_for(info.value, context) == command
        assert f"Download with: {command} (or point the script's data_dir and net_dir" in \
            render(info.value, context)
        assert "decodedfeatures-imagery-VGG19_leaky-conv1_1-S1.zip" in message
        assert "... and 2 more" in message  # 22 items: vgg19, mean, std, 19 zips
        assert f"vgg19 -> {tmp_path / 'n' / VGG_REL} (574,671,192 bytes)" in message
    assert remote.requests == []


def test_command_names_only_what_differs_from_the_script(remote, tmp_path, monkeypatch):
    script = _copy_script("4", tmp_path, "shapes copy.py", "")
    config = ScriptConfig.from_file(script)
    monkeypatch.chdir(tmp_path)
    for plan, selection in ((config.plan(), ""),
                            (config.plan(rois=["V1"], labels=["Img0002"]),
                             " --rois V1 --labels Img0002")):
        with pytest.raises(MissingDataError) as info:
            ensure_plan(plan, data_dir=config.path("data"), net_dir=config.path("net"),
                        assume_yes=False)
        context = script_context("shapes copy.py", plan, config.path("data"),
                                 config.path("net"))
        assert fix_for(info.value, context) == \
            f"python -m icnn_torch.download --script 'shapes copy.py'{selection} --yes"


def test_own_decoded_feature_tree_is_checked_on_disk(remote, tmp_path, monkeypatch):
    tree = tmp_path / "decoded_from_fmri"
    for layer in ("conv1_1", "fc8"):
        path = layout.decode_feature_filename(tree, "natural", "VGG19", layer, "S1", "VC", "Img0001")
        path.parent.mkdir(parents=True)
        write_mat_v5(path, {"feat": np.ones((2, 2, 2), np.float32)})
    plan = dataclasses.replace(ScriptConfig.from_file(script_path("2")).plan(
        subjects=["S1"], labels=["Img0001"]), layers=("conv1_1", "fc8"))
    with pytest.raises(ConfigError, match=r"subject S2: not in .*conv1_1; valid: S1$"):
        published.check_plan(dataclasses.replace(plan, subjects=("S1", "S2")), tree)
    with pytest.raises(ConfigError, match="image label Img0002: .*VC; valid: Img0001$"):
        published.check_plan(dataclasses.replace(plan, labels=("Img0002",)), tree)
    with pytest.raises(ConfigError, match="layer fc7: .*valid: conv1_1, fc8$"):
        published.check_plan(dataclasses.replace(plan, layers=("fc7",)), tree)
    serve(remote, "estimated_vgg19_cnn_feat_std.mat", b"std")
    serve(remote, "ilsvrc_2012_mean.npy", b"mean")
    vgg = tmp_path / "net" / VGG_REL
    vgg.parent.mkdir(parents=True)
    vgg.write_bytes(b"w")
    monkeypatch.setattr(fetch_weights, "VGG19_SIZE", 1)
    assert ensure_plan(plan, data_dir=tmp_path / "data", net_dir=tmp_path / "net",
                                features_dir=tree, assume_yes=True, **quiet()) == \
        ["ilsvrc_2012_mean.npy", "estimated_vgg19_cnn_feat_std.mat"]


def test_verify_replaces_damaged_files_that_look_present(remote, tmp_path, capsys):
    """A std file of the right size but other bytes, and a truncated feature file: present
    for the cheap check, damaged for --verify (the command a failed load names)."""
    std = random_bytes(4_000, seed=30)
    serve(remote, "estimated_vgg19_cnn_feat_std.mat", std)
    name = "decodedfeatures-natural-VGG19-fc7-S1.zip"
    body, _ = feature_zip(tmp_path, "natural", "VGG19", "fc7", "S1", rois=("VC",))
    serve(remote, name, body)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "estimated_vgg19_cnn_feat_std.mat").write_bytes(bytes(len(std)))
    zip_path = tmp_path / name
    zip_path.write_bytes(body)
    dl.unpack_decoded_features_zip(zip_path, data_dir)
    feature = decoded_feature_path(data_dir, "natural", "VGG19", "fc7", "S1", "VC", "Img0002")
    feature.write_bytes(feature.read_bytes()[:150])
    with pytest.raises(DamagedFileError) as info:
        load_feat(feature)
    assert fix_for(info.value, dl_context(data_dir)) == \
        f"python -m icnn_torch.download --verify --data-dir {data_dir} {name}"
    args = ["estimated_vgg19_cnn_feat_std.mat", name, "--data-dir", str(data_dir)]
    assert dl.main(args) == 0
    assert "all requested files are present" in capsys.readouterr().err
    assert dl.main(args + ["--verify", "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"estimated_vgg19_cnn_feat_std.mat (4,000 bytes) [damaged: the md5 of "
        f"{data_dir / 'estimated_vgg19_cnn_feat_std.mat'} is {md5(bytes(len(std)))}, not the "
        f"published {md5(std)}]",
        f"{name} ({len(body):,} bytes) [damaged: {feature} cannot be read]"]
    assert dl.main(args + ["--verify", "--yes", "--no-progress"]) == 0
    assert (data_dir / "estimated_vgg19_cnn_feat_std.mat").read_bytes() == std
    load_feat(feature)
    assert dl.main(args + ["--verify"]) == 0
    assert "all requested files are present" in capsys.readouterr().err


def test_environment_variable_can_say_yes(remote, tmp_path, monkeypatch):
    serve(remote, "ilsvrc_2012_mean.npy", b"mean bytes")
    monkeypatch.setenv("ICNN_TORCH_ASSUME_YES", "1")
    assert ensure(["mean"], data_dir=tmp_path, stdin=io.StringIO(), **quiet()) == \
        ["ilsvrc_2012_mean.npy"]


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("answer", ["n\n", "\n", "y\n"])
def test_terminal_is_asked_once(remote, tmp_path, answer):
    serve(remote, "estimated_vgg19_cnn_feat_std.mat", b"std")
    serve(remote, "estimated_vgg19LeakyReluAvePool_cnn_feat_std.mat", b"l")
    prompt = io.StringIO()
    kwargs = dict(data_dir=tmp_path, stdin=FakeTerminal(answer), stderr=prompt,
                  progress=False, timeout=TIMEOUT)
    if answer == "y\n":
        assert ensure(["std"], **kwargs) == list(layout.FEAT_STD_FILENAMES.values())
    else:
        with pytest.raises(MissingDataError, match="estimated_vgg19_cnn_feat_std.mat"):
            ensure(["std"], **kwargs)
        assert remote.requests == []
    assert prompt.getvalue().count("[y/N]") == 1


# --------------------------------------------------------------------------- command line

def test_command_line_downloads_and_lists(remote, tmp_path, monkeypatch):
    """As a user runs it (a subprocess, the shipped file list): the generator lands, the
    mean is not on this server (one error line naming it), --list needs no network."""
    serve_weights(remote, monkeypatch)
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    command = [sys.executable, "-m", "icnn_torch.download", "--data-dir", str(tmp_path / "data"),
               "--net-dir", str(tmp_path / "net"), "--timeout", str(TIMEOUT)]
    done = subprocess.run(command + ["generator", "mean"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 1, done.stderr
    error = done.stderr.splitlines()[-1]
    assert error.startswith("error: ilsvrc_2012_mean.npy: HTTP 404") and \
        "Traceback" not in done.stderr
    assert (tmp_path / "net/generator_for_inverting_fc7/generator.caffemodel").is_file()
    env["ICNN_TORCH_FIGSHARE_API"] = UNREACHABLE
    listing = subprocess.run(command + ["--list"], env=env, cwd=tmp_path, capture_output=True,
                             text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert listing.returncode == 0, listing.stderr
    first = sorted(SHIPPED)[0]
    assert listing.stdout.split("\n")[0].split("\t") == [first, str(SHIPPED[first].id), "",
                                                         SHIPPED[first].md5]


def test_command_line_errors_are_one_line_and_debug_shows_the_traceback(tmp_path, capsys,
                                                                        monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert dl.main(["--script", "9"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no script '9'") and err.count("\n") == 1
    assert dl.main(["--script", "9", "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err


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
