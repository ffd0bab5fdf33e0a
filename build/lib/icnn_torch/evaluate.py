"""Score the reconstructions of a results tree against their stimulus images (a face of
:mod:`icnn_torch.analysis.evaluate`; the command line is :mod:`icnn_torch.analysis.cli`).

Usage::

    python -m icnn_torch.evaluate results --stimuli path/to/stimuli [--mapping map.csv]
        [--layers conv3_4,fc7 | --no-features] [--vgg19 FILE] [--out results/evaluation.csv]
        [--device cuda:0] [--scripts 1_reconstruct_natural_image,...] [--image-type natural]
        [--recon-form clip] [--per-image] [--debug]

Metrics per reconstruction and per set (pairwise identification by pixel correlation,
Euclidean distance and VGG19 features, PixCorr, SSIM), the stimulus lookup and the
output are described in :mod:`icnn_torch.analysis.evaluate`.
"""

import sys

from .analysis.cli import evaluate_main as main
from .analysis.evaluate import BASE_COLUMNS, DEFAULT_VGG19_PATH, evaluate_results, format_table
from .analysis.stimuli import (STIMULUS_EXTENSIONS, StimulusMapping, find_stimulus, load_stimulus,
                               read_stimulus_mapping, stimulus_patterns)
from .analysis.tables import write_csv
from .run.cli import comma_list, warnings_to_stderr

__all__ = [
    "STIMULUS_EXTENSIONS", "DEFAULT_VGG19_PATH", "BASE_COLUMNS", "StimulusMapping",
    "read_stimulus_mapping", "find_stimulus", "stimulus_patterns", "load_stimulus",
    "evaluate_results", "write_csv", "format_table", "comma_list", "warnings_to_stderr",
    "main",
]

if __name__ == "__main__":
    sys.exit(main())
