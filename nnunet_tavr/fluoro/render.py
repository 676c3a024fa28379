"""One angiography frame of a prepared case: C-arm pose, line integrals, degradations, 8-bit image.

Image formation (per detector pixel; see ``docs/fluoroscopy.md``)::

    L  = ∫ mu_background + lv * dmu ∫ LV + dmu (∫ bolus - (1 - washout) ∫ ramp) + mu_cath * chord
    I  = blur(exp(-L)) + scatter * G_30mm(blur(exp(-L)))           (focal spot / motion, scatter)
    N  ~ Poisson(photons * I)                                       (quantum noise)
    8-bit = 255 * (1 - window(-log(N / photons)) ** gamma)          (dense = dark, as angiograms)

with ``dmu = MU_WATER * bolus_hu / 1000``. The background integral is rendered at about half the
CT's voxel size and upsampled (bicubic) to the detector: a projection of a CT carries nothing finer
than its voxels, and this is 4-5 times cheaper at 512^2 (``benchmarks/fluoro.py`` measures both
and their difference). The bolus and the mask are rendered at the detector's full resolution over
their own small box, the catheter analytically (chord through a tube of ``catheter_radius_mm``).

The **mask** is the projected mask object (:mod:`.anatomy`): a pixel is inside when its ray meets
the object's 0.5 iso-surface (maximum of the bilinearly sampled indicator >= 0.5). It is not
blurred, noised or windowed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from nnunet_tavr.carm import Angulation, Projection, SOURCE_ISOCENTRE_MM, cusp_views, nearest_to_ap, off_plane_deg, s_curve
from nnunet_tavr.geometry import array_to_world, world_to_array
from nnunet_tavr.fluoro.anatomy import MU_WATER, CaseAnatomy
from nnunet_tavr.fluoro.projector import project

#: The secondary angles a C-arm reaches (degrees).
SECONDARY_LIMIT_DEG = 50.0
#: Width of the scatter kernel (mm at the isocentre).
SCATTER_SIGMA_MM = 30.0


@dataclass(frozen=True)
class RenderSettings:
    """The C-arm and the ranges the per-frame parameters are drawn from (uniformly; photons
    log-uniformly). Lengths in mm, angles in degrees, contrasts in HU-equivalents."""

    shape: tuple[int, int] = (512, 512)
    pixel_mm: float = 0.35  #: at the isocentre
    sid_mm: float = SOURCE_ISOCENTRE_MM
    sdd_mm: tuple[float, float] = (1000.0, 1200.0)
    primary_spread_deg: float = 20.0  #: primary angle = reference +- this
    off_curve_deg: float = 3.0  #: standard deviation of the secondary angle around the S-curve
    pan_mm: float = 10.0  #: isocentre moved up to this far in the detector plane (table panning)
    bolus_hu: tuple[float, float] = (1000.0, 3500.0)
    washout: tuple[float, float] = (0.1, 0.8)  #: contrast left at the bolus end, fraction of the root's
    lv_fraction: tuple[float, float] = (0.0, 0.15)  #: regurgitated contrast in the left ventricle
    photons: tuple[float, float] = (2e4, 2e5)  #: unattenuated photons per pixel
    blur_mm: tuple[float, float] = (0.2, 0.8)  #: Gaussian sigma at the isocentre
    scatter: tuple[float, float] = (0.1, 0.4)  #: scatter-to-primary ratio of the smooth scatter term
    gamma: tuple[float, float] = (0.7, 1.4)
    window: tuple[float, float] = (0.8, 1.25)  #: display window width factor (contrast)
    catheter: bool = True
    catheter_hu: tuple[float, float] = (4000.0, 10000.0)
    catheter_radius_mm: float = 1.0  #: 6 French
    background_pixel_mm: float | None = None  #: None: half the CT's smallest voxel, at least pixel_mm

    def as_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def background_pixel(self, spacing) -> float:
        if self.background_pixel_mm is not None:
            return max(float(self.background_pixel_mm), self.pixel_mm)
        return max(self.pixel_mm, float(np.min(spacing)) / 2.0)


@dataclass(frozen=True)
class FrameParams:
    """What was drawn for one frame."""

    angle: Angulation
    sdd_mm: float
    pan_mm: tuple[float, float]  #: along the image's columns and rows
    bolus_hu: float
    washout: float
    lv_fraction: float
    photons: float
    blur_mm: float
    scatter: float
    gamma: float
    window: float
    catheter_hu: float

    def as_dict(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k != "angle"}
        out["pan_mm"] = list(self.pan_mm)
        return {**self.angle.as_dict(), **out}


def reference_view(anatomy: CaseAnatomy) -> tuple[Angulation, str]:
    """The case's coplanar view the frames are sampled around: the three-cusp view when hinge points
    exist, else the S-curve angulation nearest to AP."""
    hinges = anatomy.hinge_points_world
    if hinges and all(k in hinges for k in ("RCC", "LCC", "NCC")):
        return cusp_views(hinges["RCC"], hinges["LCC"], hinges["NCC"]).three_cusp, "three-cusp view (hinge points)"
    return nearest_to_ap(anatomy.normal_world), "S-curve angulation nearest to AP (no hinge points)"


def sample_frame(rng: np.random.Generator, anatomy: CaseAnatomy, settings: RenderSettings) -> FrameParams:
    """Draw one frame's parameters (in a fixed order, so a seed gives the same frames)."""
    ref, _ = reference_view(anatomy)
    u = rng.uniform
    primary = float(np.clip(ref.primary + u(-settings.primary_spread_deg, settings.primary_spread_deg), -90.0, 90.0))
    secondary = float(s_curve(anatomy.normal_world, primary)) + float(rng.normal(0.0, settings.off_curve_deg))
    secondary = float(np.clip(secondary, -SECONDARY_LIMIT_DEG, SECONDARY_LIMIT_DEG))
    return FrameParams(
        angle=Angulation(primary, secondary),
        sdd_mm=u(*settings.sdd_mm),
        pan_mm=(u(-settings.pan_mm, settings.pan_mm), u(-settings.pan_mm, settings.pan_mm)),
        bolus_hu=u(*settings.bolus_hu),
        washout=u(*settings.washout),
        lv_fraction=u(*settings.lv_fraction),
        photons=float(np.exp(u(np.log(settings.photons[0]), np.log(settings.photons[1])))),
        blur_mm=u(*settings.blur_mm),
        scatter=u(*settings.scatter),
        gamma=u(*settings.gamma),
        window=u(*settings.window),
        catheter_hu=u(*settings.catheter_hu),
    )


