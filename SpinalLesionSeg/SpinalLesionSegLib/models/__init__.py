"""Segmentation models: manifests, registry, installer, download, archive, layout, checksums, resolve, progress."""
