"""One painter per tissue, plus the factor-driven features every tissue gets."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from core.demo import structures as st
from core.demo.canvas import FIELD_SCALE, Canvas


def _paint_adipose(c: Canvas, breast: bool = False) -> None:
    fat_share = c.factors["adipocyte_fraction"]
    fibrosis = c.factors["fibrosis"]
    if breast:
        share = 0.3 + 0.4 * fat_share - 0.15 * fibrosis
    else:
        share = 0.8 + 0.15 * fat_share - 0.2 * fibrosis
    field = c.noise(450) + 0.5 * c.noise(150)
    fat = field > np.quantile(field, 1.0 - share)
    st.stroma(c, ~fat, density=0.68 if breast else 0.5, wavelength=9.0 if breast else 7.0)
    st.fat(c, fat, cell_um=72.0)
    st.vessels(c, 6.0)
    if not breast:
        return
    # Lobules: clusters of small acini in pale, cellular intralobular stroma; a few ducts.
    candidates = np.argwhere(~fat[::10, ::10]) * 10 * FIELD_SCALE
    if len(candidates) == 0:
        return
    n_lobules = max(1, int(c.rng.poisson(3.0 * st.tissue_area_mm2(c) * (1 - share))))
    for cy, cx in candidates[c.rng.integers(0, len(candidates), n_lobules)]:
        lobule = st.blob(c, cy, cx, c.rng.uniform(90, 150)) > 0.5
        rows, cols, looser = c.up_box(lobule.astype(np.float32))
        c.eosin[rows, cols] -= 0.2 * looser  # looser, paler stroma
        st.lymphocytes(c, lobule.astype(np.float32), 6.0)
        n_acini = int(c.rng.integers(6, 16))
        centres = np.array([[cy], [cx]]) + c.rng.normal(0, 50, (2, n_acini))
        st.glands(c, centres.astype(np.int32), c.rng.uniform(13, 21, n_acini), 0.3, 0.45)
    ducts = candidates[c.rng.integers(0, len(candidates), 2)].T
    st.glands(c, ducts.astype(np.int32), c.rng.uniform(28, 42, 2), 0.6, 0.45)


def _paint_esophagus(c: Canvas, junction: bool = False) -> None:
    facing = -math.pi / 2 + c.rng.uniform(-0.3, 0.3)  # the epithelium faces "up"
    depth = st.depth_from_surface(c, facing)
    along = c.fx * math.cos(facing + math.pi / 2) + c.fy * math.sin(facing + math.pi / 2)
    # Lamina propria papillae push up into the epithelium.
    papillae = np.maximum(0.0, np.sin(along * 2 * math.pi / 110 + 2 * c.noise(400))) ** 3
    if junction:
        # Squamous on part of the surface, columnar glandular (cardiac) mucosa on the rest.
        split = np.quantile(along, c.rng.uniform(0.25, 0.5)) + 150 * c.noise(600)
        squamous_side = along < split
        thickness = np.where(squamous_side, 190 + 30 * c.noise(300) - 60 * papillae, 0.0)
    else:
        squamous_side = np.ones_like(depth, bool)
        thickness = 380 + 70 * c.noise(400) - 150 * papillae
    epi = st.squamous(c, depth, thickness, keratin_um=0.0, cell_um=16.0, pale=0.2)
    mucosa_bottom = np.where(squamous_side, thickness, 400.0) + 140
    lamina = (depth >= thickness) & (depth < mucosa_bottom) & ~epi
    st.stroma(c, lamina, density=0.36, wavelength=6.0)
    st.lymphocytes(c, lamina.astype(np.float32) * 0.5, 10.0)
    if junction:
        glandular = ~squamous_side & (depth < 400)
        c.add(0.0, 0.12, where=glandular)
        pts = np.argwhere(glandular[::14, ::14]) * 14 * FIELD_SCALE
        pts = pts + c.rng.integers(-8, 8, pts.shape)
        keep = c.rng.random(len(pts)) < 0.8
        st.glands(c, pts[keep].T.astype(np.int32), c.rng.uniform(17, 27, int(keep.sum())), 0.3, 0.26, 3.0)
    mm_bottom = mucosa_bottom + (220 if junction else 80) + 30 * c.noise(300)
    st.smooth_muscle(c, (depth >= mucosa_bottom) & (depth < mm_bottom), facing + math.pi / 2)
    submucosa = depth >= mm_bottom
    if junction:
        # Deep smooth muscle bundles separated by thin septa.
        f1, f2, _, _ = c.worley(260.0, stretch=2.0, angle=c.rng.uniform(0, math.pi), warp_um=60)
        bundles = submucosa & (f2 - f1 > 25)
        st.smooth_muscle(c, bundles, c.rng.uniform(0, math.pi))
        st.stroma(c, submucosa & ~bundles, density=0.5)
    else:
        st.stroma(c, submucosa, density=0.5, wavelength=10.0)
    st.vessels(c, 10.0)


def _paint_skin(c: Canvas, sun_exposed: bool) -> None:
    facing = -math.pi / 2 + c.rng.uniform(-0.3, 0.3)
    depth = st.depth_from_surface(c, facing)
    along = c.fx * math.cos(facing + math.pi / 2) + c.fy * math.sin(facing + math.pi / 2)
    keratin = (32.0 if sun_exposed else 24.0) + 5 * c.noise(300)
    if sun_exposed:
        # Thin epidermis with flattened rete ridges (chronic sun damage).
        ridges = 12 * np.maximum(0, np.sin(along * 2 * math.pi / 160 + c.noise(500))) ** 2
        thickness = keratin + 45 + 8 * c.noise(200) + ridges
    else:
        ridges = 60 * np.maximum(0, np.sin(along * 2 * math.pi / 130 + c.noise(500))) ** 2
        thickness = keratin + 62 + 10 * c.noise(200) + ridges
    st.squamous(c, depth, thickness, keratin_um=keratin, cell_um=12.0)
    c.add(0.4, where=(depth > keratin) & (depth < keratin + 5))  # granular layer
    dermis_depth = depth - thickness
    papillary = (dermis_depth >= 0) & (dermis_depth < 70)
    st.stroma(c, papillary, density=0.42, wavelength=5.0)
    reticular = dermis_depth >= 70
    if sun_exposed:
        # Solar elastosis: grey-blue amorphous, curly elastotic material in the upper dermis.
        elastotic = (dermis_depth >= 35) & (dermis_depth < 400 + 60 * c.noise(400))
        curls = (np.abs(c.noise(10)) < 0.15).astype(np.float32)
        c.add(0.26 + 0.1 * curls, 0.3 + 0.08 * curls, where=elastotic)
        c.nuclei_at(c.scatter(elastotic.astype(np.float32), 1.0), 4.0, 1.5, None, 0.9)
        reticular = reticular & ~elastotic
    # Reticular dermis: coarse wavy collagen bundles separated by thin clefts.
    theta = facing + math.pi / 2 + c.rng.uniform(-0.3, 0.3)
    waves = c.stripes(theta, 40.0, warp_um=120.0)
    cleft = (waves > 0.93) & (c.noise(120) > -0.6)
    bundle = reticular & ~cleft
    shade = 0.85 + 0.3 * np.clip(0.5 + 0.3 * c.noise(80), 0, 1)
    c.add(0.02, (0.62 + 0.18 * c.factors["fibrosis"]) * shade * (0.9 + 0.1 * c.stripes(theta, 6.0)), where=bundle)
    c.nuclei_at(c.scatter(bundle.astype(np.float32), 0.8), 4.5, 1.2, None, 0.9)
    c.carve(c.up((reticular & cleft).astype(np.float32)) * 0.85)
    # Adnexa: sweat-gland coils deep in the dermis.
    deep = np.argwhere(reticular[::10, ::10] & (dermis_depth[::10, ::10] > 300)) * 10 * FIELD_SCALE
    if len(deep):
        for cy, cx in deep[c.rng.integers(0, len(deep), int(c.rng.integers(1, 4)))]:
            pts = np.array([[cy], [cx]]) + c.rng.normal(0, 35, (2, 10))
            st.glands(c, pts.astype(np.int32), c.rng.uniform(11, 15, 10), 0.35, 0.5, 3.0)
    # Subcutaneous fat at the bottom, more of it with the adipocyte factor.
    st.fat(c, dermis_depth > 900 - 550 * c.factors["adipocyte_fraction"] + 80 * c.noise(500), cell_um=70.0)
    st.vessels(c, 8.0)


def _paint_lung(c: Canvas) -> None:
    f1, f2, _, _ = c.worley(125.0, warp_um=35.0)
    wall_um = 7.0 + 5.0 * c.noise(500) ** 2 + 14.0 * c.factors["fibrosis"]
    edge = f2 - f1
    wall = c.up(np.clip(1.0 - (edge - wall_um) / 2.5, 0.0, 1.0))
    c.add(0.08, 0.42)
    c.carve(1.0 - wall)
    points = c.scatter((edge < wall_um + 2).astype(np.float32), 14.0)
    c.nuclei_at(points, 3.6, 2.4, None, 0.95)
    c.stamp(c.blood, c.scatter((edge < wall_um).astype(np.float32), 10.0), 3.0, None, 0.0, 0.7)
    # Alveolar macrophages: pink cells with a nucleus, loose in the air spaces.
    macro = c.scatter((edge > wall_um + 20).astype(np.float32), 0.5)
    c.stamp(c.eosin, macro, 8.0, 7.0, None, 0.45)
    c.nuclei_at(macro, 3.5, 3.0, None, 0.9)
    # A bronchiole or artery: thick muscular wall around an open lumen.
    for cy, cx in st.random_in_tissue(c, int(c.rng.integers(0, 3))).T:
        blob = st.blob(c, cy, cx, c.rng.uniform(70, 140))
        ring = (blob > 0.3) & (blob < 0.75)
        c.carve_field(ring.astype(np.float32))
        st.smooth_muscle(c, ring, c.rng.uniform(0, math.pi))
    st.vessels(c, 4.0)


def _paint_liver(c: Canvas) -> None:
    f1, f2, rand, points = c.worley(23.0, warp_um=5.0)
    # Plates radiate from central veins: sinusoids are thin gaps between radial plates.
    veins = st.random_in_tissue(c, max(1, round(st.tissue_area_mm2(c) / 0.35)))
    dist = np.full(f1.shape, np.inf, np.float32)
    spokes = np.zeros(f1.shape, np.float32)
    warp = 0.15 * c.noise(200)
    for vy, vx in veins.T:
        d = np.hypot(c.fy - vy, c.fx - vx)
        phase = np.arctan2(c.fy - vy, c.fx - vx) * 37 + warp * 37  # ~34 um apart at 200 um
        spokes = np.where(d < dist, 0.5 + 0.5 * np.sin(phase), spokes)
        dist = np.minimum(dist, d)
    sinus = np.where(dist > 45, spokes, 0.0)
    border = np.clip(1.0 - (f2 - f1) / 2.0, 0.0, 1.0)
    c.add(0.14 + 0.05 * rand, (0.5 + 0.12 * rand) * (1 - 0.25 * border))
    c.carve(c.up(np.clip((sinus - 0.88) / 0.06, 0.0, 1.0)) * 0.9)
    c.stamp(c.blood, c.scatter((sinus > 0.9).astype(np.float32), 3.0), 3.0, None, 0.0, 0.8)
    # Round central nuclei; steatosis (the adipocyte factor) turns cells into fat vacuoles.
    steatosis = 0.45 * c.factors["adipocyte_fraction"]
    roll = c.rng.random(points.shape[1])
    vacuoles = points[:, roll < steatosis]
    c.cut(vacuoles, c.rng.uniform(9, 16, vacuoles.shape[1]))
    keep = (roll >= steatosis) & (c.rng.random(points.shape[1]) < 0.55 + 0.4 * c.factors["nuclear_density"])
    c.nuclei_at(points[:, keep], 4.6, 4.2, None, 0.85)
    c.nuclei_at(c.scatter((sinus > 0.8).astype(np.float32), 4.0), 4.0, 1.3, None, 0.95)  # Kupffer cells
    c.cut(veins, c.rng.uniform(25, 45, veins.shape[1]))
    # Portal tracts: collagen islands with a bile duct and lymphocytes.
    for cy, cx in st.random_in_tissue(c, max(1, round(st.tissue_area_mm2(c) / 0.6))).T:
        tract = st.blob(c, cy, cx, c.rng.uniform(60, 110) * (1 + 0.8 * c.factors["fibrosis"])) > 0.5
        c.carve_field(tract.astype(np.float32))
        st.stroma(c, tract, density=0.45)
        st.lymphocytes(c, tract.astype(np.float32), 12.0)
        st.glands(c, np.array([[cy], [cx]], np.int32), 14.0, 0.35, 0.4, 3.0)


def _paint_muscle(c: Canvas) -> None:
    cross_section = c.rng.random() < 0.35
    angle = c.rng.uniform(0, math.pi)
    if cross_section:
        f1, f2, rand, _ = c.worley(55.0, warp_um=8.0)
    else:
        f1, f2, rand, _ = c.worley(50.0, stretch=9.0, angle=angle, warp_um=10.0)
    edge = f2 - f1
    c.add(0.03, (0.72 + 0.4 * (rand - 0.5)) * (1 + 0.05 * c.noise(8)))
    c.carve(np.clip(1.0 - (c.up(edge) - 3.0) / 1.5, 0.0, 1.0) * 0.85)
    # Peripheral nuclei, flattened along the fibres.
    points = c.scatter((edge < 7.0).astype(np.float32), 7.0)
    if cross_section:
        c.nuclei_at(points, 3.2, 2.2, None, 0.95)
    else:
        c.nuclei_at(points, 6.5, 1.8, angle, 0.95)
    # Perimysium: septa with collagen and vessels; with the factors, fibrosis and fat between fascicles.
    septa_field = np.abs(c.noise(700))
    septa = septa_field < 0.06 + 0.12 * c.factors["fibrosis"]
    c.carve(c.up(septa.astype(np.float32)))
    st.stroma(c, septa, density=0.5)
    st.fat(c, _share_below(septa_field, 0.2 * c.factors["adipocyte_fraction"]), cell_um=65.0)
    st.vessels(c, 5.0)


def _paint_thyroid(c: Canvas) -> None:
    f1, f2, rand, _ = c.worley(85.0, warp_um=20.0)
    inset = (f2 - f1) / 2  # ~ distance to the follicle edge
    rim_um = 8.0 + 4.0 * c.factors["nuclear_density"]
    colloid = inset > rim_um + 1.0
    rim = (inset > 1.5) & ~colloid
    c.add(np.where(rim, 0.08, 0.0), np.where(colloid, 0.42 + 0.3 * rand, np.where(rim, 0.42, 0.3)))
    # Retraction gap between colloid and epithelium, and the odd empty follicle.
    gap = (inset > rim_um + 1.0) & (inset < rim_um + 3.5)
    empty = colloid & (rand < 0.08)
    c.carve(c.up((gap | empty).astype(np.float32)) * 0.9)
    c.nuclei_at(c.scatter(rim.astype(np.float32), 60.0), 3.3, 3.0, None, 1.0)
    c.stamp(c.blood, c.scatter((inset <= 1.5).astype(np.float32), 6.0), 3.0, None, 0.0, 0.8)
    st.vessels(c, 4.0)


PAINTERS: dict[str, Callable[[Canvas], None]] = {
    "Adipose - Subcutaneous": lambda c: _paint_adipose(c, breast=False),
    "Breast - Mammary Tissue": lambda c: _paint_adipose(c, breast=True),
    "Esophagus - Mucosa": lambda c: _paint_esophagus(c, junction=False),
    "Esophagus - Gastroesophageal Junction": lambda c: _paint_esophagus(c, junction=True),
    "Skin - Sun Exposed (Lower leg)": lambda c: _paint_skin(c, sun_exposed=True),
    "Skin - Not Sun Exposed (Suprapubic)": lambda c: _paint_skin(c, sun_exposed=False),
    "Lung": _paint_lung,
    "Liver": _paint_liver,
    "Muscle - Skeletal": _paint_muscle,
    "Thyroid": _paint_thyroid,
}
# Tissues that get fat islands from the adipocyte factor (the others draw fat their own way).
FAT_ISLAND_TISSUES = {"Esophagus - Mucosa", "Esophagus - Gastroesophageal Junction", "Lung", "Thyroid"}
# Each factor also has one look that is the same in every tissue and grows linearly with it, so a single
# linear read-out of slide features can follow the factor across tissues (within-tissue slopes that
# differed from tissue to tissue left ~8 slides per tissue too few to learn them).
ISLAND_FAT_SHARE = 0.2  # share of the section turned into fat islands at adipocyte_fraction 1
SCAR_SHARE = 0.25  # share of the section replaced by collagen scar bands at fibrosis 1
EXTRA_NUCLEI = 14.0  # nuclei per 100 x 100 um of solid tissue added at nuclear_density 1
AGGREGATES_PER_MM2 = 8.0  # lymphoid aggregates per mm2 of tissue at immune_infiltrate 1


def _share_below(field: np.ndarray, share: float) -> np.ndarray:
    """The `share` of a field's pixels with its lowest values (none at 0): a region of exact area."""
    if share <= 0:
        return np.zeros(field.shape, bool)
    return field < np.quantile(field, min(share, 1.0))


