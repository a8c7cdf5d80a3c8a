"""GCT parsing in parallel blocks (core.data.gct), value checks, the background `load` job and bounded gene stats."""

from __future__ import annotations

import gzip
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import core.data.expression as expression_module
import core.data.gct as gct
from core import jobs
from core.__main__ import main
from core.base.config import workspace
from core.base.errors import DataError, DataWarning
from core.data import genes
from core.data import views as summary
from core.data.dataset import Expression, expression_ready, load_cohort, read_gct
from core.data.genes import GeneFilterParams, filter_genes, gene_filter_mask, log_tpm, sample_log_tpm

CSV_HEADER = "Tissue Sample ID,Tissue,Subject ID,Sex,Age Bracket,Hardy Scale,Pathology Categories,Pathology Notes"


def write_text_gct(path: Path, samples: list[str], rows: list[tuple[str, str, list[str]]],
                   header: str = "Name\tDescription", newline: str = "\n") -> Path:
    lines = ["#1.2", f"{len(rows)}\t{len(samples)}", "\t".join([header, *samples])]
    lines += ["\t".join([gene, symbol, *cells]) for gene, symbol, cells in rows]
    text = newline.join(lines) + newline
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_bytes(text.encode())
    return path


def random_gct(path: Path, genes_n: int, samples_n: int, seed: int = 0) -> tuple[Path, np.ndarray, list[str]]:
    """A GCT in the formats real files use (integers, decimals, exponents); returns its float32 values."""
    rng = np.random.default_rng(seed)
    values = rng.lognormal(0.0, 3.0, (genes_n, samples_n)).astype(np.float32)
    values[rng.random(values.shape) < 0.3] = 0
    cells = [[f"{v:.6g}" for v in row] for row in values]
    expected = np.array(cells, dtype=np.float64).astype(np.float32)
    samples = [f"GTEX-{i // 3:04d}-{i % 3:04d}-SM-{i:04d}" for i in range(samples_n)]
    rows = [(f"ENSG{g:011d}.{g % 9}", f"GENE{g}", cells[g]) for g in range(genes_n)]
    return write_text_gct(path, samples, rows), expected, samples


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize("name", ["many.gct", "many.gct.gz"])
@pytest.mark.parametrize("workers", [1, 3])
def test_blocks_in_parallel_give_the_same_matrix_as_pandas(tmp_path: Path, name: str, workers: int) -> None:
    path, expected, samples = random_gct(tmp_path / name, 157, 41)
    # ~3 lines per block: many blocks finish out of order on several threads, rows must not.
    parsed = gct.parse_gct(path, None, workers=workers, block_bytes=1000)
    reference = pd.read_csv(path, sep="\t", skiprows=2, index_col=0)
    np.testing.assert_array_equal(parsed.matrix, reference.iloc[:, 1:].to_numpy(np.float32))
    np.testing.assert_array_equal(parsed.matrix, expected)
    assert parsed.gene_ids == list(reference.index) and parsed.symbols == list(reference["Description"])
    assert parsed.sample_ids == samples and parsed.messages == []


def test_the_fast_path_is_what_parses_a_clean_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, expected, _ = random_gct(tmp_path / "clean.gct", 60, 30)
    monkeypatch.setattr(gct, "_slow_block", lambda *a, **k: pytest.fail("fell back to the line-by-line parser"))
    np.testing.assert_array_equal(gct.parse_gct(path, None, block_bytes=2000).matrix, expected)


def test_kept_columns_are_selected_on_the_fast_path(tmp_path: Path) -> None:
    path, expected, samples = random_gct(tmp_path / "keep.gct", 40, 12)
    keep = frozenset(s.rsplit("-SM-", 1)[0] for s in samples[3:7])
    parsed = gct.parse_gct(path, keep, block_bytes=700, workers=2)
    assert parsed.sample_ids == samples[3:7]
    np.testing.assert_array_equal(parsed.matrix, expected[:, 3:7])


def test_an_error_in_a_late_block_names_its_own_line_gene_and_sample(tmp_path: Path) -> None:
    path, _, samples = random_gct(tmp_path / "late.gct", 200, 10)
    lines = path.read_text().split("\n")
    cells = lines[3 + 150].split("\t")
    cells[2 + 7] = "n/a"
    lines[3 + 150] = "\t".join(cells)
    path.write_text("\n".join(lines))
    with pytest.raises(DataError, match=rf"line 154 \(gene {cells[0]}\), column 10 \(sample {samples[7]}\): 'n/a'"):
        gct.parse_gct(path, None, block_bytes=500, workers=2)


