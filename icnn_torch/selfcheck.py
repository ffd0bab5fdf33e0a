"""Self-check on the real weights: the original icnn's own Caffe results, recomputed here.

The original ``icnn`` repository (KamitaniLab/icnn, pinned at commit
:data:`PINNED_COMMIT`) ships, under ``test/``, what Caffe computed for each of its four
algorithms in a 200/500-iteration case and a 3-iteration ``_quick`` case: the final image
``recon_img.mat``, the loss list ``loss_list.mat``, the options it ran with
``options.pkl`` (a Python 2 pickle holding the layer weights and bounds too) and its
start, ``initial_img.png`` or ``initial_gen_feat.mat``. Its ``test.py`` recomputes them
from the true features of ``examples/data/orig_img.jpg`` and demands exact equality
(Caffe against itself). This module does the same with our engines and the user's weights,
and says how close each case comes, against tolerances float32 arithmetic allows::

    python -m icnn_torch.selfcheck [--cases quick|full|all|NAME,...] [--device DEV]
        [--vgg19 PATH] [--generator PATH] [--mean PATH] [--net-dir DIR] [--data-dir DIR]
        [--snapshots DIR] [--spread] [--verbose] [--no-progress] [--debug]

What is done per case, as the original ``test.py`` does it:

- targets: features of ``orig_img.jpg`` resized to the net's input size (224x224) with
  PIL's bicubic filter on the uint8 image (``scipy.misc.imresize(..., interp='bicubic')``),
  at every blob whose name contains ``conv`` or ``fc`` (16 conv + fc6 fc7 fc8 for VGG19);
- keyword options: the pickled ones, loaded with ``encoding='latin1'``, with these
  changes (all in :func:`engine_kwargs`): the snapshots go to a fresh folder, the start is
  the case's ``initial_img.png`` (as an RGB uint8 array) or ``initial_gen_feat.mat``
  (``[0]``), the DGN cases get ``output_layer_gen='generated'`` (``test.py`` overrides the
  pickled layer name ``deconv0`` with the blob name), the progress display is ours, and
  ``device`` is added;
- the image mean: the per-channel average of ``ilsvrc_2012_mean.npy``.

The reference files (4 per case plus ``orig_img.jpg``, 7 MB for all cases) are fetched from
``https://raw.githubusercontent.com/KamitaniLab/icnn/<commit>/<path>`` (the base address
is overridable with ``ICNN_TORCH_ICNN_RAW_URL``) through :func:`icnn_torch.download.fetch`,
checked against the md5 recorded in :data:`REFERENCE_MD5` and cached under
``<data-dir>/icnn_test_reference/<commit>/<path>``; later runs need no network.

The printed table has one row per case; the columns and the PASS criteria (see
:data:`CRITERIA` and :func:`legend`) are:

``n``
    Length of the loss list, ours/Caffe's: iterations for GD, function evaluations for
    L-BFGS.
``corr``
    Pearson correlation of our final image with Caffe's, over all pixel values.
``img``
    ``max |ours - Caffe|`` over all pixel values, divided by the value range of Caffe's image.
``loss``
    Largest relative difference of the loss lists, ``|ours - Caffe| / Caffe``, over their
    common length.
``loss0``
    The same for the first entry alone: the loss of the shared start, forward passes only.
``final``
    Our last loss divided by Caffe's.

Why these tolerances. They are what float32 arithmetic allows, and were measured rather
than guessed, on full-size VGG19 / DeePSiM nets with random weights (no real weights were
at hand when they were set; ``--spread`` shows the same quantity for yours):

- The gradient, not the forward pass, carries the rounding. At the ``icnn_gd_quick``
  start, float32 and float64 forward passes give losses 1.7e-7 apart, but gradients with
  respect to the image 2.5e-3 apart (relative L2; at the worst pixel 0.18 of the mean
  ``|g|``); the backward sums cancel heavily. Two float32 convolution algorithms (oneDNN,
  PyTorch's im2col + GEMM) give gradients 1.3e-3 apart. Caffe is a third one.
- ``loss0 <= 1e-4`` in every case: the start is shared, so only forward passes differ
  (1.7e-7 measured; Caffe's cuDNN may choose FFT or Winograd convolutions, and our VGG19
  is held to 1e-4 relative L2 against OpenCV's Caffe importer in
  ``tests/test_model_parity.py``). Anything but rounding moves it further: the rounded
  means (104, 117, 123) by 1e-3, the B mean +1 by 7e-3, a bilinear or Lanczos resize
  by 2e-2..4e-2, one layer fewer by 3e-2..1e-1.
- ``_quick`` cases (3 iterations): the same loss-list length, and limits about 10x the
  largest *spread* measured between two float32 runs of our engine that differ only in
  the convolution algorithm, over three or four random-weight nets (the ``spread`` texts of
  :data:`CRITERIA`). Pixel GD stays within 5e-3 of the image range; DGN GD within 1e-2
  (the generator's backward adds its own rounding); L-BFGS builds its direction from
  gradient differences of small steps, which amplifies the gradient's rounding: its
  image parts by up to 0.14 of the range (pixel) at a loss within 1e-3, so the image's
  maximum difference is not judged for pixel L-BFGS, its correlation and losses are.
- 200/500-iteration cases: the rounding differences grow at every step, and after some
  tens of iterations the two runs are different optimisations from the same start
  (measured at 200 iterations: pixel GD loss curves 1% apart, DGN GD 22% apart mid-run
  with images correlated at only 0.77, pixel L-BFGS losses 54% apart once they fall to
  5e-4). Judged is what survives: the shared start (``loss0``), the budget (GD: the same
  ``n``; L-BFGS: ``maxiter`` iterations, so ``n`` within 10%), the loss reached
  (``final``: within 10%, a factor 3 for pixel L-BFGS, whose loss falls towards 0), the
  pixel-GD loss curve (within 10%) and the content (``corr >= 0.9`` for the pixel
  engines, 0.5 for the DGN ones, whose latent wanders off between equally good images).

Exit status: 0 when every case passes, 1 otherwise (also for every expected failure:
missing weights, a failed or corrupt download, which print one ``error:`` line; see
:func:`icnn_torch.errors.run_cli`).
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import pickle
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Optional, Sequence, TextIO

import numpy as np

from ._util import PathLike, atomic_output, is_terminal
from .errors import ConfigError, DamagedFileError, MissingDataError
from .fetch.http import fetch, remote_url
from .recon.engines import EngineInfo, engine_info
from .run.advice import Context
from .run.cli import run_cli
from .store.layout import (DEFAULT_DATA_DIR, DEFAULT_NET_DIR, generator_weights_path,
                           image_mean_path, vgg19_weights_path)

__all__ = ["PINNED_COMMIT", "REFERENCE_MD5", "ORIG_IMG_PATH", "Case", "CASES", "Criteria",
           "CRITERIA", "Reference", "CaseResult", "reference_url", "reference_folder",
           "fetch_references", "load_options", "read_reference", "target_layers",
           "target_features", "engine_kwargs", "compare", "run_case", "run_selfcheck",
           "legend", "format_row", "main"]

#: The commit of KamitaniLab/icnn whose ``test/`` folder holds the reference results.
PINNED_COMMIT = "793e58a98e89d9e834d5ae49cc9f8c69c9116337"

#: The original image whose true features are the targets (path in that repository).
ORIG_IMG_PATH = "examples/data/orig_img.jpg"

#: Folder under ``--data-dir`` where the reference files are cached, per commit.
REFERENCE_DIRNAME = "icnn_test_reference"

#: md5 of every reference file at :data:`PINNED_COMMIT` (computed from the repository).
REFERENCE_MD5: dict[str, str] = {
    ORIG_IMG_PATH: "3bcb3f0ff7bd9354237c6e89e8247416",
    "test/icnn_gd/options.pkl": "e4915cabaceb304244370009a2bd8ae6",
    "test/icnn_gd/recon_img.mat": "b5c849a51181fb9a56851eb3d63bdf2c",
    "test/icnn_gd/loss_list.mat": "224543df9a079a12d43f3b36a76909c9",
    "test/icnn_gd/initial_img.png": "2377ef2067e1e432aab7e81bf5f134fd",
    "test/icnn_gd_quick/options.pkl": "16bcbe0b2b18648e5b210d79e363dcc0",
    "test/icnn_gd_quick/recon_img.mat": "b2c4976fc6b06be61c7e16b9e19f1453",
    "test/icnn_gd_quick/loss_list.mat": "8e161e718f106cb180fad730177714fc",
    "test/icnn_gd_quick/initial_img.png": "575afa2150ce21a6e6d28b353dd118e5",
    "test/icnn_lbfgs/options.pkl": "37a03b5a6a119a4bd193d3164d64f6d9",
    "test/icnn_lbfgs/recon_img.mat": "9c78f46fc3fac4bf307f30d595ef185a",
    "test/icnn_lbfgs/loss_list.mat": "b4a1a6b18ed27f7ce6dc9e76eb95fcba",
    "test/icnn_lbfgs/initial_img.png": "d77242055a5e56446a23796a21e6bebf",
    "test/icnn_lbfgs_quick/options.pkl": "5e48ce3c66d5c763a73de8b420e45fbd",
    "test/icnn_lbfgs_quick/recon_img.mat": "9afac907a735b05da894d89bf93f17c1",
    "test/icnn_lbfgs_quick/loss_list.mat": "8469ea836b1a6a75f8b7ba53cd65f3a3",
    "test/icnn_lbfgs_quick/initial_img.png": "77090dce02f2145e06f0351c8800d0bb",
    "test/icnn_dgn_gd/options.pkl": "bba7b52437afc0315907ff0cf63ab6d8",
    "test/icnn_dgn_gd/recon_img.mat": "dfdc407c50a45be10e473610d023648f",
    "test/icnn_dgn_gd/loss_list.mat": "4734144d856eda9ab6f57262851463c9",
    "test/icnn_dgn_gd/initial_gen_feat.mat": "f546cad5e3370d9140fd6a88de29530b",
    "test/icnn_dgn_gd_quick/options.pkl": "d5a9e66b59ea359607a70c09f06ba462",
    "test/icnn_dgn_gd_quick/recon_img.mat": "86c004a6f4ce4bf9388625588ea49f88",
    "test/icnn_dgn_gd_quick/loss_list.mat": "cab29fd93232ea1550dae090d929b896",
    "test/icnn_dgn_gd_quick/initial_gen_feat.mat": "b7d70e5a405721eb888d7d1e14b79f38",
    "test/icnn_dgn_lbfgs/options.pkl": "89019c286e57fff213ebcf7b5e6363af",
    "test/icnn_dgn_lbfgs/recon_img.mat": "996d8fbcd15029b48b7f132f5179a94d",
    "test/icnn_dgn_lbfgs/loss_list.mat": "8f437b2ed3e299445db5573936599a0b",
    "test/icnn_dgn_lbfgs/initial_gen_feat.mat": "69be25bc1c3a3f2b27e1be079fea3df7",
    "test/icnn_dgn_lbfgs_quick/options.pkl": "5942784636b24a371f6b1698c27a7d97",
    "test/icnn_dgn_lbfgs_quick/recon_img.mat": "551725ab7a50faa74d1378d460f5938f",
    "test/icnn_dgn_lbfgs_quick/loss_list.mat": "35c68c809459caa176bcd4e447b572f6",
    "test/icnn_dgn_lbfgs_quick/initial_gen_feat.mat": "52976d086157f2be743750d05dc72b82",
}


# --------------------------------------------------------------------------- the cases

@dataclass(frozen=True)
class Case:
    """One test case of the original suite: ``test/<name>/`` run by engine ``engine``."""

    name: str
    engine: str

    @property
    def info(self) -> EngineInfo:
        return engine_info(self.engine)

    @property
    def quick(self) -> bool:
        """The 3-iteration variant."""
        return self.name.endswith("_quick")

    @property
    def uses_generator(self) -> bool:
        return self.info.uses_generator

    @property
    def start_file(self) -> str:
        """The start the original passes: an image for pixel engines, a latent for DGN."""
        return "initial_gen_feat.mat" if self.uses_generator else "initial_img.png"

    def path(self, name: str) -> str:
        """Path of one of the case's files in the original repository."""
        return f"test/{self.name}/{name}"

    @property
    def files(self) -> tuple[str, ...]:
        """The case's reference files (repository paths)."""
        return tuple(self.path(n) for n in
                     ("options.pkl", "recon_img.mat", "loss_list.mat", self.start_file))


