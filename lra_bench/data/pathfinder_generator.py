"""Offline generator for the Long Range Arena Pathfinder / Path-X tasks.

Pathfinder (Linsley et al., 2018, "Learning long-range spatial dependencies with
horizontal gated recurrent units"; Kim et al., 2020, "Disentangling neural
mechanisms for perceptual grouping") shows a grayscale image with two small
marker discs and several curved contours drawn as short dashes ("paddles").
The label is 1 when both markers sit on the two ends of one and the same
contour, 0 when they sit on ends of two different contours.  Long Range Arena
(Tay et al., 2021) uses it at 32x32 ("Pathfinder") and 128x128 ("Path-X"), in
three difficulties named by the contour length in paddles (DIFFICULTY_LENGTHS).

This is an independent, small numpy/PIL renderer in the spirit of the original
(github.com/drewlinsley/pathfinder), not a port of it:

* every image has two *main* contours of ``contour_length`` paddles and a few
  shorter distractors (``contour_length // 3`` paddles each, as in the
  original).  Both classes are drawn by the same process: main contour 0 with
  end-to-end distance d, main contour 1 starting at distance d from a random
  end of contour 0, then the distractors.  The first marker goes on that end;
  the second on the other end of contour 0 (label 1) or on the start of
  contour 1 (label 0).  So both classes show the same contours, two markers
  at the same distance: only the connectivity tells them apart (a naive
  "random end of each contour" gives the marker distance alone ~70% accuracy);
* a contour is a random walk of steps of length ``paddle_length + paddle_gap``
  whose heading turns by at most ``max_turn_deg`` per step; each step is drawn
  as a rectangular paddle of ``paddle_length`` x ``paddle_thickness`` centred
  on the step, leaving a gap of ``paddle_gap`` between consecutive paddles.
  A step is only taken if, from where it ends, a full turn at the maximum
  rate still fits in the image, so contours bend away from the borders
  instead of running into them;
* contours and markers keep about ``clearance`` pixels of background between
  each other (a contour also keeps clear of itself).  Ink is stamped into an
  occupancy grid of cells of ``paddle_length / 4`` pixels, each cell holding
  the first (lowest) serial number that covered it, so a candidate step is
  tested with a few look-ups (the spacing is exact up to about one cell).  A
  step that fails is redrawn a few times, then the last steps are undone and
  redrawn (bounded), then the contour is restarted; distractors that never fit
  are dropped.  If the two main contours cannot be placed under all
  constraints the image is redrawn, then the spacing rules are relaxed and
  finally the turn bound (``geometry["relaxed"]`` says which; at the default
  settings and contour length 14 this happened to 0.7% of images at 16x16,
  0.02% at 32x32 and none of 2000 at 128x128), so rendering always terminates;
* drawing is done on a canvas ``supersample`` times larger with PIL polygons
  and ellipses, then box-averaged down: anti-aliased 8-bit grayscale.

Sizes scale with the resolution through ``s = resolution / 32``: paddle length
(2 s), gap (s), clearance (s), marker distance (7 s) grow linearly, so a
128x128 image is a scaled-up 32x32 one with a longer path to follow in
pixels; thickness (sqrt(s)) and marker radius (1.5 sqrt(s)) grow like the
original's (0.5-1 -> 1.5 and 1.5 -> 3 px).  The distractor ink (paddles in all
distractors) is ``20 s**0.4``, i.e. the original's 20 at 32x32 and 35 at
128x128.  Any resolution >= 16 works; every knob can be set explicitly.

Data sets are written in LRA's exact layout by write_pathfinder: images are
generated in chunks of CHUNK_SIZE, chunk ``i`` seeded from (seed, resolution,
contour_length, i) only, so files are byte-identical whatever the number of
worker processes.  Labels are exactly balanced, in a seeded random order.

Speed (2-core machine, ``workers=2``, PNG writing included): the default 20000
images of curv_contour_length_14 take about 19 s at 32x32 and 23 s at 128x128
(rendering ~1.7 ms per image per core; curv_baseline is about 3x faster).

Sample grids (top row positives, bottom row negatives) for the README are
regenerated with::

    python -m lra_bench.data.pathfinder_generator --samples docs/img

which writes docs/img/pathfinder32.png and docs/img/pathx128.png.
"""

