"""Every user-facing default, once: the command line, the worker, the job protocol and the Slicer panel read them
here, so changing a default is one edit.

Units are in the names (``_MM`` millimetres, ``_MM3`` cubic millimetres); probabilities are in [0, 1].
"""

from __future__ import annotations

from .contrasts import CONTRASTS

#: Name of the command-line program, used in its messages.
PROG = "spinal-lesion-seg"

#: The model used when none is named: the small demo model shipped with the package.
MODEL = "demo"

#: Binary lesion mask = soft map >= this probability. 0.5 is nnU-Net's own cut (argmax of two classes).
THRESHOLD = 0.5
#: The panel's threshold slider range: beyond it the mask is either everything uncertain or nothing.
THRESHOLD_RANGE = (0.05, 0.95)

#: Margin (mm) added on every side of a cord mask or ROI box: room for lesions at the cord's edge and for the
#: network's context, small enough to keep the speed-up of cropping.
ROI_MARGIN_MM = 10.0
#: The panel's ROI margin range (mm).
ROI_MARGIN_RANGE_MM = (0.0, 100.0)

#: "auto" reads the contrast from the BIDS suffix of the file name (or the DICOM series description in Slicer).
CONTRAST = "auto"
CONTRAST_CHOICES: tuple[str, ...] = (CONTRAST, *CONTRASTS)

#: "auto" picks CUDA, then Apple MPS, then the CPU, probed in the process that runs the model.
DEVICE = "auto"
DEVICE_CHOICES: tuple[str, ...] = (DEVICE, "cuda", "mps", "cpu")

#: The network's arithmetic (:mod:`.inference.precision`): fp32 on the command line (results equal stock nnU-Net's
#: on the CPU), auto in the Slicer panel (bf16 on a CPU with native bf16, fp16 on a CUDA GPU: speed).
PRECISION = "fp32"
PANEL_PRECISION = "auto"
PRECISION_CHOICES: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")

#: Sliding-window tile step, a fraction of the patch size (nnU-Net's and SCT's 0.5: tiles overlap by half); up to
#: 1 (tiles touch, fewer tiles, less averaging: its cost and fidelity are measured in docs/performance.md).
TILE_STEP = 0.5
TILE_STEP_RANGE = (0.25, 1.0)

#: Tiles run inside a region of interest (:mod:`.inference.tiles`): "exact" (the whole-image tile grid, so values
#: inside the ROI equal a whole-image run's) on the command line; "centred" (a tile grid laid over the ROI: one
#: tile centred on it when it fits in a patch; faster, values differ slightly) with the panel's Fast preset.
ROI_TILES = "exact"
ROI_TILES_CHOICES: tuple[str, ...] = ("exact", "centred")

#: How fold outputs are combined: "mean" (soft map >= threshold) or "majority" (SCT's vote of per-fold masks).
ENSEMBLE = "mean"
ENSEMBLE_RULES: tuple[str, ...] = (ENSEMBLE, "majority")

#: Connectivity of lesions as connected components (18 = faces and edges, as SCT and ANIMA count lesions).
CONNECTIVITY = 18
#: A lesion farther than this (mm) from every labelled level voxel or disc is "unassigned".
LEVEL_MAX_DISTANCE_MM = 10.0
#: A predicted lesion is "outside the cord" (flagged; dropped on request) when none of its voxels lies within this
#: distance (mm) of a cord voxel (docs/conventions.md "Lesions outside the cord"). The cord's edge is uncertain by
#: about a voxel: partial volume at the cord-CSF boundary, 3 mm axial slices, automatic cord masks that shrink where
#: a lesion changes the signal; and MS lesions often sit at the cord's surface (subpial). SCT's sct_analyze_lesion
#: keeps only voxels inside the undilated cord, which cuts such lesions; 3 mm (one typical slice, 3-6 in-plane
#: voxels) keeps them, while a blob farther out lies in the CSF, the dura, bone or soft tissue.
OUTSIDE_CORD_MARGIN_MM = 3.0

#: The contrast a synthetic phantom imitates when none is named (the demo's, and the demo model's training data).
PHANTOM_CONTRAST = "T2w"

#: Blobs of the soft map at or above this probability that the mask leaves out are offered as candidate lesions
#: in the review: low enough to catch what the model was unsure of, high enough to skip noise.
CANDIDATE_THRESHOLD = 0.2

#: Lesions whose mean probability is below this are flagged "check" in the review table: the model was unsure.
LOW_PROBABILITY = 0.6

#: The Segment Editor's Islands effect minimum size set for lesions (voxels): Slicer's default of 1000 would delete
#: every lesion.
ISLANDS_MINIMUM_SIZE_VOXELS = 3
#: How often the panel collects the worker's messages (ms): often enough for a live progress bar, rare enough to
#: cost nothing.
POLL_INTERVAL_MS = 200

#: ``compare`` (longitudinal change, docs/conventions.md "Longitudinal change"): a lesion matched one-to-one is
#: "enlarged" when its volume grew by this percentage or more and "shrunk" when it lost as much; AIMS reports
#: enlargement of 30 % or more since the last examination.
LESION_CHANGE_PERCENT = 30.0
#: ... and only when the volume changed by at least this (mm3) as well: a voxel more or less on a small lesion is
#: a large percentage, not a change. 3 mm3 is ANIMA's smallest lesion and lesiontrack's 3 voxels at 1 mm.
LESION_MIN_CHANGE_MM3 = 3.0
#: Lesions of the two scans touch when a follow-up voxel, mapped onto the baseline grid, lies within this distance
#: (mm) of a baseline lesion voxel; 0 = they share a voxel. Raise it (about a voxel) when registration is coarse.
TOUCH_TOLERANCE_MM = 0.0
