"""A procedural talking-head renderer with exact ground truth.

A face is a set of 2D shapes laid out on the iBUG 68-point landmark template, each point with a depth so
that yaw turns the face. Identities vary in face shape, skin, lips, eyes, brows, nose, hair, beard and
glasses; scenes vary in background and lighting. Everything is drawn with OpenCV on a canvas
``SUPERSAMPLE`` times larger than the output and reduced with area averaging (anti-aliasing), so any
output resolution gives the same picture. Each frame comes with its 68 landmarks (pixels, iBUG layout,
0-based) and the mask of the occluder (a hand or a microphone) in front of the face.

Geometry lives in face units: x to the subject's left on screen (right), y down, the face half-width is
1 and the origin is between the eyes and the mouth.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SUPERSAMPLE = 3
_SHIFT = 4  # fractional bits for OpenCV's sub-pixel drawing
_ONE = 1 << _SHIFT


def _color(rng: np.random.Generator, base, spread) -> list[float]:
    return [float(np.clip(b + rng.uniform(-spread, spread), 0, 1)) for b in base]


@dataclass
class Identity:
    """Everything that makes a face recognisable; sampled once per identity."""

    face_size: float  # face half-width as a fraction of the frame width
    face_length: float  # chin-to-brow length relative to the half-width
    jaw_width: float  # width at the chin relative to the cheeks
    skin: list[float]  # RGB in [0, 1]
    lip: list[float]
    iris: list[float]
    brow: list[float]
    hair: list[float]
    hair_style: int  # 0 bald, 1 short, 2 long, 3 fringe
    beard: int  # 0 none, 1 stubble, 2 full
    glasses: int  # 0 none, 1 round, 2 square
    glasses_color: list[float]
    eye_spacing: float
    eye_size: float
    brow_height: float
    brow_thickness: float
    nose_length: float
    nose_width: float
    mouth_width: float
    lip_thickness: float
    articulation: float  # how far this speaker moves the mouth from rest
    voice: str
    jaw_drop: float = 0.22  # how far the chin falls (face units) when the jaw opens fully; a world setting, not sampled

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Identity:
        from .speech import VOICE_VARIANTS, VOICES

        tone = rng.uniform(0, 1)
        skin = np.array([0.95, 0.80, 0.69]) * (1 - tone) + np.array([0.36, 0.24, 0.17]) * tone
        hair_dark = rng.uniform(0, 1)
        hair = (
            np.array([0.85, 0.7, 0.45]) * (1 - hair_dark) + np.array([0.08, 0.06, 0.05]) * hair_dark
            if rng.uniform() < 0.85
            else np.array(_color(rng, (0.6, 0.6, 0.6), 0.3))
        )
        return cls(
            face_size=float(rng.uniform(0.17, 0.23)),
            face_length=float(rng.uniform(1.25, 1.55)),
            jaw_width=float(rng.uniform(0.45, 0.8)),
            skin=_color(rng, skin, 0.04),
            lip=_color(rng, skin * np.array([0.95, 0.6, 0.6]) + np.array([0.05, 0.0, 0.02]), 0.06),
            iris=_color(rng, (0.3, 0.3, 0.25), 0.25),
            brow=_color(rng, hair * 0.8, 0.05),
            hair=[float(v) for v in hair],
            hair_style=int(rng.integers(0, 4)),
            beard=int(rng.choice(3, p=[0.6, 0.2, 0.2])),
            glasses=int(rng.choice(3, p=[0.6, 0.2, 0.2])),
            glasses_color=_color(rng, (0.15, 0.15, 0.15), 0.15),
            eye_spacing=float(rng.uniform(0.36, 0.46)),
            eye_size=float(rng.uniform(0.8, 1.2)),
            brow_height=float(rng.uniform(0.2, 0.3)),
            brow_thickness=float(rng.uniform(0.04, 0.08)),
            nose_length=float(rng.uniform(0.85, 1.15)),
            nose_width=float(rng.uniform(0.8, 1.3)),
            mouth_width=float(rng.uniform(0.36, 0.48)),
            lip_thickness=float(rng.uniform(0.7, 1.3)),
            articulation=float(rng.uniform(0.85, 1.15)),
            voice=f"{rng.choice(VOICES)}+{rng.choice(VOICE_VARIANTS)}",
        )


@dataclass
class Scene:
    """Background and lighting of one clip."""

    background: list[list[float]]  # two RGB colours of a gradient
    gradient_angle: float
    blobs: list[list[float]]  # blurred background shapes: x, y, radius, r, g, b (x, y, radius in frame units)
    light_angle: float
    light_strength: float
    brightness: float
    shirt: list[float]

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Scene:
        return cls(
            background=[_color(rng, (0.5, 0.5, 0.5), 0.45), _color(rng, (0.5, 0.5, 0.5), 0.45)],
            gradient_angle=float(rng.uniform(0, 2 * np.pi)),
            blobs=[
                [float(rng.uniform(0, 1)), float(rng.uniform(0, 1)), float(rng.uniform(0.05, 0.3))]
                + _color(rng, (0.5, 0.5, 0.5), 0.45)
                for _ in range(int(rng.integers(0, 6)))
            ],
            light_angle=float(rng.uniform(0, 2 * np.pi)),
            light_strength=float(rng.uniform(0.0, 0.35)),
            brightness=float(rng.uniform(0.8, 1.15)),
            shirt=_color(rng, (0.5, 0.5, 0.5), 0.45),
        )


@dataclass
class Occluder:
    """A hand or microphone passing in front of the lower face between ``start`` and ``end`` seconds."""

    kind: str  # "hand" or "microphone"
    start: float
    end: float
    x: float  # resting position relative to the mouth, face units
    y: float
    angle: float  # degrees
    size: float
    color: list[float]
    enter_from: float  # direction (radians) it slides in from

    @classmethod
    def sample(cls, rng: np.random.Generator, duration: float, skin: list[float]) -> Occluder:
        kind = "hand" if rng.uniform() < 0.5 else "microphone"
        length = rng.uniform(0.3, 0.7) * duration
        start = rng.uniform(0, duration - length)
        return cls(
            kind=kind,
            start=float(start),
            end=float(start + length),
            x=float(rng.uniform(-0.4, 0.4)),
            y=float(rng.uniform(0.0, 0.5) if kind == "hand" else rng.uniform(0.35, 0.7)),
            angle=float(rng.uniform(-30, 30)),
            size=float(rng.uniform(0.8, 1.2)),
            color=(_color(rng, skin, 0.05) if kind == "hand" else _color(rng, (0.2, 0.2, 0.22), 0.1)),
            enter_from=float(rng.uniform(np.pi * 0.15, np.pi * 0.85)),  # from below
        )

    def presence(self, t: float) -> float:
        """0 when away, 1 when in place; 0.3 s slides in and out."""
        ramp = 0.3
        a = np.clip((t - self.start) / ramp, 0, 1) * np.clip((self.end - t) / ramp, 0, 1)
        return float(a * a * (3 - 2 * a))


@dataclass
class Pose:
    """Per-frame head pose and the expressions that do not follow the audio."""

    x: float  # head centre, fraction of frame width
    y: float  # fraction of frame height
    scale: float
    roll: float  # degrees
    yaw: float  # degrees
    eye_open: float  # 1 open, 0 closed (blinks)
    brow_raise: float  # 0..1


@dataclass
class Motion:
    """Smooth random head motion, blinks and brow raises for a clip, from a seed."""

    seed: int
    amount: float = 1.0

    def poses(self, n_frames: int, fps: float) -> list[Pose]:
        rng = np.random.default_rng(self.seed)
        t = np.arange(n_frames) / fps

        def wander(amplitude: float) -> np.ndarray:
            out = np.zeros(n_frames)
            for _ in range(3):
                out += np.sin(2 * np.pi * rng.uniform(0.05, 0.5) * t + rng.uniform(0, 2 * np.pi)) / 3
            return out * amplitude * self.amount

        cx, cy = rng.uniform(0.45, 0.55), rng.uniform(0.42, 0.5)
        x, y = cx + wander(0.04), cy + wander(0.03)
        scale = 1.0 + wander(0.04)
        roll, yaw = rng.uniform(-4, 4) + wander(6.0), rng.uniform(-8, 8) + wander(10.0)
        eye = np.ones(n_frames)
        blink_t = rng.uniform(0, 2.0)
        while blink_t < t[-1] + 1 if n_frames else False:
            eye = np.minimum(eye, np.clip(np.abs(t - blink_t) / 0.08, 0, 1) ** 1.5)
            blink_t += rng.uniform(1.5, 5.0)
        brow = np.zeros(n_frames)
        for _ in range(int(rng.integers(0, 3))):
            c, w = rng.uniform(0, t[-1] + 0.04), rng.uniform(0.2, 0.6)
            brow = np.maximum(brow, np.exp(-(((t - c) / w) ** 2)) * rng.uniform(0.4, 1.0))
        return [Pose(*map(float, v)) for v in zip(x, y, scale, roll, yaw, eye, brow)]


def face_points(ident: Identity, mouth: np.ndarray, pose: Pose) -> np.ndarray:
    """The 68 iBUG landmarks in face units as (68, 3) x, y, depth."""
    jaw, width, rnd, teeth, _ = (float(v) for v in mouth)
    pts = np.zeros((68, 3))
    drop = ident.jaw_drop * jaw
    # 0-16 jaw line: from the ear at eye level, round the chin, to the other ear
    phi = np.linspace(0, np.pi, 17)
    top, chin = -0.2, ident.face_length - 0.35
    s = np.sin(phi)
    pts[:17, 0] = -np.cos(phi) * (1 - (1 - ident.jaw_width) * s**3)
    pts[:17, 1] = top + s * (chin - top) + drop * s**4
    pts[:17, 2] = 0.35 * s
    # 17-26 brows, each from its outer end (17, 26) to its inner end (21, 22)
    for side, base in ((-1, 17), (1, 22)):
        u = np.linspace(1, 0, 5) if side < 0 else np.linspace(0, 1, 5)  # 0 at the inner end, 1 at the outer
        pts[base : base + 5, 0] = side * (0.12 + u * 0.68)
        pts[base : base + 5, 1] = (
            -ident.brow_height - 0.12 - 0.09 * np.sin(np.pi * (0.25 + 0.75 * (1 - u))) - 0.08 * pose.brow_raise
        )
        pts[base : base + 5, 2] = 0.3
    # 27-30 nose bridge, 31-35 nostrils
    nl = ident.nose_length
    pts[27:31, 0] = 0
    pts[27:31, 1] = np.linspace(-0.14, 0.28 * nl, 4)
    pts[27:31, 2] = np.linspace(0.45, 0.75, 4)
    nw = 0.16 * ident.nose_width
    pts[31:36, 0] = np.array([-1, -0.5, 0, 0.5, 1]) * nw
    pts[31:36, 1] = 0.36 * nl + np.array([0, 0.03, 0.045, 0.03, 0])
    pts[31:36, 2] = 0.55
    # 36-47 eyes, each from its left corner (36 outer, 42 inner): corner, two upper-lid points, corner, two lower-lid points
    ew, eh = 0.19 * ident.eye_size, 0.085 * ident.eye_size * pose.eye_open
    for side, base in ((-1, 36), (1, 42)):
        pts[base : base + 6, 0] = side * ident.eye_spacing + np.array([-1, -0.4, 0.4, 1, 0.4, -0.4]) * ew
        pts[base : base + 6, 1] = -0.2 + np.array([0, -1, -1, 0, 0.7, 0.7]) * eh
        pts[base : base + 6, 2] = 0.35
    # 48-67 mouth
    mw = ident.mouth_width * (1 + 0.45 * (width - 0.5)) * (1 - 0.35 * rnd)
    lt = ident.lip_thickness
    gap = 0.26 * jaw + 0.05 * rnd * (jaw > 0.05) + 0.03 * teeth * (jaw > 0.02)
    my = 0.58 * nl + 0.1
    up_in, lo_in = my - 0.25 * gap, my + 0.75 * gap
    up_out, lo_out = up_in - 0.07 * lt * (1 + 0.3 * rnd), lo_in + 0.085 * lt * (1 + 0.3 * rnd)
    inner_w = mw * (0.9 - 0.35 * rnd)
    # outer: 48 left corner, 49-53 upper lip, 54 right corner, 55-59 lower lip
    cupid = 0.015 * lt
    pts[48] = (-mw, my, 0.45)
    pts[49] = (-0.6 * mw, up_out + 0.2 * (my - up_out) * (1 - rnd), 0.5)
    pts[50] = (-0.22 * mw, up_out - cupid, 0.55)
    pts[51] = (0, up_out, 0.56)
    pts[52] = (0.22 * mw, up_out - cupid, 0.55)
    pts[53] = (0.6 * mw, up_out + 0.2 * (my - up_out) * (1 - rnd), 0.5)
    pts[54] = (mw, my, 0.45)
    pts[55] = (0.6 * mw, lo_out - 0.25 * (lo_out - my) * (1 - rnd), 0.5)
    pts[56] = (0.25 * mw, lo_out, 0.55)
    pts[57] = (0, lo_out + 0.005, 0.56)
    pts[58] = (-0.25 * mw, lo_out, 0.55)
    pts[59] = (-0.6 * mw, lo_out - 0.25 * (lo_out - my) * (1 - rnd), 0.5)
    # inner: 60 left corner, 61-63 upper, 64 right corner, 65-67 lower
    pts[60] = (-inner_w, my, 0.45)
    pts[61] = (-0.45 * inner_w, up_in - 0.1 * gap * rnd, 0.5)
    pts[62] = (0, up_in - 0.1 * gap * rnd, 0.52)
    pts[63] = (0.45 * inner_w, up_in - 0.1 * gap * rnd, 0.5)
    pts[64] = (inner_w, my, 0.45)
    pts[65] = (0.45 * inner_w, lo_in, 0.5)
    pts[66] = (0, lo_in, 0.52)
    pts[67] = (-0.45 * inner_w, lo_in, 0.5)
    pts[48:68, 1] += drop * 0.15  # the whole mouth follows the jaw a little
    return pts


class _Projector:
    """Face units (with depth) -> supersampled canvas pixels for one frame's pose."""

    def __init__(self, ident: Identity, pose: Pose, width: int, height: int) -> None:
        self.scale = ident.face_size * pose.scale * width * SUPERSAMPLE
        # canvas coordinates put pixel centres on integers: image point (x, y) is at (x, y) * SUPERSAMPLE - 0.5
        self.center = np.array([pose.x * width, pose.y * height]) * SUPERSAMPLE - 0.5
        self.yaw = np.deg2rad(pose.yaw)
        r = np.deg2rad(pose.roll)
        self.rot = np.array([[np.cos(r), -np.sin(r)], [np.sin(r), np.cos(r)]])

    def __call__(self, xyz: np.ndarray) -> np.ndarray:
        xyz = np.atleast_2d(xyz)
        z = xyz[:, 2] if xyz.shape[1] > 2 else np.zeros(len(xyz))
        x = xyz[:, 0] * np.cos(self.yaw) + z * np.sin(self.yaw)
        xy = np.stack([x, xyz[:, 1]], axis=1) @ self.rot.T
        return xy * self.scale + self.center


