"""The synthetic demo cohort: real formats (SVS via slideio, Portal CSV, GCT), planted truth, determinism."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import re
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import slideio
import tifffile

from core import demo
from core.__main__ import main as cli_main
from core.base.config import Workspace, workspace
from core.base.errors import DataError
from core.demo.canvas import Canvas, image_array

TINY = {"n_donors": 2, "n_tissues": 3, "slide_size": (640, 512), "n_genes": 200, "workers": 1}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small cohort over all ten tissues: small slides, but enough donors for statistics."""
    out = tmp_path_factory.mktemp("demo") / "cohort"
    return demo.make_demo_cohort(out, seed=3, n_donors=3, slide_size=(1024, 768), n_genes=400, workers=2)


@pytest.fixture
def tmp_ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.setenv("HISTOGENE_WORKSPACE", str(tmp_path / "ws"))
    return workspace(tmp_path / "ws")


def _read_gct(path: Path) -> tuple[list[str], pd.DataFrame]:
    with gzip.open(path, "rt") as handle:
        version = handle.readline().rstrip("\n")
        dims = handle.readline().rstrip("\n").split("\t")
        table = pd.read_csv(handle, sep="\t")
    return [version, *dims], table


def _truth(root: Path) -> dict:
    return json.loads((root / demo.TRUTH_JSON).read_text())


# -- files and formats ---------------------------------------------------------------------


def test_histology_csv_has_the_portal_header_and_gtex_ids(cohort: Path) -> None:
    with (cohort / demo.HISTOLOGY_CSV).open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert tuple(rows[0]) == demo.HISTOLOGY_HEADER
    table = pd.read_csv(cohort / demo.HISTOLOGY_CSV)
    assert table["Tissue Sample ID"].is_unique
    assert table["Tissue Sample ID"].str.fullmatch(r"GTEX-[0-9A-Z]{5}-\d{4}").all()
    assert (table["Tissue Sample ID"].str.rsplit("-", n=1).str[0] == table["Subject ID"]).all()
    assert set(table["Sex"]) <= {"male", "female"}
    assert table["Age Bracket"].str.fullmatch(r"\d0-\d9").all()
    assert set(table["Tissue"]) == set(demo.TISSUES)
    # Quoted fields with commas inside, as the Portal export has them.
    raw = (cohort / demo.HISTOLOGY_CSV).read_text()
    assert re.search(r'"[^"\n]*,[^"\n]*"', raw)


def test_gct_layout_and_rna_ids_join_to_slides(cohort: Path) -> None:
    header, table = _read_gct(cohort / demo.EXPRESSION_GCT)
    assert header[0] == "#1.2"
    assert [int(header[1]), int(header[2])] == [len(table), table.shape[1] - 2]
    assert list(table.columns[:2]) == ["Name", "Description"]
    assert table["Name"].str.fullmatch(r"ENSG\d{11}\.\d+").all() and table["Name"].is_unique
    rna_ids = pd.Series(table.columns[2:])
    assert rna_ids.str.fullmatch(r"GTEX-[0-9A-Z]{5}-\d{4}-SM-[0-9A-Z]{5}").all()
    assert (table.iloc[:, 2:].to_numpy() >= 0).all()

    tissue_ids = set(rna_ids.str.split("-").str[:3].str.join("-"))
    histology = set(pd.read_csv(cohort / demo.HISTOLOGY_CSV)["Tissue Sample ID"])
    slides = {p.stem for p in (cohort / demo.SLIDES_DIR).glob("*.svs")}
    assert slides == histology
    joined = histology & tissue_ids
    assert len(joined) > 0.7 * len(histology)
    assert histology - tissue_ids, "some slides must have no expression, as in GTEx"
    assert tissue_ids - histology, "some RNA samples must have no slide, as in GTEx"