_ENGINE_NAMES = ("icnn_gd", "icnn_lbfgs", "icnn_dgn_gd", "icnn_dgn_lbfgs")
#: The eight cases of the original ``test.py``: the quick ones first (seconds each), then
#: the 200/500-iteration ones.
CASES: tuple[Case, ...] = tuple(Case(e + suffix, e) for suffix in ("_quick", "")
                                for e in _ENGINE_NAMES)
_CASE_GROUPS = {"quick": [c for c in CASES if c.quick], "full": [c for c in CASES if not c.quick],
                "all": list(CASES)}


def select_cases(spec: str | Sequence[str]) -> list[Case]:
    """Cases from names and the groups ``quick``, ``full``, ``all`` (comma-separated or a
    sequence), in :data:`CASES` order; a :class:`ConfigError` lists the valid names."""
    words = spec.split(",") if isinstance(spec, str) else list(spec)
    by_name = {c.name: c for c in CASES}
    chosen: set[str] = set()
    for word in (w.strip() for w in words):
        if not word:
            continue
        if word in _CASE_GROUPS:
            chosen.update(c.name for c in _CASE_GROUPS[word])
        elif word in by_name:
            chosen.add(word)
        else:
            raise ConfigError(f"unknown case {word!r}; choose from {', '.join(_CASE_GROUPS)} "
                              f"or {', '.join(by_name)}")
    if not chosen:
        raise ConfigError("no case chosen")
    return [c for c in CASES if c.name in chosen]