def _fix(points: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(points) * _ONE).astype(np.int32).reshape(-1, 1, 2)


def _blend(img, points, pad, draw, color, alpha: float = 1.0) -> np.ndarray | None:
    """Draw a coverage mask with ``draw(canvas, offset)`` inside the box around ``points`` (+ ``pad``) and
    blend ``color`` in with it: exact anti-aliased edges in any colour, at the cost of a small box only.
    Returns the coverage box and its position, for callers that need the mask too."""
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    H, W = img.shape[:2]
    x0, y0 = np.floor(pts.min(0) - pad - 1).astype(int)
    x1, y1 = np.ceil(pts.max(0) + pad + 2).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)
    if x1 <= x0 or y1 <= y0:
        return None
    cov = np.zeros((y1 - y0, x1 - x0), np.float32)
    draw(cov, np.array([x0, y0], np.float64))
    a, color = cov * alpha, np.asarray(color, np.float32)
    region = img[y0:y1, x0:x1]
    # region (1 - a) + color a, computed only where 0 < a < 1: where a is 0 or 1 it is exactly region or color
    region[a == 1] = color
    edge = (a > 0) & (a < 1)
    weight = a[edge][:, None]
    region[edge] = region[edge] * (1 - weight) + color * weight
    return cov, (y0, y1, x0, x1)


