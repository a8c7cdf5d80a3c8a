"""GTEx data layer: histology CSV, streaming GCT + cache, slide listing, cohort join, `info` CLI."""

from __future__ import annotations

import gzip
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

import core.data.expression as expression_module
from core.__main__ import main
from core.base.errors import DataError, DataWarning
from core.data.dataset import (
    HISTOLOGY_COLUMNS,
    SLIDE_EXTENSIONS,
    Expression,
    cohort_info,
    find_dataset,
    list_slides,
    load_cohort,
    read_gct,
    read_histology_csv,
    tissue_sample_id,
)

TESTDATA = Path(__file__).resolve().parents[1].parent / "shared" / "testdata"
REAL_CSV = TESTDATA / "GTEx_Portal_histology_sample.csv"
REAL_GCT = TESTDATA / "GTEx_v8_gene_reads_acmg59_subset.gct.gz"
needs_testdata = pytest.mark.skipif(not TESTDATA.is_dir(), reason=f"real test files absent ({TESTDATA})")

CSV_HEADER = ",".join(HISTOLOGY_COLUMNS)


def write_gct(
    path: Path,
    samples: list[str],
    rows: list[tuple[str, str, list]],
    dims: str | None = None,
    first_line: str = "#1.2",
    header: str = "Name\tDescription",
) -> Path:
    lines = [first_line, dims if dims is not None else f"{len(rows)}\t{len(samples)}", "\t".join([header, *samples])]
    lines += ["\t".join([gene, symbol, *map(str, values)]) for gene, symbol, values in rows]
    text = "\n".join(lines) + "\n"
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt") as handle:
            handle.write(text)
    else:
        path.write_text(text)
    return path


def write_csv(path: Path, rows: list[str], header: str = CSV_HEADER) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def histology_row(sample_id: str, tissue: str = "Lung", notes: str = "ok") -> str:
    subject = "-".join(sample_id.split("-")[:2])
    return f'{sample_id},{tissue},{subject},male,60-69,Ventilator case,,"{notes}"'


SMALL_SAMPLES = ["GTEX-A1-0001-SM-1", "GTEX-A1-0002-SM-2", "GTEX-B2-0001-SM-3"]
SMALL_ROWS = [("ENSG1.1", "AAA", [1, 2.5, 3]), ("ENSG2.1", "BBB", [0, 1e3, 7.25])]


@pytest.fixture
def small_gct(tmp_path: Path) -> Path:
    return write_gct(tmp_path / "small.gct", SMALL_SAMPLES, SMALL_ROWS)


# ---------------------------------------------------------------- real files


@needs_testdata
def test_real_histology_csv_has_265_rows_and_parses_quoted_commas() -> None:
    table = read_histology_csv(REAL_CSV)
    assert len(table) == 265
    assert list(table.columns) == list(HISTOLOGY_COLUMNS.values())
    assert table["sample_id"].is_unique
    assert table["tissue"].nunique() == 11
    notes = table.set_index("sample_id").loc["GTEX-O5YT-1326", "pathology_notes"]
    assert notes == "3 pieces; cortex, well preserved"  # a quoted field with a comma inside


@needs_testdata
def test_real_gct_trusts_rows_and_warns_about_the_dimensions_line() -> None:
    with pytest.warns(DataWarning, match="dimensions line says 56200 genes"):
        expression = read_gct(REAL_GCT)
    assert expression.shape == (59, 17382)
    assert expression.values.shape == (59, 17382)
    assert expression.values.dtype == np.float32
    assert expression.sample_ids[0] == "GTEX-1117F-0226-SM-5GZZ7"
    assert expression.symbols[0] == "SDHB" and expression.gene_ids[0] == "ENSG00000117118.9"
    assert expression.values[0, 0] == 1993.0
    assert any("dimensions line" in message for message in expression.warnings)


