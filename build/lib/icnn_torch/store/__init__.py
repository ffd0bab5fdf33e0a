"""Storage of the project's files: every path and name (:mod:`~icnn_torch.store.layout`),
MATLAB files (:mod:`~icnn_torch.store.matlab`), what the published data holds
(:mod:`~icnn_torch.store.published`), decoded features and the scripts' preparation of them
(:mod:`~icnn_torch.store.features`), the image mean and the generator bounds
(:mod:`~icnn_torch.store.net_data`), the results tree (:mod:`~icnn_torch.store.results`)
and a results folder's record (:mod:`~icnn_torch.store.record`).

No torch and no network here.
"""
