"""Model soups and delta-guided fusion against hand-computed state dicts."""

from __future__ import annotations

import pytest
import torch

from uniembed.training.soup import average_state_dicts, delta_fusion


def test_soup_is_the_weighted_average_and_copies_integer_tensors() -> None:
    a = {"w": torch.tensor([1.0, 2.0]), "ids": torch.tensor([0, 1])}
    b = {"w": torch.tensor([3.0, -2.0]), "ids": torch.tensor([0, 1])}
    assert average_state_dicts([a, b])["w"].tolist() == [2.0, 0.0]
    assert average_state_dicts([a, b], [0.25, 0.75])["w"].tolist() == [2.5, -1.0]
    assert average_state_dicts([a, b])["ids"].tolist() == [0, 1]
    with pytest.raises(ValueError, match="non-float tensor ids"):
        average_state_dicts([a, {**b, "ids": torch.tensor([1, 1])}])
    with pytest.raises(ValueError, match="other tensors"):
        average_state_dicts([a, {"w": b["w"]}])
    with pytest.raises(ValueError, match="sum to 1"):
        average_state_dicts([a, b], [0.5, 0.7])


def test_delta_fusion_keeps_each_delta_in_proportion_to_its_size() -> None:
    base = {"w": torch.tensor([1.0, 1.0, 1.0, 1.0])}
    a = {"w": torch.tensor([2.0, 1.0, 3.0, 1.0])}  # deltas  1, 0,  2, 0
    b = {"w": torch.tensor([4.0, 1.0, -1.0, 1.5])}  # deltas  3, 0, -2, 0.5
    # weights of a: 1/4, 1/2 (both 0), 1/2, 0 -> 1 + [.25*1+.75*3, 0, .5*2-.5*2, 0.5]
    assert delta_fusion(base, [a, b])["w"].tolist() == pytest.approx([3.5, 1.0, 1.0, 1.5])
    # power 2: weights 1/10, 9/10 on the first element: 1 + .1*1 + .9*3
    assert delta_fusion(base, [a, b], power=2.0)["w"][0].item() == pytest.approx(3.8)
