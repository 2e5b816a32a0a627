"""Chats to model inputs: the judge's own prompts plus the answer, labels on the answer only.

The prompt of a pairwise chat is exactly what :meth:`JudgeScorer.prompt` feeds the model at
scoring time, and the answer's first token is the scorer's ``yes_token_id`` /
``no_token_id``: training and inference read the same logit. The answer is followed by the
chat's end-of-turn token (``<|im_end|>`` for ChatML, ``eos`` otherwise) so that listwise
generation learns to stop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from uniembed.data.images import load_image
from uniembed.losses.rerank import IGNORE_INDEX
from uniembed.reranker.data import RerankChat, RerankItem
from uniembed.reranker.listwise import listwise_prompt
from uniembed.reranker.prompts import YES, JudgeInput
from uniembed.reranker.scorer import JudgeScorer

ImageLoader = Callable[[str, str], Image.Image]
_PROBE = "ZqXANSWERXqZ"


def load_item_image(uri: str, source: str) -> Image.Image:
    """Default image loader: decode ``uri`` (local or s3://); errors name ``source``."""
    image = load_image(None, uri, record=source)
    assert image is not None
    return image


@dataclass
class RerankBatch:
    """Model inputs of a list of chats (right-padded) and their labels.

    ``inputs`` holds ``input_ids`` / ``attention_mask`` (b, t) and, for MLLMs, the image
    tensors; ``labels`` (b, t) are the token ids on answer tokens and -100 elsewhere;
    ``groups`` (b,) the query index of each pairwise chat (-1 for a listwise chat).
    """

    inputs: dict[str, Tensor]
    labels: Tensor
    prompts: list[str]
    answers: list[str]
    groups: Tensor | None = None

    @property
    def n_answer_tokens(self) -> int:
        """Tokens that take part in the loss."""
        return int((self.labels != IGNORE_INDEX).sum())


@dataclass
class SharedPrefixBatch:
    """One query's pairwise chats as its prompt prefix, encoded once, and the chats' own
    suffixes (candidate, generation prompt and answer), right-padded, with answer labels.

    ``prefix`` holds ``input_ids`` / ``attention_mask`` (1, p); ``suffix`` the same keys
    (c, s); ``labels`` (c, s) are the answer tokens' ids and -100 elsewhere; ``groups`` (c,)
    is all zeros (one query).
    """

    prefix: dict[str, Tensor]
    suffix: dict[str, Tensor]
    labels: Tensor
    groups: Tensor | None = None

    @property
    def n_answer_tokens(self) -> int:
        """Tokens that take part in the loss."""
        return int((self.labels != IGNORE_INDEX).sum())


def _answer_labels(
    ids: Tensor, mask: Tensor, tails: list[list[int]], chats: Sequence[RerankChat]
) -> Tensor:
    """Labels of a right-padded batch whose rows end with the answers' tokens ``tails``."""
    labels = torch.full_like(ids, IGNORE_INDEX)
    for row, tail in enumerate(tails):
        last, n = int(mask[row].sum()), len(tail)
        expected = torch.tensor(tail, device=ids.device)
        if not bool((ids[row, last - n : last] == expected).all()):
            raise ValueError(f"{chats[row].source}: the answer tokens differ in context")
        labels[row, last - n : last] = ids[row, last - n : last]
    return labels


def query_groups(chats: Sequence[RerankChat]) -> Tensor:
    """(n,) long: each pairwise chat's query index (first appearance order), -1 for
    listwise chats, so that a query's pairwise chats can be ranked against each other."""
    index: dict[RerankItem, int] = {}
    out = [-1 if c.kind == "listwise" else index.setdefault(c.query, len(index)) for c in chats]
    return torch.tensor(out, dtype=torch.long)


class ChatEncoder:
    """Turns :class:`RerankChat` lists into :class:`RerankBatch` for one loaded scorer."""

    def __init__(self, scorer: JudgeScorer, load: ImageLoader = load_item_image) -> None:
        self.scorer = scorer
        self.load = load
        self.lead, self.end = self._answer_frame()

    def _count_ids(self, text: str) -> list[int]:
        # Plain tokenizer, no special tokens added: only the tail (the answer) is compared.
        return self.scorer.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _answer_frame(self) -> tuple[str, str]:
        """(text before the answer, text after it) such that the answer's first token is
        the scorer's Yes token, and the turn ends like the chat template ends it."""
        probe = self.scorer.prompt(JudgeInput("a cat"), JudgeInput("a dog"))
        lead = None
        for candidate in ("", " "):
            ids, base = self._count_ids(probe + candidate + YES), self._count_ids(probe)
            if ids[: len(base)] == base and len(ids) > len(base):
                if ids[len(base)] == self.scorer.yes_token_id:
                    lead = candidate
                    break
        if lead is None:
            raise ValueError(
                f"{self.scorer.name}: no spelling of the answer starts with the judge's Yes token"
            )
        owner = (
            self.scorer.processor if self.scorer.processor is not None else self.scorer.tokenizer
        )
        end = ""
        if self.scorer.settings.use_chat_template and getattr(owner, "chat_template", None):
            parts = self.scorer.settings.family.chat_content == "parts"
            user = [{"type": "text", "text": "x"}] if parts else "x"
            reply = [{"type": "text", "text": _PROBE}] if parts else _PROBE
            rendered = owner.apply_chat_template(
                [{"role": "user", "content": user}, {"role": "assistant", "content": reply}],
                tokenize=False,
            )
            end = rendered.split(_PROBE, 1)[1].rstrip() if _PROBE in rendered else ""
        if not end:
            end = self.scorer.tokenizer.eos_token or ""
        return lead, end

    def _input(self, item: RerankItem, source: str) -> JudgeInput:
        image = self.load(item.image, source) if item.image else None
        return JudgeInput(text=item.text, image=image)

    def prompt(self, chat: RerankChat, images: list[Image.Image] | None = None) -> str:
        """The chat's prompt text (what the scorer or listwise generation is given)."""
        query = self._input(chat.query, chat.source)
        cands = [self._input(c, chat.source) for c in chat.candidates]
        if images is not None:
            images.extend(x.image for x in (query, *cands) if x.image is not None)
        try:
            if chat.kind == "listwise":
                return listwise_prompt(self.scorer, query, cands)
            return self.scorer.prompt(query, cands[0])
        except ValueError as e:
            raise ValueError(f"{chat.source}: {chat.kind} chat: {e}") from e

    def encode(self, chats: Sequence[RerankChat]) -> RerankBatch:
        """Tokenise ``chats`` in one right-padded batch with answer-only labels."""
        if not chats:
            raise ValueError("no chats to encode")
        prompts, fulls, images, tails = [], [], [], []
        for chat in chats:
            prompt = self.prompt(chat, images)
            full = prompt + self.lead + chat.answer + self.end
            ids = self._count_ids(full)
            n = len(ids) - len(self._count_ids(prompt))
            if n < 1:
                raise ValueError(f"{chat.source}: answer {chat.answer!r} adds no token")
            prompts.append(prompt)
            fulls.append(full)
            tails.append(ids[-n:])
        batch = self._tensors(fulls, images)
        labels = _answer_labels(batch["input_ids"], batch["attention_mask"], tails, chats)
        groups = query_groups(chats).to(labels.device)
        return RerankBatch(batch, labels, prompts, [c.answer for c in chats], groups)

    def can_share(self, chats: Sequence[RerankChat]) -> bool:
        """True when ``chats`` can train on one shared prefix: pairwise chats of one text
        query without images, on a text model with 1-D positions whose prompt splits
        cleanly at the candidate (the scorer's own check)."""
        s = self.scorer
        return (
            len(chats) > 1
            and s.shares_prefix
            and s.processor is None
            and all(c.kind != "listwise" and c.query == chats[0].query for c in chats)
            and all(x.image is None for c in chats for x in (c.query, *c.candidates))
        )

    def encode_shared(self, chats: Sequence[RerankChat]) -> SharedPrefixBatch:
        """Encode chats that :meth:`can_share` as one prefix and their suffixes: the same
        tokens as :meth:`encode` gives each chat, the prefix's only once."""
        s = self.scorer
        query = self._input(chats[0].query, chats[0].source)
        splits = [s._split(query, self._input(c.candidates[0], c.source)) for c in chats]
        prefix = splits[0][0]
        if any(p != prefix for p, _ in splits):
            raise ValueError(f"{chats[0].source}: the chat template makes the query prefix differ")
        tails = []
        for (_, suffix), chat in zip(splits, chats):
            full = self._count_ids(prefix + suffix + self.lead + chat.answer + self.end)
            n = len(full) - len(self._count_ids(prefix + suffix))
            if n < 1:
                raise ValueError(f"{chat.source}: answer {chat.answer!r} adds no token")
            tails.append(full[-n:])
        suffixes = [suf + self.lead + c.answer + self.end for (_, suf), c in zip(splits, chats)]
        batch = s._encode_suffixes(suffixes, [])
        labels = _answer_labels(batch["input_ids"], batch["attention_mask"], tails, chats)
        groups = torch.zeros(len(chats), dtype=torch.long, device=labels.device)
        return SharedPrefixBatch(s._encode([prefix], []), batch, labels, groups)

    def _tensors(self, texts: list[str], images: list[Image.Image]) -> dict[str, Tensor]:
        s = self.scorer
        if s.processor is not None:
            out: Any = s.processor(
                text=texts, images=images or None, padding=True, return_tensors="pt"
            )
        else:
            chat = bool(s.settings.use_chat_template and s.tokenizer.chat_template)
            out = s.tokenizer(texts, padding=True, add_special_tokens=not chat, return_tensors="pt")
        param = next(s.model.parameters())
        return {
            k: v.to(param.device, param.dtype) if v.is_floating_point() else v.to(param.device)
            for k, v in out.items()
            if isinstance(v, Tensor)
        }
