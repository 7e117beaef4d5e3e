"""``python -m avatar_forcing_ros.evaluation [evaluate] BAG...``: see :mod:`.cli`."""
import sys

from .cli import main

sys.exit(main())
