"""``python -m icnn_torch.selfcheck``: see :mod:`icnn_torch.selfcheck.cli`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
