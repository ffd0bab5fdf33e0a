"""Download the data and weights a script (any copy of the seven included) needs:
``python -m icnn_torch.download --help``.

The public face of :mod:`icnn_torch.fetch` (the items, the resuming downloader, the file
list, unpacking, :func:`ensure_files`); the command line is :mod:`icnn_torch.fetch.cli`.
"""

import sys

from .errors import ChecksumError, DownloadError
from .fetch.cli import main
from .fetch.ensure import Fetching, ensure_files, ensure_plan_files
from .fetch.figshare import MANIFEST_FILENAME, article_files, refresh_file_list
from .fetch.http import fetch, remote_url
from .fetch.items import ALIASES, WEIGHT_ITEMS, Place, expand_aliases, items_for_plan
from .fetch.unpack import unpack_decoded_features_zip
from .fetch.weights import (DEEPSIM_GENERATOR_MEMBER, FC7_BOUNDS_MD5, KAMITANI_GENERATOR,
                            KAMITANI_VGG19, VGG19_MD5, VGG19_SIZE)

__all__ = ["main", "fetch", "remote_url", "Place", "Fetching", "ensure_files",
           "ensure_plan_files", "items_for_plan", "expand_aliases", "article_files",
           "refresh_file_list", "unpack_decoded_features_zip", "ChecksumError", "DownloadError",
           "MANIFEST_FILENAME", "ALIASES", "WEIGHT_ITEMS", "VGG19_SIZE", "VGG19_MD5",
           "FC7_BOUNDS_MD5", "KAMITANI_VGG19", "KAMITANI_GENERATOR", "DEEPSIM_GENERATOR_MEMBER"]

if __name__ == "__main__":
    sys.exit(main())
