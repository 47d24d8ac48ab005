"""SpinalLesionSegLib: the core of SpinalLesionSeg.

Pure Python (numpy, SimpleITK; nnunetv2 and torch only where inference happens), so the same code runs inside
3D Slicer, in the background worker, in the ``spinal-lesion-seg`` command and in plain pytest. Heavy modules
(torch, nnunetv2, slicer) are imported by the functions that need them, never at package import time, so that
``import SpinalLesionSegLib`` stays fast in Slicer's GUI process. ``slicer`` is imported only in :mod:`.mrml`.

Packages, one per concern (docs/architecture.md has the map and which may import which):
    models     -- model registry: manifests, cache, install (online, offline), checksums, download, archives.
    inference  -- the job protocol, the worker and its client, one case end to end, the nnunetv2 predictor, ROI.
    analysis   -- lesions, vertebral levels, metrics, threshold sweeps, statistics reports.
    mrml       -- Slicer glue (scene passed in) and the panel's logic, headless.
    cli        -- the ``spinal-lesion-seg`` command, one module per command group.
    phantom    -- synthetic spinal MRI with exact ground truth.

Modules used everywhere: ``defaults`` (every default once), ``errors`` (one-line InputError), ``geometry`` (every
RAS/LPS/IJK conversion and reorientation), ``image_io`` (reading and atomic writing), ``validation`` (image checks),
``describe``, ``contrasts``, ``slicer_requirements``.
"""

__version__ = "0.1.0"