def frame_projection(anatomy: CaseAnatomy, params: FrameParams, settings: RenderSettings) -> Projection:
    """The C-arm pose of a frame: isocentre at the annulus centre, panned in the detector plane."""
    probe = Projection.at(params.angle, anatomy.centre_world, params.sdd_mm, settings.pixel_mm, settings.shape, settings.sid_mm)
    columns, rows, _ = probe.axes
    iso = anatomy.centre_world + params.pan_mm[0] * columns + params.pan_mm[1] * rows
    return Projection.at(params.angle, iso, params.sdd_mm, settings.pixel_mm, settings.shape, settings.sid_mm)


def _window(projection: Projection, anatomy: CaseAnatomy, volume, margin: int = 2):
    """Detector rows and columns (slices) covered by the projection of a volume's box, or None."""
    lo = volume.origin - 0.5 * anatomy.spacing
    hi = volume.origin + (np.asarray(volume.shape) - 0.5) * anatomy.spacing
    corners = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])])
    pix, _ = projection.project(array_to_world(corners, anatomy.geometry))
    first = np.maximum(np.floor(pix.min(axis=0)).astype(int) - margin, 0)
    last = np.minimum(np.ceil(pix.max(axis=0)).astype(int) + margin + 1, np.asarray(projection.shape))
    if np.any(last <= first):
        return None
    return slice(int(first[0]), int(last[0])), slice(int(first[1]), int(last[1]))


