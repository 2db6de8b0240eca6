"""X-ray physics of PhantomCXR: analytic line integrals through simple solids.

Coordinates are in mm. The image spans a square field of view of
:data:`FOV_MM` centred on the patient: ``x`` to the image right (the patient's
left, as a PA film is viewed), ``y`` up (head), ``z`` along the beam. The
source is far away, so rays are parallel to ``z`` and the projection of a
solid at pixel ``(x, y)`` is the length of the chord the ray cuts through it.
Each solid replaces the material around it, so it contributes
``(mu_solid - mu_surrounding) * chord`` to the line integral ``P``. The
detector sees ``I = I0 exp(-P)`` plus scatter, with Poisson noise, a Gaussian
point-spread function, then a log transform, window and tone curve, and a
16-bit ADC.

Everything is vectorised over the batch (axis 0) and the pixels; structures
are only evaluated on the band of rows they can touch.
"""

from __future__ import annotations

import functools
import math
from typing import Mapping

import numpy as np
import pandas as pd

from ..errors import DataError
from .population import FOV_MM, SITES, _hash_uniform, complete_patients

__all__ = ["render", "anatomy", "lesion_weights", "Anatomy", "MU", "MASK_NAMES"]

f32 = np.float32

#: Linear attenuation coefficients (1/mm) at an effective energy near 60 keV.
MU = {
    "soft": 0.0200,  # muscle / water
    "fat": 0.0180,
    "blood": 0.0210,
    "lung": 0.0050,  # aerated lung, density ~0.25 g/cm^3
    "bone": 0.0480,  # cortical-trabecular mix of a rib
    "vertebra": 0.0300,  # trabecular vertebral body
    "fluid": 0.0205,
    "nodule": 0.0400,  # partly calcified nodule (granuloma-like), denser than soft tissue
    "air": 0.0,
    "tube_marker": 0.30,  # barium-loaded stripe of a chest tube
}

#: Names of the masks :func:`render` and :func:`anatomy` return.
MASK_NAMES = ("lungs", "heart", "nodule", "effusion", "pneumothorax")


def _check_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not (32 <= size <= 256):
        raise DataError(f"size must be a whole number of pixels from 32 to 256, got {size!r}.")
    return int(size)


# ---------------------------------------------------------------------------- hashing
# ---------------------------------------------------------------------------- grids
@functools.lru_cache(maxsize=8)
def _grid(size: int):
    px = FOV_MM / size
    c = (-FOV_MM / 2 + (np.arange(size) + 0.5) * px).astype(f32)
    x = c  # columns, left to right
    y = c[::-1].copy()  # rows, top (head) to bottom
    return x, y, px


def _rows(y: np.ndarray, lo: float, hi: float) -> slice:
    """Slice of rows whose y lies in [lo, hi] (y decreases down the rows)."""
    i0 = int(np.searchsorted(-y, -hi, side="left"))
    i1 = int(np.searchsorted(-y, -lo, side="right"))
    return slice(i0, max(i0, i1))


def _cols(x: np.ndarray, lo: float, hi: float) -> slice:
    i0 = int(np.searchsorted(x, lo, side="left"))
    i1 = int(np.searchsorted(x, hi, side="right"))
    return slice(i0, max(i0, i1))


def _c(a) -> np.ndarray:
    """Per-patient values as a (N, 1, 1) float32 column for broadcasting."""
    return np.asarray(a, dtype=f32)[:, None, None]


