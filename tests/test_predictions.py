"""Predicted tissue from a checkpoint's head over cached embeddings: the same logits as the classifier's own
forward pass, the head kept beside the embeddings (read back without the checkpoint), correct / wrong labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from core.base.errors import DataError
from core.embed.features import FeatureSource, load_feature_model
from core.embed.heads import NOT_TRAINED, add_predictions, checkpoint_head, predict
from core.maps.points import PointSet
from core.train import loop as train
from core.train.loop import save_checkpoint
from core.train.models import build_model

CLASSES = ["Liver", "Lung", "Skin"]


def make_run(root: Path) -> Path:
    run_dir = root / "run"
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"arch": "efficientnet_b0", "image_size": 32,
                                                     "classes": CLASSES}))
    torch.manual_seed(0)
    model = build_model("efficientnet_b0", len(CLASSES))
    with torch.no_grad():
        model.head.bias.copy_(torch.tensor([0.3, -0.2, 0.1]))
    save_checkpoint(run_dir / "checkpoints" / "epoch_001.pt",
                    {"epoch": 1, "model": model.state_dict(), "optimizer": {}, "rng": {}})
    return run_dir


def test_head_over_embeddings_gives_the_classifiers_own_logits(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    source = FeatureSource.checkpoint(run_dir, 1)
    x = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    features_model, _, _ = load_feature_model(source, "cpu")
    with torch.inference_mode():
        features = features_model(x).numpy()
    reference = build_model("efficientnet_b0", len(CLASSES))
    reference.load_state_dict(torch.load(run_dir / "checkpoints" / "epoch_001.pt", weights_only=True)["model"])
    reference.eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.inference_mode():
        logits = reference((x - mean) / std)
    weight, bias, classes = checkpoint_head(source, tmp_path)
    assert classes == CLASSES and weight.shape == (3, 1280)
    np.testing.assert_allclose(features @ weight.T + bias, logits.numpy(), rtol=1e-4, atol=1e-4)
    predicted, confidence = predict(features, weight, bias, classes)
    assert predicted.tolist() == [CLASSES[i] for i in logits.argmax(1).tolist()]
    np.testing.assert_allclose(confidence, torch.softmax(logits, 1).max(1).values.numpy(), rtol=1e-4)


def test_head_is_kept_beside_the_embeddings_and_read_back_without_the_checkpoint(tmp_path, monkeypatch) -> None:
    run_dir = make_run(tmp_path)
    folder = tmp_path / "entry"
    folder.mkdir()
    first = checkpoint_head(FeatureSource.checkpoint(run_dir, 1), folder)
    assert (folder / "head.npz").is_file()
    monkeypatch.setattr(train, "load_checkpoint", lambda path: pytest.fail("checkpoint read again"))
    again = checkpoint_head(FeatureSource.checkpoint(run_dir, 1), folder)
    np.testing.assert_array_equal(again[0], first[0])
    np.testing.assert_array_equal(again[1], first[1])
    assert again[2] == CLASSES


def test_points_are_labelled_correct_wrong_or_not_trained(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    folder = tmp_path / "entry"
    folder.mkdir()
    weight = np.eye(3, 4, dtype=np.float32) * 10  # class i wins when feature i is the largest
    np.savez(folder / "head.npz", weight=weight, bias=np.zeros(3, np.float32), classes=np.asarray(CLASSES))
    values = np.eye(4, dtype=np.float32)[[0, 1, 2, 0]]
    meta = pd.DataFrame({"id": list("abcd"), "sample_id": list("abcd"), "tissue": ["Liver", "Skin", "Skin", "Brain"]})
    points = add_predictions(PointSet("slides", meta["id"].to_numpy(), values, meta, "k"),
                             FeatureSource.checkpoint(run_dir, 1), folder)
    assert points.meta["predicted_tissue"].tolist() == ["Liver", "Lung", "Skin", "Liver"]
    assert points.meta["prediction"].tolist() == ["correct", "wrong", "correct", NOT_TRAINED]
    genes = PointSet("genes", meta["id"].to_numpy(), values, meta.drop(columns=["predicted_tissue", "prediction"]),
                     "g")
    assert "prediction" not in add_predictions(genes, FeatureSource.checkpoint(run_dir, 1), folder).meta


def test_a_head_that_does_not_fit_the_run_is_a_data_error(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    config = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**config, "classes": CLASSES + ["Brain"]}))
    with pytest.raises(DataError, match="head has 3 outputs but the run has 4 classes"):
        checkpoint_head(FeatureSource.checkpoint(run_dir, 1))
    with pytest.raises(DataError, match="do not fit a head of width"):
        predict(np.zeros((2, 5), np.float32), np.zeros((3, 4), np.float32), np.zeros(3, np.float32), CLASSES)