def _poly(img, points, color, alpha: float = 1.0):
    return _blend(img, points, 0, lambda c, o: cv2.fillPoly(c, [_fix(points - o)], 1.0, cv2.LINE_AA, _SHIFT), color, alpha)


def _ellipse_points(center, axes, angle) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    a = np.deg2rad(angle)
    x, y = axes[0] * np.cos(t), axes[1] * np.sin(t)
    return np.stack([center[0] + x * np.cos(a) - y * np.sin(a), center[1] + x * np.sin(a) + y * np.cos(a)], 1)


def _ellipse(img, center, axes, angle, color, alpha: float = 1.0):
    return _poly(img, _ellipse_points(center, axes, angle), color, alpha)


def _line(img, points, color, thickness, alpha: float = 1.0, closed: bool = False):
    t = max(1, int(round(thickness)))
    return _blend(
        img, points, t, lambda c, o: cv2.polylines(c, [_fix(points - o)], closed, 1.0, t, cv2.LINE_AA, _SHIFT), color, alpha
    )


def _smooth_closed(points: np.ndarray, samples: int = 8) -> np.ndarray:
    """A closed Catmull-Rom curve through ``points``: round outlines from few landmarks."""
    p = np.asarray(points, np.float64)
    p0, p1, p2, p3 = (np.roll(p, shift, axis=0)[:, None] for shift in (1, 0, -1, -2))  # each point's neighbours
    steps = np.arange(samples) / samples
    s, s2, s3 = (np.array([t**k for t in steps])[None, :, None] for k in (1, 2, 3))  # scalar powers, as the curve was first drawn
    out = 0.5 * ((2 * p1) + (-p0 + p2) * s + (2 * p0 - 5 * p1 + 4 * p2 - p3) * s2 + (-p0 + 3 * p1 - 3 * p2 + p3) * s3)
    return out.reshape(-1, p.shape[-1])


