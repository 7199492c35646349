"""``python -m gradkit``: the ``gradkit`` command (:mod:`gradkit.apps.cli`), for an interpreter without the script."""

import sys

from .apps.cli import main

if __name__ == "__main__":
    sys.exit(main())