@needs_testdata
def test_real_join_gives_129_of_265_samples_with_expression_over_10_tissues(tmp_path: Path) -> None:
    root = tmp_path / "gtex"
    (root / "slides").mkdir(parents=True)
    (root / REAL_CSV.name).symlink_to(REAL_CSV)
    (root / REAL_GCT.name).symlink_to(REAL_GCT)
    (root / "slides" / "GTEX-O5YT-1326.svs").symlink_to(TESTDATA / "CMU-1-Small-Region.svs")  # has expression
    (root / "slides" / "GTEX-N7MT-0526.svs").symlink_to(TESTDATA / "CMU-1-Small-Region.svs")  # has none
    (root / "slides" / "GTEX-ZZZZ-0001.ome.tiff").symlink_to(TESTDATA / "CMU-1-Small-Region.svs")  # no CSV row

    with pytest.warns(DataWarning):
        cohort = load_cohort(root)
    info = cohort_info(cohort)
    assert info["samples"] == 265
    assert info["samples_with_expression"] == 129
    assert info["slides"] == 3
    assert info["joined"] == 1
    assert info["tissues"] == 12  # 11 histology tissues + "Unknown" for the slide without a row
    with_expression = [t for t, counts in info["per_tissue"].items() if counts["samples_with_expression"]]
    assert len(with_expression) == 10
    assert sum(c["samples"] for c in info["per_tissue"].values()) == 265
    assert json.loads(json.dumps(info)) == info

    assert cohort.expression.values.shape == (59, 129)
    assert set(cohort.expression.sample_ids) <= set(cohort.samples["sample_id"])
    samples = cohort.samples.set_index("sample_id")
    assert samples.loc["GTEX-O5YT-1326", "joined"]
    assert samples.loc["GTEX-O5YT-1326", "slide_path"].endswith("GTEX-O5YT-1326.svs")
    assert samples.loc["GTEX-N7MT-0526", "has_slide"] and not samples.loc["GTEX-N7MT-0526", "joined"]
    orphan = samples.loc["GTEX-ZZZZ-0001"]
    assert (orphan["tissue"], orphan["subject_id"], orphan["has_histology"]) == ("Unknown", "GTEX-ZZZZ", False)
    assert samples["slide_path"].isna().sum() == 265 - 2
    assert any("no histology row" in message and "GTEX-ZZZZ-0001" in message for message in cohort.warnings)


# ---------------------------------------------------------------- GCT reader


def test_tissue_sample_id_is_the_first_three_dash_fields() -> None:
    assert tissue_sample_id("GTEX-1117F-0226-SM-5GZZ7") == "GTEX-1117F-0226"
    assert tissue_sample_id("GTEX-1117F-0226") == "GTEX-1117F-0226"


@pytest.mark.parametrize("name", ["small.gct", "small.gct.gz"])
def test_gct_plain_and_gzip_parse_to_float32(tmp_path: Path, name: str) -> None:
    expression = read_gct(write_gct(tmp_path / name, SMALL_SAMPLES, SMALL_ROWS))
    assert list(expression.sample_ids) == SMALL_SAMPLES
    assert list(expression.symbols) == ["AAA", "BBB"]
    np.testing.assert_array_equal(expression.values, np.array([r[2] for r in SMALL_ROWS], dtype=np.float32))
    assert expression.values.dtype == np.float32
    assert expression.warnings == []


def test_gct_keep_samples_selects_columns_by_tissue_sample_id(small_gct: Path) -> None:
    expression = read_gct(small_gct, keep_samples={"GTEX-A1-0002", "GTEX-B2-0001", "GTEX-NOT-THERE"})
    assert list(expression.sample_ids) == SMALL_SAMPLES[1:]
    np.testing.assert_array_equal(expression.values[1], [1e3, 7.25])


@pytest.mark.parametrize(
    ("first_line", "dims", "header", "problem"),
    [
        ("#1.3", None, "Name\tDescription", "line 1: expected '#1.2'"),
        ("Name\tDescription", None, "Name\tDescription", "line 1: expected '#1.2'"),
        ("#1.2", "two\tthree", "Name\tDescription", "line 2: expected the dimensions line"),
        ("#1.2", "", "Name\tDescription", "line 2: expected the dimensions line"),
        ("#1.2", None, "Gene\tDescription", "line 3: expected the column header"),
    ],
)
def test_gct_wrong_header_names_the_file_and_line(
    tmp_path: Path, first_line: str, dims: str | None, header: str, problem: str
) -> None:
    path = write_gct(tmp_path / "bad.gct", SMALL_SAMPLES, SMALL_ROWS, dims=dims, first_line=first_line, header=header)
    with pytest.raises(DataError, match=problem) as caught:
        read_gct(path)
    assert str(caught.value).startswith(f"{path}: ")


