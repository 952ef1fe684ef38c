"""Procedural scene rendering for the synthetic biased-boats data.

A scene is an explicit, immutable description (sky, horizon, ground, objects). Every pixel is a pure function of it,
so a counterfactual is ``dataclasses.replace(scene, ...)`` re-rendered: changing the ground leaves sky and objects
bit-identical, and dropping an object reveals exactly the background that was under it.

Shapes are rasterised as boolean masks over a coordinate grid (no per-pixel Python loops). Every class draws its
colours from one shared palette, so shape is the only cue that tells classes apart.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CLASSES: tuple[str, ...] = ("boat", "car", "bird", "person", "tree")
CONTEXTS: tuple[str, ...] = ("water", "grass", "sand", "road")
LAND: tuple[str, ...] = CONTEXTS[1:]
NEUTRAL = "neutral"  # the flat grey ground of an object-only image (`object_only`), no context
NEUTRAL_GREY: tuple[float, float, float] = (128.0, 128.0, 128.0)

PALETTE: np.ndarray = np.array(
    [
        (200, 40, 40),
        (235, 130, 30),
        (240, 215, 60),
        (245, 245, 245),
        (35, 35, 40),
        (130, 60, 170),
        (220, 80, 160),
        (120, 75, 40),
        (40, 70, 160),
        (60, 170, 170),
        (150, 150, 150),
        (90, 150, 60),
    ],
    dtype=np.float64,
)

RGB = tuple[float, ...]


@dataclass(frozen=True)
class Ground:
    """One ground type below the horizon; ``seed`` fixes its texture (waves, blotches, speckle, lane dashes)."""

    kind: str
    colour: RGB
    seed: int


@dataclass(frozen=True)
class SceneObject:
    """One object; ``base`` is the y of its lowest point and ``scale`` its nominal width, both in pixels."""

    cls: str
    cx: float
    base: float
    scale: float
    colour: RGB
    colour2: RGB
    flip: bool
    variant: int


@dataclass(frozen=True)
class Scene:
    """Everything that determines one image; objects are painted in order, later ones in front."""

    size: int
    sky_top: RGB
    sky_bottom: RGB
    cloud: tuple[float, float, float, float] | None
    horizon: float
    ground: Ground
    objects: tuple[SceneObject, ...]
    seed: int


@functools.cache
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    return y, x


def _ellipse(size: int, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    y, x = _grid(size)
    return ((x - cx) / max(rx, 0.5)) ** 2 + ((y - cy) / max(ry, 0.5)) ** 2 <= 1.0


def _rect(size: int, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    y, x = _grid(size)
    return (x >= x0) & (x < x1) & (y >= y0) & (y < y1)


def _polygon(size: int, points: Sequence[tuple[float, float]]) -> np.ndarray:
    """Convex polygon as the intersection of half-planes, whatever the vertex orientation."""
    y, x = _grid(size)
    pairs = list(zip(points, [*points[1:], points[0]], strict=True))
    orient = 1.0 if sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in pairs) >= 0 else -1.0
    inside = np.ones((size, size), dtype=bool)
    for (x0, y0), (x1, y1) in pairs:
        inside &= orient * ((x1 - x0) * (y - y0) - (y1 - y0) * (x - x0)) >= 0
    return inside


def _segment(size: int, x0: float, y0: float, x1: float, y1: float, width: float) -> np.ndarray:
    """Thick line segment; at least 1.2 px wide so thin parts (masts, legs) never break up."""
    y, x = _grid(size)
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((x - x0) * dx + (y - y0) * dy) / max(dx * dx + dy * dy, 1e-9), 0.0, 1.0)
    return (x - x0 - t * dx) ** 2 + (y - y0 - t * dy) ** 2 <= (max(width, 1.2) / 2) ** 2


def _dark(colour: RGB) -> np.ndarray:
    return np.asarray(colour) * 0.35


def object_parts(obj: SceneObject, size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The object's (mask, colour) parts, back to front; their union is the object's silhouette."""
    s, cx, b = obj.scale, obj.cx, obj.base
    d = -1.0 if obj.flip else 1.0
    c1, c2 = np.asarray(obj.colour), np.asarray(obj.colour2)
    if obj.cls == "boat":
        top = b - 0.24 * s
        mx = cx - d * 0.06 * s
        hull = _polygon(size, [(cx - s / 2, top), (cx + s / 2, top), (cx + 0.33 * s, b), (cx - 0.33 * s, b)])
        mast = _segment(size, mx, top, mx, top - 0.8 * s, 0.07 * s)
        sail = _polygon(size, [(mx, top - 0.78 * s), (mx, top - 0.08 * s), (mx + d * 0.46 * s, top - 0.08 * s)])
        return [(mast, _dark(obj.colour)), (sail, c2), (hull, c1)]
    if obj.cls == "car":
        r = 0.11 * s
        body = _rect(size, cx - s / 2, b - 0.4 * s, cx + s / 2, b - r)
        lean = cx + d * 0.05 * s
        cabin = _polygon(
            size,
            [
                (cx - 0.3 * s, b - 0.4 * s),
                (cx + 0.3 * s, b - 0.4 * s),
                (lean + 0.18 * s, b - 0.62 * s),
                (lean - 0.18 * s, b - 0.62 * s),
            ],
        )
        wheels = _ellipse(size, cx - 0.3 * s, b - r, r, r) | _ellipse(size, cx + 0.3 * s, b - r, r, r)
        return [(cabin, c2), (body, c1), (wheels, _dark(obj.colour))]
    if obj.cls == "bird":
        cy = b - 0.1 * s
        body = _ellipse(size, cx, cy, 0.22 * s, 0.09 * s)
        head = _ellipse(size, cx + d * 0.22 * s, cy - 0.06 * s, 0.07 * s, 0.07 * s)
        w = 0.08 * s
        lift = 0.3 * s if obj.variant == 0 else -0.05 * s
        wings = _segment(size, cx - 0.04 * s, cy, cx - 0.5 * s, cy - lift, w) | _segment(
            size, cx + 0.04 * s, cy, cx + 0.5 * s, cy - lift, w
        )
        return [(body, c1), (head, c1), (wings, c2)]
    if obj.cls == "person":
        hip = b - 0.45 * s
        legs = _segment(size, cx - 0.06 * s, hip, cx - 0.13 * s, b, 0.09 * s) | _segment(
            size, cx + 0.06 * s, hip, cx + 0.13 * s, b, 0.09 * s
        )
        arms = _segment(size, cx - 0.2 * s, b - 0.55 * s, cx + 0.2 * s, b - 0.55 * s - d * 0.15 * s, 0.07 * s)
        torso = _polygon(
            size,
            [(cx - 0.13 * s, b - 0.95 * s), (cx + 0.13 * s, b - 0.95 * s), (cx + 0.11 * s, hip), (cx - 0.11 * s, hip)],
        )
        head = _ellipse(size, cx, b - 1.08 * s, 0.12 * s, 0.12 * s)
        return [(legs, _dark(obj.colour)), (arms, c1), (torso, c1), (head, c2)]
    if obj.cls == "tree":
        trunk = _rect(size, cx - 0.08 * s, b - 0.55 * s, cx + 0.08 * s, b)
        if obj.variant == 0:
            canopy = _ellipse(size, cx, b - 0.9 * s, 0.5 * s, 0.42 * s)
        else:
            canopy = _polygon(size, [(cx, b - 1.45 * s), (cx + 0.48 * s, b - 0.45 * s), (cx - 0.48 * s, b - 0.45 * s)])
        return [(trunk, c2 * 0.6), (canopy, c1)]
    raise ValueError(f"unknown object class {obj.cls!r}; expected one of {CLASSES}")