def common_features(c: Canvas, tissue: str) -> None:
    """Factor-driven features every tissue gets: fat islands, scar bands, extra nuclei, lymphoid aggregates."""
    f = c.factors
    if tissue in FAT_ISLAND_TISSUES:
        st.fat(c, _share_below(-c.noise(500), ISLAND_FAT_SHARE * f["adipocyte_fraction"]), cell_um=70.0)
    # Fibrosis: dense, paucicellular collagen bands replacing the tissue.
    scar = _share_below(np.abs(c.noise(600)), SCAR_SHARE * f["fibrosis"])
    if scar.any():
        c.carve(c.up(scar.astype(np.float32)))
        st.stroma(c, scar, density=0.72, wavelength=12.0)
    solid = 1.0 - c.open[::FIELD_SCALE, ::FIELD_SCALE][: c.fh, : c.fw]
    # Nuclear density: besides scaling every cell count (Canvas.cellularity), plump nuclei over all solid
    # tissue, their number linear in the factor (scatter multiplies by cellularity, so divide it out).
    extra = c.scatter(solid, EXTRA_NUCLEI * f["nuclear_density"] / c.cellularity)
    c.nuclei_at(extra, 4.2, 3.0, None, 0.9)
    # Immune infiltrate: lymphoid aggregates (large dark clusters: a look apart from the even spread of extra
    # nuclei above), as many as the factor says (no Poisson scatter around it), plus a few scattered lymphocytes.
    n_aggregates = round(AGGREGATES_PER_MM2 * f["immune_infiltrate"] * st.tissue_area_mm2(c))
    for cy, cx in st.random_in_tissue(c, n_aggregates).T:
        blob = st.blob(c, cy, cx, c.rng.uniform(60, 110))
        rows, cols, pale = c.up_box(blob)  # the aggregate's box only: elsewhere the factor is exactly 1
        c.eosin[rows, cols] *= 1.0 - 0.35 * pale
        st.lymphocytes(c, blob * 0.9, 110.0)
    st.lymphocytes(c, solid * f["immune_infiltrate"], 3.0)
