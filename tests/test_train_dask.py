"""examples/train_dask.py (issue 17): the generated gradient on a dask.distributed cluster.

A LocalCluster of 2 worker processes, on the loopback interface only, runs the
array-API module's `two_layer_net_grad` over a data set chunked along N and spread
over both workers; its loss and gradients equal the NumPy target's on the same data,
gathered to the test, to rtol 1e-10; and the cluster is shut down. The example,
pointed at that cluster with `--scheduler` and `--check`, trains: the loss goes down.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("dask.distributed")

from dask.distributed import Client, LocalCluster, wait  # noqa: E402

import gradc  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "examples"))

import train_dask  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    """2 worker processes on the loopback interface, shut down after the tests."""
    local = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    )
    try:
        yield local
    finally:
        local.close()
    assert local.status.name == "closed"


def test_the_gradient_on_a_local_cluster_equals_the_numpy_targets(cluster):
    with Client(cluster) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        assert client.scheduler.address.startswith("tcp://127.0.0.1:")
        X, y = train_dask.make_data(n=3000, d=8, classes=5, chunk=750)
        X, y = client.persist([X, y])
        wait([X, y])
        # the data live on both workers
        holders = {w for w, keys in client.has_what().items() if keys}
        assert len(holders) == 2, holders
        params = train_dask.init_params(8, 16, 5)
        module = gradc.load(train_dask.SOURCE, target="array-api")
        got = train_dask.full_batch_gradient(module, client, X, y, params)
        data = client.compute([X, y], sync=True)
    ref_loss, ref_grads = train_dask.numpy_gradient(*data, params)
    loss, grads = got
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-10, atol=0)
    for g, r in zip(grads, ref_grads, strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-300)
    ok, worst = train_dask.agree(got, (ref_loss, ref_grads))
    assert ok and worst < 1e-10
    # and agree can fail: a gradient off by 1e-9 relative is caught
    off = (loss, [g * (1 + 1e-9) for g in grads])
    assert not train_dask.agree(off, (ref_loss, ref_grads))[0]


def test_the_example_trains_on_a_cluster_it_is_pointed_at(cluster, capsys):
    # --scheduler ADDRESS, as for a real cluster (the default starts its own
    # LocalCluster the same way the fixture does)
    code = train_dask.main(
        ["--scheduler", cluster.scheduler_address, "--n", "2000", "--d", "8", "--hidden", "16",
         "--classes", "4", "--steps", "4", "--lr", "1.0", "--check"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "rtol 1e-10): PASS" in out
    assert "2 workers" in out
    losses = [float(v) for v in re.findall(r"loss ([0-9.]+)", out)]
    assert len(losses) >= 2 and losses[-1] < losses[0]