def test_crlf_blank_lines_and_spaces_around_numbers_still_parse(tmp_path: Path) -> None:
    samples = ["GTEX-A-0001", "GTEX-A-0002"]
    rows = [("ENSG1", "AAA", ["1.5", " 2"]), ("ENSG2", "BBB", ["3e2", "4"])]
    path = write_text_gct(tmp_path / "crlf.gct", samples, rows, newline="\r\n")
    path.write_bytes(path.read_bytes() + b"\r\n\r\n")
    np.testing.assert_array_equal(read_gct(path).values, np.array([[1.5, 2], [300, 4]], dtype=np.float32))


def test_gsea_style_name_header_is_accepted(tmp_path: Path) -> None:
    rows = [("ENSG1", "AAA", ["1", "2"])]
    path = write_text_gct(tmp_path / "gsea.gct", ["S1", "S2"], rows, header="NAME\tDESCRIPTION")
    expression = read_gct(path)
    assert list(expression.gene_ids) == ["ENSG1"] and expression.values.tolist() == [[1.0, 2.0]]
    bad = write_text_gct(tmp_path / "bad.gct", ["S1"], [("ENSG1", "AAA", ["1"])], header="Gene\tDescription")
    with pytest.raises(DataError, match="line 3"):
        read_gct(bad)


def test_nan_inf_and_negative_values_are_reported_and_fixed(tmp_path: Path) -> None:
    samples = ["GTEX-A-0001", "GTEX-A-0002", "GTEX-A-0003"]
    rows = [
        ("ENSG1", "AAA", ["1", "2", "3"]),
        ("ENSG2", "BBB", ["4", "-0.5", "NaN"]),
        ("ENSG3", "CCC", ["inf", "-2", "nan"]),
        ("ENSG4", "DDD", ["-inf", "5", "6"]),
    ]
    path = write_text_gct(tmp_path / "odd.gct", samples, rows)
    with pytest.warns(DataWarning) as caught:
        expression = read_gct(path, cache_dir=tmp_path / "cache")
    text = "\n".join(str(w.message) for w in caught)
    assert "2 NaN (missing) value(s)" in text and "(first: gene ENSG2, sample GTEX-A-0003)" in text
    assert "2 infinite value(s); set to missing" in text and "(first: gene ENSG3, sample GTEX-A-0001)" in text
    assert "2 negative value(s), impossible for TPM; set to 0 (first: gene ENSG2, sample GTEX-A-0002)" in text
    values = np.asarray(expression.values)
    np.testing.assert_array_equal(values[1], [4, 0, np.nan])
    np.testing.assert_array_equal(values[2], [np.nan, 0, np.nan])
    np.testing.assert_array_equal(values[3], [np.nan, 5, 6])
    assert len(expression.warnings) == 3
    again = read_gct(path, cache_dir=tmp_path / "cache")  # the cache keeps the fixed values and the warnings
    np.testing.assert_array_equal(np.asarray(again.values), values)
    assert again.warnings == expression.warnings


def test_genes_with_a_missing_value_are_left_out_by_the_filter() -> None:
    values = np.array([[0, 1000, 0, 1000], [0, 1000, np.nan, 1000]], dtype=np.float32)
    expression = Expression(np.array(["G1", "G2"]), np.array(["AAA", "BBB"]), np.array(["a", "b", "c", "d"]), values)
    mask, funnel = gene_filter_mask(expression, GeneFilterParams())
    assert mask.tolist() == [True, False]
    assert dict(funnel)["expressed"] == 1
    assert list(filter_genes(expression).expression.symbols) == ["AAA"]


# ---------------------------------------------------------------- progress and cancel