HEIGHT: dict[str, float] = {"boat": 1.04, "car": 0.62, "bird": 0.35, "person": 1.2, "tree": 1.45}


def _noise(rng: np.random.Generator, rows: int, size: int, cells: int) -> np.ndarray:
    """Smooth blotchy noise: a coarse random grid upsampled bilinearly to (rows, size)."""
    coarse = rng.standard_normal((cells + 1, cells + 1))
    ys = np.linspace(0, cells, rows)
    xs = np.linspace(0, cells, size)
    y0 = np.minimum(ys.astype(int), cells - 1)
    x0 = np.minimum(xs.astype(int), cells - 1)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    a, b = coarse[y0][:, x0], coarse[y0][:, x0 + 1]
    c, d = coarse[y0 + 1][:, x0], coarse[y0 + 1][:, x0 + 1]
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def _ground_texture(ground: Ground, rows: int, size: int) -> np.ndarray:
    """RGB texture of the ground band (``rows`` x ``size``), float, before sensor noise; flat for `NEUTRAL`."""
    if ground.kind == NEUTRAL:
        return np.full((rows, size, 3), ground.colour, dtype=np.float64)
    rng = np.random.default_rng(ground.seed)
    k = size / 48
    y = np.arange(rows, dtype=np.float64)[:, None] + 0.5
    x = np.arange(size, dtype=np.float64)[None, :] + 0.5
    depth = y / max(rows, 1)
    base = np.asarray(ground.colour)
    if ground.kind == "water":
        wavelength = rng.uniform(2.5, 4.5) * k * (0.6 + 0.8 * depth)
        phase = rng.uniform(0, 2 * np.pi)
        wobble = rng.uniform(0.5, 1.5) * np.sin(2 * np.pi * x / (rng.uniform(8, 16) * k) + rng.uniform(0, 2 * np.pi))
        waves = rng.uniform(8, 18) * np.sin(2 * np.pi * y / wavelength + phase + wobble)
        glint = 25.0 * (rng.random((rows, size)) < 0.03)
        light = waves + glint + 6 * rng.standard_normal((rows, size)) + 25 * (1 - depth) * rng.uniform(0.3, 1.0)
        return base + light[..., None] * np.array([0.8, 0.9, 1.0])
    if ground.kind == "grass":
        blotch = 14 * _noise(rng, rows, size, max(2, round(4 * k)))
        blades = 10 * rng.standard_normal((1, size)) * np.ones((rows, 1)) * (0.5 + depth)
        light = blotch + blades + 9 * rng.standard_normal((rows, size)) - 20 * (1 - depth) * rng.uniform(0, 1)
        return base + light[..., None] * np.array([0.7, 1.0, 0.5])
    if ground.kind == "sand":
        dunes = rng.uniform(4, 10) * np.sin(2 * np.pi * (y + 0.3 * x) / (rng.uniform(10, 20) * k) + rng.uniform(0, 6.3))
        speck = rng.random((rows, size))
        speckle = np.where(speck < 0.05, -45.0, 0.0) + np.where(speck > 0.97, 30.0, 0.0)
        light = dunes + speckle + 5 * rng.standard_normal((rows, size))
        return base + light[..., None] * np.array([1.0, 0.95, 0.8])
    if ground.kind == "road":
        light = 6 * rng.standard_normal((rows, size)) + 6 * _noise(rng, rows, size, max(2, round(3 * k)))
        tex = base + light[..., None]
        line_y = rng.uniform(0.35, 0.75) * rows
        thick = max(1.0, 1.5 * k * (0.5 + line_y / max(rows, 1)))
        period = rng.uniform(7, 11) * k
        dashes = ((x + rng.uniform(0, period)) % period) < 0.55 * period
        lane = (np.abs(y - line_y) <= thick / 2) & dashes
        paint = np.array((240.0, 240.0, 235.0)) if rng.random() < 0.6 else np.array((235.0, 200.0, 60.0))
        return np.where(lane[..., None], paint + light[..., None] * 0.5, tex)
    raise ValueError(f"unknown ground {ground.kind!r}; expected one of {(*CONTEXTS, NEUTRAL)}")