def upsample_bicubic(image: np.ndarray, shape) -> np.ndarray:
    """``(C, h, w)`` images resized to ``shape`` by bicubic interpolation (pixel centres as in
    :func:`line_integrals`' coarse grid)."""
    import torch
    import torch.nn.functional as F

    if image.shape[-2:] == tuple(shape):
        return image
    t = torch.as_tensor(image)[None]
    return F.interpolate(t, size=tuple(shape), mode="bicubic", align_corners=False)[0].numpy()


def line_integrals(anatomy: CaseAnatomy, params: FrameParams, projection: Projection, settings: RenderSettings, threads=None):
    """``(total, mask)``: the line integral image (dimensionless, ``∫ mu dl``) without the catheter,
    and the projected mask (bool), both of ``projection.shape``."""
    g, spacing = anatomy.geometry, anatomy.spacing
    source = world_to_array(projection.source, g)
    h, w = projection.shape
    pixel = settings.background_pixel(spacing)
    n_r, n_c = max(1, int(np.ceil(h * settings.pixel_mm / pixel))), max(1, int(np.ceil(w * settings.pixel_mm / pixel)))
    rows = (np.arange(n_r) + 0.5) * (h / n_r) - 0.5  # coarse pixel centres, as bicubic upsampling places them
    cols = (np.arange(n_c) + 0.5) * (w / n_c) - 0.5
    coarse_pixels = world_to_array(projection.pixel_points(rows, cols), g)
    coarse = project(anatomy.background, source=source, pixels=coarse_pixels, threads=threads)[0]
    dmu = MU_WATER * params.bolus_hu / 1000.0
    if anatomy.coarse is not None:
        lv, bolus, ramp = project(anatomy.coarse, source=source, pixels=coarse_pixels, threads=threads)
        coarse = coarse + dmu * (params.lv_fraction * lv + bolus - (1.0 - params.washout) * ramp)
    total = upsample_bicubic(coarse[None], (h, w))[0]
    mask = np.zeros((h, w), bool)
    window = _window(projection, anatomy, anatomy.fine)
    if window is not None:
        rw, cw = window
        fine_pixels = world_to_array(projection.pixel_points(np.arange(rw.start, rw.stop), np.arange(cw.start, cw.stop)), g)
        bolus, ramp = project(anatomy.fine, source=source, pixels=fine_pixels, threads=threads)
        total[rw, cw] += dmu * (bolus - (1.0 - params.washout) * ramp)
        mip = project(anatomy.mask_object, source=source, pixels=fine_pixels, reduce="max", threads=threads)[0]
        mask[rw, cw] = mip >= 0.5
    return total.astype(np.float32), mask


