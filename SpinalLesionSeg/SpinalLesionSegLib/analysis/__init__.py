"""Lesion analysis: :mod:`.lesions` (connected components, volumes in mm3), :mod:`.levels` (vertebral level codes
and assignment), :mod:`.level_sources` (label maps, disc points, markups), :mod:`.metrics`, :mod:`.sweep`
(threshold sweeps) and :mod:`.report` (lesions.csv, levels.csv, summary.json)."""