def render(scene: Scene) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render a scene to (RGB uint8 [H,W,3], class mask uint8 [H,W] = index+1, water mask uint8 [H,W])."""
    n = scene.size
    y, x = _grid(n)
    h0 = round(scene.horizon)
    t = np.minimum(y[:, :1] / max(scene.horizon, 1.0), 1.0)[..., None]
    img = np.repeat((1 - t) * np.asarray(scene.sky_top) + t * np.asarray(scene.sky_bottom), n, axis=1)
    if scene.cloud is not None:
        ccx, ccy, crx, cry = scene.cloud
        puff = np.clip(1.0 - ((x - ccx) / crx) ** 2 - ((y - ccy) / cry) ** 2, 0.0, 1.0) ** 0.5
        img = img + (np.array((250.0, 250.0, 252.0)) - img) * (0.85 * puff)[..., None]
    img[h0:] = _ground_texture(scene.ground, n - h0, n)
    seg = np.zeros((n, n), dtype=np.uint8)
    for obj in scene.objects:
        label = CLASSES.index(obj.cls) + 1
        for mask, colour in object_parts(obj, n):
            img[mask] = colour
            seg[mask] = label
    img += 2.5 * np.random.default_rng(scene.seed).standard_normal((n, n, 1))
    ground = np.zeros((n, n), dtype=bool)
    ground[h0:] = True
    water = ground & (seg == 0) if scene.ground.kind == "water" else np.zeros((n, n), dtype=bool)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), seg, water.astype(np.uint8)


def object_only(scene: Scene) -> Scene:
    """The same scene with sky and ground one flat neutral grey (no gradient, cloud or texture): its objects, masks
    and sensor noise unchanged, no context: the Backgrounds Challenge's "only foreground" variant (Xiao et al., ICLR
    2021), on mid-grey rather than black."""
    return dataclasses.replace(
        scene,
        sky_top=NEUTRAL_GREY,
        sky_bottom=NEUTRAL_GREY,
        cloud=None,
        ground=Ground(NEUTRAL, NEUTRAL_GREY, 0),
    )


def _jitter(rng: np.random.Generator, low: Sequence[float], high: Sequence[float]) -> RGB:
    return tuple(float(v) for v in rng.uniform(low, high))


GROUND_COLOURS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "water": ((15, 70, 110), (60, 140, 200)),
    "grass": ((45, 100, 20), (100, 165, 65)),
    "sand": ((185, 160, 105), (235, 210, 160)),
}


def sample_ground(rng: np.random.Generator, kind: str) -> Ground:
    """A ground of the given kind with a colour from its recognisable range and a fresh texture seed."""
    if kind == "road":
        g = rng.uniform(70, 125)
        colour = _jitter(rng, (g - 6, g - 6, g - 4), (g + 4, g + 4, g + 8))
    else:
        colour = _jitter(rng, *GROUND_COLOURS[kind])
    return Ground(kind, colour, int(rng.integers(2**63)))


def _sample_object(rng: np.random.Generator, cls: str, size: int, horizon: float, cx: float | None) -> SceneObject:
    s = rng.uniform(0.18, 0.35) * size
    half = s / 2 + 1
    if cx is None:
        cx = rng.uniform(half, size - half)
    height = HEIGHT[cls] * s
    if cls == "bird" and rng.random() < 0.5:
        base = rng.uniform(min(height + 0.1 * size, horizon - 2), horizon - 2)
    else:
        low = max(horizon + 0.12 * (size - horizon), height + 1)
        base = rng.uniform(min(low, size - 1.5), size - 1.5)
    i, j = rng.choice(len(PALETTE), size=2, replace=False)
    c1 = PALETTE[i] + rng.uniform(-15, 15, 3)
    c2 = PALETTE[j] + rng.uniform(-15, 15, 3)
    return SceneObject(
        cls,
        float(cx),
        float(base),
        float(s),
        tuple(map(float, c1)),
        tuple(map(float, c2)),
        bool(rng.random() < 0.5),
        int(rng.integers(2)),
    )


def sample_scene(rng: np.random.Generator, size: int, classes: Sequence[str], ground: str) -> Scene:
    """A random scene with the given ground type and one object per entry of ``classes``.

    Objects are kept apart horizontally so that each stays at least ~40% visible, and are painted far to near
    (by their base line), so nearer objects occlude farther ones as in a photograph.
    """
    horizon = rng.uniform(0.35, 0.6) * size
    if rng.random() < 0.2:
        g = rng.uniform(140, 200)
        top = _jitter(rng, (g - 10, g - 10, g - 5), (g, g, g + 10))
    else:
        top = _jitter(rng, (50, 110, 190), (130, 185, 250))
    bottom = tuple(float(v) for v in np.asarray(top) + (np.array((245.0, 245.0, 250.0)) - top) * rng.uniform(0.3, 0.7))
    cloud = None
    if rng.random() < 0.5:
        cloud = (
            float(rng.uniform(0, size)),
            float(rng.uniform(0.05, 0.6) * horizon),
            float(rng.uniform(0.1, 0.25) * size),
            float(rng.uniform(0.04, 0.08) * size),
        )
    objects: list[SceneObject] = []
    for cls in classes:
        obj = _sample_object(rng, cls, size, horizon, None)
        for _ in range(50):
            if all(abs(obj.cx - o.cx) >= 0.3 * (obj.scale + o.scale) for o in objects):
                break
            obj = _sample_object(rng, cls, size, horizon, None)
        else:
            far = max((obj.scale / 2 + 1, size - obj.scale / 2 - 1), key=lambda c: min(abs(c - o.cx) for o in objects))
            obj = _sample_object(rng, cls, size, horizon, far)
        objects.append(obj)
    objects.sort(key=lambda o: o.base)
    return Scene(
        size, top, bottom, cloud, float(horizon), sample_ground(rng, ground), tuple(objects), int(rng.integers(2**63))
    )
