"""Gene filter funnel: each step removes a known gene from a handmade TPM matrix."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from core.__main__ import main
from core.data.dataset import Expression
from core.data.genes import (
    STEP_ALL,
    STEP_EXPRESSED,
    STEP_NAMED,
    STEP_VARIABLE,
    GeneFilterParams,
    filter_genes,
    is_standard_symbol,
    log_tpm,
)

SAMPLES = ["S1", "S2", "S3", "S4"]
# TPM rows; log2(1 + TPM): 31 -> 5, 63 -> 6, 127 -> 7, 255 -> 8, 1023 -> 10.
GENES = {
    "KEEP1": [0, 63, 255, 1023],  # expressed, variable, standard
    "LOW": [0, 7, 15, 30],  # max logTPM < 5 -> not expressed
    "FLAT": [255, 255, 255, 255],  # expressed, SD 0 -> not variable
    "RP11-34P13.7": [0, 63, 255, 1023],  # clone-based name -> dropped at names
    "DUP": [0, 63, 255, 1023],  # symbol repeated -> both copies dropped at names
    "DUP ": [0, 127, 255, 1023],  # second DUP (symbol fixed below)
    "KEEP2": [1023, 255, 63, 0],
}


def handmade_expression() -> Expression:
    symbols = [name.strip() for name in GENES]
    return Expression(
        gene_ids=np.array([f"ENSG{i:05d}.1" for i in range(len(GENES))]),
        symbols=np.array(symbols),
        sample_ids=np.array(SAMPLES),
        values=np.array(list(GENES.values()), dtype=np.float32),
        warnings=["kept from the reader"],
    )


def test_log_tpm_is_log2_of_one_plus_tpm() -> None:
    tpm = np.array([0, 1, 3, 1023], dtype=np.float32)
    result = log_tpm(tpm)
    np.testing.assert_allclose(result, np.log2(1 + tpm.astype(np.float64)), rtol=1e-6)
    assert result.dtype == np.float32
    assert log_tpm(np.array([0, 3])).dtype == np.float64


def test_funnel_removes_one_known_gene_per_step() -> None:
    result = filter_genes(handmade_expression(), GeneFilterParams())
    assert result.funnel == [(STEP_ALL, 7), (STEP_EXPRESSED, 6), (STEP_VARIABLE, 5), (STEP_NAMED, 2)]
    assert list(result.expression.symbols) == ["KEEP1", "KEEP2"]
    assert list(result.expression.sample_ids) == SAMPLES
    expected = log_tpm(np.array([GENES["KEEP1"], GENES["KEEP2"]], dtype=np.float32))
    np.testing.assert_allclose(result.expression.values, expected)
    assert result.expression.warnings == ["kept from the reader"]


def test_thresholds_are_parameters() -> None:
    loose = filter_genes(handmade_expression(), GeneFilterParams(min_log_tpm=4.0, min_sd=0.5))
    assert loose.funnel[1] == (STEP_EXPRESSED, 7)  # LOW (max logTPM ~4.95) now counts as expressed
    assert "LOW" in loose.expression.symbols
    strict = filter_genes(handmade_expression(), GeneFilterParams(min_log_tpm=9.0, min_sd=0.5))
    assert strict.funnel[1] == (STEP_EXPRESSED, 5)  # FLAT (8) drops too, LOW already did
    very_variable = filter_genes(handmade_expression(), GeneFilterParams(min_sd=100.0))
    assert very_variable.funnel[2:] == [(STEP_VARIABLE, 0), (STEP_NAMED, 0)]


def test_filter_keeps_shapes_with_no_samples() -> None:
    empty = Expression(np.array(["G1"]), np.array(["TP53"]), np.array([], dtype=str), np.zeros((1, 0), np.float32))
    result = filter_genes(empty, GeneFilterParams())
    assert result.funnel == [(STEP_ALL, 1), (STEP_EXPRESSED, 0), (STEP_VARIABLE, 0), (STEP_NAMED, 0)]
    assert result.expression.values.shape == (0, 0)


@pytest.mark.parametrize(
    ("symbol", "standard"),
    [
        ("TP53", True),
        ("HLA-A", True),
        ("LINC00115", True),
        ("C1orf112", True),
        ("RP11-34P13.7", False),
        ("RP11-34P13", False),
        ("CTD-2331D11", False),
        ("AC012345.6", False),
        ("AC012345", False),
        ("Y_RNA", False),
        ("Metazoa_SRP", False),
        ("ENSG00000223972", False),
        ("", False),
    ],
)
def test_standard_symbols(symbol: str, standard: bool) -> None:
    assert is_standard_symbol(symbol) is standard


def test_cli_genes_json_prints_the_funnel(tmp_path: Path, ws, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "histology.csv").write_text(
        "Tissue Sample ID,Tissue\n" + "".join(f"GTEX-X{i}-0001,Lung\n" for i in range(len(SAMPLES)))
    )
    expression = handmade_expression()
    rna_ids = [f"GTEX-X{i}-0001-SM-{i}" for i in range(len(SAMPLES))]
    lines = ["#1.2", f"{len(GENES)}\t{len(SAMPLES)}", "\t".join(["Name", "Description", *rna_ids])]
    for gene, symbol, row in zip(expression.gene_ids, expression.symbols, expression.values, strict=True):
        lines.append("\t".join([gene, symbol, *(f"{v:g}" for v in row)]))
    (tmp_path / "tpm.gct").write_text("\n".join(lines) + "\n")

    code = main(["--workspace", str(ws.root), "genes", "--data", str(tmp_path), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["samples"] == 4
    assert [(s["step"], s["genes"]) for s in report["funnel"]] == [
        (STEP_ALL, 7),
        (STEP_EXPRESSED, 6),
        (STEP_VARIABLE, 5),
        (STEP_NAMED, 2),
    ]
    assert main(["--workspace", str(ws.root), "genes", "--data", str(tmp_path), "--min-log-tpm", "4"]) == 0
    assert re.search(r"^expressed +7 ", capsys.readouterr().out, re.MULTILINE)


def test_cli_genes_without_expression_exits_2(tmp_path: Path, ws, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "histology.csv").write_text("Tissue Sample ID,Tissue\nGTEX-X1-0001,Lung\n")
    assert main(["--workspace", str(ws.root), "genes", "--data", str(tmp_path)]) == 2
    assert "no expression file" in capsys.readouterr().err
