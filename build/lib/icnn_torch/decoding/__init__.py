"""From fMRI to decoded features: the lab's feature decoders, into the original's tree.

Modules (none imports torch at import time):

- :mod:`~icnn_torch.decoding.fmri`: the fMRI files (bdpy BData), ROIs, stimulus labels,
  trial averaging, downloads;
- :mod:`~icnn_torch.decoding.store`: image features on disk (h5py), read by unit chunk;
- :mod:`~icnn_torch.decoding.decoders`: FastL2LiR (the reference) and our batched torch
  implementation of the same equations;
- :mod:`~icnn_torch.decoding.predict`: the decoding jobs (unit chunks), normalisation,
  predictions, the decoded-feature tree;
- :mod:`~icnn_torch.decoding.accuracy`: profile and pattern correlation, pairwise
  identification;
- :mod:`~icnn_torch.decoding.run`: the entry point of ``decode_features.py``.
"""
