"""Prediction: :mod:`.protocol` (the worker job and its messages), :mod:`.worker` (the background process),
:mod:`.worker_client` (drives it from a GUI without blocking), :mod:`.case` (one job, files to files),
:mod:`.predictor` (nnunetv2's predictor, fold ensemble), :mod:`.roi` (the region-of-interest rule),
:mod:`.device`, :mod:`.checkpoint` (safe loading), :mod:`.network` (from plans.json)."""