def test_progress_counts_bytes_up_to_the_file_size_and_can_cancel(tmp_path: Path) -> None:
    path, _, _ = random_gct(tmp_path / "progress.gct", 80, 20)
    seen: list[tuple[int, int]] = []
    gct.parse_gct(path, None, progress=lambda done, total, message: seen.append((done, total)), block_bytes=1500)
    size = path.stat().st_size
    assert len(seen) > 5 and all(total == size for _, total in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and seen[-1][0] == size

    class Stop(Exception):
        pass

    def cancel(done: int, total: int, message: str) -> None:
        if done > size // 3:
            raise Stop

    cache_dir = tmp_path / "cache"
    with pytest.raises(Stop):
        read_gct(path, cache_dir=cache_dir, progress=cancel)
    assert not any(cache_dir.iterdir())  # no half-written entry is left to be mistaken for a cache


# ---------------------------------------------------------------- the load job and the page's view


def _dataset(root: Path, genes_n: int = 30) -> Path:
    root.mkdir(parents=True)
    path, _, samples = random_gct(root / "expression_tpm.gct", genes_n, 9)
    tissues = ["Lung", "Liver", "Thyroid"]
    rows = [f"{s.rsplit('-SM-', 1)[0]},{tissues[i % 3]},{'-'.join(s.split('-')[:2])},male,60-69,,," for i, s in
            enumerate(samples)]
    (root / "histology.csv").write_text("\n".join([CSV_HEADER, *rows]) + "\n")
    return path


def test_a_big_gct_is_not_parsed_by_a_page_and_the_load_job_fills_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "data"
    _dataset(root)
    ws = workspace(tmp_path / "ws")
    real_parse = expression_module._parse_gct
    monkeypatch.setattr(expression_module, "_parse_gct", lambda *a, **k: pytest.fail("the GCT was parsed"))
    pending = load_cohort(root, ws, gct_parse_limit=0)
    assert pending.expression_pending and not expression_ready(pending, ws)
    assert pending.expression.shape == (0, 0) and not pending.samples["has_expression"].any()
    assert pending.samples["tissue"].nunique() == 3 and len(pending.samples) == 9  # the CSV is there meanwhile

    monkeypatch.setattr(expression_module, "_parse_gct", real_parse)
    assert main(["--workspace", str(ws.root), "load", "--data", str(root)]) == 0
    [job] = jobs.list_jobs(ws, kind="load")
    status = job.status()
    assert status["state"] == "done" and status["result"]["genes"] == 30
    assert status["progress"]["unit"] == "bytes" and status["progress"]["done"] > 0

    monkeypatch.setattr(expression_module, "_parse_gct", lambda *a, **k: pytest.fail("the GCT was parsed again"))
    assert expression_ready(pending, ws)
    loaded = load_cohort(root, ws, gct_parse_limit=0)
    assert not loaded.expression_pending and loaded.expression.shape == (30, 9)
    assert loaded.samples["has_expression"].all()


def test_a_small_gct_is_still_parsed_in_place(tmp_path: Path) -> None:
    root = tmp_path / "data"
    path = _dataset(root)
    cohort = load_cohort(root, workspace(tmp_path / "ws"), gct_parse_limit=path.stat().st_size)
    assert not cohort.expression_pending and cohort.expression.shape == (30, 9)


def test_the_load_command_reports_a_bad_gct_as_a_failed_job(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "data"
    path = _dataset(root)
    path.write_text(path.read_text().replace("\t0\t", "\tzero\t", 1))
    ws = workspace(tmp_path / "ws")
    assert main(["--workspace", str(ws.root), "load", "--data", str(root)]) == 2
    assert "is not a number" in capsys.readouterr().err
    [job] = jobs.list_jobs(ws, kind="load")
    assert job.status()["state"] == "failed" and "is not a number" in job.status()["error"]


# ---------------------------------------------------------------- gene funnel memory


def test_histogram_sample_is_the_seeded_positions_of_the_whole_matrix(monkeypatch: pytest.MonkeyPatch) -> None:
    values = np.random.default_rng(1).lognormal(0, 2, (53, 37)).astype(np.float32)
    values[5, 5] = np.nan
    monkeypatch.setattr(genes, "_BLOCK_VALUES", 100)  # many blocks
    sampled = sample_log_tpm(values, 500, seed=3)
    picks = np.sort(np.random.default_rng(3).choice(values.size, size=500, replace=False))
    expected = log_tpm(values).ravel()[picks]
    np.testing.assert_allclose(sampled, expected[np.isfinite(expected)], rtol=1e-6)
    assert sample_log_tpm(values, values.size + 5).size == values.size - 1  # all of it, the NaN left out


def test_funnel_and_histogram_stay_bounded_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    genes_n, samples_n = 3000, 2000  # 24 MB float32, memory-mapped like the GCT cache
    monkeypatch.setattr(genes, "_BLOCK_VALUES", 200_000)  # the GTEx matrix is ~250 blocks of the default
    matrix = np.memmap(tmp_path / "values.f32", dtype=np.float32, mode="w+", shape=(genes_n, samples_n))
    matrix[:] = np.random.default_rng(0).lognormal(0, 2, (genes_n, samples_n))
    matrix.flush()
    values = np.memmap(tmp_path / "values.f32", dtype=np.float32, mode="c", shape=(genes_n, samples_n))
    expression = Expression(np.array([f"G{i}" for i in range(genes_n)]), np.array([f"S{i}" for i in range(genes_n)]),
                            np.array([f"s{i}" for i in range(samples_n)]), values)
    cohort = SimpleNamespace(files=SimpleNamespace(expression_gct=None, histology_csv=None), expression=expression)
    tracemalloc.start()
    try:
        funnel, sample = summary.gene_funnel(workspace(tmp_path / "ws"), cohort, GeneFilterParams(), 50_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert funnel[0] == ("all genes", genes_n) and sample.size == 50_000
    assert peak < values.nbytes / 2, f"peak {peak / 2**20:.0f} MB for a {values.nbytes / 2**20:.0f} MB matrix"