@pytest.mark.parametrize("cell", ["abc", "1,5", "NA", "", "1 2"])
def test_gct_non_numeric_cell_names_line_gene_and_sample(tmp_path: Path, cell: str) -> None:
    rows = [SMALL_ROWS[0], ("ENSG2.1", "BBB", [0, cell, 7])]
    path = write_gct(tmp_path / "bad.gct", SMALL_SAMPLES, rows)
    with pytest.raises(DataError) as caught:
        read_gct(path)
    message = str(caught.value)
    assert message.startswith(str(path))
    assert "line 5 (gene ENSG2.1)" in message and "sample GTEX-A1-0002-SM-2" in message
    assert "is not a number" in message


@pytest.mark.parametrize("values", [[1, 2], [1, 2, 3, 4]])
def test_gct_ragged_row_names_the_line(tmp_path: Path, values: list) -> None:
    rows = [SMALL_ROWS[0], ("ENSG2.1", "BBB", values)]
    path = write_gct(tmp_path / "ragged.gct", SMALL_SAMPLES, rows)
    with pytest.raises(DataError, match=f"line 5: expected 5 tab-separated fields .* found {len(values) + 2}"):
        read_gct(path)


def test_gct_missing_empty_and_truncated_files(tmp_path: Path, small_gct: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        read_gct(tmp_path / "absent.gct")
    empty = tmp_path / "empty.gct"
    empty.write_text("")
    with pytest.raises(DataError, match="empty file"):
        read_gct(empty)
    whole = gzip.compress(small_gct.read_bytes())
    truncated = tmp_path / "cut.gct.gz"
    truncated.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match="cannot read the file") as caught:
        read_gct(truncated)
    assert str(truncated) in str(caught.value)


def test_gct_dimensions_mismatch_trusts_rows_and_warns(tmp_path: Path) -> None:
    path = write_gct(tmp_path / "dims.gct", SMALL_SAMPLES, SMALL_ROWS, dims="10\t3")
    with pytest.warns(DataWarning, match="says 10 genes x 3 samples but the file has 2 gene rows"):
        expression = read_gct(path)
    assert expression.shape == (2, 3)
    assert len(expression.warnings) == 1


def test_gct_duplicate_rna_columns_keep_the_first_and_warn(tmp_path: Path) -> None:
    samples = ["GTEX-A1-0001-SM-1", "GTEX-A1-0001-SM-1", "GTEX-B2-0001-SM-3"]
    path = write_gct(tmp_path / "dup.gct", samples, [("ENSG1.1", "AAA", [1, 2, 3])])
    with pytest.warns(DataWarning, match="duplicate RNA sample column.*GTEX-A1-0001-SM-1"):
        expression = read_gct(path)
    assert list(expression.sample_ids) == ["GTEX-A1-0001-SM-1", "GTEX-B2-0001-SM-3"]
    np.testing.assert_array_equal(expression.values, [[1, 3]])


def test_gct_several_rna_samples_per_tissue_sample_keep_the_first(tmp_path: Path) -> None:
    samples = ["GTEX-A1-0001-SM-1", "GTEX-A1-0001-SM-9", "GTEX-B2-0001-SM-3"]
    path = write_gct(tmp_path / "rep.gct", samples, [("ENSG1.1", "AAA", [1, 2, 3])])
    with pytest.warns(DataWarning, match="map to a tissue sample already kept.*GTEX-A1-0001-SM-9"):
        expression = read_gct(path, keep_samples={"GTEX-A1-0001", "GTEX-B2-0001"})
    assert list(expression.sample_ids) == ["GTEX-A1-0001-SM-1", "GTEX-B2-0001-SM-3"]
    np.testing.assert_array_equal(expression.values, [[1, 3]])


# ---------------------------------------------------------------- GCT cache


