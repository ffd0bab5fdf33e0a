"""Analysis of the reconstructions: image metrics (:mod:`~icnn_torch.analysis.metrics`),
stimulus images (:mod:`~icnn_torch.analysis.stimuli`), tables
(:mod:`~icnn_torch.analysis.tables`), the evaluation and the figure panels.
"""
