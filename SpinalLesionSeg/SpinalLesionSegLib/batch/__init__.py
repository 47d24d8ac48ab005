"""``spinal-lesion-seg batch``: pre-label a BIDS dataset (resumable, parallel), with a QC page and a summary table.

Everything is written under ``ROOT/derivatives/spinal-lesion-seg`` (:func:`..bids.pipeline_dir`): predictions at
the mirrored paths, ``logs/<stem>.json`` and ``logs/<stem>.log`` per image, ``batch.tsv``, ``qc/`` and
``dataset_description.json``. The per-image records are the truth; the table and the QC page are views rebuilt
from them, so parts run on several machines into one dataset end with one complete view.
"""
