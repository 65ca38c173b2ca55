"""``python -m thrifty.compress``: the same as ``thrifty compress`` (:mod:`.cli`)."""

import sys

from .cli import compress_main

sys.exit(compress_main())
