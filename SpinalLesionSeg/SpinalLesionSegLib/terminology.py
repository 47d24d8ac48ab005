"""What the segments are called and coded as, everywhere: the Slicer panel's segments and the DICOM SEG, SR and
preview outputs use these names, colours and codes, so a PACS and Slicer describe the same lesion the same way.

The codes are entries of Slicer 5.10's terminology files (checked by Testing/test_slicer_module.py): no list has a
plain "Lesion" type, and an MS plaque is inflammatory demyelination, so the lesion is "Inflammation"
(Morphologically Altered Structure) of the spinal cord; its segment keeps the name "MS lesion".
"""

from __future__ import annotations

from typing import NamedTuple


class Code(NamedTuple):
    """A coded concept: coding scheme designator, code value, code meaning."""

    scheme: str
    value: str
    meaning: str

    def slicer(self) -> str:
        """Slicer's serialised form ``scheme^value^meaning``."""
        return "^".join(self)


SNOMED = "SCT"
MORPHOLOGICALLY_ALTERED = Code(SNOMED, "49755003", "Morphologically Altered Structure")
INFLAMMATION = Code(SNOMED, "23583003", "Inflammation")
ANATOMICAL_STRUCTURE = Code(SNOMED, "123037004", "Anatomical Structure")
SPINAL_CORD = Code(SNOMED, "2748008", "Spinal cord")

LESION_SEGMENT_NAME = "MS lesion"
CORD_SEGMENT_NAME = "Spinal cord"
#: Segment colours (RGB 0..1): a red that stays visible over the Inferno soft map; the cord in a pale yellow.
LESION_COLOR = (0.9, 0.15, 0.15)
CORD_COLOR = (0.95, 0.85, 0.55)

#: Terminology entries in Slicer's serialised format (``context~category~type~typeModifier~anatomicContext~
#: anatomicRegion~anatomicRegionModifier``), as the Segment Editor writes them.
LESION_TERMINOLOGY = ("Segmentation category and type - DICOM master list"
                      f"~{MORPHOLOGICALLY_ALTERED.slicer()}~{INFLAMMATION.slicer()}~^^"
                      f"~Anatomic codes - DICOM master list~{SPINAL_CORD.slicer()}~^^")
CORD_TERMINOLOGY = ("Segmentation category and type - 3D Slicer General Anatomy list"
                    f"~{ANATOMICAL_STRUCTURE.slicer()}~{SPINAL_CORD.slicer()}~^^"
                    "~Anatomic codes - DICOM master list~^^~^^")