def _background(scene: Scene, width: int, height: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    d = (np.cos(scene.gradient_angle) * xx / width + np.sin(scene.gradient_angle) * yy / height + 1) / 2
    c0, c1 = (np.asarray(c, np.float32) for c in scene.background)
    img = c0 * (1 - d[..., None]) + c1 * d[..., None]
    for x, y, r, *rgb in scene.blobs:
        cov = np.zeros((height, width), np.float32)
        cv2.circle(cov, (int(x * width * _ONE), int(y * height * _ONE)), int(r * width * _ONE), 1.0, -1, cv2.LINE_AA, _SHIFT)
        k = int(r * width * 0.5) * 2 + 1
        cov = cv2.GaussianBlur(cov, (k, k), 0)[..., None] * 0.6
        img = img * (1 - cov) + np.asarray(rgb, np.float32) * cov
    return img


def _lighting(scene: Scene, width: int, height: int) -> np.ndarray:
    """Per-pixel gain of a directional light over the whole picture."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = (np.cos(scene.light_angle) * (xx - width / 2) + np.sin(scene.light_angle) * (yy - height / 2)) / width
    return (scene.brightness * (1 + scene.light_strength * ramp))[..., None].astype(np.float32)


class FaceRenderer:
    """Renders frames of one identity in one scene at one resolution (background and light are cached)."""

    def __init__(self, ident: Identity, scene: Scene, width: int, height: int) -> None:
        self.ident, self.scene, self.width, self.height = ident, scene, width, height
        W, H = width * SUPERSAMPLE, height * SUPERSAMPLE
        self._background = _background(scene, W, H)
        self._light = _lighting(scene, W, H)

    def render(
        self, pose: Pose, mouth: np.ndarray, occluder: Occluder | None = None, time: float = 0.0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One frame: (uint8 RGB HxWx3, landmarks (68, 2) in pixels, occluder mask HxW uint8 0/1)."""
        img = self._background.copy()
        proj = _Projector(self.ident, pose, self.width, self.height)
        pts = face_points(self.ident, mouth, pose)
        _draw_face(img, self.ident, self.scene, pose, mouth, proj, pts)
        img *= self._light
        occ = np.zeros(img.shape[:2], np.float32)
        if occluder is not None and occluder.presence(time) > 0:
            _draw_occluder(img, occ, occluder, occluder.presence(time), proj, pts)
        out = cv2.resize(np.clip(img, 0, 1, out=img), (self.width, self.height), interpolation=cv2.INTER_AREA)
        frame = np.round(out * 255).astype(np.uint8)
        mask = (cv2.resize(occ, (self.width, self.height), interpolation=cv2.INTER_AREA) > 0.5).astype(np.uint8)
        landmarks = (proj(pts) + 0.5) / SUPERSAMPLE - 0.5  # canvas pixel centres -> output pixel centres
        return frame, landmarks.astype(np.float32), mask


def _clipped(img, clip_points, fill, draw_inside) -> None:
    """Fill a region with ``fill``, draw ``draw_inside(layer, offset)`` on it, and keep it only inside
    ``clip_points`` (iris inside the eye, teeth and tongue inside the mouth)."""
    pts = np.asarray(clip_points, np.float64)
    H, W = img.shape[:2]
    x0, y0 = np.floor(pts.min(0) - 1).astype(int)
    x1, y1 = np.ceil(pts.max(0) + 2).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)
    if x1 <= x0 or y1 <= y0:
        return
    o = np.array([x0, y0], np.float64)
    cov = np.zeros((y1 - y0, x1 - x0), np.float32)
    cv2.fillPoly(cov, [_fix(pts - o)], 1.0, cv2.LINE_AA, _SHIFT)
    layer = np.empty((y1 - y0, x1 - x0, 3), np.float32)
    layer[:] = fill
    draw_inside(layer, o)
    img[y0:y1, x0:x1] = img[y0:y1, x0:x1] * (1 - cov[..., None]) + layer * cov[..., None]


