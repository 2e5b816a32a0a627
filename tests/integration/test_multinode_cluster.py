"""The multi-node test cluster itself: named nodes with their own raylet and resources,
actor pools placed by a custom resource, and a node removed while an actor survives it."""

from __future__ import annotations

import pyarrow as pa
import pytest

from fixtures.multinode import MultiNodeCluster
from uniembed.runtime import actor_resources
from uniembed.sections import ActorPoolSection

# About a minute on 2 busy cores, most of it starting three raylets.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.chaos]


def test_pool_actors_go_where_their_resource_is(multinode_cluster: MultiNodeCluster) -> None:
    import ray
    from ray.data import ActorPoolStrategy

    class WhereAmI:  # defined here: the workers cannot import this test module
        """A pool actor that stamps each row with its node id."""

        def __call__(self, batch: pa.Table) -> pa.Table:
            node = ray.get_runtime_context().get_node_id()
            return batch.append_column("node", pa.array([node] * len(batch)))

    cluster = multinode_cluster
    cluster.add_node("a", resources={"slot": 1})
    cluster.add_node("b", resources={"slot": 1})
    assert cluster.live_nodes() == ["a", "b", "head"]

    pool = ActorPoolSection(num_actors=2, cpus_per_actor=0.5, resources={"slot": 1})
    rows = (
        ray.data.range(8, override_num_blocks=8)
        .map_batches(
            WhereAmI,
            compute=ActorPoolStrategy(size=pool.num_actors),
            batch_size=1,
            batch_format="pyarrow",
            **actor_resources(pool, "cpu"),
        )
        .take_all()
    )
    nodes = {cluster.name_of(r["node"]) for r in rows}
    assert nodes <= {"a", "b"} and len(rows) == 8

    # an actor that may restart survives the loss of its node on the node left
    @ray.remote(num_cpus=0.5, resources={"slot": 1}, max_restarts=1, max_task_retries=-1)
    class Pinned:
        def node(self) -> str:
            return ray.get_runtime_context().get_node_id()

    actor = Pinned.remote()
    first = cluster.name_of(ray.get(actor.node.remote()))
    assert first in ("a", "b")
    cluster.remove_node(first)
    assert first not in cluster.live_nodes()
    second = cluster.name_of(ray.get(actor.node.remote(), timeout=120))
    assert second in ("a", "b") and second != first
