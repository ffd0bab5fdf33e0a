"""Image features on disk: one HDF5 file per image set, read one chunk of units at a time.

The decoders of one layer need, for every unit chunk, that chunk's features of all
training images; all 19 VGG19 layers of the 1,200 training images are about 71 GB as
float32, so they are computed once, written to disk and never held in memory at once.

Layout of a features file (h5py)::

    /labels                      (n_images,) UTF-8 strings, the image labels in row order
    /features/<layer>            (n_images, n_units) float32; attribute "shape": the
                                 feature shape of one image, e.g. (64, 224, 224) (units
                                 are that array flattened in C order)
    /done/<layer>                (n_blocks,) uint8: 1 once a block of rows is written
    attribute "record"           JSON: the encoder that computed the features (below)

Rows are written in blocks of ``rows_per_block`` images (attribute, fixed when the file
is created), one forward pass per block. A unit chunk is read with one strided read
``features[:, start:stop]``. The feature datasets are contiguous, not HDF5-chunked:
8,192 units of 1,200 images read in 0.2 s that way on the development machine, against
2.5 s with (8, 4096) HDF5 chunks; both layouts are equally safe to kill (below).

Readers open the file without HDF5's file lock, so that processes waiting for the
features can look at the done flags while one process writes them (a locked open would
make the writer's own open fail).

Resuming: every dataset is created, with its storage allocated, before any feature is
written (the empty file is written under a temporary name and renamed), so computing
features writes raw bytes only and never HDF5 metadata; a block's ``done`` flag is set
after its rows are flushed. A killed run therefore leaves a readable file whose done
blocks are complete, and the next run computes the rest. Asking for layers the file does
not have adds them (computed for every image).

The record says what computed the features: ``network`` (the name in the decoded-feature
tree), ``encoder`` (class), ``weights_sha1`` (of the parameters and buffers, in
``state_dict`` order), ``input_size`` (H, W), ``img_mean_bgr`` and the preprocessing. A
file whose record differs from the run's encoder is refused, as is one with other image
labels.

Images are read as RGB and resized to the encoder's input size with PIL's bicubic filter
(as bdpy's feature extraction does, without cropping), then turned into the Caffe space
the encoders take: BGR, 0..255, ``img_mean_bgr`` subtracted.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence

import h5py
import numpy as np
from tqdm import tqdm

from .._util import PathLike, atomic_output, is_terminal
from ..analysis.stimuli import STIMULUS_EXTENSIONS, find_stimulus, load_stimulus
from ..errors import ConfigError, DamagedFileError, MissingDataError
from ..utils import img_preprocess

if TYPE_CHECKING:
    import torch

__all__ = ["STORE_FORMAT", "FeatureStore", "encoder_record", "find_images",
           "compute_features", "IMAGE_REQUEST_URL"]

STORE_FORMAT = "icnn-torch image features"
STORE_VERSION = 1
#: Where the lab takes requests for its stimulus images.
IMAGE_REQUEST_URL = "https://forms.gle/ujvA34948Xg49jdn9"
#: The record fields that must agree for a file to be reused.
IDENTITY_FIELDS = ("network", "encoder", "weights_sha1", "input_size", "img_mean_bgr",
                   "preprocessing")
PREPROCESSING = "RGB; PIL bicubic resize to input_size; BGR; img_mean_bgr subtracted"
DEFAULT_ROWS_PER_BLOCK = 8


def _weights_sha1(encoder) -> str:
    digest = hashlib.sha1()
    state = encoder.state_dict() if hasattr(encoder, "state_dict") else {}
    for name, tensor in state.items():
        digest.update(name.encode("utf-8"))
        array = tensor.detach().to("cpu").contiguous().numpy()
        digest.update(str(array.dtype).encode("ascii"))
        digest.update(memoryview(array.reshape(-1).view(np.uint8)))
    return digest.hexdigest()


def encoder_record(encoder, network: str) -> dict:
    """What identifies an encoder's features (see the module docstring).

    Parameters
    ----------
    encoder : callable ``encoder(x, layers) -> dict``
        With ``img_mean`` (BGR, 3) and ``input_size`` (H, W), e.g.
        :class:`icnn_torch.models.VGG19` or a :class:`icnn_torch.features.FeatureExtractor`.
    network : str
        The network's name in the decoded-feature tree (e.g. ``"VGG19"``).
    """
    cls = type(encoder)
    return {"format": STORE_FORMAT, "version": STORE_VERSION, "network": network,
            "encoder": f"{cls.__module__}.{cls.__qualname__}",
            "weights_sha1": _weights_sha1(encoder),
            "input_size": [int(s) for s in encoder.input_size],
            "img_mean_bgr": [round(float(m), 5) for m in np.asarray(encoder.img_mean).reshape(3)],
            "preprocessing": PREPROCESSING}


def _describe(record: dict) -> str:
    size = "x".join(str(s) for s in record.get("input_size", []))
    return (f"{record.get('network')} ({record.get('encoder')}, input {size}, weights sha1 "
            f"{str(record.get('weights_sha1'))[:12]}, mean BGR {record.get('img_mean_bgr')})")


def find_images(images_dir: PathLike, labels: Sequence[str],
                alternatives: Optional[Sequence[Optional[str]]] = None) -> List[Path]:
    """The image file of each label: ``<images_dir>/<label>.<ext>`` (extensions of
    :data:`icnn_torch.analysis.stimuli.STIMULUS_EXTENSIONS`, any case).

    Parameters
    ----------
    alternatives : sequence, optional
        A second name per label, tried when the first is absent (e.g. ``Img0001`` for a
        test image named by its decoded-feature label).

    Raises
    ------
    MissingDataError
        Naming every label without an image (and the folder).
    """
    folder = Path(images_dir)
    found, missing = [], []
    for i, label in enumerate(labels):
        path = find_stimulus(folder, label)
        if path is None and alternatives is not None and alternatives[i]:
            path = find_stimulus(folder, alternatives[i])
        if path is None:
            missing.append(str(folder / f"{label}.*"))
        found.append(path)
    if missing:
        raise MissingDataError(
            missing, detail=f"The stimulus images are available from the authors on "
            f"request, {IMAGE_REQUEST_URL}; name each file <label><ext>, ext one of "
            f"{', '.join(STIMULUS_EXTENSIONS[:4])}...",
            title=f"{len(missing)} of {len(labels)} images have no file in {folder}:")
    return found


class FeatureStore:
    """Read access to a features file (layout in the module docstring).

    Parameters
    ----------
    path : path
        An existing features file.

    Raises
    ------
    DamagedFileError
        Not a features file of this layout.
    """

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise MissingDataError(self.path, detail="(computed by decode_features.py from "
                                                     "the images)")
        try:
            with h5py.File(self.path, "r", locking=False) as f:
                self.record = json.loads(f.attrs["record"])
                self.labels = [s.decode("utf-8") if isinstance(s, bytes) else str(s)
                               for s in f["labels"][()]]
                self.rows_per_block = int(f.attrs["rows_per_block"])
                self._shapes = {name: tuple(int(s) for s in ds.attrs["shape"])
                                for name, ds in f["features"].items()}
        except (OSError, KeyError, ValueError) as err:
            raise DamagedFileError(self.path, f"not a features file of icnn-torch ({err}); "
                                   "once it is deleted the next run recomputes it") from err
        if self.record.get("format") != STORE_FORMAT:
            raise DamagedFileError(self.path, "not a features file of icnn-torch")

    @property
    def layers(self) -> List[str]:
        """The layers the file has."""
        return list(self._shapes)

    def shape(self, layer: str) -> tuple:
        """Feature shape of one image, e.g. (64, 224, 224) or (4096,)."""
        self._check_layer(layer)
        return self._shapes[layer]

    def n_units(self, layer: str) -> int:
        """Units of ``layer`` (the product of :meth:`shape`)."""
        return int(np.prod(self.shape(layer)))

    def _check_layer(self, layer: str) -> None:
        if layer not in self._shapes:
            raise ConfigError(f"{self.path} has no features of layer {layer!r} (it has "
                              f"{', '.join(self._shapes)})")

    def missing_blocks(self, layer: str) -> int:
        """Row blocks of ``layer`` not yet written."""
        self._check_layer(layer)
        with h5py.File(self.path, "r", locking=False) as f:
            return int(np.sum(f["done"][layer][()] == 0))

    def complete(self, layers: Optional[Sequence[str]] = None) -> bool:
        """Whether every row of ``layers`` (default: all) is written."""
        return all(layer in self._shapes and self.missing_blocks(layer) == 0
                   for layer in (self.layers if layers is None else layers))

    def read_units(self, layer: str, start: int, stop: int) -> np.ndarray:
        """Units ``start:stop`` of every image: (n_images, stop - start) float32."""
        self._check_layer(layer)
        with h5py.File(self.path, "r", locking=False) as f:
            return np.asarray(f["features"][layer][:, start:stop], dtype=np.float32)

    def read_layer(self, layer: str, rows: Optional[Sequence[int]] = None) -> np.ndarray:
        """All units of ``layer``: (n_images, *shape) float32 (``rows``: some images)."""
        self._check_layer(layer)
        with h5py.File(self.path, "r", locking=False) as f:
            ds = f["features"][layer]
            data = ds[()] if rows is None else ds[np.sort(np.asarray(rows))]
            if rows is not None:  # h5py reads sorted rows: restore the asked order
                order = np.argsort(np.argsort(np.asarray(rows)))
                data = data[order]
        return np.asarray(data, dtype=np.float32).reshape((len(data),) + self._shapes[layer])


def _early_dcpl():
    """Dataset creation properties: storage allocated when the dataset is created."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    return dcpl


