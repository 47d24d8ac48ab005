"""Slicer glue, with the scene passed in and only ``slicer.vtkMRML*``/``vtkSlicer*`` classes and VTK, so it runs in
Slicer and under the ``slicer-core`` wheel: :mod:`.nodes`, :mod:`.results`, :mod:`.review`, :mod:`.review_state`,
:mod:`.statistics`, and :mod:`.panel` (the panel's logic, headless)."""