from __future__ import annotations

import argparse
import functools
import math
import multiprocessing
import os
import shutil
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from lra_bench.errors import ConfigError

# The renderer, CHUNK_SIZE and the seeding scheme define the output: bump GENERATOR_VERSION when any of
# them changes, so that caches keyed on it regenerate.
GENERATOR_VERSION = 1
DIFFICULTY_LENGTHS = {"curv_baseline": 6, "curv_contour_length_9": 9, "curv_contour_length_14": 14}
IMAGES_PER_DIR = 1000  # LRA: imgs/<k>/sample_0.png .. sample_999.png, listed by metadata/<k>.npy
CHUNK_SIZE = 200  # images per independently seeded work unit
MIN_RESOLUTION = 16
MAX_CONTOUR_LENGTH = 64

_STEP_TRIES = 8  # headings tried per step before backtracking
_BACKTRACK = 2  # steps undone when a step cannot be drawn
_CONTOUR_TRIES = 12  # starts tried per main contour
_START_TRIES = 16  # angles tried for the start of main contour 1
_DISTRACTOR_TRIES = 6  # starts tried per distractor before it is dropped
_IMAGE_TRIES = 8  # redraws of both main contours before relaxing the constraints
_DIRECTIONS = 64  # heading quantisation of the precomputed paddle stamps
_EMPTY = np.iinfo(np.int32).max