def test_gct_cache_is_reused_without_parsing_again(
    tmp_path: Path, small_gct: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache_dir = tmp_path / "cache"
    cold = read_gct(small_gct, cache_dir=cache_dir)
    entries = [p for p in cache_dir.iterdir() if not p.name.startswith(".")]
    assert len(entries) == 1 and (entries[0] / "values.f32").stat().st_size == 2 * 3 * 4

    def no_parsing(*args: object, **kwargs: object) -> None:
        raise AssertionError("the GCT was parsed again despite a cache entry")

    monkeypatch.setattr(expression_module, "_parse_gct", no_parsing)
    warm = read_gct(small_gct, cache_dir=cache_dir)
    assert isinstance(warm.values, np.memmap)
    np.testing.assert_array_equal(warm.values, cold.values)
    assert list(warm.sample_ids) == list(cold.sample_ids) and list(warm.gene_ids) == list(cold.gene_ids)


def test_gct_cache_keeps_warnings_and_is_keyed_by_kept_samples(tmp_path: Path) -> None:
    path = write_gct(tmp_path / "dims.gct", SMALL_SAMPLES, SMALL_ROWS, dims="99\t3")
    cache_dir = tmp_path / "cache"
    with pytest.warns(DataWarning):
        read_gct(path, cache_dir=cache_dir)
    with pytest.warns(DataWarning, match="says 99 genes"):
        warm = read_gct(path, cache_dir=cache_dir)
    assert len(warm.warnings) == 1
    with pytest.warns(DataWarning):
        subset = read_gct(path, keep_samples={"GTEX-B2-0001"}, cache_dir=cache_dir)
    assert list(subset.sample_ids) == ["GTEX-B2-0001-SM-3"]
    assert len([p for p in cache_dir.iterdir() if not p.name.startswith(".")]) == 2


@pytest.mark.parametrize("damage", ["meta", "values", "empty_meta"])
def test_gct_damaged_cache_is_rebuilt_not_fatal(tmp_path: Path, small_gct: Path, damage: str) -> None:
    cache_dir = tmp_path / "cache"
    expected = read_gct(small_gct, cache_dir=cache_dir).values.copy()
    (entry,) = [p for p in cache_dir.iterdir() if not p.name.startswith(".")]
    if damage == "meta":
        (entry / "meta.json").write_text("{not json")
    elif damage == "values":
        (entry / "values.f32").write_bytes(b"\x00" * 5)
    else:
        (entry / "meta.json").write_text("{}")
    rebuilt = read_gct(small_gct, cache_dir=cache_dir)
    np.testing.assert_array_equal(rebuilt.values, expected)
    assert (entry / "values.f32").stat().st_size == expected.size * 4


def test_gct_unusable_cache_folder_falls_back_to_memory(tmp_path: Path, small_gct: Path) -> None:
    not_a_folder = tmp_path / "cache"
    not_a_folder.write_text("a file where the cache folder should be")
    expression = read_gct(small_gct, cache_dir=not_a_folder)
    np.testing.assert_array_equal(expression.values, np.array([r[2] for r in SMALL_ROWS], dtype=np.float32))
    assert not isinstance(expression.values, np.memmap)


def test_gct_cached_matrix_is_copy_on_write(tmp_path: Path, small_gct: Path) -> None:
    cache_dir = tmp_path / "cache"
    first = read_gct(small_gct, cache_dir=cache_dir)
    first.values[0, 0] = -1.0  # a caller scribbling on its matrix must not corrupt the cache
    again = read_gct(small_gct, cache_dir=cache_dir)
    assert again.values[0, 0] == 1.0


# ---------------------------------------------------------------- histology CSV


def test_csv_missing_required_column_names_file_and_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "h.csv", ["GTEX-A1-0001,GTEX-A1"], header="Tissue Sample ID,Subject ID")
    with pytest.raises(DataError, match="missing required column.*'Tissue'") as caught:
        read_histology_csv(path)
    assert str(caught.value).startswith(str(path))


def test_csv_duplicate_ids_keep_the_first_row_and_warn(tmp_path: Path) -> None:
    first, second = histology_row("GTEX-A1-0001", "Lung"), histology_row("GTEX-A1-0001", "Liver")
    rows = [first, second, histology_row("GTEX-B2-0001")]
    path = write_csv(tmp_path / "h.csv", rows)
    with pytest.warns(DataWarning, match="duplicate Tissue Sample ID.*GTEX-A1-0001") as record:
        table = read_histology_csv(path)
    assert str(path) in str(record[0].message)
    assert list(table["sample_id"]) == ["GTEX-A1-0001", "GTEX-B2-0001"]
    assert table.loc[0, "tissue"] == "Lung"
    assert len(table.attrs["warnings"]) == 1


