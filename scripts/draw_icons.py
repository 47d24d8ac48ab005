"""Draw the module and extension icons (128x128 PNG): a sagittal spine with the cord and two lesions.

Run once after changing the design: ``python scripts/draw_icons.py``. Needs Pillow (installed with matplotlib).
"""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

SIZE = 128
SCALE = 4  # draw large, then downsample, for anti-aliased edges
ROOT = Path(__file__).resolve().parents[1]
TARGETS = [ROOT / "SpinalLesionSeg/Resources/Icons/SpinalLesionSeg.png", ROOT / "Resources/Icons/SpinalLesionSeg.png"]


def _curve_x(y: float) -> float:
    """Horizontal position (icon px) of the spine axis at height y: a gentle cervical lordosis."""
    return 58 + 9 * math.sin((y - 8) / 112 * math.pi)


def draw() -> Image.Image:
    s = SCALE
    img = Image.new("RGBA", (SIZE * s, SIZE * s), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    d.rounded_rectangle([2 * s, 2 * s, 126 * s, 126 * s], radius=22 * s, fill=(22, 33, 58, 255))
    # CSF / canal: a soft bright band behind the vertebral bodies.
    for y in range(10, 120):
        x = _curve_x(y) + 26
        d.ellipse([(x - 11) * s, (y - 1) * s, (x + 11) * s, (y + 1) * s], fill=(70, 110, 160, 255))
    # Spinal cord.
    for y in range(8, 122):
        x = _curve_x(y) + 26
        d.ellipse([(x - 6) * s, (y - 1) * s, (x + 6) * s, (y + 1) * s], fill=(205, 212, 225, 255))
    # Vertebral bodies and discs.
    for n, top in enumerate(range(10, 118, 22)):
        cx = _curve_x(top + 9) - 4
        d.rounded_rectangle([(cx - 17) * s, top * s, (cx + 15) * s, (top + 17) * s], radius=5 * s,
                            fill=(226, 205, 160, 255), outline=(180, 150, 100, 255), width=s)
        if n < 4:
            dx = _curve_x(top + 20) - 4
            d.rounded_rectangle([(dx - 15) * s, (top + 18) * s, (dx + 13) * s, (top + 21) * s], radius=2 * s,
                                fill=(120, 170, 210, 255))
    # Two lesions inside the cord: hyperintense spots shown in the product's lesion colour.
    for y, r in ((44, 5.0), (83, 3.6)):
        x = _curve_x(y) + 26
        d.ellipse([(x - r) * s, (y - r * 1.6) * s, (x + r) * s, (y + r * 1.6) * s], fill=(235, 64, 52, 255))
    img = img.filter(ImageFilter.SMOOTH)
    return img.resize((SIZE, SIZE), Image.LANCZOS)


if __name__ == "__main__":
    icon = draw()
    for target in TARGETS:
        target.parent.mkdir(parents=True, exist_ok=True)
        icon.save(target, optimize=True)
        print(f"wrote {target}")