def _chord_tube(d2: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Chord of a ray through a cylinder of radius r at squared distance d2 from its axis."""
    return 2.0 * np.sqrt(np.maximum(r * r - d2, 0.0))


# ---------------------------------------------------------------------------- vessels
@functools.lru_cache(maxsize=4)
def _vessel_bank(size: int, k: int = 16) -> np.ndarray:
    """Precomputed pulmonary vessel maps (mm of blood along each ray), centred patient.

    Each map holds two branching trees grown from the hila. A vessel of radius
    r contributes its cross-section area pi r^2 spread over a Gaussian as wide
    as the vessel and the pixel, so thin vessels are not aliased. The maps
    are padded by a margin so a patient shift can be applied by slicing.
    """
    x, y, px = _grid(size)
    pad = int(math.ceil(20.0 / px)) + 1
    xs = (x[0] - pad * px + np.arange(size + 2 * pad) * px).astype(f32)
    ys = (y[0] + pad * px - np.arange(size + 2 * pad) * px).astype(f32)
    rng = np.random.default_rng(20240611)
    bank = np.zeros((k, size + 2 * pad, size + 2 * pad), f32)
    for t in range(k):
        segs = []
        for side in (-1.0, 1.0):
            hil = np.array([side * 52.0, 8.0])

            def grow(p, ang, r, depth):
                length = rng.uniform(22, 40) * (0.85 ** (3 - depth) if depth < 3 else 1.0)
                q = p + length * np.array([math.cos(ang), math.sin(ang)])
                segs.append((p, q, r))
                if depth > 0:
                    for _ in range(2 if depth > 1 else rng.integers(2, 4)):
                        grow(q, ang + rng.normal(0, 0.45), r * rng.uniform(0.62, 0.75), depth - 1)

            # main branches fan out laterally, up and down from the hilum
            for base in (100, 140, 180, 215, 250, 290):
                a = math.radians(base + rng.normal(0, 10))
                ang = a if side < 0 else math.pi - a
                grow(hil, ang, rng.uniform(2.6, 3.6), 3)
        for p, q, r in segs:
            lo = np.minimum(p, q) - 4 * r - 2 * px
            hi = np.maximum(p, q) + 4 * r + 2 * px
            ci = slice(int(np.searchsorted(xs, lo[0])), int(np.searchsorted(xs, hi[0], side="right")))
            ri = slice(int(np.searchsorted(-ys, -hi[1])), int(np.searchsorted(-ys, -lo[1], side="right")))
            if ci.stop <= ci.start or ri.stop <= ri.start:
                continue
            X = xs[ci][None, :] - p[0]
            Y = ys[ri][:, None] - p[1]
            dv = q - p
            L2 = float(dv @ dv) + 1e-9
            tt = np.clip((X * dv[0] + Y * dv[1]) / L2, 0, 1)
            d2 = (X - tt * dv[0]) ** 2 + (Y - tt * dv[1]) ** 2
            s = math.sqrt(r * r / 4 + (0.5 * px) ** 2)
            bank[t, ri, ci] += (math.pi * r * r / (math.sqrt(2 * math.pi) * s) * np.exp(-d2 / (2 * s * s))).astype(f32)
    return bank


# ---------------------------------------------------------------------------- blur
@functools.lru_cache(maxsize=32)
def _blur_matrix(size: int, sigma_px: float) -> np.ndarray:
    """Gaussian blur as a (size, size) matrix with mirrored borders (rows sum to 1)."""
    r = max(1, int(math.ceil(3 * sigma_px)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma_px) ** 2)
    k /= k.sum()
    m = np.zeros((size, size))
    for i in range(size):
        for j, w in zip(range(i - r, i + r + 1), k):
            jj = -j - 1 if j < 0 else (2 * size - j - 1 if j >= size else j)
            m[i, jj] += w
    return m.astype(f32)


# ---------------------------------------------------------------------------- geometry
def _geometry(t: pd.DataFrame) -> dict:
    """Per-patient anatomical parameters (arrays of shape (N,), mm) from a completed table."""
    n = len(t)
    seeds = t["anatomy_seed"].to_numpy(np.int64)
    u = lambda salt: _hash_uniform(seeds, salt)  # noqa: E731
    age = t["age"].to_numpy(float)
    female = (t["sex"].to_numpy() == "F").astype(float)
    bmi = t["bmi"].to_numpy(float)
    insp = t["inspiration"].to_numpy(float)
    g: dict = {"n": n}
    s = (1.0 - 0.085 * female) * (1 + 0.06 * (u(1) - 0.5) * 2)  # frame size
    g["scale"] = s
    fat = np.clip(6 + 3.2 * (bmi - 20), 3, 90)
    g["fat"] = fat
    rot = np.radians(t["rotation_deg"].to_numpy(float))
    g["sx"] = t["shift_x_mm"].to_numpy(float)
    g["sy"] = t["shift_y_mm"].to_numpy(float)
    g["rot"] = np.sin(rot)  # horizontal shift per mm of depth
    # bone density: falls with age, faster in women after menopause
    bd = 1 - 0.0035 * np.clip(age - 30, 0, None) - 0.0045 * female * np.clip(age - 48, 0, None)
    g["bone"] = np.clip(bd * (1 + 0.08 * (u(2) - 0.5)), 0.55, 1.1)
    # thorax
    g["lat"] = 148 * s  # inner half-width of the rib cage at the bases
    g["apex"] = 148 * s + 4 * (u(3) - 0.5)
    g["med"] = 20 + 4 * u(4)
    # diaphragm: deeper with inspiration and in old age (hyperinflation)
    dome_r = -52 * s - 11 * insp - 0.25 * np.clip(age - 50, 0, None) + 8 * (u(5) - 0.5)
    g["dome_r"] = dome_r
    g["dome_l"] = dome_r - 12 - 6 * u(6)
    g["cp"] = np.minimum(dome_r, g["dome_l"]) - 52 * s  # costophrenic angles, behind/below the domes
    g["lung_depth"] = 150 * s * (1 + 0.05 * insp)
    # body outline
    g["body_a"] = 166 * s + fat
    g["body_b"] = 98 * s + 0.8 * fat
    g["neck_a"] = 52 * s + 0.3 * fat
    g["shoulder_y"] = 128 * s + 6 * (u(7) - 0.5)
    # heart from the cardiothoracic ratio: width = ctr * thoracic width
    ctr = t["ctr"].to_numpy(float)
    th = np.radians(38 + 10 * (u(8) - 0.5) + 0.08 * (age - 50))
    a0, b0 = 1.0, 0.74
    w0 = 2 * np.sqrt((a0 * np.cos(th)) ** 2 + (b0 * np.sin(th)) ** 2)
    k = ctr * 2 * g["lat"] / w0
    g["heart_a"], g["heart_b"], g["heart_c"] = a0 * k, b0 * k, 0.95 * k
    g["heart_th"] = th
    g["heart_w"] = ctr * 2 * g["lat"]
    g["heart_x"] = (0.5 - 0.32 - 0.04 * (u(9) - 0.5)) * g["heart_w"]
    g["heart_y"] = g["dome_l"] + 0.32 * g["heart_b"]
    g["ctr"] = ctr
    # aortic knob grows with age
    g["aorta_r"] = 13 + 0.12 * np.clip(age - 30, 0, None) + 3 * u(10)
    g["aorta_x"] = 22 + 0.1 * np.clip(age - 30, 0, None) + 0.25 * g["aorta_r"]
    g["aorta_y"] = g["apex"] - 88 * s
    # breasts
    bs = np.clip(0.75 + 0.035 * (bmi - 22) + 0.25 * (u(11) - 0.5), 0.55, 1.6) * female
    g["breast"] = bs
    g["breast_y"] = g["dome_r"] + 5 - 0.35 * np.clip(age - 35, 0, None) * female
    g["stomach"] = (u(12) < 0.7).astype(float) * (0.7 + 0.6 * u(13))
    g["texture"] = (seeds % 16).astype(int)
    g["flip"] = ((seeds // 16) % 2).astype(bool)
    g["u_rib"] = u(14)
    return g


# ---------------------------------------------------------------------------- the renderer
def _lung_sac(X, Y, cx, hw, yc, hh_top, hh_bot, depth):
    """AP thickness of one lung 'sac' (before the diaphragm cuts into it).

    The outline is half an ellipse above ``yc`` (the apex) and a squarer curve
    below (the bases); the thickness falls off as sqrt(1 - rho) towards the edge.
    """
    u = (X - cx) / hw
    v = Y - yc
    top = v > 0
    vv = np.where(top, v / hh_top, v / hh_bot)
    v2 = vv * vv
    au = np.abs(u)
    rho = np.where(top, au**2.6 + np.abs(vv) ** 2.2, u * u + v2 * v2)
    return depth * np.sqrt(np.maximum(1.0 - rho, 0.0))


def _diaphragm(X, Y, side_x, dome, cp, lat):
    """Length of the ray inside the dome (abdomen) below the lung, per side.

    The dome surface is ``h(x, z) = h0(x) - c z^2``: its crest ``h0`` falls
    from ``dome`` near the middle of the hemithorax to the costophrenic
    angle ``cp`` at the chest wall; it also falls towards the front and back.
    """
    xr = (np.abs(X) - np.abs(side_x)) / lat
    h0 = dome - (dome - cp) * np.clip(xr * 2.0, 0, None) ** 2 * 0.9 - 6.0 * np.clip(-xr * 2.5, 0, None) ** 2
    return 2.0 * np.sqrt(np.maximum(h0 - Y, 0.0) / 0.0075), h0


def _render_batch(t: pd.DataFrame, size: int, noise_seed: np.random.Generator, want_masks: bool, want_image: bool = True):
    n = len(t)
    x, y, px = _grid(size)
    g = _geometry(t)
    Xg = x[None, None, :]  # (1, 1, W)
    Yg = y[None, :, None]  # (1, H, 1)
    sx, sy = _c(g["sx"]), _c(g["sy"])
    rot = _c(g["rot"])
    s = _c(g["scale"])
    bone = _c(g["bone"])
    mu = MU
    P = np.zeros((n, size, size), f32)
    X = Xg - sx  # patient coordinates (before depth-dependent rotation shift)
    Y = Yg - sy

    # -- body: elliptic cross-section whose half-width changes with height
    ba, bb = _c(g["body_a"]), _c(g["body_b"])
    na = _c(g["neck_a"])
    shy = _c(g["shoulder_y"])
    above = np.clip((Y - shy) / 55.0, 0, 1)
    a_y = na + (ba + 18 * s - na) * np.sqrt(np.maximum(1 - above * above, 0)) - 18 * s * np.clip((shy - Y) / 60, 0, 1)
    a_y = np.maximum(a_y, na)
    b_y = bb - (bb - 0.75 * na) * above
    xb = X / a_y
    P += mu["soft"] * 2 * b_y * np.sqrt(np.maximum(1 - xb * xb, 0))
    # shoulders: humeral heads
    for side in (-1.0, 1.0):
        hx = side * (_c(g["body_a"]) * 0.0 + 182 * s)
        d2 = (X - hx) ** 2 + (Y - (shy - 8)) ** 2
        P += (mu["bone"] * 0.8 * bone - mu["soft"]) * _chord_tube(d2, 26 * s)

    # -- lungs
    lat = _c(g["lat"])
    med = _c(g["med"])
    apex = _c(g["apex"])
    cp = _c(g["cp"])
    depth = _c(g["lung_depth"])
    hw = (lat - med) / 2
    yc = cp + 0.62 * (apex - cp)
    hh_top, hh_bot = apex - yc, yc - cp + 4
    Xl = X + rot * 0.0
    lungs = {}
    sac = {}
    h0s = {}
    for side, key, dome in ((-1.0, "right", "dome_r"), (1.0, "left", "dome_l")):
        cx = side * (med + hw)
        L = _lung_sac(Xl, Y, cx, hw, yc, hh_top, hh_bot, depth)
        dz, h0 = _diaphragm(Xl, Y, cx * 0.85, _c(g[dome]), cp, lat)
        sac[key] = np.maximum(L - dz, 0)
        lungs[key] = sac[key]
        h0s[key] = h0

    # -- heart (anterior, shifts with rotation)
    Xh = X - rot * 40.0 - _c(g["heart_x"])
    Yh = Y - _c(g["heart_y"])
    c_, s_ = _c(np.cos(g["heart_th"])), _c(np.sin(g["heart_th"]))
    up = (Xh * c_ - Yh * s_) / _c(g["heart_a"])
    vp = (Xh * s_ + Yh * c_) / _c(g["heart_b"])
    q = 1 - up * up - vp * vp
    heart_in = q > 0
    L_heart = 2 * _c(g["heart_c"]) * np.sqrt(np.maximum(q, 0))
    # aortic knob and hila (blood in the mediastinum / hilum, displacing lung)
    d2 = (X - rot * 20 - _c(g["aorta_x"])) ** 2 + (Y - _c(g["aorta_y"])) ** 2
    L_aorta = _chord_tube(d2, _c(g["aorta_r"]))
    hil = {}
    for side, key in ((-1.0, "right"), (1.0, "left")):
        hx = side * (med + 0.42 * hw) + side * 4
        d2 = ((X - hx) / 1.0) ** 2 + ((Y - (yc - 0.22 * (apex - cp) + 10)) / 1.9) ** 2
        hil[key] = _chord_tube(d2, 16 * s) * 0.55
    P += (mu["blood"] - mu["soft"]) * (L_heart + L_aorta)
    for key in lungs:
        lungs[key] = np.maximum(lungs[key] - L_heart - L_aorta - hil[key], 0)
        P += (mu["blood"] - mu["soft"]) * hil[key] * (sac[key] > 0)

    # -- findings that change the lungs
    eff_mask = np.zeros((n, size, size), bool) if want_masks else None
    ptx_mask = np.zeros((n, size, size), bool) if want_masks else None
    lung_air = {k: v for k, v in lungs.items()}  # aerated lung length
    pleural_air = np.zeros((n, size, size), f32)
    fluid = np.zeros((n, size, size), f32)
    eff_side = t["effusion_side"].to_numpy()
    vol = t["effusion_volume_ml"].to_numpy(float)
    ptx_side = t["pneumothorax_side"].to_numpy()
    ptx_size = t["pneumothorax_size"].to_numpy(float)
    for side, key in ((-1.0, "right"), (1.0, "left")):
        # pleural effusion: fluid layers in the lowest pleural space, climbing the lateral wall (meniscus)
        has = (t["effusion"].to_numpy() == 1) & ((eff_side == key) | (eff_side == "both"))
        if has.any():
            idx = np.flatnonzero(has)
            v = np.nan_to_num(vol[idx], nan=400.0) / (2.0 if False else 1.0)
            v = np.where(eff_side[idx] == "both", v / 2, v)
            h = 24.0 * (np.clip(v, 50, 3000) / 200.0) ** 0.72  # fluid height above the costophrenic angle
            lat_frac = np.clip((side * Xl[idx] - _c(g["med"])[idx]) / (_c(g["lat"])[idx] - _c(g["med"])[idx]), 0, 1.2)
            yf = cp[idx] + _c(h) + 45.0 * lat_frac**3
            f = np.clip((yf - Y[idx]) / 22.0, 0, 1)
            Lb = lung_air[key][idx]
            fl = f * Lb
            lung_air[key][idx] = Lb - fl
            fluid[idx] += fl
            if want_masks:
                eff_mask[idx] |= (f > 0.5) & (sac[key][idx] > 8)
        # pneumothorax: the lung collapses towards the hilum; pleural air fills the rest
        has = (t["pneumothorax"].to_numpy() == 1) & (ptx_side == key)
        if has.any():
            idx = np.flatnonzero(has)
            lam = _c(np.sqrt(1 - np.clip(np.nan_to_num(ptx_size[idx], nan=0.3), 0.02, 0.9)))
            cxh = side * (med[idx] + 0.25 * hw[idx])
            cyh = _c(g["dome_r" if side < 0 else "dome_l"][idx]) + 10
            Xc = cxh + (Xl[idx] - cxh) / lam
            Yc = cyh + (Y[idx] - cyh) / lam
            cx = side * (med[idx] + hw[idx])
            Lc = _lung_sac(Xc, Yc, cx, hw[idx], yc[idx], hh_top[idx], hh_bot[idx], depth[idx] * lam)
            dz, _ = _diaphragm(Xl[idx], Y[idx], cx * 0.85, _c(g["dome_r" if side < 0 else "dome_l"][idx]), cp[idx], lat[idx])
            Lc = np.maximum(Lc - dz, 0)
            # visceral pleura seen edge-on: a thin shell at the collapsed lung's surface
            Lin = _lung_sac(Xc, Yc, cx, hw[idx] - 1.2, yc[idx], hh_top[idx] - 1.2, hh_bot[idx] - 1.2, depth[idx] * lam - 2.4)
            shell = np.maximum(Lc - np.maximum(Lin - dz, 0), 0) * (Lc > 0)
            before = lung_air[key][idx]
            collapsed = np.minimum(before, Lc)
            air = np.maximum(before - collapsed, 0)
            # the collapsed lung keeps its mass in a volume lam^3 times smaller: denser
            P[idx] += (mu["lung"] / lam**3 - mu["lung"]) * collapsed + (mu["soft"] - mu["lung"]) * np.minimum(shell, 16.0)
            lung_air[key][idx] = collapsed
            pleural_air[idx] += air
            if want_masks:
                ptx_mask[idx] |= (air > 8) & (Lc <= 0) & (Y[idx] > h0s[key][idx])
    for key in lungs:
        P += (mu["lung"] - mu["soft"]) * lung_air[key]
    P += (mu["fluid"] - mu["soft"]) * fluid
    P += (mu["air"] - mu["soft"]) * pleural_air

    # -- pulmonary vessels, as many as there is aerated lung along the ray
    if want_image:
        bank = _vessel_bank(size)
        pad = (bank.shape[1] - size) // 2
        ox = np.clip(np.rint(g["sx"] / px).astype(int), -pad, pad)
        oy = np.clip(np.rint(g["sy"] / px).astype(int), -pad, pad)
        V = np.empty((n, size, size), f32)
        for i in range(n):
            tex = bank[g["texture"][i], pad + oy[i] : pad + oy[i] + size, pad - ox[i] : pad - ox[i] + size]
            V[i] = tex[:, ::-1] if g["flip"][i] else tex
        air_tot = lung_air["left"] + lung_air["right"]
        P += 1.6 * (mu["blood"] - mu["lung"]) * V * np.minimum(air_tot * (1 / 110.0), 1.0)

    # -- bones
    # spine: vertebral bodies (posterior, shift with rotation) with disc spaces and pedicles
    Xs = X + rot * 70.0
    vb = 22 * s
    xs2 = (Xs / vb) ** 2
    ch = 2 * 17 * s * np.sqrt(np.maximum(1 - xs2, 0))
    phase = (Y - _c(g["dome_r"])) / (27 * s)
    disc = np.clip(np.cos(2 * np.pi * phase) * 3.5 - 2.5, 0, 1)  # thin dark bands
    P += (mu["vertebra"] * bone - mu["soft"]) * ch * (1 - 0.55 * disc)
    ped = (np.abs(np.abs(Xs) - 15 * s) < 5 * s) & (np.cos(2 * np.pi * phase + 2.0) > 0.35)
    P += 0.004 * bone * 14 * ped
    # ribs: each pair is a tilted 3-D ring; projected it is an ellipse whose upper half is the
    # posterior arcs and whose lower half the anterior arcs (fainter, ending at the cartilage)
    ur = _c(g["u_rib"])
    for k in range(10):
        y_post = apex + 16 * s - (22.0 + 0.3 * k) * k * s * (1 + 0.04 * _c(t["inspiration"].to_numpy(float)))
        S = (24 + 7.5 * k) * s
        A = lat * (0.50 + 0.52 * (1 - np.exp(-(k + 0.6) / 2.3))) + 8 * s
        y0 = y_post - S
        r = (5.0 + 0.25 * k) * s
        lo = float(np.min(y0 - S - r + sy)) - 2
        hi = float(np.max(y_post + r + sy)) + 2
        rs = _rows(y, lo, hi)
        if rs.stop <= rs.start:
            continue
        Xr = X[:, :, :] if X.shape[1] == 1 else X
        Yr = Y[:, rs, :]
        xa = Xr / A
        yb = (Yr - y0) / S
        rn = np.sqrt(xa * xa + yb * yb) + 1e-6
        gx = xa / A
        gy = yb / S
        gn = np.sqrt(gx * gx + gy * gy) / rn + 1e-6
        dist = (rn - 1) / gn
        chord = 2 * np.sqrt(np.maximum(r * r - dist * dist, 0))
        post = yb > 0
        ant_keep = np.clip((np.abs(xa) - 0.42 - 0.05 * ur) / 0.12, 0, 1)
        w = np.where(post, 1.0, 0.35 * ant_keep * np.clip((Yr - cp + 10) / 30, 0, 1))
        P[:, rs, :] += (mu["bone"] * bone - mu["soft"]) * chord * w
    # clavicles: S-shaped rods from the sternal notch out to the shoulders (anterior)
    for side in (-1.0, 1.0):
        Xc = side * (X - rot * 60.0)
        x_med, x_lat = 20 * s, 152 * s
        y_med = apex - 22 * s
        y_lat = apex + 2 * s
        tt = (Xc - x_med) / (x_lat - x_med)
        yc_ = y_med + (y_lat - y_med) * tt + 7 * s * np.sin(2 * np.pi * tt)
        slope = (y_lat - y_med) / (x_lat - x_med) + 7 * s * 2 * np.pi / (x_lat - x_med) * np.cos(2 * np.pi * tt)
        d = (Y - yc_) / np.sqrt(1 + slope * slope)
        r = (8.5 - 2.5 * np.clip(tt, 0, 1)) * s
        ends = np.clip(tt * 12, 0, 1) * np.clip((1.03 - tt) * 12, 0, 1)
        P += (mu["bone"] * bone - mu["soft"]) * _chord_tube(d * d, r) * ends
    # scapulae: thin plates over the upper lateral chest
    for side in (-1.0, 1.0):
        dx = (side * X - 152 * s) / (42 * s)
        dy = (Y - (apex - 75 * s)) / (78 * s)
        qq = 1 - dx * dx - dy * dy
        P += (mu["bone"] * bone - mu["soft"]) * 7.0 * np.clip(qq * 6, 0, 1)

    # -- soft tissue extras
    bsz = _c(g["breast"])
    if np.any(g["breast"] > 0):
        for side in (-1.0, 1.0):
            # hanging breast: a sharp lower edge, tapering smoothly into the chest wall above
            dx = (X - side * 95 * s) / (70 * bsz + 1e-3)
            dyv = Y - _c(g["breast_y"])
            dy = np.where(dyv > 0, dyv / (150 * bsz + 1e-3), dyv / (52 * bsz + 1e-3))
            qq = 1 - dx * dx - dy * dy
            P += mu["fat"] * 2 * 30 * bsz * np.sqrt(np.maximum(qq, 0)) * (bsz > 0)
    # gastric air bubble under the left dome
    st = _c(g["stomach"])
    dx = (X - 68 * s) / (34 * st + 1e-3)
    dy = (Y - (_c(g["dome_l"]) - 32)) / (20 * st + 1e-3)
    qq = 1 - dx * dx - dy * dy
    P -= mu["soft"] * 2 * 13 * st * np.sqrt(np.maximum(qq, 0))
    # trachea and main bronchi (air columns)
    Xt = X - rot * 20.0
    carina = apex - 95 * s
    d2 = Xt * Xt
    tr = _chord_tube(d2, 8.5 * s) * np.clip((Y - carina) / 6, 0, 1)
    for side in (-1.0, 1.0):
        ang = math.radians(35 if side < 0 else 48)
        dxv, dyv = side * math.sin(ang), -math.cos(ang)
        along = Xt * dxv + (Y - carina) * dyv
        perp2 = (Xt - along * dxv) ** 2 + (Y - carina - along * dyv) ** 2
        tr += _chord_tube(perp2, 6.5 * s) * ((along > 0) & (along < 45 * s))
    P -= mu["soft"] * tr

    # -- nodules: dense spheres replacing lung
    nod = t["nodule"].to_numpy() == 1
    nod_mask = np.zeros((n, size, size), bool) if want_masks else None
    if nod.any():
        idx = np.flatnonzero(nod)
        nx = _c(-FOV_MM / 2 + FOV_MM * t["nodule_x"].to_numpy(float)[idx])
        ny = _c(FOV_MM / 2 - FOV_MM * t["nodule_y"].to_numpy(float)[idx])
        rr = _c(t["nodule_diameter_mm"].to_numpy(float)[idx] / 2)
        d2 = (Xg - nx) ** 2 + (Yg - ny) ** 2
        L = _chord_tube(d2, rr)
        air_here = lung_air["left"][idx] + lung_air["right"][idx]
        in_lung = np.minimum(L, air_here)
        P[idx] += (mu["nodule"] - mu["lung"]) * in_lung + (mu["nodule"] - mu["soft"]) * (L - in_lung)
        if want_masks:
            nod_mask[idx] = d2 < rr * rr

    # -- chest tube: plastic tube with a radio-opaque stripe, entering the lateral chest wall
    tube = t["chest_tube"].to_numpy() == 1
    if tube.any() and want_image:
        idx = np.flatnonzero(tube)
        sgn = np.where(t["chest_tube_side"].to_numpy()[idx] == "left", 1.0, -1.0)
        latv = g["lat"][idx]
        p0 = np.stack([sgn * (latv + 60), g["cp"][idx] + 10], 1)  # outside the body
        p1 = np.stack([sgn * (latv + 2), g["cp"][idx] + 40], 1)  # through the chest wall
        p2 = np.stack([sgn * (latv * 0.45), g["apex"][idx] - 40], 1)  # tip towards the apex
        ctrl = np.stack([sgn * (latv * 0.85), g["apex"][idx] - 60], 1)
        pts = [p0, p1]
        for tt in np.linspace(0, 1, 7)[1:]:
            pts.append(((1 - tt) ** 2)[None, None] * p1 + (2 * (1 - tt) * tt) * ctrl + (tt**2) * p2)
        Xi = Xg - _c(g["sx"][idx])
        Yi = Yg - _c(g["sy"][idx])
        best = np.full((len(idx), size, size), 1e9, f32)
        for a, b in zip(pts[:-1], pts[1:]):
            ax, ay = _c(a[:, 0]), _c(a[:, 1])
            dx_, dy_ = _c(b[:, 0] - a[:, 0]), _c(b[:, 1] - a[:, 1])
            L2 = dx_ * dx_ + dy_ * dy_ + 1e-6
            tt = np.clip(((Xi - ax) * dx_ + (Yi - ay) * dy_) / L2, 0, 1)
            d2 = (Xi - ax - tt * dx_) ** 2 + (Yi - ay - tt * dy_) ** 2
            np.minimum(best, d2, out=best)
        wall = _chord_tube(best, 6.0) - _chord_tube(best, 4.5)
        stripe_s = math.sqrt(1.0 + (0.5 * px) ** 2)
        stripe = (math.pi * 1.0 / (math.sqrt(2 * math.pi) * stripe_s)) * np.exp(-best / (2 * stripe_s**2))
        P[idx] += 0.018 * wall + MU["tube_marker"] * stripe * 2.0

    out_masks = None
    if want_masks:
        L_air_total = lung_air["left"] + lung_air["right"]
        above = (Y > h0s["right"]) & (X < 0) | (Y > h0s["left"]) & (X >= 0)
        lung_m = (L_air_total > 15) & above & ~heart_in
        out_masks = {
            "lungs": lung_m,
            "heart": heart_in & np.ones((n, size, 1), bool),
            "nodule": nod_mask,
            "effusion": eff_mask,
            "pneumothorax": ptx_mask,
        }
    return P, g, out_masks


def _detector(P: np.ndarray, t: pd.DataFrame, size: int, rng: np.random.Generator) -> np.ndarray:
    """Photon counts, scatter, quantum noise, PSF, log, window, tone curve and 16-bit ADC."""
    _, _, px = _grid(size)
    out = np.empty_like(P)
    sites = t["site"].to_numpy()
    for site in np.unique(sites):
        idx = np.flatnonzero(sites == site)
        sp = SITES[site]
        I0 = sp["photons_per_mm2"] * px * px
        prim = I0 * np.exp(-P[idx])
        body = P[idx] > 1.0
        mean_body = (prim * body).sum((1, 2)) / np.maximum(body.sum((1, 2)), 1)
        lam = prim + sp["scatter"] * mean_body[:, None, None]
        counts = lam + np.sqrt(lam) * rng.standard_normal(lam.shape, dtype=np.float32)
        sig = math.sqrt((sp["blur_mm"] / px) ** 2 + 0.35**2)
        B = _blur_matrix(size, round(sig, 3))
        counts = B @ counts @ B.T
        p = -np.log(np.maximum(counts, 0.5) / I0)
        flat = p.reshape(len(idx), -1)
        k_lo = int(sp["window_lo"] * (flat.shape[1] - 1))
        k_hi = int(sp["window_hi"] * (flat.shape[1] - 1))
        part = np.partition(flat, (k_lo, k_hi), axis=1)
        lo = part[:, k_lo][:, None, None]
        hi = part[:, k_hi][:, None, None]
        v = np.clip((p - lo) / np.maximum(hi - lo, 1e-3), 0, 1)
        # film-like tone curve: the site's gamma applied to a gentle S-curve
        v = v ** (1.35 * sp["gamma"])
        out[idx] = v
    return (np.rint(out * 65535.0).astype(np.float32) / np.float32(65535.0)).astype(np.float32)


def render(patients: pd.DataFrame, size: int = 64, seed: int = 0, return_masks: bool = False):
    """Render chest radiographs of the patients in a table.

    The table (from :func:`~medsynth_explore.phantom.sample_patients`, maybe
    with edited columns) is first made consistent by
    :func:`~medsynth_explore.phantom.complete_patients`: a finding set to 1
    with NaN parameters gets parameters drawn from the row's
    ``anatomy_seed``; a finding set to 0 is not drawn, whatever its
    parameters. The anatomy of a row depends only on the row, so editing one
    label changes only that finding in the image. ``seed`` drives the
    quantum noise only.

    Parameters
    ----------
    patients : pandas.DataFrame
        One row per image.
    size : int
        Image side in pixels, 32 to 256. The field of view is always 400 mm.
    seed : int
        Seed of the detector noise.
    return_masks : bool
        Also return the ground-truth masks (see :func:`anatomy`).

    Returns
    -------
    images : numpy.ndarray, float32, shape (N, 1, size, size)
        Values ``k / 65535`` in [0, 1] (16-bit levels).
    masks : dict of name -> bool array (N, size, size)
        Only with ``return_masks``: ``lungs``, ``heart``, ``nodule``,
        ``effusion``, ``pneumothorax``.

    Examples
    --------
    >>> from medsynth_explore.phantom import sample_patients
    >>> im = render(sample_patients(2, seed=0), size=32, seed=0)
    >>> im.shape, im.dtype
    ((2, 1, 32, 32), dtype('float32'))
    """
    size = _check_size(size)
    t = complete_patients(patients, seed=seed)
    rng = np.random.default_rng([int(seed), 0x52454E44])
    n = len(t)
    chunk = max(1, int(128 * (64 / size) ** 2))
    images = np.empty((n, 1, size, size), np.float32)
    all_masks = {k: np.empty((n, size, size), bool) for k in MASK_NAMES} if return_masks else None
    for a in range(0, n, chunk):
        part = t.iloc[a : a + chunk].reset_index(drop=True)
        P, _, masks = _render_batch(part, size, rng, return_masks)
        images[a : a + len(part), 0] = _detector(P, part, size, rng)
        if return_masks:
            for k in MASK_NAMES:
                all_masks[k][a : a + len(part)] = masks[k]
    return (images, all_masks) if return_masks else images


class Anatomy(tuple):
    """Ground truth of :func:`anatomy`: ``(masks, measurements)``, also as attributes."""

    def __new__(cls, masks: dict, measurements: pd.DataFrame):
        return super().__new__(cls, (masks, measurements))

    @property
    def masks(self) -> dict:
        """Name -> bool array (N, H, W)."""
        return self[0]

    @property
    def measurements(self) -> pd.DataFrame:
        """One row per patient of anatomical measurements."""
        return self[1]


def anatomy(patients: pd.DataFrame, size: int = 64) -> Anatomy:
    """Ground-truth masks and measurements of the patients in a table.

    Parameters
    ----------
    patients : pandas.DataFrame
        As for :func:`render` (completed the same way).
    size : int
        Pixel grid of the masks, 32 to 256.

    Returns
    -------
    Anatomy
        ``masks``: dict name -> bool (N, size, size) for ``lungs`` (aerated
        lung fields above the domes, outside the heart), ``heart``
        (silhouette), ``nodule``, ``effusion`` (pleural fluid thicker than
        half its full depth), ``pneumothorax`` (pleural air without lung).
        ``measurements``: DataFrame with ``ctr`` (the model's cardiothoracic
        ratio, heart width / inner thoracic width), ``heart_width_mm``,
        ``thorax_width_mm``, ``ctr_from_masks`` (the same ratio measured on
        the masks: width of the heart mask over the width spanned by the lung
        mask), and the pixel areas of every mask (``<name>_area_px``).

    Examples
    --------
    >>> from medsynth_explore.phantom import sample_patients
    >>> masks, meas = anatomy(sample_patients(2, seed=0), size=32)
    >>> sorted(masks), masks["lungs"].shape
    (['effusion', 'heart', 'lungs', 'nodule', 'pneumothorax'], (2, 32, 32))
    """
    size = _check_size(size)
    t = complete_patients(patients)
    _, g, masks = _render_batch(t, size, None, True, want_image=False)
    _, _, px = _grid(size)
    heart_cols = masks["heart"].any(1)
    lung_cols = masks["lungs"].any(1)

    def span(c):
        has = c.any(1)
        first = np.argmax(c, 1)
        last = c.shape[1] - 1 - np.argmax(c[:, ::-1], 1)
        return np.where(has, (last - first + 1) * px, np.nan)

    meas = pd.DataFrame(
        {
            "ctr": g["ctr"],
            "heart_width_mm": g["heart_w"],
            "thorax_width_mm": 2 * g["lat"],
            "ctr_from_masks": span(heart_cols) / span(lung_cols),
        }
    )
    for k in MASK_NAMES:
        meas[f"{k}_area_px"] = masks[k].sum((1, 2))
    return Anatomy(masks, meas)


def lesion_weights(
    patients: pd.DataFrame, size: int = 64, weights: Mapping[str, float] | None = None, dilate: int = 1
) -> np.ndarray:
    """Per-pixel loss weights ``1 + sum_f w_f * mask_f`` from the ground-truth finding masks.

    Small findings cover a few of an image's pixels, so a generator trained
    with a plain per-pixel loss gets little signal to draw them; these maps
    (for :func:`~medsynth_explore.generators.diffusion.train_diffusion`'s
    ``pixel_weights``) move weight onto them.

    Parameters
    ----------
    patients : pandas.DataFrame
        As for :func:`anatomy` (e.g. the metadata of a simulated cohort).
    size : int
        Pixel grid, 32 to 256.
    weights : mapping finding -> extra weight, optional
        Any of ``nodule``, ``effusion``, ``pneumothorax``, ``heart``,
        ``lungs``; default ``{"nodule": 30, "effusion": 8}``.
    dilate : int
        Grow each mask by this many pixels (a lesion's rim is part of it).

    Returns
    -------
    numpy.ndarray, float32, shape (N, 1, size, size)

    Examples
    --------
    >>> from medsynth_explore.phantom import sample_patients
    >>> p = sample_patients(4, seed=0)
    >>> p["nodule"] = [1, 0, 1, 0]
    >>> w = lesion_weights(p, size=32, weights={"nodule": 10})
    >>> w.shape, float(w[1].max()), float(w[0].max())
    ((4, 1, 32, 32), 1.0, 11.0)
    """
    from scipy.ndimage import binary_dilation

    weights = {"nodule": 30.0, "effusion": 8.0} if weights is None else dict(weights)
    unknown = sorted(set(weights) - set(MASK_NAMES))
    if unknown:
        raise DataError(f"no mask named {unknown}; masks are {list(MASK_NAMES)}.")
    for k, v in weights.items():
        if not np.isfinite(v) or v < 0:
            raise DataError(f"the weight of {k!r} must be finite and non-negative; got {v}.")
    if isinstance(dilate, bool) or not isinstance(dilate, (int, np.integer)) or dilate < 0:
        raise DataError(f"dilate must be a non-negative integer; got {dilate!r}.")
    masks = anatomy(patients, size=size).masks
    out = np.ones((len(patients), 1, size, size), np.float32)
    grow = np.ones((1, 2 * dilate + 1, 2 * dilate + 1), bool)
    for k, v in weights.items():
        m = masks[k]
        if dilate and m.any():
            m = binary_dilation(m, structure=grow)
        out[:, 0] += np.float32(v) * m
    return out