def test_csv_optional_columns_may_be_absent(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "h.csv", ["GTEX-A1-0001,Lung", ",Lung"], header="Tissue Sample ID,Tissue")
    with pytest.warns(DataWarning, match="no Tissue Sample ID"):
        table = read_histology_csv(path)
    assert list(table.columns) == list(HISTOLOGY_COLUMNS.values())
    assert (table.loc[0, "subject_id"], table.loc[0, "sex"]) == ("GTEX-A1", "")


def test_csv_empty_or_missing_file_is_a_data_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        read_histology_csv(empty)
    with pytest.raises(DataError, match="not found"):
        read_histology_csv(tmp_path / "absent.csv")


# ---------------------------------------------------------------- folder, slides, cohort


def test_list_slides_matches_extensions_case_insensitively(tmp_path: Path) -> None:
    names = ["GTEX-A1-0001.SVS", "GTEX-A1-0002.ome.tiff", "GTEX-A1-0003.Ome.Tif", "GTEX-A1-0004.jpeg", "notes.txt"]
    for name in [*names, "GTEX-A1-0001.tif", ".hidden.svs"]:
        (tmp_path / name).write_bytes(b"x")
    with pytest.warns(DataWarning, match="more slide file.*GTEX-A1-0001.tif"):
        slides = list_slides(tmp_path)
    assert sorted(slides) == ["GTEX-A1-0001", "GTEX-A1-0002", "GTEX-A1-0003", "GTEX-A1-0004"]
    assert slides["GTEX-A1-0001"].name == "GTEX-A1-0001.SVS"
    assert ".ome.tiff" in SLIDE_EXTENSIONS and ".czi" in SLIDE_EXTENSIONS


def test_find_dataset_picks_the_gtex_csv_and_prefers_histology_names(tmp_path: Path) -> None:
    write_csv(tmp_path / "a_other.csv", ["1,2"], header="x,y")
    write_csv(tmp_path / "b_samples.csv", [histology_row("GTEX-A1-0001")])
    write_csv(tmp_path / "c_histology.csv", [histology_row("GTEX-A1-0001")])
    write_gct(tmp_path / "expr.GCT.gz", SMALL_SAMPLES, SMALL_ROWS)
    files = find_dataset(tmp_path)
    assert files.histology_csv is not None and files.histology_csv.name == "c_histology.csv"
    assert files.expression_gct is not None and files.expression_gct.name == "expr.GCT.gz"
    assert files.slides_dir is None
    assert any("several histology CSV" in m for m in files.warnings)
    assert any("no slides/ folder" in m for m in files.warnings)


def test_find_dataset_explicit_missing_file_and_missing_folder_are_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="histology CSV not found"):
        find_dataset(tmp_path, histology_csv=tmp_path / "nope.csv")
    with pytest.raises(DataError, match="expression GCT not found"):
        find_dataset(tmp_path, expression_gct="nope.gct")
    with pytest.raises(DataError, match="dataset folder not found"):
        find_dataset(tmp_path / "absent")


def test_folder_with_only_slides_still_loads(tmp_path: Path) -> None:
    (tmp_path / "slides").mkdir()
    (tmp_path / "slides" / "GTEX-A1-0001.svs").write_bytes(b"x")
    (tmp_path / "slides" / "my_slide.png").write_bytes(b"x")
    with pytest.warns(DataWarning):
        cohort = load_cohort(tmp_path)
    assert cohort.files.histology_csv is None and cohort.files.expression_gct is None
    assert any("no histology CSV" in m for m in cohort.warnings)
    assert any("no expression file" in m for m in cohort.warnings)
    samples = cohort.samples.set_index("sample_id")
    assert samples.loc["GTEX-A1-0001", "subject_id"] == "GTEX-A1"
    assert samples.loc["my_slide", "subject_id"] == "my_slide"
    assert set(samples["tissue"]) == {"Unknown"}
    assert cohort.expression.values.shape == (0, 0)
    info = cohort_info(cohort)
    assert (info["samples"], info["slides"], info["donors"], info["joined"]) == (0, 2, 2, 0)


