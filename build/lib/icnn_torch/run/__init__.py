"""Running things from the command line: the figure scripts' and ``decode_features.py``'s
constants and overrides (:mod:`~icnn_torch.run.script`, :mod:`~icnn_torch.run.config`), the
split of jobs over processes (:mod:`~icnn_torch.run.jobs`), the reconstruction loop the
figure scripts run (:mod:`~icnn_torch.run.reconstruct`), and the advice layer that turns
errors into the command that fixes them (:mod:`~icnn_torch.run.advice`,
:mod:`~icnn_torch.run.cli`).
"""
