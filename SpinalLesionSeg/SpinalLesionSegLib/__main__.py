"""``python -m SpinalLesionSegLib`` runs the ``spinal-lesion-seg`` command (useful inside Slicer's Python)."""

import sys

from .cli import main

sys.exit(main())
