"""Fetching the weights and data: one record per downloadable item
(:mod:`~icnn_torch.fetch.items`), the resuming downloader (:mod:`~icnn_torch.fetch.http`),
the article's file list (:mod:`~icnn_torch.fetch.figshare`), unpacking
(:mod:`~icnn_torch.fetch.unpack`), making sure a run's files are there
(:mod:`~icnn_torch.fetch.ensure`) and the ``python -m icnn_torch.download`` command line
(:mod:`~icnn_torch.fetch.cli`).
"""