def test_ids_that_join_nothing_warn_but_load(tmp_path: Path, small_gct: Path) -> None:
    write_csv(tmp_path / "histology.csv", [histology_row("GTEX-ZZ-0001"), histology_row("GTEX-ZZ-0002")])
    with pytest.warns(DataWarning, match="no expression sample matches any histology sample"):
        cohort = load_cohort(tmp_path, expression_gct=small_gct)
    assert cohort.expression.values.shape == (2, 0)
    assert cohort_info(cohort)["samples_with_expression"] == 0


def test_cohort_rekeys_expression_to_tissue_samples_and_caches(tmp_path: Path, ws) -> None:
    write_csv(tmp_path / "histology.csv", [histology_row("GTEX-A1-0002"), histology_row("GTEX-B2-0001", "Liver")])
    write_gct(tmp_path / "expr.gct", SMALL_SAMPLES, SMALL_ROWS)
    (tmp_path / "slides").mkdir()
    (tmp_path / "slides" / "GTEX-B2-0001.tif").write_bytes(b"x")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)  # a clean folder loads without warnings
        cohort = load_cohort(tmp_path, ws)
    assert list(cohort.expression.sample_ids) == ["GTEX-A1-0002", "GTEX-B2-0001"]
    np.testing.assert_array_equal(cohort.expression.values[1], [1e3, 7.25])
    assert list(cohort.samples["joined"]) == [False, True]
    assert any((ws.cache_dir / "gct").iterdir())

    cohort.samples.loc[0, "tissue"] = "scribbled"
    again = load_cohort(tmp_path, ws)
    assert again.samples.loc[0, "tissue"] == "Lung"  # the in-process memo hands out copies
    assert isinstance(again.expression, Expression)


# ---------------------------------------------------------------- CLI


def test_cli_info_json_prints_counts(tmp_path: Path, ws, capsys: pytest.CaptureFixture[str]) -> None:
    write_csv(tmp_path / "histology.csv", [histology_row("GTEX-A1-0001"), histology_row("GTEX-B2-0001", "Liver")])
    write_gct(tmp_path / "expr.gct", SMALL_SAMPLES, SMALL_ROWS, dims="5\t3")
    code = main(["--workspace", str(ws.root), "info", "--data", str(tmp_path), "--json"])
    captured = capsys.readouterr()
    assert code == 0
    info = json.loads(captured.out)
    assert (info["samples"], info["slides"], info["samples_with_expression"], info["tissues"]) == (2, 0, 2, 2)
    assert info["per_tissue"]["Liver"] == {"samples": 1, "slides": 0, "samples_with_expression": 1, "joined": 0}
    assert "warning:" in captured.err and "dimensions line" in captured.err


