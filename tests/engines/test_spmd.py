"""engines/spmd.py without a launcher: every helper is the one-process identity."""

import pytest

from eurus_prime.engines import spmd


@pytest.mark.parametrize("n,world", [(0, 2), (5, 2), (6, 4), (3, 5), (10, 3)])
def test_split_evenly_covers_every_item_once_in_order(n, world):
    blocks = [spmd.split_evenly(n, world, r) for r in range(world)]
    assert blocks[0][0] == 0 and blocks[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
    sizes = [hi - lo for lo, hi in blocks]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_one_process_is_the_identity(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert spmd.init() == (0, 1) and spmd.group() == (0, 1) and spmd.is_writer()
    assert spmd.map_shards([1, 2, 3], lambda xs: [x * 10 for x in xs]) == [10, 20, 30]
    assert spmd.all_gather_object("a") == ["a"]
    spmd.barrier()
    monkeypatch.setenv("RANK", "1")
    assert not spmd.is_writer()  # what settings.py reads before any process group exists
