"""Compatibility entry point: ``python -m SpinalLesionSegLib.worker`` runs :mod:`.inference.worker`, so scripts
written before the worker moved keep working."""

import sys

from .inference.worker import main

if __name__ == "__main__":
    sys.exit(main())
