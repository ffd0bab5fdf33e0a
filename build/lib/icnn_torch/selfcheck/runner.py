"""Running the cases: the targets, the pickled options as our engines' keyword arguments,
one case (and its rerun for the spread), and all chosen cases with the table printed.

What is done per case is what the original ``test.py`` does (see :mod:`icnn_torch.selfcheck`);
:func:`engine_kwargs` is the one place where the pickled options change on their way.

torch and scipy are imported where they are used, so that the command line's ``--help``
stays fast.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Optional, Sequence, TextIO

import numpy as np
from PIL import Image

from .._util import PathLike, atomic_output
from ..errors import ConfigError, DamagedFileError
from .cases import Case
from .criteria import CaseResult, compare
from .references import ORIG_IMG_PATH, Reference, read_reference
from .table import HEADER, format_row, legend

__all__ = ["target_layers", "target_features", "engine_kwargs", "other_convolutions",
           "run_case", "run_selfcheck"]


# --------------------------------------------------------------------------- targets, options

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
    from ..nets.extractor import net_device  # torch: not for --help
    from ..perf import full_float32
    from ..utils import get_cnn_features

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


# --------------------------------------------------------------------------- one case

@contextlib.contextmanager
def other_convolutions(device=None) -> Iterator[None]:
    """A block in which convolutions are computed by another float32 algorithm: PyTorch's
    own kernels instead of cuDNN on CUDA, instead of oneDNN on the CPU (the default ones).

    Both are correct float32 arithmetic; a run inside the block differs from one outside
    only by rounding, which is how :func:`run_case` measures the ``spread`` the arithmetic
    allows for a net on a machine. Only the backend's ``enabled`` switch is touched (and
    restored on exit).
    """
    import torch  # not for --help

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
        VGG19 (e.g. from :func:`icnn_torch.nets.weights.load_vgg19`), whose ``img_mean`` is the
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
    import scipy.io  # heavy: not for --help

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
            from ..nets.extractor import net_device
            with other_convolutions(net_device(net) if device is None else device):
                img2, losses2, seconds2, _ = _run_engine(case, net, net_gen, features, reference,
                                                         device, scratch(), display)
            result.spread = compare(case, img2, losses2,
                                    Reference(reference.options, img, losses, reference.initial),
                                    seconds2)
    return result


# --------------------------------------------------------------------------- all cases

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
    print(HEADER, file=out, flush=True)
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
