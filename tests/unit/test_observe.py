"""Stage names, the compact progress line, metric names and the dashboard line."""

from __future__ import annotations

import inspect
import pickle
from collections.abc import Iterator

import cloudpickle

from uniembed.observe.figures import metric_name
from uniembed.observe.names import dataset_name, named, stage_of_instance
from uniembed.observe.progress import progress_line, stage_of
from uniembed.runtime import dashboard_line


class Doubler:
    """A callable class as Ray Data's actor pools take them."""

    def __init__(self, k: int) -> None:
        self.k = k

    def __call__(self, x: int) -> int:
        return x * self.k


def rows(n: int) -> Iterator[int]:
    yield from range(n)


def test_a_named_class_keeps_its_behaviour_and_takes_the_stage_name() -> None:
    cls = named(Doubler, "mine/judge")
    assert cls.__name__ == "mine/judge" and issubclass(cls, Doubler)
    assert cls(3)(2) == 6
    # Ray ships it to its actors by value.
    assert cloudpickle.loads(cloudpickle.dumps(cls))(2)(5) == 10


def test_the_stage_name_survives_ray_datas_wrapper_class() -> None:
    cls = named(Doubler, "mine/judge")

    class _SingleThreadedWrapper(cls):  # as Ray Data wraps actor-pool classes
        pass

    assert stage_of_instance(_SingleThreadedWrapper(2)) == "mine/judge"
    assert stage_of_instance(Doubler(2)) == "Doubler"


def test_named_functions_and_generators_stay_what_they_were() -> None:
    fn = named(lambda x: x + 1, "embed/write")
    assert fn.__name__ == "embed/write" and fn(1) == 2
    gen = named(rows, "mine/read-queries")
    assert inspect.isgeneratorfunction(gen) and list(gen(3)) == [0, 1, 2]
    assert pickle.loads(cloudpickle.dumps(gen))(2) is not None


def test_dataset_names_hold_no_slash() -> None:
    """Ray Data writes a log file named after each dataset."""
    assert dataset_name("mine/queries") == "mine-queries"


def test_the_progress_line_names_the_stage() -> None:
    assert stage_of("MapBatches(mine/judge)") == "mine/judge"
    assert stage_of("MapBatches(read)") == "MapBatches(read)"
    fused = "MapBatches(mine/read-pool)->MapBatches(mine/stage-pool)"
    assert stage_of(fused) == "mine/read-pool->mine/stage-pool"
    line = progress_line("mine-queries", "mine/judge", 96, 64, 2)
    assert line == "[mine-queries] mine/judge: 96 rows in, 64 out, 2 tasks"


def test_metric_names_are_prometheus_names() -> None:
    assert metric_name("mine", "pairs/s") == "uniembed_mine_pairs_s"
    assert metric_name("train", "loss") == "uniembed_train_loss"


def test_the_driver_says_where_the_dashboard_is() -> None:
    assert dashboard_line("127.0.0.1:8265") == "Ray dashboard: http://127.0.0.1:8265"
    assert "none" in dashboard_line(None)