def test_slides_are_pyramidal_aperio_svs_that_slideio_reads(cohort: Path) -> None:
    path = sorted((cohort / demo.SLIDES_DIR).glob("*.svs"))[0]
    with tifffile.TiffFile(path) as tif:
        assert tif.is_svs
        pages = tif.pages
        assert pages[0].is_tiled and pages[0].description.startswith("Aperio Image Library")
        assert "1024x768 [0,0 1024x768] (256x256) JPEG/RGB Q=80|AppMag = 20|" in pages[0].description
        assert "MPP = 0.5000" in pages[0].description
        assert not pages[1].is_tiled and "-> " in pages[1].description  # thumbnail, second
        assert pages[2].is_tiled and pages[2].shape[:2] == (192, 256)  # 4x level
        assert "label" in pages[-2].description and "macro" in pages[-1].description
    slide = slideio.open_slide(str(path), "SVS")
    scene = slide.get_scene(0)
    assert scene.size == (1024, 768)
    assert scene.magnification == 20.0
    assert scene.resolution[0] == pytest.approx(0.5e-6)
    assert scene.num_zoom_levels >= 2
    assert set(slide.get_aux_image_names()) >= {"Thumbnail", "Label", "Macro"}
    scales = [scene.get_zoom_level_info(i).scale for i in range(scene.num_zoom_levels)]
    assert scales[:2] == [1.0, 0.25]
    full = scene.read_block((0, 0, 1024, 768))
    assert full.shape == (768, 1024, 3)
    for i in range(scene.num_zoom_levels):
        w, h = int(1024 * scales[i]), int(768 * scales[i])
        block = scene.read_block((0, 0, 1024, 768), size=(w, h))
        assert block.shape == (h, w, 3)
        # The pyramid holds the same picture: each level matches level 0 shrunk.
        shrunk = full.reshape(h, 768 // h, w, 1024 // w, 3).mean(axis=(1, 3))
        assert np.abs(block.astype(float) - shrunk).mean() < 12
    # H&E-like: stained (pink/purple, not grey) tissue on a bright background.
    rgb = full.reshape(-1, 3).astype(int)
    stained = (rgb[:, 1] < rgb[:, 0] - 25) & (rgb[:, 1] < rgb[:, 2] - 10)
    assert 0.2 < stained.mean() < 0.95
    assert (rgb.min(axis=1) > 225).mean() > 0.05


def test_truth_lists_image_genes_factors_and_gene_kinds(cohort: Path) -> None:
    truth = _truth(cohort)
    assert truth["factors"] == list(demo.FACTORS)
    genes = {g["gene_id"] for g in truth["genes"]}
    assert {g["factor"] for g in truth["image_genes"]} == set(demo.FACTORS)
    assert all(g["gene_id"] in genes and g["effect"] > 0 for g in truth["image_genes"])
    for sample in truth["samples"]:
        assert set(sample["factors"]) == set(demo.FACTORS)
        assert all(0.0 <= v <= 1.0 for v in sample["factors"].values())


# -- planted structure -------------------------------------------------------------------------


def test_every_gene_filter_has_something_to_remove(cohort: Path) -> None:
    _, table = _read_gct(cohort / demo.EXPRESSION_GCT)
    log_tpm = np.log2(1.0 + table.iloc[:, 2:].to_numpy(dtype=float))
    symbols = table["Description"]
    low = log_tpm.max(axis=1) <= 5.0
    flat = ~low & (log_tpm.std(axis=1) <= 0.5)
    repeated = symbols.duplicated(keep=False).to_numpy()
    nonstandard = symbols.str.contains(r"[._]|^RP\d+-|^CTD-").to_numpy()
    survivors = ~low & ~flat & ~repeated & ~nonstandard
    assert low.sum() > 0.2 * len(table)
    assert flat.sum() > 0.03 * len(table)
    # Name-filtered genes are otherwise fine: only the name filter removes them.
    assert (repeated & ~low & ~flat).sum() >= 4
    assert (nonstandard & ~low & ~flat).sum() >= 8
    assert {"RP11", "Y_RNA"} <= {s.split("-")[0] for s in symbols[nonstandard]}
    assert survivors.sum() > 0.3 * len(table)


def test_image_genes_follow_their_factor_within_tissue(cohort: Path) -> None:
    """Planted genes correlate with their factor inside each tissue; noise genes do not."""
    truth = _truth(cohort)
    _, table = _read_gct(cohort / demo.EXPRESSION_GCT)
    samples = pd.DataFrame(truth["samples"]).set_index("rna_sample_id")
    cols = list(table.columns[2:])
    tissue = samples.loc[cols, "tissue"].to_numpy()
    factors = pd.DataFrame(list(samples.loc[cols, "factors"]), index=cols)
    log_tpm = np.log2(1.0 + table.iloc[:, 2:].to_numpy(dtype=float))
    row_of = {gene: i for i, gene in enumerate(table["Name"])}

    def within_tissue_r(values: np.ndarray, factor: np.ndarray) -> float:
        centred_v, centred_f = values.copy(), factor.copy()
        for t in np.unique(tissue):
            m = tissue == t
            centred_v[m] -= values[m].mean()
            centred_f[m] -= factor[m].mean()
        return float(np.corrcoef(centred_v, centred_f)[0, 1])

    for gene in truth["image_genes"]:
        r = within_tissue_r(log_tpm[row_of[gene["gene_id"]]], factors[gene["factor"]].to_numpy())
        assert r > 0.5, (gene, r)
    kind = {g["gene_id"]: g["kind"] for g in truth["genes"]}
    noise_rows = [row_of[g] for g, k in kind.items() if k == "noise"][:40]
    noise_r = [abs(within_tissue_r(log_tpm[i], factors["fibrosis"].to_numpy())) for i in noise_rows]
    assert np.median(noise_r) < 0.3


def test_each_factor_has_the_same_look_in_every_tissue() -> None:
    """Each factor changes the pixels the same way whatever the tissue (more fat: whiter; more nuclei or
    immune cells: more haematoxylin-dark pixels; fibrosis: more bright-pink collagen), so one linear read-out
    of slide features can follow it across tissues: what the gene ranking's demo acceptance needs."""
    base = {name: 0.5 for name in demo.FACTORS}

    def render(tissue: str, factor: str, value: float) -> np.ndarray:
        return demo.render_slide(tissue, {**base, factor: value}, 768, 768, seed=[7, 1]).astype(float)

    def white(rgb: np.ndarray) -> float:
        return float((rgb.min(axis=2) > 225).mean())

    def purple(rgb: np.ndarray) -> float:  # haematoxylin-dark pixels
        return float(((rgb[..., 0] < 140) & (rgb[..., 2] > rgb[..., 1] + 30)).mean())

    def pink(rgb: np.ndarray) -> float:  # bright eosin: collagen
        return float(((rgb[..., 0] > 190) & (rgb[..., 1] < 140) & (rgb[..., 2] > rgb[..., 1])).mean())

    looks = {"adipocyte_fraction": (white, 0.03), "nuclear_density": (purple, 0.008),
             "immune_infiltrate": (purple, 0.008), "fibrosis": (pink, 0.015)}
    # Skin is left out: at 768 px its subcutaneous fat (the adipocyte look there) is below the drawn depth.
    tissues = ("Breast - Mammary Tissue", "Esophagus - Mucosa", "Lung", "Liver", "Muscle - Skeletal", "Thyroid")
    for tissue in tissues:
        for factor, (measure, gain) in looks.items():
            low, high = measure(render(tissue, factor, 0.0)), measure(render(tissue, factor, 1.0))
            assert high > low + gain, (tissue, factor, low, high)


def test_factors_are_uniform_and_independent() -> None:
    """A wide spread (uniform on [0, 1]) gives the planted genes and the slides more to show."""
    from scipy import stats

    plan = demo.plan_cohort(seed=1, n_donors=40)
    values = plan[list(demo.FACTORS)].to_numpy()
    for column in values.T:
        assert stats.kstest(column, "uniform").pvalue > 0.01
        assert column.min() < 0.05 and column.max() > 0.95
    correlations = np.corrcoef(values.T)[np.triu_indices(len(demo.FACTORS), 1)]
    assert np.abs(correlations).max() < 0.15


def _tile_features(rgb: np.ndarray) -> np.ndarray:
    """Colour and texture summary of a tile, downsized 4x like the classifier input."""
    small = rgb.reshape(rgb.shape[0] // 4, 4, rgb.shape[1] // 4, 4, 3).mean(axis=(1, 3))
    grey = small.mean(axis=2)
    white = small.min(axis=2) > 215
    purple = (small[..., 0] < 150) & (small[..., 2] > small[..., 1] + 30)
    edges = [np.abs(np.diff(grey, axis=a)).mean() for a in (0, 1)]
    hist = [np.histogram(small[..., c], bins=8, range=(0, 256))[0] / grey.size for c in range(3)]
    return np.concatenate([small.mean((0, 1)), small.std((0, 1)), [white.mean(), purple.mean(), *edges], *hist])


@pytest.mark.slow
def test_tissues_are_told_apart_on_new_slides() -> None:
    """Tiles of unseen slides are classified by tissue far above chance from simple features."""
    from sklearn.ensemble import RandomForestClassifier

    factors = {name: 0.5 for name in demo.FACTORS}
    features: dict[int, list] = {0: [], 1: [], 2: []}
    labels: dict[int, list] = {0: [], 1: [], 2: []}
    for t, tissue in enumerate(demo.TISSUES):
        for seed in features:
            rgb = demo.render_slide(tissue, factors, 1344, 1344, seed=[seed, t]).astype(float)
            for y in range(0, 1344, 448):
                for x in range(0, 1344, 448):
                    tile = rgb[y : y + 448, x : x + 448]
                    if (tile.min(axis=2) < 235).mean() > 0.3:  # fat is mostly white
                        features[seed].append(_tile_features(tile))
                        labels[seed].append(t)
    model = RandomForestClassifier(n_estimators=150, random_state=0)
    model.fit(np.array(features[0] + features[1]), labels[0] + labels[1])
    accuracy = (model.predict(np.array(features[2])) == np.array(labels[2])).mean()
    assert accuracy > 0.6, accuracy  # chance is 0.1


def test_plan_splits_donors_with_every_tissue_on_both_sides() -> None:
    plan = demo.plan_cohort(seed=0, n_donors=demo.DEFAULT_DONORS)
    slides = plan[plan["has_slide"]]
    donors = sorted(slides["subject_id"].unique())
    per_donor = slides.groupby("subject_id")["tissue"].nunique()
    assert per_donor.min() >= 7 and per_donor.max() <= 9  # ~80% of the 10 tissues each
    rng = np.random.default_rng(0)
    for _ in range(20):  # random 70/30 donor splits
        test = set(rng.choice(donors, size=round(0.3 * len(donors)), replace=False))
        in_test = slides["subject_id"].isin(test)
        assert set(slides[in_test]["tissue"]) == set(demo.TISSUES)
        assert set(slides[~in_test]["tissue"]) == set(demo.TISSUES)
    assert "Whole Blood" in set(plan[~plan["has_slide"]]["tissue"])


def test_every_tissue_has_a_painter_and_unknown_tissues_are_refused() -> None:
    # The planner validates against TISSUES, the painter against its own table: they must agree.
    from core.demo.tissues import PAINTERS

    assert set(PAINTERS) == set(demo.TISSUES)
    with pytest.raises(ValueError, match="Kidney"):
        demo.plan_cohort(tissues=("Lung", "Kidney"))
    with pytest.raises(ValueError, match="Kidney"):
        demo.render_slide("Kidney", dict.fromkeys(demo.FACTORS, 0.5), 256, 256, 0)


def test_artifacts_are_drawn_and_recorded() -> None:
    plan = demo.plan_cohort(seed=0)
    arts = [a for arts in plan["artifacts"] for a in arts]
    assert {a["kind"] for a in arts} == set(demo.ARTIFACT_KINDS)
    assert all({"x", "y", "w", "h"} <= set(a) for a in arts)
    factors = {name: 0.5 for name in demo.FACTORS}
    size = 1024
    clean = demo.render_slide("Liver", factors, size, size, seed=[5, 5]).astype(float)

    def with_art(art: dict) -> np.ndarray:
        return demo.render_slide("Liver", factors, size, size, seed=[5, 5], artifacts=[art]).astype(float)

    box = {"x": 300, "y": 300, "w": 400, "h": 400}
    pen = with_art({"kind": "pen", "color": "green", "width_um": 60.0, **box})
    region = (slice(300, 700), slice(300, 700))
    greenish = (pen[..., 1] > pen[..., 0] + 30)[region].mean()
    assert greenish > 0.05 and (clean[..., 1] > clean[..., 0] + 30)[region].mean() < 0.01
    blur = with_art({"kind": "blur", "sigma_um": 6.0, **box})
    inner = (slice(420, 580), slice(420, 580))

    def sharpness(img: np.ndarray) -> float:
        g = img.mean(axis=2)
        return float(np.abs(np.diff(g, axis=1))[inner].mean())

    assert sharpness(blur) < 0.5 * sharpness(clean)
    dust = with_art({"kind": "dust", "grey": [150, 147, 144], **box})
    assert dust[inner].std(axis=(0, 1)).min() < 0.5 * clean[inner].std(axis=(0, 1)).min()
    fold = with_art({"kind": "fold", "width_um": 120.0, **box})
    assert fold[region].mean() < clean[region].mean() - 3


# -- determinism, API, CLI ---------------------------------------------------------------------


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    first = demo.make_demo_cohort(tmp_path / "a", seed=11, **TINY)
    second = demo.make_demo_cohort(tmp_path / "b", seed=11, **{**TINY, "workers": 2})
    other = demo.make_demo_cohort(tmp_path / "c", seed=12, **TINY)
    assert _hashes(first) == _hashes(second)
    assert len(_hashes(first)) >= 8
    assert _hashes(first)[demo.EXPRESSION_GCT] != _hashes(other)[demo.EXPRESSION_GCT]


def test_progress_and_completion_marker(tmp_path: Path) -> None:
    calls: list[tuple[int, int, str]] = []
    out = demo.make_demo_cohort(tmp_path / "p", progress=lambda d, t, m: calls.append((d, t, m)), **TINY)
    n_slides = len(list((out / demo.SLIDES_DIR).glob("*.svs")))
    assert calls[-1][0] == calls[-1][1] == n_slides + 1
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)
    assert json.loads((out / demo.COMPLETE_MARKER).read_text())["slides"] == n_slides


def test_bad_sizes_raise_data_error_naming_the_folder(tmp_path: Path) -> None:
    for bad in ({"n_donors": 1}, {"slide_size": (100, 100)}, {"n_tissues": 11}, {"n_genes": 10}):
        with pytest.raises(DataError, match=re.escape(str(tmp_path / "x"))):
            demo.make_demo_cohort(tmp_path / "x", **{**TINY, **bad})
    assert not (tmp_path / "x").exists()


def test_ensure_generates_once_and_redoes_an_interrupted_run(tmp_ws: Workspace) -> None:
    assert not demo.demo_is_ready(tmp_ws)
    calls: list[int] = []
    path = demo.ensure_demo_cohort(tmp_ws, lambda d, t, m: calls.append(d), **TINY)
    assert path == tmp_ws.demo_dir and demo.demo_is_ready(tmp_ws)
    made = len(calls)
    assert demo.ensure_demo_cohort(tmp_ws, lambda d, t, m: calls.append(d), **TINY) == path
    assert len(calls) == made  # second call: nothing regenerated
    # An interrupted generation (no marker) is redone from scratch.
    (path / demo.COMPLETE_MARKER).unlink()
    (path / "leftover.tmp").write_text("half")
    demo.ensure_demo_cohort(tmp_ws, **TINY)
    assert demo.demo_is_ready(tmp_ws) and not (path / "leftover.tmp").exists()


def test_ensure_is_safe_from_two_threads(tmp_ws: Workspace) -> None:
    generations: list[int] = []
    errors: list[BaseException] = []

    def call() -> None:
        try:
            demo.ensure_demo_cohort(tmp_ws, lambda d, t, m: generations.append(d) if d == 0 else None, **TINY)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert generations == [0]  # the lock made the second caller find the finished cohort
    assert demo.demo_is_ready(tmp_ws)


def test_cli_writes_the_folder_and_prints_it_last(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    argv = ["--workspace", str(tmp_path / "ws"), "demo", "--out", str(out), "--donors", "2", "--tissues", "2"]
    code = cli_main([*argv, "--size", "512x384", "--genes", "150", "--workers", "1"])
    captured = capsys.readouterr()
    assert code == 0
    assert captured.out.strip().splitlines()[-1] == str(out.resolve())
    assert "[1/" in captured.err and "ready in" in captured.err
    assert (out / demo.COMPLETE_MARKER).exists()
    assert len(list((out / demo.SLIDES_DIR).glob("*.svs"))) >= 2


def test_cli_bad_input_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = ["--workspace", str(tmp_path / "ws")]
    assert cli_main([*ws, "demo", "--out", str(tmp_path / "o"), "--donors", "0"]) == 2
    assert "error:" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert cli_main([*ws, "demo", "--out", str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main([*ws, "demo", "--size", "big"])


def test_grain_in_place_gives_the_plain_formulas_pixels() -> None:
    """The in-place grain is the same image as the plain formula (a cohort made before it is unchanged)."""
    from core.demo.painter import _add_grain

    rgb = np.random.default_rng(0).integers(0, 256, (600, 700, 3), dtype=np.uint8)
    patch = (np.random.default_rng(1).standard_normal((509, 509)) * 0.11 * 256).astype(np.int16)
    grain = np.tile(patch, (2, 2))[:600, :700]
    darkness = 255 - rgb[..., 1].astype(np.int16)
    expected = np.clip(rgb - ((darkness * grain) >> 8)[..., None], 0, 255).astype(np.uint8)
    assert np.array_equal(_add_grain(rgb, np.random.default_rng(1)), expected)


# -- fast paths draw the same pixels as the plain formulas -----------------------------------


def _canvas(seed: int = 0, height: int = 96, width: int = 128) -> Canvas:
    factors = dict.fromkeys(demo.FACTORS, 0.5)
    return Canvas(np.random.default_rng(seed), height, width, factors)


@pytest.mark.parametrize("box", [(20, 30, 12, 9), (0, 0, 5, 7), (40, 55, 8, 9), (0, 0, 48, 64)])
def test_up_box_equals_the_full_upsample(box: tuple[int, int, int, int]) -> None:
    """A box of non-zero field pixels (inside, at a corner, at the far edge, everywhere) upsamples as in `up`."""
    c = _canvas()
    top, left, rows, cols = box
    field = np.zeros((c.fh, c.fw), np.float32)
    field[top : top + rows, left : left + cols] = np.random.default_rng(1).random((rows, cols)) + 0.1
    full = c.up(field)
    r, k, values = c.up_box(field)
    assert np.array_equal(values, full[r, k])
    rest = full.copy()
    rest[r, k] = 0
    assert not rest.any()  # nothing outside the box
    assert values.size < full.size or box == (0, 0, 48, 64)


def test_up_box_of_nothing_and_of_odd_canvases() -> None:
    c = _canvas()
    r, k, values = c.up_box(np.zeros((c.fh, c.fw), np.float32))
    assert values.size == 0 and c.hema[r, k].size == 0
    odd = _canvas(height=95, width=127)  # not an exact 2x: the whole upsample, unchanged
    field = np.zeros((odd.fh, odd.fw), np.float32)
    field[10:14, 20:25] = 1.0
    r, k, values = odd.up_box(field)
    assert np.array_equal(odd.hema[r, k].shape, values.shape) and np.array_equal(values, odd.up(field))


def test_carve_field_and_add_match_the_full_size_formulas() -> None:
    region = np.zeros((48, 64), bool)
    region[10:20, 30:41] = True
    region[25, 5] = True
    painted = []
    for local in (False, True):
        c = _canvas(seed=4)
        c.hema[:] = np.random.default_rng(2).random(c.hema.shape)
        c.eosin[:] = -0.0  # a negative zero stays as it was where nothing is carved
        if local:
            c.carve_field(region.astype(np.float32))
            c.add(0.3, 0.2, where=region)
        else:
            c.carve(c.up(region.astype(np.float32)))
            c.hema += c.up(np.where(region, np.float32(0.3), np.float32(0)))
            c.eosin += c.up(np.where(region, np.float32(0.2), np.float32(0)))
        painted.append([c.hema, c.eosin, c.open])
    for fast, plain in zip(*painted, strict=True):
        assert np.array_equal(fast, plain)


def test_blob_is_the_soft_disc_formula_computed_in_its_box() -> None:
    from core.demo import structures

    for cy, cx, radius in ((40, 60, 20.0), (2, 120, 35.0), (90, 5, 60.0)):
        fast, plain = _canvas(seed=7), _canvas(seed=7)
        d = np.hypot(plain.fy - cy, plain.fx - cx) / radius
        expected = np.clip(1.5 - d - 0.25 * plain.noise(radius * 0.8), 0.0, 1.0)
        got = structures.blob(fast, cy, cx, radius)
        assert got.dtype == expected.dtype and np.array_equal(got, expected)
        assert expected.any() and not expected.all()


def test_worley_nearest_cell_is_the_brute_force_nearest_seed() -> None:
    """The 3 x 3 neighbour search finds each pixel's nearest seed point and that cell's random value."""
    c = _canvas(seed=5)
    cell = 9.0
    rng = np.random.default_rng(5)  # the same draws as the canvas, to rebuild every seed point
    f1, _, nearest, _ = c.worley(cell)
    u, v = c.fx / cell, c.fy / cell
    u0, v0 = int(np.floor(u.min())) - 1, int(np.floor(v.min())) - 1
    nu, nv = int(np.ceil(u.max())) - u0 + 2, int(np.ceil(v.max())) - v0 + 2
    jitter = rng.random((2, nv, nu), dtype=np.float32) * 0.9 + 0.05
    rand = rng.random((nv, nu), dtype=np.float32)
    gv, gu = np.mgrid[0:nv, 0:nu]
    seed_u, seed_v = (gu + jitter[0] + u0).ravel(), (gv + jitter[1] + v0).ravel()
    dist = np.hypot(u.ravel()[:, None] - seed_u[None, :], v.ravel()[:, None] - seed_v[None, :])
    closest = dist.argmin(axis=1)
    assert np.mean(rand.ravel()[closest] == nearest.ravel()) > 0.999
    assert np.allclose(dist.min(axis=1) * cell, f1.ravel(), atol=1e-3)


def test_image_array_is_the_pixels_of_the_image() -> None:
    from PIL import Image

    rng = np.random.default_rng(3)
    field = Image.fromarray(rng.random((300, 500), dtype=np.float32), mode="F")
    rgb = Image.fromarray(rng.integers(0, 256, (2100, 2100, 3), dtype=np.uint8))  # > one 16 MB block
    for image in (field, rgb):
        assert np.array_equal(image_array(image), np.asarray(image))


def test_transmitted_light_planes_are_the_interleaved_formula() -> None:
    from core.demo import painter

    rng = np.random.default_rng(6)
    hema, eosin, blood = (rng.random((40, 50), dtype=np.float32) * s for s in (1.5, 1.0, 0.3))
    inside = (rng.random((40, 50)) < 0.8).astype(np.float32) * 1.5
    extra = rng.random((40, 50, 3), dtype=np.float32) * 0.2
    hema_od, eosin_od = painter._HEMATOXYLIN * np.float32(1.05), painter._EOSIN * np.float32(0.9)
    sensor = rng.normal(0.0, 1.6, (40, 50)).astype(np.float32)
    od = np.empty((40, 50, 3), np.float32)
    for ch in range(3):
        od[..., ch] = (hema * hema_od[ch] + eosin * eosin_od[ch] + blood * painter._BLOOD[ch]) * inside
        od[..., ch] += painter._GLASS[ch]
    od += extra
    expected = np.clip(np.exp(-od) * 255.0 + sensor[..., None], 0, 255).astype(np.uint8)
    got = painter._transmitted_rgb(hema, eosin, blood, inside, extra, hema_od, eosin_od, sensor)
    assert np.array_equal(got, expected)
