"""``spinal-lesion-seg models``: list, install, verify, remove and locate models.

Thin wrappers around :mod:`.models.registry` and :mod:`.models.installer`; problems arrive as InputError and end
as one line and exit code 2 in :mod:`.app`. The progress bar is plain text on stderr and only drawn on a terminal,
so logs and pipes stay clean.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TextIO

from ..defaults import PROG
from ..models import installer, registry

#: Not a model of our cache: TotalSpineSeg's weights, installed into its own data folder (``--levels auto``).
TOTALSPINESEG = "totalspineseg"


class TerminalProgress:
    """A one-line text progress bar on a terminal, redrawn at most 10 times a second; silent elsewhere."""

    WIDTH = 30

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self.enabled = stream.isatty()
        self.stage: str | None = None
        self.last_draw = 0.0

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        finished = total is not None and done >= total
        if stage == self.stage and not finished and now - self.last_draw < 0.1:
            return
        if stage != self.stage and self.stage is not None:
            self.stream.write("\n")
        self.stage, self.last_draw = stage, now
        if total:
            filled = int(self.WIDTH * min(done, total) / total)
            bar = f"[{'#' * filled}{'-' * (self.WIDTH - filled)}] {100 * done / total:5.1f}% "
            amount = f"{done / 1e6:.1f}/{total / 1e6:.1f} MB"
        else:
            bar, amount = "", f"{done / 1e6:.1f} MB"
        self.stream.write(f"\r{stage[:40]:<40} {bar}{amount}")
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line so that the next message starts on a fresh one."""
        if self.enabled and self.stage is not None:
            self.stream.write("\n")
            self.stream.flush()
        self.stage = None


def _cmd_list(args: argparse.Namespace) -> int:
    statuses = registry.list_models()
    if args.json:
        json.dump([{"name": s.name, "title": s.title, "kind": s.kind, "installed": s.installed,
                    "folder": str(s.folder) if s.folder else None, "release": s.release, "size_mb": s.size_mb}
                   for s in statuses], sys.stdout, indent=2)
        print()
        return 0
    print(f"model cache: {registry.models_dir()} (set {registry.HOME_ENV} to move it)")
    width = max((len(s.name) for s in statuses), default=0)  # names line up however long the longest is
    for s in statuses:
        state = "installed" if s.installed else "not installed"
        size = f", about {s.size_mb:.0f} MB" if s.size_mb and not s.installed else ""
        print(f"  {s.name:<{width}} {s.kind:<10} {state}{size}  {s.title}")
    return 0


def _cmd_install(args: argparse.Namespace) -> int:
    if args.name == TOTALSPINESEG:
        return _install_totalspineseg(args)
    bar = TerminalProgress()
    already = not args.force and registry.is_installed(args.name)
    try:
        folder = installer.install(args.name, args.sources, bar, force=args.force)
    finally:
        bar.close()
    print(f"{args.name}: {'already installed' if already else 'installed'} at {folder}"
          + (" (use --force to reinstall)" if already else ""))
    return 0


def _install_totalspineseg(args: argparse.Namespace) -> int:
    """``models install totalspineseg --from ZIP...``: TotalSpineSeg's weights into its own data folder (it is a
    separate tool with its own weights layout, not a model of our cache: :mod:`..anatomy.totalspineseg_weights`)."""
    from ..anatomy.totalspineseg_tool import find_tool, weight_zips
    from ..anatomy.totalspineseg_weights import install_summary, install_weights
    from ..errors import InputError

    tool = find_tool()
    if not args.sources:
        wanted = ", ".join(url for _, url in weight_zips(tool).values())
        raise InputError(None, "TotalSpineSeg downloads its weights itself on its first run where GitHub can be "
                               f"reached; offline, download {wanted} and give them with --from")
    bar = TerminalProgress()
    try:
        install_weights(tool, args.sources, tool.data_dir(), force=args.force, progress=bar)
    finally:
        bar.close()
    print(install_summary(tool, tool.data_dir()))
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    bar = TerminalProgress()
    try:
        result = registry.verify(args.name, bar)
    finally:
        bar.close()
    for problem in result.problems:
        print(f"{PROG}: error: {problem}", file=sys.stderr)
    if not result.ok:
        print(f"{args.name}: FAILED ({len(result.problems)} problem(s) in {result.files_checked} files); "
              f"{result.advice}", file=sys.stderr)
        return 1
    print(f"{args.name}: OK ({result.files_checked} files verified) at {result.folder}")
    return 0


def _cmd_remove(args: argparse.Namespace) -> int:
    print(f"{args.name}: removed {installer.remove(args.name)}")
    return 0


def _cmd_path(args: argparse.Namespace) -> int:
    print(registry.path(args.name))
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``models`` command and its subcommands to the ``spinal-lesion-seg`` parser."""
    parser = commands.add_parser(
        "models",
        help="list, install, verify, remove and locate segmentation models",
        description=f"Manage the model cache ({registry.models_dir()}; set {registry.HOME_ENV} to move it). See "
                    "docs/models.md for every model.",
    )
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    listing = sub.add_parser("list", help="known and custom models, and whether they are installed")
    listing.add_argument("--json", action="store_true", help="print machine-readable JSON")
    listing.set_defaults(func=_cmd_list)

    install = sub.add_parser(
        "install",
        help="download a model, or install one offline from a zip or an nnU-Net folder",
        description="Install a known model from its release, or offline with --from (a release zip, an unzipped "
                    "nnU-Net trainer folder, or a Dataset folder/zip holding one; repeat --from to merge one zip "
                    "per fold). With a NAME no manifest knows, --from registers any nnU-Net v2 results folder as a "
                    "custom model under that NAME. Downloads resume where they stopped. 'totalspineseg --from ZIP "
                    "--from ZIP' installs TotalSpineSeg's two release zips into its data folder (TOTALSPINESEG_DATA, else "
                    "its package's models folder), checked against a SHA256SUMS file beside them when there is one.",
    )
    install.add_argument("name", metavar="NAME", help="model name (see 'models list'), or a new name for a custom "
                                                      "model")
    install.add_argument("--from", dest="sources", action="append", metavar="ZIP_OR_FOLDER",
                         help="install offline from this zip or folder (repeatable)")
    install.add_argument("--force", action="store_true", help="reinstall even if already installed")
    install.set_defaults(func=_cmd_install)

    verify = sub.add_parser("verify", help="re-hash every file of an installed model (exit 1 on a mismatch)")
    verify.add_argument("name", metavar="NAME")
    verify.set_defaults(func=_cmd_verify)

    remove = sub.add_parser("remove", help="delete an installed model from the cache")
    remove.add_argument("name", metavar="NAME")
    remove.set_defaults(func=_cmd_remove)

    where = sub.add_parser("path", help="print the nnU-Net trainer folder of an installed model")
    where.add_argument("name", metavar="NAME")
    where.set_defaults(func=_cmd_path)
