"""SpinalLesionSegLib: the core of SpinalLesionSeg.

Pure Python (numpy, SimpleITK; nnunetv2 and torch only where inference happens), with no ``slicer``, ``qt`` or
``ctk`` import, so the same code runs inside 3D Slicer, in the background worker, in the ``spinal-lesion-seg``
command-line tool and in plain pytest. Heavy modules (torch, nnunetv2, slicer) are imported by the functions that
need them, never at package import time, so that ``import SpinalLesionSegLib`` stays fast in Slicer's GUI process.

Modules:
    errors      -- ``InputError``: one-line, user-facing errors that name the file and the problem.
    validation  -- checks every entry point applies to an input image (3D, scalar, finite, sane spacing).
    io          -- read/write NIfTI and NRRD with exact geometry; atomic writes; image <-> array.
    geometry    -- IJK-to-RAS matrices and orientation codes (Slicer is RAS, ITK is LPS), in one place.
    mrml        -- MRML helpers (scene passed in; ``slicer.vtkMRML*`` classes only), for Slicer and slicer-core.
    mrml_results -- soft-map and lesion segmentation nodes, live re-threshold, edit detection (fingerprints).
    mrml_review -- lesion review table, jump to a lesion, reject a lesion (island) from the segment.
    mrml_stats  -- statistics table and chart nodes, disc points from markups, export of the CLI's report.
    cli         -- the ``spinal-lesion-seg`` command.
    manifests   -- what is known about each model (archives, layout, labels, orientation, crop, citation).
    models      -- model cache, installer (download, offline, custom), verification and ``resolve_model``.
    archive     -- zip files and model folders read safely (no traversal, no links, nothing executed).
    download    -- resumable HTTP downloads (``.part`` files, Range requests), standard library only.
    cli_models  -- ``spinal-lesion-seg models list|install|verify|remove|path``.
    levels      -- vertebral level names/codes, the four level sources (auto-detected) and the assignment rules.
    lesions     -- lesions as connected components; exact per-lesion and per-level volumes (mm3).
    stats       -- lesion statistics from files: lesions.csv, levels.csv, summary.json, lesion label image.
    metrics     -- Dice and lesion-wise TP/FP/FN, recall, PPV, F1 (seed paper's rules or ANIMA's).
    sweep       -- threshold sweep of soft maps: scores per threshold, recommended threshold, plot.
    cli_analysis -- ``spinal-lesion-seg stats|evaluate|sweep``.
    contrasts   -- the MRI contrast names and BIDS-suffix hints.
    checkpoint  -- nnU-Net checkpoints loaded with ``weights_only=True`` and an allow-list (no code runs).
    network     -- the network built from plans.json alone, allow-listed classes only.
    device      -- auto/cpu/cuda/mps, probed where inference runs; never a silent fallback.
    roi         -- regions of interest as boxes in RAS mm.
    predict     -- ``LoadedModel``: reorientation, nnunetv2 preprocessing and sliding window, fold ensemble.
    pipeline    -- one prediction job from files to files (outputs + sidecar), shared by CLI and worker.
    worker      -- the background worker process (JSON lines on stdout, ``--serve``).
    worker_client -- starts/polls/cancels the worker from a GUI without blocking (process-group kill).
    cli_predict -- ``spinal-lesion-seg predict|demo``.
    phantom     -- synthetic spinal MRI with ground truth (lesions, cord, levels, discs).
    cli_phantom -- ``spinal-lesion-seg phantom``.
"""

__version__ = "0.1.0"