# --------------------------------------------------------------------------- criteria

@dataclass(frozen=True)
class Criteria:
    """PASS limits of one case (see the module docstring for their derivation).

    ``None`` means the quantity is reported but not judged. ``spread`` says what the limits
    were derived from (printed in the legend).
    """

    loss0_max: float
    loss_max: Optional[float]
    corr_min: float
    img_max: Optional[float]
    n_rel_max: float  # allowed |n_ours - n_Caffe| / n_Caffe (0: equal lengths)
    final_ratio_max: Optional[float]  # allowed max(final, 1/final)
    spread: str = ""

    def describe(self) -> str:
        parts = [f"loss0 <= {self.loss0_max:g}"]
        parts.append("equal n" if self.n_rel_max == 0 else f"n within {self.n_rel_max:.0%}")
        if self.loss_max is not None:
            parts.append(f"loss <= {self.loss_max:g}")
        parts.append(f"corr >= {self.corr_min:g}")
        if self.img_max is not None:
            parts.append(f"img <= {self.img_max:g}")
        if self.final_ratio_max is not None:
            parts.append(f"final in [1/{self.final_ratio_max:g}, {self.final_ratio_max:g}]")
        return ", ".join(parts)


#: Relative difference of the first loss allowed in every case: the shared start seen
#: through two float32 forward passes (targets and start), see the module docstring.
LOSS0_MAX = 1e-4

#: PASS limits per case name, about 10x the largest float32 spread measured (two runs of
#: our engine differing only in the convolution algorithm, random-weight full-size nets:
#: three or four nets for the quick cases, one for the long ones), which the ``spread`` texts quote.
CRITERIA: dict[str, Criteria] = {
    "icnn_gd_quick": Criteria(LOSS0_MAX, 1e-4, 0.9999, 5e-2, 0.0, None,
                              "corr 1-1.1e-5, img 5.3e-3, loss 2.8e-6"),
    "icnn_lbfgs_quick": Criteria(LOSS0_MAX, 2e-2, 0.97, None, 0.0, None,
                                 "corr 1-2.6e-3, img 0.14, loss 1.1e-3"),
    "icnn_dgn_gd_quick": Criteria(LOSS0_MAX, 5e-3, 0.998, 1e-1, 0.0, None,
                                  "corr 1-2.1e-4, img 1.1e-2, loss 6.3e-4"),
    "icnn_dgn_lbfgs_quick": Criteria(LOSS0_MAX, 2e-2, 0.998, 1e-1, 0.0, None,
                                     "corr 1-1.5e-4, img 8.3e-3, loss 1.7e-3"),
    # 200/500 iterations: judged on what survives the chaotic divergence (spreads measured
    # at 200 iterations, L-BFGS with maxiter 200).
    "icnn_gd": Criteria(LOSS0_MAX, 1e-1, 0.9, None, 0.0, 1.1,
                        "corr 0.986, img 0.21, loss 1.1e-2, final 0.991"),
    "icnn_lbfgs": Criteria(LOSS0_MAX, None, 0.9, None, 0.1, 3.0,
                           "corr 1.000, img 5e-5, loss 0.54, final 1.54 at a loss of 5e-4"),
    "icnn_dgn_gd": Criteria(LOSS0_MAX, None, 0.5, None, 0.0, 1.1,
                            "corr 0.77, img 0.37, loss 0.41, final 0.998"),
    "icnn_dgn_lbfgs": Criteria(LOSS0_MAX, None, 0.5, None, 0.1, 1.1,
                               "corr 0.93, img 0.22, loss 1.4e-3, final 1.001"),
}


