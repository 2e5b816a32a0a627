"""Reranker training chats: three per row, answer-only labels, the prompt holds the inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from uniembed.data import schema as S
from uniembed.losses.rerank import IGNORE_INDEX, RerankGroupLoss, RerankLMLoss
from uniembed.reranker.data import (
    build_chats,
    hardest_negatives,
    listwise_slot,
    plan_rows,
    spread_picks,
)
from uniembed.reranker.model import (
    RankTerm,
    plan_forwards,
    prepare_reranker,
    rerank_step,
    reranker_targets,
)
from uniembed.reranker.prompts import YES
from uniembed.reranker.scorer import JudgeScorer
from uniembed.reranker.tokens import ChatEncoder, SharedPrefixBatch
from uniembed.training.train_config import LoraSection


def _row(n_neg: int, qid: str = "q1", image: str | None = None, **kw: Any) -> dict[str, Any]:
    row = {
        S.QUERY_ID: qid,
        S.SOURCE: "rows.parquet:1",
        S.QUERY_TEXT: "zebra crossing",
        S.QUERY_IMAGE: None,
        S.QUERY_INSTRUCTION: None,
        S.POS_TEXT: "striped walkway",
        S.POS_IMAGE: image,
        S.POS_SCORE: 0.9,
        S.NEG_TEXTS: [f"negative text {j}" for j in range(n_neg)],
        S.NEG_IMAGES: [None] * n_neg,
        S.NEG_SCORES: [0.1 * (j % 4) for j in range(n_neg)],
    }
    row.update(kw)
    return row


@pytest.fixture(scope="module")
def png(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("img") / "red.png"
    Image.new("RGB", (40, 30), (200, 20, 20)).save(path)
    return str(path)


@pytest.fixture(scope="module")
def scorers() -> dict[str, JudgeScorer]:
    return {n: JudgeScorer.load(n) for n in ("tiny-qwen2-vl", "tiny-llava", "tiny-text-lm")}


def test_three_chats_per_row_with_hardest_negative_and_seeded_slot() -> None:
    row = _row(8)
    plan = build_chats(row, list_size=5, seed=3)
    kinds = [c.kind for c in plan.chats]
    assert kinds == ["pairwise_pos", "pairwise_neg", "listwise"]
    pos, neg, lst = plan.chats
    assert (pos.answer, neg.answer) == ("Yes", "No")
    assert pos.candidates[0].text == "striped walkway"
    # scores 0, .1, .2, .3, 0, .1, .2, .3: hardest = index 3, ties in stored order.
    assert neg.candidates[0].text == "negative text 3"
    assert hardest_negatives(row[S.NEG_SCORES], 8, 5) == [3, 7, 2, 6, 1]
    slot = listwise_slot("q1", 3, 6)
    assert lst.answer == f"Ans: ({slot + 1})"
    assert len(lst.candidates) == 6 and lst.candidates[slot].text == "striped walkway"
    assert {c.text for c in lst.candidates} - {"striped walkway"} == {
        f"negative text {j}" for j in (3, 7, 2, 6, 1)
    }
    assert not plan.short_list and not plan.no_negatives
    # Seeded: same slot again; the slot varies over queries.
    assert build_chats(row, 5, 3) == plan
    assert len({listwise_slot(f"q{i}", 3, 6) for i in range(40)}) == 6


def test_short_and_empty_rows_are_kept_and_counted() -> None:
    chats, counts = plan_rows([_row(2, "short"), _row(0, "empty"), _row(6, "full")])
    assert [c.kind for c in chats if "short" in c.source] == [
        "pairwise_pos",
        "pairwise_neg",
        "listwise",
    ]
    short_list = next(c for c in chats if "short" in c.source and c.kind == "listwise")
    assert len(short_list.candidates) == 3
    assert [c.kind for c in chats if "empty" in c.source] == ["pairwise_pos"]
    d = counts.to_dict()
    assert d["rows"] == 3 and d["chats"] == {"pairwise_pos": 3, "pairwise_neg": 2, "listwise": 2}
    assert d["short_list"] == ["short"] and d["no_negatives"] == ["empty"]


def test_bad_rows_name_the_row() -> None:
    with pytest.raises(ValueError, match=r"rows.parquet:1 \(query q1\): the positive"):
        build_chats(_row(1, **{S.POS_TEXT: None}))
    with pytest.raises(ValueError, match="2 negative images for 1 negatives"):
        build_chats(_row(1, **{S.NEG_IMAGES: [None, None]}))


@pytest.mark.parametrize("name", ["tiny-qwen2-vl", "tiny-llava", "tiny-text-lm"])
def test_prompts_hold_query_and_candidate_text_and_image(
    name: str, scorers: dict[str, JudgeScorer], png: str
) -> None:
    scorer = scorers[name]
    image = png if scorer.supports_images else None
    chats, _ = plan_rows([_row(6, image=image)])
    enc = ChatEncoder(scorer)
    batch = enc.encode(chats)
    for prompt, chat in zip(batch.prompts, chats):
        assert "zebra crossing" in prompt  # the query's text
        for cand in chat.candidates:
            assert cand.text in prompt  # every candidate's text
    if image is not None:
        assert scorer.image_token is not None
        pos_prompt, _, list_prompt = batch.prompts
        assert f"{scorer.image_token}\nstriped walkway" in pos_prompt
        assert f"{scorer.image_token}\nstriped walkway" in list_prompt
        image_id = scorer.model.config.image_token_id
        assert bool((batch.inputs["input_ids"][0] == image_id).any())
        assert batch.inputs["pixel_values"].shape[0] > 0
    # Labels: only the answer (plus end of turn); first answer token = the judge's Yes/No.
    labels, ids = batch.labels, batch.inputs["input_ids"]
    for row in range(3):
        real = labels[row] != IGNORE_INDEX
        n = int(real.sum())
        last = int(batch.inputs["attention_mask"][row].sum())
        assert bool(real[last - n : last].all()) and n == int(real[:last].sum())
        assert torch.equal(labels[row, real], ids[row, real])
    first = [int(labels[r][labels[r] != IGNORE_INDEX][0]) for r in range(2)]
    assert first == [scorer.yes_token_id, scorer.no_token_id]
    answer = scorer.tokenizer.decode(labels[2][labels[2] != IGNORE_INDEX])
    assert answer.strip().startswith(chats[2].answer)


def test_shared_prefix_step_equals_full_prompts() -> None:
    """A query's pairwise chats trained on one prefix encoding give the loss and gradients
    of their full prompts, each in its own row."""
    scorer = JudgeScorer.load("tiny-text-lm")
    rows = [_row(6, "a"), _row(3, "b", **{S.QUERY_TEXT: "a longer query about zebras"})]
    chats, _ = plan_rows(rows, list_size=2, pairwise_negatives=3)
    enc = ChatEncoder(scorer)
    plan = plan_forwards(enc, chats, 0, share_prefix=True)
    assert sum(isinstance(b, SharedPrefixBatch) for b in plan) == 2  # one per row
    assert sum(b.n_answer_tokens for b in plan) == enc.encode(chats).n_answer_tokens
    model = prepare_reranker(scorer.model, LoraSection(dropout=0.0))
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    shared, _ = rerank_step(model, enc, chats, RerankLMLoss(), 0, share_prefix=True)
    grads = {n: p.grad.clone() for n, p in trainable.items()}
    model.zero_grad()
    plain, _ = rerank_step(model, enc, chats, RerankLMLoss(), 0, share_prefix=False)
    assert float(shared) == pytest.approx(float(plain), rel=1e-5)
    for n, g in grads.items():
        torch.testing.assert_close(trainable[n].grad, g, rtol=1e-4, atol=1e-6)


def test_rank_term_shared_equals_full_prompts_and_reads_the_margins() -> None:
    """The ranking term gives the same loss and gradients on a shared prefix as on full
    prompts, and equals RerankGroupLoss over l_yes - l_no at each chat's answer."""
    scorer = JudgeScorer.load("tiny-text-lm")
    rows = [_row(4, "a"), _row(3, "b", **{S.QUERY_TEXT: "a longer query about zebras"})]
    chats, _ = plan_rows(rows, list_size=0, pairwise_negatives=3)
    enc = ChatEncoder(scorer)
    model = prepare_reranker(scorer.model, LoraSection(dropout=0.0))
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    rank = RankTerm(RerankGroupLoss(0.5), 2.0, scorer.yes_token_id, scorer.no_token_id)
    shared, stats = rerank_step(model, enc, chats, RerankLMLoss(), 0, share_prefix=True, rank=rank)
    grads = {n: p.grad.clone() for n, p in trainable.items()}
    model.zero_grad()
    plain, _ = rerank_step(model, enc, chats, RerankLMLoss(), 0, share_prefix=False, rank=rank)
    assert float(shared) == pytest.approx(float(plain), rel=1e-5)
    for n, g in grads.items():
        torch.testing.assert_close(trainable[n].grad, g, rtol=1e-4, atol=1e-6)
    model.zero_grad()
    lm_only, _ = rerank_step(model, enc, chats, RerankLMLoss(), 0, share_prefix=False)
    # By hand: one forward of the full prompts, margins at each chat's first answer token.
    batch = enc.encode(chats)
    assert batch.groups is not None and batch.groups.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    with torch.no_grad():
        logits = model(**batch.inputs).logits
    ends = batch.inputs["attention_mask"].sum(dim=1)
    n_answer = (batch.labels != IGNORE_INDEX).sum(dim=1)
    at = logits[torch.arange(len(chats)), ends - n_answer - 1]
    margins = at[:, scorer.yes_token_id] - at[:, scorer.no_token_id]
    positive = torch.tensor([c.answer == YES for c in chats])
    manual = RerankGroupLoss(0.5)(margins, positive, batch.groups)
    assert stats["rank_loss"] == pytest.approx(float(manual), rel=1e-4)
    assert float(plain) == pytest.approx(float(lm_only) + 2.0 * float(manual), rel=1e-4)
    assert 0.0 <= stats["rank_top1"] <= 1.0