def _draw_face(img, ident: Identity, scene: Scene, pose: Pose, mouth, proj: _Projector, pts: np.ndarray) -> None:
    P = proj(pts)
    u = proj.scale  # canvas pixels per face unit
    skin = np.asarray(ident.skin, np.float32)
    dark_skin = skin * 0.82
    hair = np.asarray(ident.hair, np.float32)
    fl = ident.face_length

    # behind the head: long hair, neck, shoulders, ears
    if ident.hair_style == 2:
        _poly(img, proj(np.array([[-1.25, -0.5, 0], [1.25, -0.5, 0], [1.35, fl + 0.6, 0], [-1.35, fl + 0.6, 0]])), hair)
    _poly(img, proj(np.array([[-0.45, 0.3, 0], [0.45, 0.3, 0], [0.5, fl + 0.6, 0], [-0.5, fl + 0.6, 0]])), dark_skin)
    _poly(
        img,
        proj(np.array([[-2.4, fl + 2.5, 0], [-2.0, fl + 0.75, 0], [-0.5, fl + 0.45, 0], [0.5, fl + 0.45, 0],
                       [2.0, fl + 0.75, 0], [2.4, fl + 2.5, 0]])),
        scene.shirt,
    )
    for side in (-1, 1):
        _ellipse(img, proj(np.array([side * 1.0, 0.0, 0.0]))[0], (0.13 * u, 0.24 * u), pose.roll, dark_skin)
    # the head: jaw line plus a skull arc over the forehead
    ang = np.linspace(0, np.pi, 15)[1:-1]
    skull = np.stack([np.cos(ang) * 1.02, -0.2 - np.sin(ang) * (0.55 + 0.35 * fl), 0.35 * np.sin(ang)], 1)
    _poly(img, proj(_smooth_closed(np.concatenate([pts[:17], skull]), 4)), skin)
    if ident.beard:
        around_mouth = pts[[54, 33, 48]] + [[0.08, 0.06, 0], [0, 0.1, 0], [-0.08, 0.06, 0]]
        _poly(img, proj(np.concatenate([pts[2:15], around_mouth])), hair, 0.35 if ident.beard == 1 else 0.9)
    for a, b in ((17, 22), (22, 27)):
        _line(img, P[a:b], ident.brow, ident.brow_thickness * u)
    # eyes: white, iris and pupil inside the lids; closed eyes are a lash line
    for a in (36, 42):
        eye = P[a : a + 6]
        if pose.eye_open > 0.15:
            c, r = eye.mean(0), 0.065 * ident.eye_size * u

            def iris(layer, o, c=c, r=r):
                cc = (int((c[0] - o[0]) * _ONE), int((c[1] - o[1]) * _ONE))
                cv2.circle(layer, cc, int(r * _ONE), ident.iris, -1, cv2.LINE_AA, _SHIFT)
                cv2.circle(layer, cc, int(0.45 * r * _ONE), (0.05, 0.05, 0.05), -1, cv2.LINE_AA, _SHIFT)

            _clipped(img, _smooth_closed(eye, 4), (0.95, 0.95, 0.93), iris)
            _line(img, eye[:4], (0.15, 0.1, 0.1), 0.025 * u)
        else:
            _line(img, eye[[0, 5, 4, 3]], (0.2, 0.12, 0.1), 0.025 * u)
    # nose
    _line(img, P[27:31] + [[0.04 * u, 0]], dark_skin * 0.9, 0.03 * u, 0.6)
    _line(img, P[31:36], dark_skin * 0.7, 0.03 * u)
    for i in (32, 34):
        _ellipse(img, P[i] - [0, 0.01 * u], (0.035 * u, 0.02 * u), pose.roll, (0.2, 0.1, 0.1), 0.8)
    # mouth: lips, then the cavity with teeth and tongue inside the inner lip line
    _, _, _, teeth, tongue = (float(v) for v in mouth)
    lip = np.asarray(ident.lip, np.float32)
    _poly(img, _smooth_closed(P[48:60], 6), lip)
    inner = _smooth_closed(P[60:68], 6)
    gap = np.linalg.norm(P[66] - P[62])
    iw = np.linalg.norm(P[64] - P[60])
    if gap > 0.2 * SUPERSAMPLE:

        def teeth_and_tongue(layer, o):
            if teeth > 0.02:
                top = (P[61] + P[62] + P[63]) / 3 - o
                _ellipse(layer, top, (0.45 * iw, (0.05 + 0.05 * teeth) * u), pose.roll, (0.96, 0.95, 0.9), min(1.0, 0.3 + teeth))
            if tongue > 0.02:
                bottom = P[66] - (P[66] - P[62]) * 0.15 * (1 + tongue) - o
                _ellipse(layer, bottom, (0.35 * iw, 0.35 * gap * (0.5 + tongue)), pose.roll, (0.85, 0.4, 0.42), min(1.0, 1.3 * tongue))

        _clipped(img, inner, (0.25, 0.06, 0.07), teeth_and_tongue)
    _line(img, inner, lip * 0.7, 0.015 * u, 0.8, closed=True)
    # hair over the skull
    if ident.hair_style in (1, 2, 3):
        a2 = np.linspace(-0.1, np.pi + 0.1, 20)
        cap = np.stack([np.cos(a2) * 1.08, -0.12 - np.sin(a2) * (0.62 + 0.35 * fl), 0.3 * np.sin(a2)], 1)
        hairline = np.stack([np.cos(a2) * 0.98, -0.3 - np.sin(a2) * (0.3 + 0.1 * fl), 0.35 * np.sin(a2)], 1)[::-1]
        if ident.hair_style == 3:  # fringe
            hairline[:, 1] += 0.2 * np.sin(a2[::-1]) ** 2
        _poly(img, proj(np.concatenate([cap, hairline])), hair)
    if ident.glasses:
        lw = 0.035 * u
        for a in (36, 42):
            centre = np.array([pts[a : a + 6, 0].mean(), -0.2, 0.35])
            if ident.glasses == 1:
                ring = np.stack([0.24 * np.cos(np.linspace(0, 2 * np.pi, 32)), 0.19 * np.sin(np.linspace(0, 2 * np.pi, 32)), np.zeros(32)], 1)
            else:
                ring = np.array([[-0.24, -0.17, 0], [0.24, -0.17, 0], [0.24, 0.14, 0], [-0.24, 0.14, 0]])
            frame = proj(ring + centre)
            _poly(img, frame, (0.85, 0.9, 0.95), 0.15)
            _line(img, frame, ident.glasses_color, lw, closed=True)
        _line(img, np.stack([P[39] + (P[39] - P[36]) * 0.1, P[42] + (P[42] - P[45]) * 0.1]), ident.glasses_color, lw)