def criteria_for(case: Case) -> Criteria:
    """The PASS limits of ``case`` (:data:`CRITERIA`)."""
    return CRITERIA[case.name]


def legend(cases: Iterable[Case]) -> str:
    """What the columns mean and the criteria of ``cases``, with their reasons."""
    import textwrap

    def wrapped(text: str, indent: str = "  ", later: str = "         ") -> list[str]:
        return textwrap.wrap(text, 96, initial_indent=indent, subsequent_indent=later)

    lines = wrapped(
        f"Self-check against the original icnn's own Caffe results (KamitaniLab/icnn@"
        f"{PINNED_COMMIT[:7]}, test/). Targets: true features of {ORIG_IMG_PATH} resized "
        "bicubic to the input size, at every conv and fc layer; options, layer weights and "
        "start: each case's files, as the original test.py.", "", "")
    lines += wrapped("n      loss list length, ours/Caffe's (iterations for GD, function "
                     "evaluations for L-BFGS)")
    lines += wrapped("corr   Pearson correlation of our final image with Caffe's")
    lines += wrapped("img    max |ours - Caffe| / value range of Caffe's image")
    lines += wrapped("loss   max relative difference of the loss lists over their common length")
    lines += wrapped("loss0  relative difference of the first loss, the shared start (forward "
                     f"passes only; limit {LOSS0_MAX:g} in every case)")
    lines += wrapped("final  our last loss / Caffe's")
    lines += wrapped(
        "Limits come from float32 arithmetic: the gradient through VGG19 carries a relative "
        "rounding error of about 2e-3 (float32 vs float64, random weights), so runs that "
        "differ only in rounding part visibly. Quick (3-iteration) limits are about 10x the "
        "largest 'spread' measured between two float32 runs of our engine that differ only "
        "in the convolution algorithm (random-weight nets, three or four each); --spread measures "
        "it for your weights. Long runs diverge chaotically; they are judged on what "
        "survives: the start, the iteration budget, the loss reached, the image content.",
        "", "")
    for case in cases:
        crit = criteria_for(case)
        lines += wrapped(f"{case.name}: {crit.describe()}" +
                         (f" (spread measured: {crit.spread})" if crit.spread else ""),
                         "  ", "      ")
    return "\n".join(lines)


# --------------------------------------------------------------------------- references

def reference_url(path: str, commit: str = PINNED_COMMIT) -> str:
    """Raw address of a file of the original repository at ``commit``.

    The base (default ``https://raw.githubusercontent.com/KamitaniLab/icnn``) comes from
    :func:`icnn_torch.download.remote_url` (environment variable ``ICNN_TORCH_ICNN_RAW_URL``).
    """
    return f"{remote_url('icnn_raw').rstrip('/')}/{commit}/{path}"


def reference_folder(data_dir: PathLike = DEFAULT_DATA_DIR, commit: str = PINNED_COMMIT) -> Path:
    """``<data_dir>/icnn_test_reference/<commit>``: the cache, in the repository's layout."""
    return Path(data_dir, REFERENCE_DIRNAME, commit)


def fetch_references(cases: Iterable[Case], data_dir: PathLike = DEFAULT_DATA_DIR,
                     progress: bool = True, md5: Mapping[str, str] | None = None,
                     commit: str = PINNED_COMMIT) -> Path:
    """Make sure the reference files of ``cases`` (and ``orig_img.jpg``) are cached.

    A cached file whose md5 matches is used as it is (no request); anything else is
    (re)downloaded and verified before it replaces the cached copy.

    Parameters
    ----------
    cases : iterable of Case
    data_dir : path-like
        The cache is :func:`reference_folder` ``(data_dir, commit)``.
    progress : bool
        Progress bars (on a terminal only).
    md5 : mapping of repository path -> hex md5, optional
        The expected digests (default: :data:`REFERENCE_MD5`, those of :data:`PINNED_COMMIT`).
    commit : str

    Returns
    -------
    Path
        The cache folder.

    Raises
    ------
    ChecksumError
        A downloaded file does not match its md5 (it is deleted, the cache is untouched).
    DownloadError
        The server could not be reached or answered with an error.
    """
    md5 = REFERENCE_MD5 if md5 is None else md5
    folder = reference_folder(data_dir, commit)
    paths = [ORIG_IMG_PATH] + [p for case in cases for p in case.files]
    for path in paths:
        fetch(reference_url(path, commit), folder / path, md5=md5[path],
                       progress=progress, label=f"icnn {path}")
    return folder


