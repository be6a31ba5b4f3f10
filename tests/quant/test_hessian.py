"""quant/hessian: the blocked GPTQ sweep's look-ahead (trailing products in a background thread)."""

import pytest
import torch

from microscopiq.quant import hessian


class Rounding:
    """Round to a quarter; records the group starts it was shown."""

    def __init__(self):
        self.groups = []

    def begin_group(self, start, weights):
        self.groups.append((start, weights.clone()))

    def quantize_column(self, index, column, hinv_diag):
        return (column * 4).round() / 4


def sweep(weights, upper, block_size, group):
    quantizer = Rounding()
    loss = hessian.lazy_batch_sweep(weights, upper, quantizer, block_size=block_size, group=group)
    return loss, quantizer.groups


@pytest.mark.parametrize("block_size, group", [(32, 32), (32, 64), (128, 32), (64, 128)])
def test_look_ahead_gives_the_same_bits(monkeypatch, block_size, group):
    """Blocks of 32 columns and more: the look-ahead's row-split products are bit for bit the whole
    products, so the sweep (weights, loss, what every group start sees) is unchanged."""
    seed = 60 + block_size + group
    gen = torch.Generator().manual_seed(seed)
    k, n = 200, 48
    x = torch.randn(4 * k, k, generator=gen)
    upper = hessian.inverse_cholesky_upper(x.T @ x + torch.eye(k))
    weights = torch.randn(k, n, generator=gen)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        ahead, serial = weights.clone(), weights.clone()
        loss_ahead, groups_ahead = sweep(ahead, upper, block_size, group)
        monkeypatch.setattr(hessian, "ThreadPoolExecutor", lambda *args, **kwargs: None)
        loss_serial, groups_serial = sweep(serial, upper, block_size, group)
    finally:
        torch.set_num_threads(threads)
    print("seed", seed)
    bad = torch.nonzero(ahead != serial)
    assert bad.numel() == 0, (f"first mismatch at {tuple(bad[0].tolist())}: expected "
                              f"{serial[tuple(bad[0])].item()}, got {ahead[tuple(bad[0])].item()}")
    assert loss_ahead == loss_serial
    assert [s for s, _ in groups_ahead] == list(range(0, k, group))
    for (start, seen), (_, expected) in zip(groups_ahead, groups_serial):
        assert torch.equal(seen, expected), f"group at {start} saw other weights"