def test_cli_info_table_and_bad_input_exit_2(tmp_path: Path, ws, capsys: pytest.CaptureFixture[str]) -> None:
    write_csv(tmp_path / "histology.csv", [histology_row("GTEX-A1-0001")])
    assert main(["--workspace", str(ws.root), "info", "--data", str(tmp_path)]) == 0
    assert "Lung" in capsys.readouterr().out
    bad = write_gct(tmp_path / "expr.gct", SMALL_SAMPLES, SMALL_ROWS, first_line="#1.3")
    assert main(["--workspace", str(ws.root), "info", "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}: line 1") and len(err.strip().splitlines()) == 1
    missing = os.fspath(tmp_path / "absent")
    assert main(["--workspace", str(ws.root), "info", "--data", missing]) == 2
    assert "dataset folder not found" in capsys.readouterr().err


# ---------------------------------------------------------------- donor identity


def test_a_donor_under_two_spellings_is_one_donor_and_near_duplicates_warn(tmp_path: Path) -> None:
    header = "Tissue Sample ID,Tissue,Subject ID"
    rows = ["GTEX-D0-0001,Lung,GTEX-D0", " GTEX-D0-0002 ,Liver,GTEX-D0 ", "GTEX-D0-0003,Skin,  GTEX-D0",
            "GTEX-D1-0001,Lung,GTEX  D1", "GTEX-D1-0002,Liver,GTEX D1", "GTEX-D2-0001,Lung,gtex-d2",
            "GTEX-D2-0002,Liver,GTEX-D2"]
    write_csv(tmp_path / "histology.csv", rows, header=header)
    with pytest.warns(DataWarning, match="differ only by letter case or spaces"):
        cohort = load_cohort(tmp_path)
    samples = cohort.samples.set_index("sample_id")
    assert "GTEX-D0-0002" in samples.index  # the sample ID is normalized too
    assert set(samples.loc[["GTEX-D0-0001", "GTEX-D0-0002", "GTEX-D0-0003"], "subject_id"]) == {"GTEX-D0"}
    assert set(samples.loc[["GTEX-D1-0001", "GTEX-D1-0002"], "subject_id"]) == {"GTEX D1"}
    # Case is not changed (it may be meaningful) but named in the warning, with both spellings.
    assert cohort_info(cohort)["donors"] == 4
    case_warning = next(w for w in cohort.warnings if "letter case" in w)
    assert "'GTEX-D2' / 'gtex-d2'" in case_warning and not cohort.donor_note


def test_csv_without_subject_ids_derives_gtex_donors_and_flags_the_rest(tmp_path: Path, ws) -> None:
    write_csv(tmp_path / "histology.csv",
              ["GTEX-A1-0001,Lung", "GTEX-A1-0002,Liver", "P7_lung,Lung", "P7_liver,Liver"],
              header="Tissue Sample ID,Tissue")
    with pytest.warns(DataWarning, match="own donor"):
        cohort = load_cohort(tmp_path, ws)
    subjects = dict(zip(cohort.samples["sample_id"], cohort.samples["subject_id"], strict=True))
    assert subjects["GTEX-A1-0001"] == subjects["GTEX-A1-0002"] == "GTEX-A1"
    assert "2 of 4 sample(s) have no donor ID" in cohort.donor_note
    assert "P7_lung" in cohort.donor_note and "GTEX-A1-0001" not in cohort.donor_note
    assert cohort.donor_note in cohort.warnings and cohort.donor_column == ""


def test_cli_prints_the_own_donor_banner_on_stderr(tmp_path: Path, ws, capsys: pytest.CaptureFixture[str]) -> None:
    write_csv(tmp_path / "histology.csv", ["P1-a,Lung", "P1-b,Liver"], header="Tissue Sample ID,Tissue")
    assert main(["--workspace", str(ws.root), "info", "--data", str(tmp_path), "--json"]) == 0
    captured = capsys.readouterr()
    assert "WARNING: 2 of 2 sample(s) have no donor ID" in captured.err
    assert json.loads(captured.out)["donors"] == 2


def test_a_custom_donor_column_from_the_flag_or_the_saved_setting(
    tmp_path: Path, ws, capsys: pytest.CaptureFixture[str]
) -> None:
    from core.base.settings import update_dataset_settings

    write_csv(tmp_path / "histology.csv",
              ["P1-a,Lung,Patient 1 ", "P1-b,Liver,Patient  1", "P2-a,Lung,Patient 2", "P2-b,Liver,"],
              header="Tissue Sample ID,Tissue,Patient")
    assert main(["--workspace", str(ws.root), "info", "--data", str(tmp_path), "--json",
                 "--donor-column", "Patient"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["donors"] == 3  # Patient 1, Patient 2 and P2-b on its own
    assert "1 of 4 sample(s) have no donor ID" in captured.err and "P2-b" in captured.err

    update_dataset_settings(ws, tmp_path, donor_column="Patient")
    cohort = load_cohort(tmp_path, ws)
    assert cohort.donor_column == "Patient"
    assert cohort.samples.set_index("sample_id").loc["P1-b", "subject_id"] == "Patient 1"
    assert "Patient" in cohort.histology_columns
    with pytest.raises(DataError, match="donor column 'Donor' not found"):
        load_cohort(tmp_path, ws, donor_column="Donor")
    assert main(["--workspace", str(ws.root), "info", "--data", str(tmp_path), "--donor-column", "Donor"]) == 2
    update_dataset_settings(ws, tmp_path, donor_column="Gone")  # a saved column the CSV lost: warn, fall back
    with pytest.warns(DataWarning, match="saved donor column 'Gone' is not in the CSV"):
        assert load_cohort(tmp_path, ws).donor_column == ""