# Globals a reference options.pkl may name: numpy scalars, dtypes and arrays, as Python 2
# numpy pickled them (numpy.core) or numpy 2 does (numpy._core). Nothing else is loaded.
_PICKLE_GLOBALS = {(module, name)
                   for package in ("numpy.core", "numpy._core")
                   for module, name in ((f"{package}.multiarray", "scalar"),
                                        (f"{package}.multiarray", "_reconstruct"))} | \
    {("numpy", "dtype"), ("numpy", "ndarray")}


class _OptionsUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in options.pkl")
        return super().find_class(module, name)


def load_options(path: PathLike) -> dict:
    """The keyword options a case ran with, from the original's ``options.pkl``.

    The file is a Python 2 pickle (text protocol, numpy scalars and arrays pickled by
    numpy 1.x); it is read with ``encoding='latin1'``, which restores the arrays' raw
    bytes, and only numpy's scalar/array/dtype constructors may be named in it.

    Returns
    -------
    dict
        Option name -> value as pickled (e.g. ``layer_weight``: layer -> ``np.float32``;
        ``feat_upper_bound``: (4096,) float64; ``gen_feat_bounds``: list of (0, ub) pairs).

    Raises
    ------
    DamagedFileError
        Not such a pickle, or not a dict.
    """
    try:
        with open(path, "rb") as f:
            options = _OptionsUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            ImportError, IndexError, KeyError) as err:
        raise DamagedFileError(path, f"not a readable options pickle ({err})") from err
    if not isinstance(options, dict):
        raise DamagedFileError(path, f"holds a {type(options).__name__}, not a dict of options")
    return options


@dataclass
class Reference:
    """Caffe's result of one case and what it started from.

    Attributes
    ----------
    options : dict
        From ``options.pkl`` (see :func:`load_options`).
    recon_img : ndarray, (H, W, 3)
        Caffe's final image: RGB, 0..255 scale, mean added back, not clipped (float32 for
        GD and DGN, float64 for icnn_lbfgs).
    loss_list : ndarray, (n,)
        Its loss per iteration (GD) or function evaluation (L-BFGS).
    initial : ndarray
        ``initial_img.png`` as (H, W, 3) RGB uint8, or ``initial_gen_feat.mat`` ``[0]``,
        (4096,) float32.
    """

    options: dict
    recon_img: np.ndarray
    loss_list: np.ndarray
    initial: np.ndarray


def _mat_variable(path: Path, name: str) -> np.ndarray:
    import scipy.io
    try:
        contents = scipy.io.loadmat(str(path), variable_names=[name])
    except (ValueError, TypeError, OSError, NotImplementedError) as err:
        raise DamagedFileError(path, f"not a readable MATLAB file ({err})") from err
    if name not in contents:
        raise DamagedFileError(path, f"has no variable {name!r}")
    return np.asarray(contents[name])


def read_reference(case: Case, folder: PathLike) -> Reference:
    """Read the reference files of ``case`` from the cache ``folder`` (repository layout).

    Raises
    ------
    MissingDataError
        A file is absent (run :func:`fetch_references` first).
    DamagedFileError
        A file cannot be read as what it should be.
    """
    from PIL import Image

    folder = Path(folder)
    missing = [folder / p for p in case.files if not (folder / p).is_file()]
    if missing:
        raise MissingDataError(missing, detail=f"(the self-check downloads its reference files "
                                               f"itself: --cases {case.name})")
    options = load_options(folder / case.path("options.pkl"))
    recon_img = _mat_variable(folder / case.path("recon_img.mat"), "recon_img")
    loss_list = _mat_variable(folder / case.path("loss_list.mat"), "loss_list").reshape(-1)
    if recon_img.ndim != 3 or recon_img.shape[2] != 3:
        raise DamagedFileError(folder / case.path("recon_img.mat"),
                               f"recon_img has shape {recon_img.shape}, expected (H, W, 3)")
    start = folder / case.path(case.start_file)
    if case.uses_generator:
        initial = _mat_variable(start, "initial_gen_feat")[0].astype(np.float32)
    else:
        try:
            with Image.open(start) as im:
                initial = np.asarray(im.convert("RGB"))
        except OSError as err:
            raise DamagedFileError(start, f"not a readable image ({err})") from err
    return Reference(options, recon_img, loss_list, initial)


# --------------------------------------------------------------------------- running

def target_layers(net) -> list[str]:
    """The net's blobs whose names contain ``conv`` or ``fc``, in network order (as the
    original ``test.py`` picks them: 16 conv + fc6 fc7 fc8 for VGG19, no pool)."""
    return [name for name in net.layer_names if "conv" in name or "fc" in name]


def target_features(net, image_path: PathLike, device=None) -> dict[str, np.ndarray]:
    """True features of the original image, the targets of every case.

    The image is resized to the net's input size with PIL's bicubic filter on its uint8
    RGB values (what ``scipy.misc.imresize(img, (h, w), interp='bicubic')`` did) and passed
    through ``net`` at :func:`target_layers`, in full float32 on CUDA.

    Returns
    -------
    dict of str to ndarray (float32)
        (C, H, W) for conv layers, (N,) for fc layers.
    """
    from PIL import Image

    from .nets.extractor import net_device
    from .perf import full_float32
    from .utils import get_cnn_features

    h, w = net.input_size
    try:
        with Image.open(image_path) as im:
            img = np.asarray(im.convert("RGB").resize((w, h), Image.BICUBIC))
    except OSError as err:
        raise DamagedFileError(image_path, f"not a readable image ({err})") from err
    with full_float32(net_device(net) if device is None else device):
        return get_cnn_features(net, img, target_layers(net))


def _silent_value(option: str):
    return False if option == "disp" else 0


