"""How a scanner shows the phantom: tissue intensities per contrast, then blur, bias field and noise."""

from __future__ import annotations

import numpy as np

from .anatomy import CORD, TISSUES
from .render import Grid

#: Contrasts on which MS lesions are brighter than the cord; on the others (T1w, UNIT1, PSIR) they are darker.
T2_LIKE: tuple[str, ...] = ("T2w", "T2starw", "STIR")

#: Mean tissue intensities (arbitrary units) per contrast, in TISSUES order, from typical clinical appearance:
#: CSF bright on T2w/T2starw/STIR and dark on T1w/UNIT1/PSIR, fatty marrow and fat bright on T1w and suppressed
#: on STIR, bone dark on T2starw (susceptibility), cord white matter brighter than CSF on T1-like contrasts.
_INTENSITY: dict[str, tuple[float, ...]] = {
    "T2w": (220.0, 5.0, 380.0, 650.0, 600.0, 1000.0, 450.0),
    "T2starw": (250.0, 5.0, 160.0, 480.0, 320.0, 900.0, 420.0),
    "STIR": (260.0, 5.0, 140.0, 620.0, 60.0, 950.0, 420.0),
    "PSIR": (450.0, 0.0, 650.0, 380.0, 800.0, 120.0, 700.0),
    "T1w": (420.0, 5.0, 700.0, 380.0, 900.0, 150.0, 600.0),
    "UNIT1": (520.0, 0.0, 620.0, 420.0, 720.0, 110.0, 800.0),
}
#: Lesion-to-cord intensity ratio range: hyperintense on T2-like contrasts, hypointense on T1-like ones.
_LESION_RATIO = {True: (1.35, 1.8), False: (0.55, 0.8)}


def draw_intensities(rng: np.random.Generator, contrast: str, n_lesions: int) -> np.ndarray:
    """Intensity per label: tissue means jittered by +-10%, then one lesion-to-cord ratio per lesion."""
    tissues = np.array(_INTENSITY[contrast]) * rng.uniform(0.9, 1.1, size=len(TISSUES))
    ratios = rng.uniform(*_LESION_RATIO[contrast in T2_LIKE], size=n_lesions)
    return np.concatenate([tissues, tissues[CORD] * ratios]).astype(np.float32)


def acquire(rng: np.random.Generator, image: np.ndarray, grid: Grid, contrast: str, cord_level: float) -> np.ndarray:
    """Scanner effects on the ideal partial-volume image: point-spread blur, bias field, noise (Gaussian on PSIR,
    whose real-valued reconstruction keeps the sign; Rician on magnitude images). ``cord_level`` is the cord's
    intensity, which sets the noise level (3-7% of it)."""
    from scipy.ndimage import gaussian_filter  # kept out of module import: the core imports numpy and SimpleITK only

    image = gaussian_filter(image, sigma=0.4, mode="nearest") * _bias_field(rng, grid)
    sigma = rng.uniform(0.03, 0.07) * cord_level
    real = image + rng.normal(0.0, sigma, size=image.shape).astype(np.float32)
    if contrast == "PSIR":
        return real
    imaginary = rng.normal(0.0, sigma, size=image.shape).astype(np.float32)
    return np.sqrt(real * real + imaginary * imaginary)


def _bias_field(rng: np.random.Generator, grid: Grid) -> np.ndarray:
    """Smooth multiplicative field on the grid, ``[z, y, x]``: brighter posteriorly (spine coil) plus a gentle
    random quadratic; roughly within +-30%."""
    x, y, z = (grid.axis_mm(a) - grid.axis_mm(a).mean() for a in range(3))
    half = np.asarray(grid.size) * grid.spacing / 2.0
    u, v, w = x / half[0], y / half[1], z / half[2]
    coefficients = rng.uniform(-0.1, 0.1, size=4)
    posterior = -rng.uniform(0.1, 0.25)
    log_field = (posterior * v[None, :, None] + coefficients[0] * u[None, None, :] + coefficients[1] * w[:, None, None]
                 + coefficients[2] * (w**2)[:, None, None] + coefficients[3] * (u**2)[None, None, :])
    return np.exp(log_field).astype(np.float32)
