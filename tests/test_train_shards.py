"""Batch shards: a batch's shards run concurrently on CPU threads and give the same numbers as one after
another; the gradient is that of the batch-mean loss with BatchNorm per shard; evaluation and BatchNorm
recalibration agree with the unsharded ones."""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from core.train.loop import (
    ShardRunner,
    TrainConfig,
    TrainingState,
    evaluate,
    forward_backward,
    images_to_tensor,
    normalize,
    recalibrate_batchnorm,
    shard_slices,
)

CONFIG = TrainConfig(batch_size=8, image_size=32, threads=1, batch_shards=2)
CPU = torch.device("cpu")


def batch(n: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    x = normalize(images_to_tensor(images, CPU)).contiguous(memory_format=torch.channels_last)
    return x, torch.from_numpy(rng.integers(0, 3, size=n))


def state_with(shards: ShardRunner, config: TrainConfig = CONFIG) -> TrainingState:
    state = TrainingState.create(config, 3)  # seeded: the same weights every time
    state.shards.close()
    state.shards = shards
    return state


def grads(state: TrainingState) -> list[torch.Tensor]:
    return [p.grad.clone() for p in state.model.parameters()]


@pytest.mark.parametrize(("n", "shards", "sizes"), [(32, 2, [16, 16]), (7, 2, [4, 3]), (3, 2, [3]), (8, 3, [3, 2, 3]),
                                                     (2, 4, [2]), (5, 1, [5])])
def test_shard_slices_cover_the_batch_with_two_tiles_at_least(n: int, shards: int, sizes: list[int]) -> None:
    parts = shard_slices(n, shards)
    assert [p.stop - p.start for p in parts] == sizes
    assert parts[0].start == 0 and parts[-1].stop == n
    assert all(a.stop == b.start for a, b in zip(parts, parts[1:], strict=False))


def test_concurrent_shards_give_the_same_gradient_bits_as_shards_in_order() -> None:
    x, y = batch()
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    runner = ShardRunner(2, threads=1, concurrent=True)
    assert runner.concurrent
    try:
        together = state_with(runner)
        loss_a, correct_a = forward_backward(together, x, y, loss_fn)
    finally:
        runner.close()
    apart = state_with(ShardRunner(2, concurrent=False))
    loss_b, correct_b = forward_backward(apart, x, y, loss_fn)
    assert (loss_a, correct_a) == (loss_b, correct_b)
    assert all(torch.equal(a, b) for a, b in zip(grads(together), grads(apart), strict=True))


def test_sharded_gradient_is_the_batch_mean_with_batchnorm_per_shard() -> None:
    x, y = batch()
    state = state_with(ShardRunner(2, concurrent=False))
    loss, _ = forward_backward(state, x, y, nn.CrossEntropyLoss(reduction="sum"))
    reference = state_with(ShardRunner(1))
    model = reference.model
    halves = [nn.functional.cross_entropy(model(x[:4]), y[:4], reduction="sum"),
              nn.functional.cross_entropy(model(x[4:]), y[4:], reduction="sum")]
    mean_loss = (halves[0] + halves[1]) / 8
    mean_loss.backward()
    assert loss == pytest.approx(float(mean_loss.detach()), rel=1e-5)
    for a, b in zip(grads(state), grads(reference), strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)
    # ...and not the whole batch's gradient: BatchNorm statistics differ between halves and the whole
    whole = state_with(ShardRunner(1))
    forward_backward(whole, x, y, nn.CrossEntropyLoss(reduction="sum"))
    assert not all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(grads(state), grads(whole), strict=True))


def test_sharded_evaluation_and_recalibration_agree_with_unsharded() -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(40, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 3, size=40)
    rows = np.arange(40)
    plain = state_with(ShardRunner(1))
    runner = ShardRunner(2, threads=1, concurrent=True)
    try:
        sharded = state_with(runner)
        recalibrate_batchnorm(plain.model, images, rows, 8, CPU)
        recalibrate_batchnorm(sharded.model, images, rows, 8, CPU, shards=runner)
        norms = [(a, b) for a, b in zip(plain.model.modules(), sharded.model.modules(), strict=True)
                 if isinstance(a, nn.BatchNorm2d)]
        assert norms
        for a, b in norms:
            assert torch.allclose(a.running_mean, b.running_mean, rtol=1e-4, atol=1e-5)
            assert torch.allclose(a.running_var, b.running_var, rtol=1e-4, atol=1e-5)
            assert int(a.num_batches_tracked) == int(b.num_batches_tracked) == 5
        assert sharded.model.training
        one = evaluate(plain.model, images, labels, rows, 3, 16, CPU)
        two = evaluate(sharded.model, images, labels, rows, 3, 16, CPU, shards=runner)
    finally:
        runner.close()
    assert one.confusion == two.confusion
    assert one.loss == pytest.approx(two.loss, rel=1e-5)


def test_closing_the_state_gives_torch_its_thread_count_back() -> None:
    torch.set_num_threads(2)
    try:
        state = TrainingState.create(replace(CONFIG, threads=1), 3)
        assert torch.get_num_threads() == 1
        state.close()
        assert torch.get_num_threads() == 2 and not state.shards.concurrent
    finally:
        torch.set_num_threads(os.cpu_count() or 1)


def test_shards_run_in_order_when_the_forward_draws_random_numbers() -> None:
    state = TrainingState.create(replace(CONFIG, dropout=0.2), 3)
    try:
        assert not state.shards.concurrent and state.shards.shards == 2
    finally:
        state.shards.close()
    state = TrainingState.create(CONFIG, 3)
    try:
        assert state.shards.concurrent
    finally:
        state.shards.close()