def engine_kwargs(case: Case, reference: Reference, snapshot_dir: PathLike, device=None,
                  display: str = "quiet", accepted: Optional[Iterable[str]] = None
                  ) -> tuple[dict, list[str]]:
    """The pickled options of ``case`` translated into our engine's keyword arguments.

    This is the one place where the self-check departs from passing the pickle through:

    - ``save_intermediate_path``: ``snapshot_dir`` (the pickles name the authors' folders);
    - ``initial_image`` (pixel engines): the case's ``initial_img.png``, RGB uint8
      (``test.py`` passes the PIL image); ``initial_gen_feat`` (DGN engines): the case's
      ``initial_gen_feat.mat`` ``[0]``;
    - ``output_layer_gen = 'generated'`` for the DGN engines, as ``test.py`` sets it;
    - the display option (``disp`` / ``disp_every``): ``display="quiet"`` silences it,
      ``"ours"`` removes it (our default: a progress bar on a terminal), ``"original"``
      keeps the pickled value (a line per iteration);
    - ``device`` is added when given;
    - options the engine does not accept (``accepted``: its keyword names) are dropped and
      returned as notes. At the time of writing every pickled option is accepted.

    Returns
    -------
    kwargs : dict
    notes : list of str
        One line per dropped option.
    """
    info = case.info
    kwargs = dict(reference.options)
    kwargs["save_intermediate_path"] = str(snapshot_dir)
    if case.uses_generator:
        kwargs["initial_gen_feat"] = reference.initial
        kwargs["output_layer_gen"] = "generated"
    else:
        kwargs["initial_image"] = reference.initial
    if display == "quiet":
        kwargs[info.display_option] = _silent_value(info.display_option)
    elif display == "ours":
        kwargs.pop(info.display_option, None)
    elif display != "original":
        raise ValueError(f"display must be 'quiet', 'ours' or 'original', not {display!r}")
    if device is not None:
        kwargs["device"] = device
    notes = []
    if accepted is not None:
        accepted = set(accepted)
        for name in sorted(set(kwargs) - accepted):
            notes.append(f"option {name}={kwargs.pop(name)!r:.40} dropped: our {case.engine} "
                         "does not accept it")
    return kwargs, notes


@dataclass
class CaseResult:
    """The comparison of one case (the quantities of the printed row)."""

    case: Case
    n_ours: int
    n_ref: int
    corr: float
    img: float
    loss: float
    loss0: float
    final: float
    seconds: float
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    spread: Optional["CaseResult"] = None  # our run vs our rerun (see run_case)

    @property
    def passed(self) -> bool:
        return not self.failures


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a.ravel() - a.mean()
    b = b.ravel() - b.mean()
    denominator = np.sqrt((a @ a) * (b @ b))
    return float(a @ b / denominator) if denominator > 0 else float("nan")