def _draw_occluder(img, cov, occ: Occluder, presence: float, proj: _Projector, pts: np.ndarray) -> None:
    """Draw the occluder over the picture and its coverage into ``cov``."""
    u = proj.scale
    mouth = pts[48:68].mean(0)
    away = 3.5 * (1 - presence)
    anchor = mouth + np.array([occ.x + np.cos(occ.enter_from) * away, occ.y + np.sin(occ.enter_from) * away, 0.6])
    a = np.deg2rad(occ.angle)
    R = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    s = occ.size

    def place(xy):
        xy = np.asarray(xy, np.float64) * s @ R.T
        return proj(np.concatenate([anchor[None, :2] + xy, np.full((len(xy), 1), anchor[2])], 1))

    if occ.kind == "hand":
        fills = [place(_ellipse_points((0, 0.55), (0.42, 0.5), 0))]
        strokes = [(place([[fx, 0.3], [fx, 0.3 - n]]), 0.17) for fx, n in zip((-0.3, -0.1, 0.1, 0.3), (0.55, 0.65, 0.62, 0.5))]
        strokes += [(place([[-0.38, 0.7], [-0.65, 0.25]]), 0.19), (place([[0, 0.9], [0, 3.0]]), 0.6)]
    else:
        fills = [place(_ellipse_points((0, 0), (0.22, 0.26), 0))]
        strokes = [(place([[0, 0.1], [0, 3.5]]), 0.16)]
    shape = np.zeros_like(cov)
    for f in fills:
        cv2.fillPoly(shape, [_fix(f)], 1.0, cv2.LINE_AA, _SHIFT)
    for line, width in strokes:
        cv2.polylines(shape, [_fix(line)], False, 1.0, max(1, int(width * s * u)), cv2.LINE_AA, _SHIFT)
    ys = np.nonzero(shape.any(axis=1))[0]
    if len(ys) == 0:
        return
    y0, y1 = ys[0], ys[-1] + 1
    shade = np.linspace(1.1, 0.8, y1 - y0, dtype=np.float32)[:, None, None]  # a solid object catches light from above
    color = np.asarray(occ.color, np.float32) * shade
    a = shape[y0:y1, ..., None]
    img[y0:y1] = img[y0:y1] * (1 - a) + color * a
    np.maximum(cov, shape, out=cov)
