"""Table nodes filled from rows (dicts): the one place that turns our rows into typed VTK columns with units."""

from __future__ import annotations

import numpy as np
import slicer
import vtk

#: Units shown in the table headers' tooltips (Slicer's column unit labels).
UNITS = {name: "mm3" for name in ("volume_mm3", "soft_volume_mm3", "outside_cord_volume_mm3", "cord_volume_mm3",
                                  "baseline_volume_mm3", "followup_volume_mm3", "baseline_soft_volume_mm3",
                                  "followup_soft_volume_mm3")} | {"volume_change_percent": "%"} | {
    name: "mm" for name in ("centroid_r_mm", "centroid_a_mm", "centroid_s_mm", "si_extent_mm", "length_mm",
                            "max_ap_width_mm")} | {"max_axial_area_mm2": "mm2", "lesion_load_pct": "%"}


def fill_table(table: slicer.vtkMRMLTableNode, columns: tuple[str, ...], rows: list[dict]) -> None:
    """Replace a table node's content: integer, text or double columns by the values' type; None -> NaN (a
    missing soft or cord volume) or an empty string."""
    content = table.GetTable()
    content.Initialize()
    for name in columns:
        values = [row[name] for row in rows]
        present = [v for v in values if v is not None]
        if any(isinstance(v, str) for v in present):
            column, values = vtk.vtkStringArray(), ["" if v is None else v for v in values]
        elif present and all(isinstance(v, (int, np.integer)) for v in values):
            column = vtk.vtkIntArray()
        else:
            column, values = vtk.vtkDoubleArray(), [np.nan if v is None else v for v in values]
        column.SetName(name)
        for value in values:
            column.InsertNextValue(value)
        content.AddColumn(column)
    for name in columns:
        if name in UNITS:
            table.SetColumnUnitLabel(name, UNITS[name])
    table.Modified()