def _add_layers(f, shapes: Dict[str, tuple], n_images: int, rows_per_block: int) -> None:
    n_blocks = -(-n_images // rows_per_block)
    for layer, shape in shapes.items():
        units = int(np.prod(shape))
        ds = f.create_dataset(f"features/{layer}", (n_images, units), dtype="<f4",
                              dcpl=_early_dcpl(), fill_time="never")
        ds.attrs["shape"] = np.asarray(shape, dtype=np.int64)
        f.create_dataset(f"done/{layer}", (n_blocks,), dtype="u1", dcpl=_early_dcpl(),
                         fillvalue=0, fill_time="alloc")


def _create(path: Path, record: dict, labels: Sequence[str], shapes: Dict[str, tuple],
            rows_per_block: int) -> None:
    with atomic_output(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["record"] = json.dumps(record)
            f.attrs["rows_per_block"] = int(rows_per_block)
            f.create_dataset("labels", data=np.array([l.encode("utf-8") for l in labels]),
                             dtype=h5py.string_dtype("utf-8"))
            f.create_group("features")
            f.create_group("done")
            _add_layers(f, shapes, len(labels), rows_per_block)


def _layer_shapes(encoder, layers: Sequence[str], device) -> Dict[str, tuple]:
    import torch
    h, w = (int(s) for s in encoder.input_size)
    with torch.inference_mode():
        out = encoder(torch.zeros(1, 3, h, w, device=device), list(layers))
    return {layer: tuple(int(s) for s in out[layer].shape[1:]) for layer in layers}


def _load_batch(paths: Sequence[Path], size, img_mean) -> np.ndarray:
    return np.stack([img_preprocess(load_stimulus(p, size=tuple(size)), img_mean)
                     for p in paths])


def compute_features(encoder, network: str, images: Sequence[PathLike], labels: Sequence[str],
                     path: PathLike, layers: Sequence[str],
                     device: Optional["torch.device"] = None,
                     rows_per_block: int = DEFAULT_ROWS_PER_BLOCK, progress: bool = True,
                     description: str = "features") -> FeatureStore:
    """Compute (or complete) the features file of an image set.

    Parameters
    ----------
    encoder : callable ``encoder(x, layers) -> dict``
        Caffe-space input (N, 3, H, W) (BGR, 0..255, mean subtracted); attributes
        ``input_size`` and ``img_mean`` (see :mod:`icnn_torch.features`).
    network : str
        Its name in the decoded-feature tree.
    images : sequence of paths
        One image per label, in row order.
    labels : sequence of str
    path : path
        The features file (created when absent, completed otherwise).
    layers : sequence of str
    device : torch.device, optional
        Where the batches go (default: the encoder's device).
    rows_per_block : int
        Images per forward pass and per write, for a new file (a file keeps its own).
    progress : bool
        tqdm bar on a terminal.

    Returns
    -------
    FeatureStore

    Raises
    ------
    ConfigError
        The file holds features of another encoder, input size or image mean, or of
        other images.
    """
    import torch

    from ..nets.extractor import net_device
    path = Path(path)
    labels = list(labels)
    images = [Path(p) for p in images]
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images for {len(labels)} labels")
    device = net_device(encoder) if device is None else torch.device(device)
    record = encoder_record(encoder, network)
    if path.is_file():
        store = FeatureStore(path)
        differ = [k for k in IDENTITY_FIELDS if store.record.get(k) != record.get(k)]
        if differ:
            raise ConfigError(
                f"{path} holds features of {_describe(store.record)}, not of this run's "
                f"{_describe(record)} (they differ in {', '.join(differ)}); use another "
                "features_dir, or delete the file to recompute it")
        if store.labels != labels:
            raise ConfigError(
                f"{path} holds features of {len(store.labels)} other images (first "
                f"{store.labels[:2]}), not of these {len(labels)} (first {labels[:2]}); use "
                "another features_dir, or delete the file to recompute it")
        new = [layer for layer in layers if layer not in store.layers]
        if new:
            with h5py.File(path, "r+") as f:
                _add_layers(f, _layer_shapes(encoder, new, device), len(labels),
                            store.rows_per_block)
            store = FeatureStore(path)
    else:
        _create(path, record, labels, _layer_shapes(encoder, layers, device), rows_per_block)
        store = FeatureStore(path)
    rows = store.rows_per_block
    n_blocks = -(-len(labels) // rows)
    with h5py.File(path, "r+") as f:
        done = {layer: f["done"][layer][()] for layer in layers}
        todo = [b for b in range(n_blocks) if any(done[layer][b] == 0 for layer in layers)]
        bar = tqdm(total=len(labels), initial=len(labels) - sum(
            min(rows, len(labels) - b * rows) for b in todo), unit="image", desc=description,
            disable=not (progress and is_terminal()))
        with bar, torch.inference_mode():
            for block in todo:
                start, stop = block * rows, min((block + 1) * rows, len(labels))
                wanted = [layer for layer in layers if done[layer][block] == 0]
                batch = torch.from_numpy(_load_batch(images[start:stop], encoder.input_size,
                                                     encoder.img_mean)).to(device)
                out = encoder(batch, wanted)
                for layer in wanted:
                    values = out[layer].reshape(stop - start, -1).to("cpu", torch.float32)
                    f["features"][layer][start:stop] = values.numpy()
                f.flush()  # the rows first, then their flags
                for layer in wanted:
                    f["done"][layer][block] = 1
                f.flush()
                bar.update(stop - start)
    return FeatureStore(path)
