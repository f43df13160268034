"""Natural-looking backgrounds for synthetic text: gradients, low-frequency noise, paper, soft textures, shapes.

Everything is smooth at the scale of a character, so no background structure looks like text (which would make
a detector's false positives the generator's fault, not the model's).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

Background = Callable[[np.random.Generator, int, int, np.ndarray], np.ndarray]


def random_colour(rng: np.random.Generator, *, dark: bool) -> np.ndarray:
    """A BGR colour (float32, 0..255): light and mostly desaturated for paper-like grounds, or dark."""
    hue_tint = rng.normal(0, 1, 3)
    if dark:
        base, spread = rng.uniform(20, 80), rng.uniform(5, 35)
    else:
        base, spread = rng.uniform(175, 240), rng.uniform(3, 30)
    return np.clip(base + spread * hue_tint / (np.abs(hue_tint).max() + 1e-6), 0, 255).astype(np.float32)


def _field(rng: np.random.Generator, h: int, w: int, *, cells: int) -> np.ndarray:
    """Smooth random field in [-1, 1] (random grid upsampled with bicubic interpolation)."""
    gh, gw = max(2, cells * h // max(h, w) + 1), max(2, cells * w // max(h, w) + 1)
    grid = rng.uniform(-1, 1, (gh, gw)).astype(np.float32)
    field = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(field, -1, 1)


def linear_gradient(rng: np.random.Generator, h: int, w: int, base: np.ndarray) -> np.ndarray:
    other = np.clip(base + rng.uniform(-45, 45, 3), 0, 255)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = xx * np.cos(angle) + yy * np.sin(angle)
    t = (t - t.min()) / max(float(np.ptp(t)), 1.0)
    return base[None, None] * (1 - t[..., None]) + other[None, None] * t[..., None]


def radial_gradient(rng: np.random.Generator, h: int, w: int, base: np.ndarray) -> np.ndarray:
    other = np.clip(base + rng.uniform(-40, 40, 3), 0, 255)
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
    t = (r / max(float(r.max()), 1.0))[..., None]
    return base[None, None] * (1 - t) + other[None, None] * t


def cloudy_noise(rng: np.random.Generator, h: int, w: int, base: np.ndarray) -> np.ndarray:
    amplitude = rng.uniform(10, 35)
    out = np.empty((h, w, 3), np.float32)
    shared = _field(rng, h, w, cells=int(rng.integers(3, 9)))
    for c in range(3):
        own = _field(rng, h, w, cells=int(rng.integers(3, 9)))
        out[..., c] = base[c] + amplitude * (0.7 * shared + 0.3 * own)
    return out


def paper(rng: np.random.Generator, h: int, w: int, base: np.ndarray) -> np.ndarray:
    """Paper: a flat tint, faint blotches, fine grain and a few soft fibres, with a darker vignette."""
    out = np.repeat(np.repeat(base[None, None], h, 0), w, 1)
    out += 8 * _field(rng, h, w, cells=int(rng.integers(4, 12)))[..., None]
    grain = cv2.GaussianBlur(rng.normal(0, 6, (h, w)).astype(np.float32), (0, 0), 0.8)
    out += grain[..., None]
    fibres = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(0, 25))):
        p = rng.uniform((0, 0), (w, h))
        q = p + rng.normal(0, 40, 2)
        cv2.line(fibres, tuple(int(v) for v in p), tuple(int(v) for v in q), float(rng.uniform(3, 9)), 1)
    out -= cv2.GaussianBlur(fibres, (0, 0), 1.2)[..., None]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    vignette = ((xx / w - 0.5) ** 2 + (yy / h - 0.5) ** 2) * rng.uniform(0, 60)
    return out - vignette[..., None]


def soft_texture(rng: np.random.Generator, h: int, w: int, base: np.ndarray) -> np.ndarray:
    """Fabric/wood-like: low-contrast wavy stripes, far wider than any stroke of text."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(60, 200)
    warp = 25 * _field(rng, h, w, cells=4)
    t = (xx * np.cos(angle) + yy * np.sin(angle) + warp) * 2 * np.pi / period
    stripes = rng.uniform(6, 16) * np.sin(t)
    return base[None, None] + stripes[..., None] + 6 * _field(rng, h, w, cells=6)[..., None]


def soft_shapes(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Overlay a few blurred ellipses and rounded rectangles in nearby colours (low alpha)."""
    h, w = image.shape[:2]
    for _ in range(int(rng.integers(1, 5))):
        mask = np.zeros((h, w), np.float32)
        centre = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        axes = (int(rng.uniform(0.1, 0.4) * w), int(rng.uniform(0.1, 0.4) * h))
        if rng.random() < 0.5:
            cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
        else:
            cv2.rectangle(mask, (centre[0] - axes[0], centre[1] - axes[1]), (centre[0] + axes[0],
                          centre[1] + axes[1]), 1.0, -1)
        mask = cv2.GaussianBlur(mask, (0, 0), float(rng.uniform(15, 40)))[..., None] * rng.uniform(0.15, 0.4)
        colour = np.clip(image.reshape(-1, 3).mean(0) + rng.uniform(-40, 40, 3), 0, 255)
        image = image * (1 - mask) + colour[None, None] * mask
    return image


BACKGROUNDS: dict[str, Background] = {
    "linear_gradient": linear_gradient,
    "radial_gradient": radial_gradient,
    "cloudy_noise": cloudy_noise,
    "paper": paper,
    "soft_texture": soft_texture,
}


def random_background(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, str]:
    """(H, W, 3) float32 BGR background in 0..255 and the name of the style used (dark grounds ~20%)."""
    name = list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))]
    base = random_colour(rng, dark=bool(rng.random() < 0.2))
    image = BACKGROUNDS[name](rng, h, w, base).astype(np.float32)
    if rng.random() < 0.4:
        image = soft_shapes(rng, image)
        name += "+shapes"
    return np.clip(image, 0, 255), name