def test_spread_picks() -> None:
    assert spread_picks([4, 2, 0, 1, 3], 2) == [4, 0]
    assert spread_picks([4, 2, 0, 1, 3], 1) == [4]
    assert spread_picks([4, 2], 5) == [4, 2]


def test_pairwise_negatives_spread_over_hardness() -> None:
    row = _row(8)
    row[S.NEG_SCORES] = [0.1 * j for j in range(8)]  # negative 7 is the hardest
    plan = build_chats(row, list_size=0, pairwise_negatives=4)
    negs = [c.candidates[0].text for c in plan.chats if c.kind == "pairwise_neg"]
    # hardness order 7 6 5 4 3 2 1 0; positions 0, 2, 4, 6 of it
    assert negs == [f"negative text {j}" for j in (7, 5, 3, 1)]
    assert [c.answer for c in plan.chats].count(YES) == 1
    assert build_chats(row, list_size=0).chats[1].candidates[0].text == "negative text 7"
    with pytest.raises(ValueError, match="pairwise_negatives"):
        build_chats(row, pairwise_negatives=0)


def test_step_trains_lora_only_and_chunks_match_one_forward(
    scorers: dict[str, JudgeScorer],
) -> None:
    scorer = JudgeScorer.load("tiny-text-lm")
    chats, _ = plan_rows([_row(6, "a"), _row(3, "b")])
    enc = ChatEncoder(scorer)
    targets = reranker_targets(scorer.model)
    assert targets and all(t.startswith("model.layers.") for t in targets)
    model = prepare_reranker(scorer.model, LoraSection(dropout=0.0))
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    loss_fn = RerankLMLoss()
    whole, _ = rerank_step(model, enc, chats, loss_fn, 0)
    grads = {n: p.grad.clone() for n, p in trainable.items() if p.grad is not None}
    model.zero_grad()
    chunked, stats = rerank_step(model, enc, chats, loss_fn, 2)
    assert float(chunked) == pytest.approx(float(whole), rel=1e-5)
    for n, g in grads.items():
        torch.testing.assert_close(trainable[n].grad, g, rtol=1e-4, atol=1e-6)
    assert stats["answer_tokens"] > len(chats)
    # The loss is the CE of the answer tokens: recompute it by hand from one forward.
    batch = enc.encode(chats)
    with torch.no_grad():
        logits = model(**batch.inputs).logits
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    lab = batch.labels[:, 1:]
    keep = lab != IGNORE_INDEX
    manual = -logp[keep].gather(1, lab[keep].unsqueeze(1)).mean()
    assert float(whole) == pytest.approx(float(manual), rel=1e-5)