def _relative(ours: np.ndarray, ref: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.abs(ours - ref) / np.abs(ref)


def compare(case: Case, img: np.ndarray, losses: np.ndarray, reference: Reference,
            seconds: float = float("nan"), criteria: Optional[Criteria] = None) -> CaseResult:
    """Measure our result against Caffe's and judge it by ``criteria`` (default: the
    case's kind in :data:`CRITERIA`). All arithmetic in float64; a NaN fails."""
    criteria = criteria_for(case) if criteria is None else criteria
    img = np.asarray(img, dtype=np.float64)
    ref_img = np.asarray(reference.recon_img, dtype=np.float64)
    losses = np.asarray(losses, dtype=np.float64).reshape(-1)
    ref_losses = np.asarray(reference.loss_list, dtype=np.float64).reshape(-1)
    nan = float("nan")
    failures: list[str] = []
    if img.shape != ref_img.shape:
        failures.append(f"image shape {img.shape} differs from Caffe's {ref_img.shape}")
        corr = img_rel = nan
    else:
        corr = _pearson(img, ref_img)
        span = float(ref_img.max() - ref_img.min())
        img_rel = float(np.abs(img - ref_img).max() / span) if span > 0 else nan
    common = min(len(losses), len(ref_losses))
    if common == 0:
        failures.append(f"empty loss list (ours {len(losses)}, Caffe {len(ref_losses)})")
        loss_rel = loss0 = final = nan
    else:
        loss_rel = float(np.max(_relative(losses[:common], ref_losses[:common])))
        loss0 = float(_relative(losses[:1], ref_losses[:1])[0])
        final = float(losses[-1] / ref_losses[-1]) if ref_losses[-1] != 0 else nan

    def check(ok: bool, text: str) -> None:
        if not ok:
            failures.append(text)

    check(loss0 <= criteria.loss0_max, f"loss0 {loss0:.2g} > {criteria.loss0_max:g}")
    n_rel = abs(len(losses) - len(ref_losses)) / max(len(ref_losses), 1)
    check(n_rel <= criteria.n_rel_max,
          f"n {len(losses)} vs Caffe's {len(ref_losses)}" +
          (" (must be equal)" if criteria.n_rel_max == 0 else
           f" (more than {criteria.n_rel_max:.0%} apart)"))
    if criteria.loss_max is not None:
        check(loss_rel <= criteria.loss_max, f"loss {loss_rel:.2g} > {criteria.loss_max:g}")
    check(corr >= criteria.corr_min, f"corr {corr:.6g} < {criteria.corr_min:g}")
    if criteria.img_max is not None:
        check(img_rel <= criteria.img_max, f"img {img_rel:.2g} > {criteria.img_max:g}")
    if criteria.final_ratio_max is not None:
        check(final > 0 and max(final, 1 / final) <= criteria.final_ratio_max,
              f"final {final:.3g} outside [1/{criteria.final_ratio_max:g}, "
              f"{criteria.final_ratio_max:g}]")
    return CaseResult(case, len(losses), len(ref_losses), corr, img_rel, loss_rel, loss0,
                      final, seconds, failures)


@contextlib.contextmanager
def other_convolutions(device=None) -> Iterator[None]:
    """A block in which convolutions are computed by another float32 algorithm: PyTorch's
    own kernels instead of cuDNN on CUDA, instead of oneDNN on the CPU (the default ones).

    Both are correct float32 arithmetic; a run inside the block differs from one outside
    only by rounding, which is how :func:`run_case` measures the ``spread`` the arithmetic
    allows for a net on a machine. Only the backend's ``enabled`` switch is touched (and
    restored on exit).
    """
    import torch

    device = torch.device("cpu" if device is None else device)
    backend = torch.backends.cudnn if device.type == "cuda" else torch.backends.mkldnn
    saved = backend.enabled
    backend.enabled = False
    try:
        yield
    finally:
        backend.enabled = saved


def _run_engine(case: Case, net, net_gen, features, reference: Reference, device,
                folder: Path, display: str) -> tuple[np.ndarray, np.ndarray, float, list[str]]:
    module = case.info.load()
    accepted = inspect.signature(module.reconstruct_image).parameters
    kwargs, notes = engine_kwargs(case, reference, folder, device, display, accepted)
    nets = (net, net_gen) if case.uses_generator else (net,)
    start = time.perf_counter()
    img, losses = module.reconstruct_image(dict(features), *nets, **kwargs)[:2]
    return np.asarray(img), np.asarray(losses), time.perf_counter() - start, notes


def run_case(case: Case, net, net_gen, features: Mapping[str, np.ndarray],
             reference: Reference, device=None, snapshot_dir: Optional[PathLike] = None,
             display: str = "quiet", spread: bool = False) -> CaseResult:
    """Run our engine on one case and compare the outcome with Caffe's.

    Parameters
    ----------
    case : Case
    net : encoder
        VGG19 (e.g. from :func:`icnn_torch.models.load_vgg19`), whose ``img_mean`` is the
        mean of ``ilsvrc_2012_mean.npy``.
    net_gen : generator or None
        The DeePSiM generator for the DGN cases.
    features : dict
        :func:`target_features` of the original image.
    reference : Reference
    device : optional
        Passed to the engine (default: the net's device).
    snapshot_dir : path-like, optional
        Where the engine's snapshots go, and our ``recon_img.mat`` / ``loss_list.mat``
        (default: a temporary folder, deleted afterwards).
    display : {"quiet", "ours", "original"}
        See :func:`engine_kwargs`.
    spread : bool
        Run the case a second time inside :func:`other_convolutions` and keep the
        comparison of the two runs of ours as ``result.spread`` (not judged): what float32
        rounding alone does to this case, here.
    """
    import scipy.io

    if case.uses_generator and net_gen is None:
        raise ConfigError(f"case {case.name} needs the generator")
    with contextlib.ExitStack() as stack:
        def scratch() -> Path:
            return Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="icnn-selfcheck-")))

        folder = scratch() if snapshot_dir is None else Path(snapshot_dir)
        folder.mkdir(parents=True, exist_ok=True)
        img, losses, seconds, notes = _run_engine(case, net, net_gen, features, reference,
                                                  device, folder, display)
        if snapshot_dir is not None:
            for name, value in (("recon_img", img), ("loss_list", losses.reshape(1, -1))):
                with atomic_output(folder / f"{name}.mat") as tmp:
                    scipy.io.savemat(str(tmp), {name: value})
        result = compare(case, img, losses, reference, seconds)
        result.notes.extend(notes)
        if spread:
            from .nets.extractor import net_device
            with other_convolutions(net_device(net) if device is None else device):
                img2, losses2, seconds2, _ = _run_engine(case, net, net_gen, features, reference,
                                                         device, scratch(), display)
            result.spread = compare(case, img2, losses2,
                                    Reference(reference.options, img, losses, reference.initial),
                                    seconds2)
    return result


_HEADER = (f"{'case':<22} {'n':>9}  {'corr':>9} {'img':>8} {'loss':>8} {'loss0':>8} "
           f"{'final':>7} {'time':>8}  result")


def format_row(result: CaseResult) -> str:
    """One table row (see :data:`_HEADER` / :func:`legend`), plus a ``spread`` row when
    the case was rerun (our two runs compared; not judged)."""
    def cells(r: CaseResult, label: str) -> str:
        n = f"{r.n_ours}/{r.n_ref}"
        return (f"{label:<22} {n:>9}  {r.corr:>9.6f} {r.img:>8.1e} {r.loss:>8.1e} "
                f"{r.loss0:>8.1e} {r.final:>7.4f} {r.seconds:>7.1f}s")

    verdict = "PASS" if result.passed else "FAIL: " + "; ".join(result.failures)
    row = f"{cells(result, result.case.name)}  {verdict}"
    if result.spread is not None:
        row += f"\n{cells(result.spread, '  spread')}  (ours/ours rerun, not judged)"
    return row


