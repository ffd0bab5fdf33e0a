"""Self-check on the real weights: the original icnn's own Caffe results, recomputed here.

The original ``icnn`` repository (KamitaniLab/icnn, pinned at commit
:data:`PINNED_COMMIT`) ships, under ``test/``, what Caffe computed for each of its four
algorithms in a 200/500-iteration case and a 3-iteration ``_quick`` case: the final image
``recon_img.mat``, the loss list ``loss_list.mat``, the options it ran with
``options.pkl`` (a Python 2 pickle holding the layer weights and bounds too) and its
start, ``initial_img.png`` or ``initial_gen_feat.mat``. Its ``test.py`` recomputes them
from the true features of ``examples/data/orig_img.jpg`` and demands exact equality
(Caffe against itself). This package does the same with our engines and the user's weights,
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

The reference files (4 per case plus ``orig_img.jpg``, 7 MB for all cases) are fetched
once, md5-checked and cached under ``<data-dir>/icnn_test_reference/<commit>/``
(:mod:`~icnn_torch.selfcheck.references`). The printed table has one row per case; its
columns and the PASS criteria, with the measurements behind each tolerance, are described
in :mod:`~icnn_torch.selfcheck.criteria` (and printed by :func:`legend`).

Exit status: 0 when every case passes, 1 otherwise (also for every expected failure:
missing weights, a failed or corrupt download, which print one ``error:`` line; see
:func:`icnn_torch.run.cli.run_cli`).

The modules: :mod:`~icnn_torch.selfcheck.cases` (the case table, selection by name),
:mod:`~icnn_torch.selfcheck.references` (pinned commit, md5 table, fetching, the
restricted reader of the Python 2 pickles, reading a case), :mod:`~icnn_torch.selfcheck.criteria`
(limits, comparison), :mod:`~icnn_torch.selfcheck.runner` (targets, engine options, running
cases), :mod:`~icnn_torch.selfcheck.table` (legend and rows),
:mod:`~icnn_torch.selfcheck.cli` (the command line). Their public names are re-exported
here; a test that patches a name patches it in the module that owns it.
"""

from .cases import CASES, Case, select_cases
from .cli import main
from .criteria import CRITERIA, LOSS0_MAX, CaseResult, Criteria, compare, criteria_for
from .references import (ORIG_IMG_PATH, PINNED_COMMIT, REFERENCE_DIRNAME, REFERENCE_MD5,
                         Reference, fetch_references, load_options, read_reference,
                         reference_folder, reference_url)
from .runner import (engine_kwargs, other_convolutions, run_case, run_selfcheck,
                     target_features, target_layers)
from .table import format_row, legend

__all__ = ["PINNED_COMMIT", "REFERENCE_MD5", "REFERENCE_DIRNAME", "ORIG_IMG_PATH", "Case",
           "CASES", "select_cases", "Criteria", "CRITERIA", "LOSS0_MAX", "criteria_for",
           "Reference", "CaseResult", "reference_url", "reference_folder", "fetch_references",
           "load_options", "read_reference", "target_layers", "target_features",
           "engine_kwargs", "other_convolutions", "compare", "run_case", "run_selfcheck",
           "legend", "format_row", "main"]