@dataclass
class PathfinderGenConfig:
    """What write_pathfinder generates; None knobs take defaults scaled by s = resolution / 32.

    Lengths are in pixels of the final image.
    """

    num_samples: int = 20000
    resolution: int = 32
    contour_length: int = 14  # paddles per main contour (set from task.difficulty)
    seed: int = 0
    num_distractors: Optional[int] = None  # default: int(20 * s**0.4 // distractor_length)
    distractor_length: Optional[int] = None  # paddles; default max(1, contour_length // 3)
    paddle_length: Optional[float] = None  # default 2 s
    paddle_gap: Optional[float] = None  # gap between consecutive paddles of a contour; default s
    paddle_thickness: Optional[float] = None  # default sqrt(s)
    marker_radius: Optional[float] = None  # default 1.5 sqrt(s)
    clearance: Optional[float] = None  # background kept between different contours/markers; default s
    marker_distance: Optional[float] = None  # minimum distance of the two marker centres; default 7 s
    max_turn_deg: float = 30.0  # largest heading change between consecutive paddles
    supersample: int = 4  # anti-aliasing: drawn at this many times the resolution, then box-averaged

    def validate(self) -> None:
        """Raise ConfigError (one line naming the key and the fix) unless images can be generated."""
        for f in fields(self):
            value = getattr(self, f.name)
            key = _key(f.name)
            if value is None and f.default is None:
                continue
            if f.name in _INT_FIELDS:
                if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                    raise ConfigError(f"{key}={value!r} must be an int, not {type(value).__name__}")
            elif (not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool)
                  or not math.isfinite(value)):
                raise ConfigError(f"{key}={value!r} must be a finite number")
        if self.num_samples < 2 or self.num_samples % 2:
            raise ConfigError(f"{_key('num_samples')}={self.num_samples} must be >= 2 and even (labels are "
                              f"exactly half 1, half 0); e.g. 20000")
        if self.resolution < MIN_RESOLUTION:
            raise ConfigError(f"{_key('resolution')}={self.resolution} must be >= {MIN_RESOLUTION}; LRA uses 32 "
                              f"(Pathfinder) and 128 (Path-X)")
        if not 2 <= self.contour_length <= MAX_CONTOUR_LENGTH:
            names = ", ".join(f"{k} ({v})" for k, v in DIFFICULTY_LENGTHS.items())
            raise ConfigError(f"{_key('contour_length')}={self.contour_length} must be in [2, "
                              f"{MAX_CONTOUR_LENGTH}] paddles; the LRA difficulties are {names}")
        if self.seed < 0:
            raise ConfigError(f"{_key('seed')}={self.seed} must be >= 0")
        if self.num_distractors is not None and self.num_distractors < 0:
            raise ConfigError(f"{_key('num_distractors')}={self.num_distractors} must be >= 0 (or null for "
                              f"the scaled default)")
        if self.distractor_length is not None and self.distractor_length < 1:
            raise ConfigError(f"{_key('distractor_length')}={self.distractor_length} must be >= 1 paddle (or "
                              f"null for contour_length // 3)")
        for name in ("paddle_length", "paddle_thickness", "marker_radius"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{_key(name)}={value} must be > 0 pixels (or null for the scaled default)")
        for name in ("paddle_gap", "clearance", "marker_distance"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"{_key(name)}={value} must be >= 0 pixels (or null for the scaled default)")
        if not 0 <= self.max_turn_deg <= 180:
            raise ConfigError(f"{_key('max_turn_deg')}={self.max_turn_deg} must be in [0, 180] degrees; "
                              f"e.g. 30")
        if not 1 <= self.supersample <= 16:
            raise ConfigError(f"{_key('supersample')}={self.supersample} must be in [1, 16]; e.g. 4")
        p = _params(self)
        if 2 * p.pitch > p.end_hi - p.end_lo:
            raise ConfigError(
                f"{_key('paddle_length')}+{_key('paddle_gap')}={p.pitch:g} px is too long for "
                f"{_key('resolution')}={self.resolution} with marker_radius={p.marker_radius:g}: a step must be "
                f"at most {(p.end_hi - p.end_lo) / 2:g} px; shorten the paddles or raise the resolution")


_INT_FIELDS = {"num_samples", "resolution", "contour_length", "seed", "num_distractors", "distractor_length",
               "supersample"}


def _key(name: str) -> str:
    """The config key a field comes from (resolution and contour_length are set by the task)."""
    if name == "resolution":
        return "task.resolution"
    if name == "contour_length":
        return "task.difficulty -> contour_length"
    return f"task.generate.{name}"


class _Params(NamedTuple):
    """Resolved geometry, in pixels (px) or occupancy-grid cells."""

    res: int
    n_main: int
    n_dist: int
    dist_len: int
    paddle_length: float
    gap: float
    pitch: float
    thickness: float
    marker_radius: float
    clearance: float
    marker_distance: float
    max_turn: float  # radians
    turn_radius: float  # radius of the circle a contour turning by max_turn every step runs along
    ss: int
    lo: float  # every contour point lies in [lo, hi]^2
    hi: float
    end_lo: float  # main-contour end points (markers) lie in [end_lo, end_hi]^2
    end_hi: float
    cell: float  # px per occupancy cell
    pad: int  # cells of padding around the image in the grid
    width: int  # grid side in cells


def _params(gen: PathfinderGenConfig) -> _Params:
    s = gen.resolution / 32
    dist_len = gen.distractor_length if gen.distractor_length is not None else max(1, gen.contour_length // 3)
    n_dist = gen.num_distractors if gen.num_distractors is not None else int(20 * s ** 0.4 // dist_len)
    length = gen.paddle_length if gen.paddle_length is not None else 2.0 * s
    gap = gen.paddle_gap if gen.paddle_gap is not None else 1.0 * s
    thick = gen.paddle_thickness if gen.paddle_thickness is not None else math.sqrt(s)
    radius = gen.marker_radius if gen.marker_radius is not None else 1.5 * math.sqrt(s)
    clear = gen.clearance if gen.clearance is not None else 1.0 * s
    pitch = length + gap
    mdist = gen.marker_distance if gen.marker_distance is not None else min(7.0 * s, 0.4 * gen.contour_length * pitch)
    lo = thick / 2 + 0.5 * min(s, 1.0)
    half_turn = math.sin(math.radians(gen.max_turn_deg) / 2)
    turn_radius = pitch / (2 * half_turn) if half_turn > 1e-9 else math.inf
    end_lo = max(lo, radius + 0.25 * min(s, 1.0))
    cell = length / 4
    reach = max(thick + clear + length / 2, radius + clear + thick / 2) + pitch
    pad = int(math.ceil(reach / cell)) + 2
    width = int(math.ceil(gen.resolution / cell)) + 2 * pad + 1
    return _Params(gen.resolution, gen.contour_length, n_dist, dist_len, length, gap, pitch, thick, radius, clear,
                   mdist, math.radians(gen.max_turn_deg), turn_radius, gen.supersample, lo, gen.resolution - lo, end_lo,
                   gen.resolution - end_lo, cell, pad, width)


@functools.lru_cache(maxsize=16)
def _stamps(p: _Params) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Flat grid offsets of (per quantised heading) a paddle's stamp, a marker's stamp, a marker's query disc.

    A paddle stamps the cells within thickness + clearance of its centre line, a marker those within
    radius + clearance + thickness / 2 of its centre, so that a paddle's centre line (tested point by
    point) never comes closer than that.  A marker is tested on the disc of radius radius - thickness / 2,
    which against a paddle stamp keeps clearance between the edges, and 2 radius + clearance between marker
    centres against a marker stamp.  Offsets are relative to the cell holding the paddle midpoint / centre.
    """
    ext = p.pad - 1
    cy, cx = np.mgrid[-ext:ext + 1, -ext:ext + 1].astype(np.float64) * p.cell
    flat = (np.arange(-ext, ext + 1)[:, None] * p.width + np.arange(-ext, ext + 1)[None, :])
    paddles = []
    half, reach = p.paddle_length / 2, p.thickness + p.clearance
    for k in range(_DIRECTIONS):
        a = 2 * math.pi * k / _DIRECTIONS
        dx, dy = math.cos(a), math.sin(a)
        along = np.clip(cx * dx + cy * dy, -half, half)
        dist2 = (cx - along * dx) ** 2 + (cy - along * dy) ** 2
        paddles.append(flat[dist2 <= reach * reach].astype(np.intp))
    r2 = cx * cx + cy * cy
    marker = flat[r2 <= (p.marker_radius + p.clearance + p.thickness / 2) ** 2].astype(np.intp)
    q = max(p.marker_radius - p.thickness / 2, 0.0)
    query = flat[r2 <= q * q].astype(np.intp)
    return paddles, marker, query


class _Uniforms:
    """Uniform [0, 1) floats drawn from a numpy Generator in blocks (scalar draws are slow)."""

    def __init__(self, rng: np.random.Generator, block: int = 1024):
        self._rng, self._block = rng, block
        self._buf: list[float] = []
        self._i = 0

    def __call__(self) -> float:
        if self._i == len(self._buf):
            self._buf, self._i = self._rng.random(self._block).tolist(), 0
        self._i += 1
        return self._buf[self._i - 1]


class _Occupancy:
    """Occupancy grid: each cell holds the lowest serial whose stamp covers it (_EMPTY when none).

    Serials grow with placement order, so a candidate accepts cells holding a serial >= its `min_ok`
    (its own contour's last paddles) and rejects anything older.
    """

    def __init__(self, p: _Params):
        self.p = p
        self.grid = np.full((p.width, p.width), _EMPTY, np.int32)
        self.flat = self.grid.ravel()
        self.paddle_stamps, self.marker_stamp, self.marker_query = _stamps(p)
        self.inv = 1.0 / p.cell
        self.nq = int(math.ceil(p.paddle_length / p.cell - 1e-9)) + 1
        self.next = 1

    def reset(self) -> None:
        self.grid.fill(_EMPTY)

    def _index(self, x: float, y: float) -> int:
        return (int(y * self.inv) + self.p.pad) * self.p.width + int(x * self.inv) + self.p.pad

    def paddle_clear(self, ax: float, ay: float, dx: float, dy: float, min_ok: int) -> bool:
        """True if the paddle's centre line from (ax, ay) along (dx, dy) avoids all stamps older than min_ok."""
        flat, inv, pad, width = self.flat, self.inv, self.p.pad, self.p.width
        step = self.p.paddle_length / (self.nq - 1)
        for k in range(self.nq):
            x, y = ax + dx * (k * step), ay + dy * (k * step)
            if flat[(int(y * inv) + pad) * width + int(x * inv) + pad] < min_ok:
                return False
        return True

    def point_clear(self, x: float, y: float, min_ok: int) -> bool:
        return bool(self.flat[self._index(x, y)] >= min_ok)

    def marker_clear(self, x: float, y: float, min_ok: int) -> bool:
        return bool(self.flat[self._index(x, y) + self.marker_query].min() >= min_ok)

    def _stamp(self, offsets: np.ndarray, x: float, y: float, serial: int) -> tuple[np.ndarray, np.ndarray]:
        """Stamp serial into the cells at offsets from (x, y); return (indices, old values) to undo it."""
        idx = self._index(x, y) + offsets
        old = self.flat[idx]
        self.flat[idx] = np.minimum(old, serial)
        return idx, old

    def stamp_paddle(self, mx: float, my: float, heading: float, serial: int) -> tuple[np.ndarray, np.ndarray]:
        k = int(round(heading * (_DIRECTIONS / (2 * math.pi)))) % _DIRECTIONS
        return self._stamp(self.paddle_stamps[k], mx, my, serial)

    def stamp_marker(self, x: float, y: float, serial: int) -> tuple[np.ndarray, np.ndarray]:
        return self._stamp(self.marker_stamp, x, y, serial)


def _grow(p: _Params, occ: _Occupancy, u: _Uniforms, n: int, main: bool, check: bool, bounded: bool,
          start: Optional[tuple[float, float]] = None) -> Optional[list[tuple[float, float]]]:
    """One attempt at a contour of n paddles; its n + 1 points, or None (the grid is then unchanged).

    Steps are drawn one by one; when _STEP_TRIES headings all fail, the last _BACKTRACK steps are undone
    and redrawn, within a budget of _STEP_TRIES * (n + 4) tries per contour.  The first point is
    uniform in the image unless `start` is given.  main contours reserve marker room at both ends and
    keep their ends in the marker box.  check=False ignores the occupancy grid (contours may then overlap);
    bounded=False lifts the turn bound and, when no random heading stays in the image, heads for the
    centre, which always succeeds.
    """
    if start is None:
        lo, hi = (p.end_lo, p.end_hi) if main else (p.lo, p.hi)
        x, y = lo + (hi - lo) * u(), lo + (hi - lo) * u()
    else:
        x, y = start
    base = occ.next + 2  # serials next, next + 1 stay unused: a first paddle's min_ok = serial - 2 is free
    if check and not (occ.marker_clear(x, y, base) if main else occ.point_clear(x, y, base)):
        return None
    undo = []
    if main:
        undo.append(occ.stamp_marker(x, y, base))
        base += 1
    occ.next = base + n + 1
    pitch, g2, turn, two_pi = p.pitch, p.gap / 2, p.max_turn, 2 * math.pi
    r_turn = p.turn_radius
    slo, shi = p.lo + r_turn, p.hi - r_turn
    safe = bounded and slo < shi
    pts, headings = [(x, y)], [two_pi * u()]
    budget = _STEP_TRIES * (n + 4)
    while len(pts) <= n:
        i = len(pts) - 1
        serial = base + i
        x, y = pts[-1]
        last = main and i == n - 1
        lo, hi = (p.end_lo, p.end_hi) if last else (p.lo, p.hi)
        h = dx = dy = nx = ny = 0.0
        ok = False
        for attempt in range(_STEP_TRIES):
            budget -= 1
            if i == 0 or not bounded:
                h = two_pi * u()
            else:
                h = headings[-1] + (2 * u() - 1) * turn
            dx, dy = math.cos(h), math.sin(h)
            nx, ny = x + pitch * dx, y + pitch * dy
            if not (lo <= nx <= hi and lo <= ny <= hi):
                continue
            if safe and not last and not (slo <= nx - r_turn * dy <= shi and slo <= ny + r_turn * dx <= shi
                                          or slo <= nx + r_turn * dy <= shi and slo <= ny - r_turn * dx <= shi):
                continue  # a wall would be unavoidable: neither full-turn circle fits in the image
            if check:
                if not occ.paddle_clear(x + g2 * dx, y + g2 * dy, dx, dy, serial - 2):
                    continue
                if last and not occ.marker_clear(nx, ny, serial - 1):
                    continue
            ok = True
            break
        if not ok and not bounded:  # straight for the centre: always inside when pitch <= half the box
            h = math.atan2(p.res / 2 - y, p.res / 2 - x)
            dx, dy = math.cos(h), math.sin(h)
            nx, ny, ok = x + pitch * dx, y + pitch * dy, True
        if ok:
            undo.append(occ.stamp_paddle((x + nx) / 2, (y + ny) / 2, h, serial))
            pts.append((nx, ny))
            headings.append(h)
            continue
        if budget <= 0 or i == 0:
            for idx, old in reversed(undo):
                occ.flat[idx] = old
            return None
        for _ in range(min(_BACKTRACK, i)):
            idx, old = undo.pop()
            occ.flat[idx] = old
            pts.pop()
            headings.pop()
    if main:
        occ.stamp_marker(pts[-1][0], pts[-1][1], base + n - 1)
    return pts


def _place(p: _Params, u: _Uniforms, label: int) -> tuple[list[list[tuple[float, float]]], list[tuple[int, int]],
                                                          int]:
    """Contours (main 0, main 1, distractors), marker ends [(contour, 0 or -1)] x 2, relaxation level.

    Both classes draw the same geometry: main contour 0 with end-to-end distance d (>= marker_distance),
    then main contour 1 starting at distance d from a random end e of contour 0, then the distractors.
    The first marker goes on e; the second on the other end of contour 0 (label 1) or on the start of
    contour 1 (label 0), both at distance d from the first.  So contours and marker distance have the same
    distribution in both classes: only the connectivity tells the label.
    """
    occ = _Occupancy(p)
    md2 = p.marker_distance ** 2
    for level in range(3):
        check, bounded, use_dist = level == 0, level < 2, level < 2
        for _ in range(_IMAGE_TRIES if level < 2 else 1 << 30):
            occ.reset()
            c0 = c1 = None
            for _ in range(_CONTOUR_TRIES):
                c0 = _grow(p, occ, u, p.n_main, True, check, bounded)
                if c0 is not None and use_dist and _d2(c0[0], c0[-1]) < md2:
                    occ.reset()
                    c0 = None
                if c0 is not None:
                    break
            if c0 is None:
                continue
            e = 0 if u() < 0.5 else -1
            ends = [(0, e), (0, -1 - e) if label == 1 else (1, 0)]
            ex, ey = c0[e]
            dist = math.sqrt(_d2(c0[0], c0[-1]))
            for _ in range(_CONTOUR_TRIES):
                start = None  # a start at distance `dist` from end e of contour 0, inside the image
                for _ in range(_START_TRIES):
                    a = 2 * math.pi * u()
                    sx, sy = ex + dist * math.cos(a), ey + dist * math.sin(a)
                    if p.end_lo <= sx <= p.end_hi and p.end_lo <= sy <= p.end_hi:
                        start = (sx, sy)
                        break
                if start is None and level < 2:
                    continue
                c1 = _grow(p, occ, u, p.n_main, True, check, bounded, start)
                if c1 is not None:
                    break
            if c1 is None:
                continue
            contours = [c0, c1]
            for _ in range(p.n_dist):
                for _ in range(_DISTRACTOR_TRIES):
                    c = _grow(p, occ, u, p.dist_len, False, True, True)
                    if c is not None:
                        contours.append(c)
                        break
            return contours, ends, level
    raise AssertionError("unreachable: level 2 always places the contours")


def _d2(a: tuple[float, float], b: tuple[float, float]) -> float:
    return (a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2


def _draw(p: _Params, contours: list[list[tuple[float, float]]], markers: list[tuple[float, float]]) -> np.ndarray:
    ss = p.ss
    img = Image.new("L", (p.res * ss, p.res * ss), 0)
    draw = ImageDraw.Draw(img)
    g2, hw, inv_pitch = p.gap / 2, p.thickness * ss / 2, 1.0 / p.pitch
    for pts in contours:
        for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
            dx, dy = (x1 - x0) * inv_pitch, (y1 - y0) * inv_pitch
            # PIL puts pixel centres on integers: continuous canvas coordinate c is PIL's c - 0.5.
            ax, ay = (x0 + g2 * dx) * ss - 0.5, (y0 + g2 * dy) * ss - 0.5
            bx, by = (x1 - g2 * dx) * ss - 0.5, (y1 - g2 * dy) * ss - 0.5
            nx, ny = -dy * hw, dx * hw
            draw.polygon([(ax + nx, ay + ny), (bx + nx, by + ny), (bx - nx, by - ny), (ax - nx, ay - ny)], fill=255)
    r = p.marker_radius * ss
    for x, y in markers:
        cx, cy = x * ss - 0.5, y * ss - 0.5
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
    if ss > 1:
        img = img.reduce(ss)
    return np.asarray(img, dtype=np.uint8)


def render_sample(rng: np.random.Generator, gen: PathfinderGenConfig, label: int) -> tuple[np.ndarray, dict]:
    """One image (uint8, (resolution, resolution)) of class `label` and its geometry.

    Geometry (points are (x, y) in pixels, x along columns; pixel [i, j] covers [j, j+1) x [i, i+1)):
    ``contours``: list of (k, 2) float arrays, the paddle-step points of each contour (k = paddles + 1):
    0 and 1 are the main contours, the rest distractors; ``markers``: (2, 2) marker centres;
    ``marker_contours``: (i, j) the contours whose ends carry the markers (i == j iff label 1);
    ``marker_ends``: (e_i, e_j), 0 or -1, which end of each; ``label``; ``num_distractors``: distractors
    actually placed; ``relaxed``: 0, or 1 / 2 if spacing / also turn bounds had to be dropped.
    """
    if label not in (0, 1):
        raise ValueError(f"label={label!r} must be 0 or 1")
    p = _params(gen)
    contours, ends, level = _place(p, _Uniforms(rng), int(label))
    markers = [contours[c][e] for c, e in ends]
    image = _draw(p, contours, markers)
    return image, {
        "contours": [np.asarray(c, dtype=np.float64) for c in contours],
        "markers": np.asarray(markers, dtype=np.float64),
        "marker_contours": (ends[0][0], ends[1][0]),
        "marker_ends": (ends[0][1], ends[1][1]),
        "label": int(label),
        "num_distractors": len(contours) - 2,
        "relaxed": level,
    }


def _seed(gen: PathfinderGenConfig, *key: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(gen.seed, spawn_key=(gen.resolution, gen.contour_length) + key)


def balanced_labels(gen: PathfinderGenConfig) -> np.ndarray:
    """The num_samples labels, half 1 and half 0, in an order seeded by the config."""
    half = gen.num_samples // 2
    labels = np.repeat(np.array([1, 0], dtype=np.int64), half)
    return np.random.default_rng(_seed(gen, 1)).permutation(labels)


def _write_chunk(task: tuple[PathfinderGenConfig, int, int, int, list[int], str]) -> int:
    """Render and save the images of chunk `index` (global indices index * chunk_size + i)."""
    gen, index, chunk_size, per_dir, labels, root = task
    rng = np.random.default_rng(_seed(gen, 0, index))
    for i, label in enumerate(labels):
        g = index * chunk_size + i
        image, _ = render_sample(rng, gen, label)
        path = os.path.join(root, "imgs", str(g // per_dir), f"sample_{g % per_dir}.png")
        Image.fromarray(image, mode="L").save(path, format="PNG")
    return len(labels)


def write_pathfinder(gen: PathfinderGenConfig, out_dir: Path, difficulty: str, workers: Optional[int] = None,
                     progress: bool = False) -> Path:
    """Generate gen.num_samples images into out_dir/pathfinder{res}/{difficulty}; return that directory.

    Layout (LRA's): ``imgs/<k>/sample_<n>.png`` (8-bit grayscale, IMAGES_PER_DIR per k) and
    ``metadata/<k>.npy``, a text file with one line ``imgs/<k> sample_<n>.png <n> <label>`` per image of
    imgs/<k>.  Everything is written into a temporary sibling directory that is renamed into place at the
    end (replacing a previous set), so a crash never leaves a partial set.  workers=None uses all CPUs; the
    files do not depend on it.
    """
    gen.validate()
    if not difficulty or difficulty in (".", "..") or "/" in difficulty or os.sep in difficulty:
        raise ConfigError(f"task.difficulty={difficulty!r} must be a plain directory name, e.g. "
                          f"curv_contour_length_14")
    expected = DIFFICULTY_LENGTHS.get(difficulty)
    if expected is not None and expected != gen.contour_length:
        raise ConfigError(f"task.difficulty={difficulty} means contour_length={expected}, but "
                          f"contour_length={gen.contour_length}; set them consistently")
    workers = (os.cpu_count() or 1) if workers is None else workers
    if not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"task.workers={workers!r} must be >= 1 (or null for all CPUs)")
    parent = Path(out_dir) / f"pathfinder{gen.resolution}"
    parent.mkdir(parents=True, exist_ok=True)
    final = parent / difficulty
    tmp = Path(tempfile.mkdtemp(prefix=f".{difficulty}.", suffix=".tmp", dir=parent))
    labels = balanced_labels(gen).tolist()
    n, chunk, per_dir = gen.num_samples, CHUNK_SIZE, IMAGES_PER_DIR
    n_dirs = -(-n // per_dir)
    pool = None
    try:
        (tmp / "metadata").mkdir()
        for k in range(n_dirs):
            (tmp / "imgs" / str(k)).mkdir(parents=True)
        tasks = [(gen, c, chunk, per_dir, labels[c * chunk:(c + 1) * chunk], str(tmp)) for c in range(-(-n // chunk))]
        if workers > 1 and len(tasks) > 1:
            pool = multiprocessing.get_context().Pool(min(workers, len(tasks)))
        with tqdm(total=n, desc=f"pathfinder{gen.resolution}/{difficulty}", unit="img", disable=not progress) as bar:
            for done in (pool.imap_unordered(_write_chunk, tasks) if pool else map(_write_chunk, tasks)):
                bar.update(done)
        for k in range(n_dirs):
            start = k * per_dir
            lines = [f"imgs/{k} sample_{j}.png {j} {labels[start + j]}\n" for j in range(min(per_dir, n - start))]
            (tmp / "metadata" / f"{k}.npy").write_text("".join(lines), encoding="utf-8")
        tmp.chmod(0o777 & ~_umask())  # mkdtemp's 0700 -> what mkdir would have given
        old = None
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{difficulty}.", suffix=".old", dir=parent))
            os.replace(final, old / difficulty)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        if pool is not None:
            pool.terminate()
            pool.join()
            pool = None
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    return final


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sample_grid(gen: PathfinderGenConfig, cols: int = 4, scale: int = 4, seed: int = 0) -> Image.Image:
    """A 2 x cols grid of rendered images, positives on top, negatives below, upscaled (nearest) by scale."""
    rng = np.random.default_rng(seed)
    tile, sep = gen.resolution * scale, max(2, scale)
    grid = Image.new("L", (cols * tile + (cols + 1) * sep, 2 * tile + 3 * sep), 96)
    for row, label in enumerate((1, 0)):
        for col in range(cols):
            image, _ = render_sample(rng, gen, label)
            big = Image.fromarray(image, mode="L").resize((tile, tile), Image.NEAREST)
            grid.paste(big, (sep + col * (tile + sep), sep + row * (tile + sep)))
    return grid


def write_samples(out_dir: Path, seed: int = 0) -> list[Path]:
    """Write pathfinder32.png and pathx128.png (hardest difficulty) into out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, res, scale in (("pathfinder32.png", 32, 4), ("pathx128.png", 128, 2)):
        gen = PathfinderGenConfig(resolution=res, contour_length=DIFFICULTY_LENGTHS["curv_contour_length_14"])
        gen.validate()
        path = out_dir / name
        sample_grid(gen, cols=4, scale=scale, seed=seed).save(path, format="PNG", optimize=True)
        paths.append(path)
    return paths


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Pathfinder sample grids (top row label 1, bottom row label 0).")
    parser.add_argument("--samples", type=Path, required=True, metavar="DIR",
                        help="write DIR/pathfinder32.png and DIR/pathx128.png")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for path in write_samples(args.samples, seed=args.seed):
        print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
