"""From fMRI to decoded features: the lab's feature decoders, into the original's tree.

Needs the ``decoding`` extra (bdpy, fastl2lir: ``pip install -e '.[decoding]'``); nothing
the figure scripts run imports this package. Modules (none imports torch, bdpy or
fastl2lir at import time):

- :mod:`~icnn_torch.decoding.fmri`: the fMRI files (bdpy BData), ROIs, stimulus labels,
  trial averaging, and the published files made present through the fetch layer;
- :mod:`~icnn_torch.decoding.store`: image features on disk (h5py), read by unit chunk;
- :mod:`~icnn_torch.decoding.decoders`: FastL2LiR (the reference) and our batched torch
  implementation of the same equations;
- :mod:`~icnn_torch.decoding.predict`: the decoding jobs (unit chunks), normalisation,
  predictions, the decoded-feature tree;
- :mod:`~icnn_torch.decoding.accuracy`: profile and pattern correlation, pairwise
  identification;
- :mod:`~icnn_torch.decoding.config`: ``decode_features.py``'s constants
  (:class:`~icnn_torch.decoding.config.DecodeConfig`, a
  :class:`~icnn_torch.run.script.ScriptConstants`) and its command-line overrides;
- :mod:`~icnn_torch.decoding.stages`: the three stages of a run (features, decode,
  accuracy);
- :mod:`~icnn_torch.decoding.run`: the entry point of ``decode_features.py``.
"""
