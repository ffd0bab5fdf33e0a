"""Analysis of the reconstructions: image metrics (:mod:`~icnn_torch.analysis.metrics`),
stimulus images (:mod:`~icnn_torch.analysis.stimuli`), tables
(:mod:`~icnn_torch.analysis.tables`), the evaluation of a results tree
(:mod:`~icnn_torch.analysis.evaluate`), labelled image grids
(:mod:`~icnn_torch.analysis.panel`) and the scripts' figure panels
(:mod:`~icnn_torch.analysis.figure`), and their command lines
(:mod:`~icnn_torch.analysis.cli`; faces :mod:`icnn_torch.evaluate` and
:mod:`icnn_torch.figure`).
"""