def run_selfcheck(cases: Sequence[Case], net, net_gen, folder: PathLike, device=None,
                  out: Optional[TextIO] = None, snapshots: Optional[PathLike] = None,
                  display: str = "quiet", spread: bool = False) -> list[CaseResult]:
    """Run ``cases`` against the references in ``folder`` and print the table to ``out``
    (default: standard output): legend first, a row as each case finishes, notes and a
    summary line last."""
    out = sys.stdout if out is None else out
    folder = Path(folder)
    references = {case.name: read_reference(case, folder) for case in cases}
    features = target_features(net, folder / ORIG_IMG_PATH, device)
    print(legend(cases), file=out)
    print(file=out)
    print(_HEADER, file=out, flush=True)
    results = []
    for case in cases:
        result = run_case(case, net, net_gen, features, references[case.name], device,
                          None if snapshots is None else Path(snapshots, case.name), display,
                          spread)
        results.append(result)
        print(format_row(result), file=out, flush=True)
    for result in results:
        for note in result.notes:
            print(f"note: {result.case.name}: {note}", file=out)
    failed = [r.case.name for r in results if not r.passed]
    print(f"\n{len(results) - len(failed)} of {len(results)} cases passed" +
          (f"; failed: {', '.join(failed)}" if failed else ""), file=out, flush=True)
    return results


# --------------------------------------------------------------------------- command line

def _weights(cases: Sequence[Case], args) -> tuple[Path, Optional[Path]]:
    """The weight files the cases need; MissingDataError naming the download command."""
    vgg19 = Path(args.vgg19) if args.vgg19 else vgg19_weights_path(args.net_dir)
    need_gen = any(c.uses_generator for c in cases)
    generator = (Path(args.generator) if args.generator else
                 generator_weights_path(args.net_dir)) if need_gen else None
    missing, items = [], []
    for item, path in (("vgg19", vgg19), ("generator", generator)):
        if path is not None and not path.is_file():
            missing.append(path)
            items.append(item)
    if missing:
        mean = Path(args.mean) if args.mean else image_mean_path(args.data_dir)
        if not mean.is_file():
            items.append("mean")
        raise MissingDataError(missing, items, detail="The self-check runs on the real weights.")
    return vgg19, generator


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m icnn_torch.selfcheck",
        description="Recompute the original icnn's Caffe test results (KamitaniLab/icnn "
                    f"@{PINNED_COMMIT[:7]}, test/) with our engines on your weights and "
                    "report how close each case comes.")
    parser.add_argument("--cases", default="all",
                        help="comma-separated case names or the groups quick, full, all "
                             f"(default: %(default)s); cases: {', '.join(c.name for c in CASES)}")
    parser.add_argument("--device", default=None,
                        help="e.g. cpu, cuda, cuda:1 (default: CUDA when available)")
    parser.add_argument("--net-dir", default=DEFAULT_NET_DIR,
                        help="folder of the weights (default: %(default)s)")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR,
                        help="folder of ilsvrc_2012_mean.npy and of the reference cache "
                             "(default: %(default)s)")
    parser.add_argument("--vgg19", default=None,
                        help="VGG19 weights, .caffemodel or KamitaniLab's .pt (default: "
                             "NET_DIR/VGG_ILSVRC_19_layers/VGG_ILSVRC_19_layers.caffemodel or .pt)")
    parser.add_argument("--generator", default=None,
                        help="DeePSiM fc7 generator weights (default: NET_DIR/"
                             "generator_for_inverting_fc7/generator.caffemodel or .pt)")
    parser.add_argument("--mean", default=None,
                        help="image mean file (default: DATA_DIR/ilsvrc_2012_mean.npy)")
    parser.add_argument("--snapshots", default=None,
                        help="keep each case's snapshots and our recon_img.mat / loss_list.mat "
                             "in SNAPSHOTS/<case>/ (default: a temporary folder, deleted)")
    parser.add_argument("--spread", action="store_true",
                        help="run every case twice, the second time with another convolution "
                             "algorithm, and print how far our two runs are apart (what "
                             "float32 rounding alone does; doubles the time)")
    parser.add_argument("--verbose", action="store_true",
                        help="print the engines' progress lines as the pickled options ask "
                             "(default: a progress bar on a terminal)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bars")
    parser.add_argument("--debug", action="store_true",
                        help="show tracebacks of expected errors")
    return parser


def main(argv: Optional[Sequence[str]] = None, out: Optional[TextIO] = None) -> int:
    """Command-line entry point; returns 0 when every case passes, 1 otherwise (also for an
    expected failure, printed as one ``error:`` line naming the command that fixes it)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    context = [Context()]
    return run_cli(lambda: _main(argv, out, context), argv, lambda: context[0])


def _main(argv: Sequence[str], out: Optional[TextIO], context: list) -> int:
    out = sys.stdout if out is None else out
    args = _build_parser().parse_args(argv)
    context[0] = Context(data_dir=args.data_dir, net_dir=args.net_dir)
    cases = select_cases(args.cases)
    vgg19_path, generator_path = _weights(cases, args)
    from .store.net_data import load_image_mean
    from .nets.device import choose_device
    from .nets.weights import load_generator, load_vgg19

    device = choose_device(args.device)
    progress = not args.no_progress
    folder = fetch_references(cases, args.data_dir, progress=progress)
    mean, mean_source = load_image_mean(args.mean if args.mean else
                                        image_mean_path(args.data_dir))
    print(mean_source, file=out)
    print(f"weights: {vgg19_path}" + (f", {generator_path}" if generator_path else "") +
          f"; device: {device}", file=out, flush=True)
    net = load_vgg19(vgg19_path, device=device, img_mean=mean)  # damaged: DamagedFileError
    net_gen = load_generator(generator_path, device=device) if generator_path else None
    display = "original" if args.verbose else \
        ("ours" if progress and is_terminal() else "quiet")
    results = run_selfcheck(cases, net, net_gen, folder, device, out=out,
                            snapshots=args.snapshots, display=display, spread=args.spread)
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
