"""One training step without Ray: GradCache gives the plain step's loss and gradients for
every loss; the batch builder masks missing negatives; the similarity statistics."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import pytest
import torch

from uniembed.data import schema as S
from uniembed.losses import DistillLoss, InfoNCELoss, SoftLabelLoss, UniMEHardNegativeLoss
from uniembed.models import EmbedInput
from uniembed.training.lora import prepare_trainable, trainable_parameters
from uniembed.training.metrics import similarity_stats
from uniembed.training.steps import distill_step, tune_batch, tune_step
from uniembed.training.train_config import LoraSection


def _rows(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        k = i % 3  # 0, 1 or 2 mined negatives: padding is exercised
        rows.append(
            {
                S.SOURCE: f"test:{i}",
                S.QUERY_ID: f"q{i}",
                S.QUERY_TEXT: f"query number {i} about topic {i * 7}",
                S.QUERY_IMAGE: None,
                S.QUERY_INSTRUCTION: "Find the definition." if i % 2 else None,
                S.POS_TEXT: f"definition {i}",
                S.POS_IMAGE: None,
                S.POS_SCORE: 0.9,
                S.NEG_TEXTS: [f"other text {i}-{j}" for j in range(k)],
                S.NEG_IMAGES: [None] * k,
                S.NEG_SCORES: [0.1 * (j + 1) for j in range(k)],
            }
        )
    return rows


@pytest.fixture
def student(tiny_text_lm):
    s = copy.copy(tiny_text_lm)
    # No dropout: GradCache replays RNG per chunk, the plain step draws one mask per batch.
    s.model = prepare_trainable(copy.deepcopy(tiny_text_lm.model), LoraSection(dropout=0.0))
    with torch.no_grad():  # a non-zero adapter, so every part of the graph matters
        for name, p in s.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    return s


def _grads(model) -> dict[str, torch.Tensor]:
    out = {n: p.grad.clone() for n, p in trainable_parameters(model).items()}
    model.zero_grad(set_to_none=True)
    return out


def test_tune_batch_masks_missing_negatives() -> None:
    batch = tune_batch(_rows(4), num_negatives=2)
    assert batch.mask.tolist() == [[False, False], [True, False], [True, True], [False, False]]
    assert len(batch.inputs) == 4 + 4 + 3
    assert batch.scores[2].tolist() == pytest.approx([0.9, 0.1, 0.2])


@pytest.mark.parametrize(
    "loss", [UniMEHardNegativeLoss(num_negatives=3), SoftLabelLoss(), InfoNCELoss()], ids=str
)
def test_grad_cache_equals_plain_step(student, loss) -> None:
    k = 2 if loss.encodes_negatives else 0
    batch = tune_batch(_rows(6), num_negatives=k)
    plain, stats = tune_step(student.features, loss, batch, chunk=0)
    g_plain = _grads(student.model)
    cached, stats_c = tune_step(student.features, loss, batch, chunk=3)
    g_cached = _grads(student.model)
    assert torch.isfinite(plain) and plain > 0
    assert cached.item() == pytest.approx(plain.item(), rel=1e-5)
    assert stats == pytest.approx(stats_c, rel=1e-5)
    for name, g in g_plain.items():
        # Chunks pad to other lengths: float32 rounding differs a little, scaled by 1/tau.
        torch.testing.assert_close(g_cached[name], g, rtol=1e-3, atol=1e-4 * g.abs().max().item())


def test_distill_step_grad_cache_equals_plain(student) -> None:
    texts = [f"sentence {i} about {w}" for i, w in enumerate(["cats", "dogs", "cars", "rain"])]
    teacher = torch.randn(4, 12)
    loss = DistillLoss(temperature=0.05, average=True)
    plain, _ = distill_step(student.features, loss, texts, teacher, chunk=0)
    g_plain = _grads(student.model)
    cached, stats = distill_step(student.features, loss, texts, teacher, chunk=2)
    g_cached = _grads(student.model)
    assert cached.item() == pytest.approx(plain.item(), rel=1e-5)
    assert stats["sim_gap"] > 0
    for name, g in g_plain.items():
        # Chunks pad to other lengths: float32 rounding differs a little, scaled by 1/tau.
        torch.testing.assert_close(g_cached[name], g, rtol=1e-3, atol=1e-4 * g.abs().max().item())


def test_similarity_stats_by_hand() -> None:
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    negs = torch.tensor([[[0.0, 1.0]], [[0.0, 1.0]]])
    mask = torch.tensor([[True], [False]])
    stats = similarity_stats(q, p, negs, mask)
    # pos: 1.0 and 0.8; hardest neg: row 0 max(0.6, 0.0) = 0.6, row 1 (mined masked) 0.0
    assert stats["pos_sim"] == pytest.approx(0.9)
    assert stats["hard_neg_sim"] == pytest.approx(0.3)


def test_grouped_encode_chunks_long_groups_by_length_and_keeps_the_order() -> None:
    from uniembed.training.steps import grouped_encode

    seen: list[list[str]] = []
    weight = torch.ones(1, requires_grad=True)

    def encode(inputs: Sequence[EmbedInput]) -> torch.Tensor:
        seen.append([str(inp.text) for inp in inputs])
        return torch.tensor([[float(len(str(inp.text)))] for inp in inputs]) * weight

    texts = ["q1", "q2", "p1", "p2", "nxxxxx", "nx", "nxxxxxxxxx", "nxxx", "nxx", "nxxxxxxx"]
    out = grouped_encode(encode, [0, 2, 4, 10], chunk=2)([EmbedInput(text=t) for t in texts])
    # Queries and positives in one forward each; the 6 negatives in 3 forwards of 2
    # inputs of similar length (shortest first); the rows come back in input order.
    assert seen[:2] == [["q1", "q2"], ["p1", "p2"]]
    assert seen[2:] == [["nx", "nxx"], ["nxxx", "nxxxxx"], ["nxxxxxxx", "nxxxxxxxxx"]]
    assert out[:, 0].tolist() == [float(len(t)) for t in texts]
    out.sum().backward()
    assert weight.grad is not None and float(weight.grad) == sum(len(t) for t in texts)