def catheter_integral(anatomy: CaseAnatomy, projection: Projection, mu_per_mm: float, radius_mm: float) -> np.ndarray:
    """``mu * chord`` of the pigtail: for each pixel near the projected axis, the path length of
    its ray through a tube of ``radius_mm`` (``2 sqrt(r^2 - d^2) / sin(angle to the axis)``)."""
    from scipy.spatial import cKDTree

    from nnunet_tavr.geometry import resample_polyline

    out = np.zeros(projection.shape, np.float32)
    axis = array_to_world(resample_polyline(anatomy.catheter, 0.1)[0], anatomy.geometry)
    pix, depth = projection.project(axis)
    inside = (depth > 0)
    if not inside.any():
        return out
    axis, pix, depth = axis[inside], pix[inside], depth[inside]
    footprint = projection.pixel_mm * depth / projection.sid  # mm per pixel at each point's depth
    reach = radius_mm / footprint.min() + 1.0
    lo = np.maximum(np.floor(pix.min(axis=0) - reach).astype(int), 0)
    hi = np.minimum(np.ceil(pix.max(axis=0) + reach).astype(int) + 1, np.asarray(projection.shape))
    if np.any(hi <= lo):
        return out
    rr, cc = np.meshgrid(np.arange(lo[0], hi[0]), np.arange(lo[1], hi[1]), indexing="ij")
    dist, nearest = cKDTree(pix).query(np.stack([rr.ravel(), cc.ravel()], 1), distance_upper_bound=reach)
    hit = np.isfinite(dist)
    k = nearest[hit]
    d_mm = dist[hit] * footprint[k]
    tangent = np.gradient(axis, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    ray = axis - projection.source
    ray /= np.linalg.norm(ray, axis=1, keepdims=True)
    sin = np.linalg.norm(np.cross(tangent[k], ray[k]), axis=1)
    chord = 2.0 * np.sqrt(np.maximum(radius_mm**2 - d_mm**2, 0.0)) / np.maximum(sin, 0.3)
    vals = np.zeros(rr.size, np.float32)
    vals[hit] = mu_per_mm * chord
    out[lo[0]:hi[0], lo[1]:hi[1]] = vals.reshape(rr.shape)
    return out


def _smooth(image: np.ndarray, sigma_px: float, factor: int = 8) -> np.ndarray:
    """A wide Gaussian (``sigma_px`` >> 1) on an image ``factor`` times smaller, upsampled back:
    the same low-frequency result at a fraction of the cost."""
    from scipy import ndimage

    h, w = image.shape
    hp, wp = -(-h // factor) * factor, -(-w // factor) * factor
    padded = np.pad(image, ((0, hp - h), (0, wp - w)), mode="edge")
    small = padded.reshape(hp // factor, factor, wp // factor, factor).mean(axis=(1, 3))
    small = ndimage.gaussian_filter(small, sigma_px / factor, mode="nearest")
    return upsample_bicubic(small[None].astype(np.float32), (hp, wp))[0][:h, :w].astype(image.dtype)


def degrade(line: np.ndarray, params: FrameParams, settings: RenderSettings, rng: np.random.Generator) -> np.ndarray:
    """Blur, scatter, quantum noise and display: the line integral image -> 8-bit frame."""
    from scipy import ndimage

    intensity = np.exp(-line.astype(np.float64))
    intensity = ndimage.gaussian_filter(intensity, params.blur_mm / settings.pixel_mm)
    intensity = intensity + params.scatter * _smooth(intensity, SCATTER_SIGMA_MM / settings.pixel_mm)
    counts = rng.poisson(params.photons * intensity)
    estimate = -np.log(np.maximum(counts, 0.5) / params.photons)
    lo, hi = np.percentile(estimate, [1.0, 99.0])
    middle, half = (lo + hi) / 2.0, max((hi - lo) / 2.0 * params.window, 1e-6)
    v = np.clip((estimate - (middle - half)) / (2.0 * half), 0.0, 1.0) ** params.gamma
    return np.rint(255.0 * (1.0 - v)).astype(np.uint8)


@dataclass
class RenderedFrame:
    image: np.ndarray  #: (rows, columns) uint8
    mask: np.ndarray  #: (rows, columns) bool
    params: FrameParams
    projection: Projection

    def record(self, anatomy: CaseAnatomy) -> dict:
        """The frame's JSON entry: pose, drawn parameters, where the annulus and mask lie."""
        centre_px, _ = self.projection.project(anatomy.centre_world)
        rows, cols = np.nonzero(self.mask)
        touches = bool(self.mask[0].any() or self.mask[-1].any() or self.mask[:, 0].any() or self.mask[:, -1].any())
        return {
            **self.params.as_dict(),
            "off_plane_deg": off_plane_deg(anatomy.normal_world, self.params.angle),
            "projection": self.projection.as_dict(),
            "annulus_centre_px": centre_px.tolist(),
            "mask_pixels": int(self.mask.sum()),
            "mask_area_mm2": float(self.mask.sum() * self.projection.pixel_mm**2),
            "mask_centroid_px": [float(rows.mean()), float(cols.mean())] if rows.size else None,
            "mask_touches_border": touches,
        }


def render_frame(anatomy: CaseAnatomy, params: FrameParams, settings: RenderSettings, rng: np.random.Generator, threads=None) -> RenderedFrame:
    """Render one frame (the noise is drawn from ``rng``)."""
    projection = frame_projection(anatomy, params, settings)
    line, mask = line_integrals(anatomy, params, projection, settings, threads)
    if settings.catheter:
        line = line + catheter_integral(anatomy, projection, MU_WATER * (1.0 + params.catheter_hu / 1000.0), settings.catheter_radius_mm)
    return RenderedFrame(degrade(line, params, settings, rng), mask, params, projection)