@pytest.mark.parametrize("name", ["tiny-qwen2-vl", "tiny-llava"])
def test_mllm_step_updates_only_the_language_model(name: str, png: str) -> None:
    scorer = JudgeScorer.load(name)
    chats, _ = plan_rows([_row(5, image=png)])
    model = prepare_reranker(scorer.model, LoraSection(dora=False))
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all("language_model" in n and "lora_" in n for n in names)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    loss, _ = rerank_step(model, ChatEncoder(scorer), chats, RerankLMLoss())
    assert torch.isfinite(loss)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    opt.step()
    moved = [
        n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, before[n])
    ]
    assert moved


def test_image_for_text_only_reranker_names_the_row(
    scorers: dict[str, JudgeScorer], png: str
) -> None:
    chats, _ = plan_rows([_row(1, image=png)])
    with pytest.raises(
        ValueError, match=r"rows.parquet:1 \(query q1\): pairwise_pos chat: .*reads text only"
    ):
        ChatEncoder(scorers["tiny-text-lm"]).encode(chats)


def test_missing_image_file_names_the_row(scorers: dict[str, JudgeScorer], tmp_path: Path) -> None:
    chats, _ = plan_rows([_row(1, image=str(tmp_path / "gone.png"))])
    with pytest.raises(Exception, match=r"query q1"):
        ChatEncoder(scorers["tiny-qwen2-vl"]).encode(chats)
