"""The clinical report (``spinal-lesion-seg report``): one scan's lesion load, levels, key slices, longitudinal
change and provenance, as a self-contained HTML page and a PDF.

:mod:`.data` gathers the numbers (with the statistics machinery of :mod:`..analysis.report`), :mod:`.pictures`
draws the key slices (:mod:`..analysis.overlay_pictures`) and the per-level chart, :mod:`.tables` decides how
every table column is labelled and printed, :mod:`.sections` holds the wording both documents share,
:mod:`.html_page` and :mod:`.pdf_document` (ReportLab) render, :mod:`.writer` publishes the files as one set and
:mod:`.change` turns a longitudinal comparison into the change section. Imports base modules and ``analysis/``
only; the command imports it inside its function, so ReportLab and matplotlib load only when a report is made.
"""
