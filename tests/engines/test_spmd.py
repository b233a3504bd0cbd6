"""engines/spmd.py: without a launcher every helper is the one-process identity; what a rank says and
does when another rank of its campaign dies."""

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


def test_a_lost_peer_or_the_launchers_sigterm_reads_as_a_lost_rank(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    gloo = RuntimeError("[../gloo/transport/tcp/pair.cc:537] Read error [127.0.0.1]:20177: Connection reset by peer.")
    assert spmd.lost_rank(gloo) and spmd.lost_rank(spmd.LauncherStop("stopped by the launcher (SIGTERM)"))
    try:  # a node error re-raised as another exception keeps its cause in view
        try:
            raise gloo
        except RuntimeError as err:
            raise ValueError("update_policy failed") from err
    except ValueError as wrapped:
        assert spmd.lost_rank(wrapped)
    assert not spmd.lost_rank(ValueError("prime.micro_batch must be positive"))
    message = spmd.failure_message(gloo, " in iteration 2")
    assert message.startswith("rank 0 of 2: the SPMD campaign lost a rank in iteration 2 (RuntimeError: ")
    assert "run the same command again to resume" in message


def test_the_launchers_sigterm_unwinds_as_an_error_unless_already_stopping(monkeypatch):
    import os
    import signal

    monkeypatch.setenv("WORLD_SIZE", "2")
    previous = signal.getsignal(signal.SIGTERM)
    try:
        spmd.stop_on_sigterm()
        with pytest.raises(spmd.LauncherStop):
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler runs between bytecodes
                pass
        try:
            raise RuntimeError("Connection reset by peer")
        except RuntimeError:  # already unwinding: the SIGTERM is noted, not raised
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):
                pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_one_process_keeps_the_default_sigterm(monkeypatch):
    import signal

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    previous = signal.getsignal(signal.SIGTERM)
    spmd.stop_on_sigterm()
    assert signal.getsignal(signal.SIGTERM) is previous
