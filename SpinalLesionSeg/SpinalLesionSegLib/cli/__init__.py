"""The ``spinal-lesion-seg`` command: :mod:`.app` builds the parser, one module per command group adds its
subcommands (:mod:`.predict`, :mod:`.models`, :mod:`.analysis`, :mod:`.phantom`)."""

from .app import EXIT_BAD_INPUT, main

__all__ = ["EXIT_BAD_INPUT", "main"]
