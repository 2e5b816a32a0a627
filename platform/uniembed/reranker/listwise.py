"""Listwise reranking (DESIGN §1, UniME-V2 reranker): one prompt over a query and n
candidates, answered ``Ans: (k)``.

The user turn is::

    <LISTWISE_INSTRUCTION with n>
    Query: [image token\\n][query text]
    Candidates:
    (1) [image token\\n][text]
    ...
    (n) [image token\\n][text]

wrapped in the backbone's chat template like the pairwise prompt of ``judge_prompts`` (same
item rendering, same image token). The answer is parsed strictly with ``\\((\\d+)\\)``: an
answer without exactly one candidate number in range is reported as unparseable, never
guessed. The model is a :class:`~uniembed.reranker.scorer.JudgeScorer` (the same loaded
reranker folder serves pairwise P(Yes) and listwise generation).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from uniembed.models.prompts import wrap_chat
from uniembed.reranker.prompts import QUERY_LABEL, JudgeInput, item_content
from uniembed.reranker.scorer import JudgeScorer

LISTWISE_INSTRUCTION = (
    "I will provide you with a query and {n} candidates, numbered (1) to ({n}). Please "
    "identify the candidate that best meets the requirements of the query. Respond with "
    "'Ans: (k)', where k is the number of that candidate."
)
CANDIDATES_LABEL = "Candidates:"
ANSWER_FORMAT = "Ans: ({k})"
ANSWER_PATTERN = re.compile(r"\((\d+)\)")


def listwise_answer(slot: int) -> str:
    """The target answer for the candidate at 0-based ``slot``: ``"Ans: (slot + 1)"``."""
    if slot < 0:
        raise ValueError(f"slot must be >= 0, got {slot}")
    return ANSWER_FORMAT.format(k=slot + 1)


def listwise_content(
    query: JudgeInput, candidates: Sequence[JudgeInput], image_token: str | None
) -> str:
    """The user-turn text of a listwise prompt (before the chat template)."""
    if not candidates:
        raise ValueError("a listwise prompt needs at least one candidate")
    lines = [
        LISTWISE_INSTRUCTION.format(n=len(candidates)),
        f"{QUERY_LABEL}{item_content(query, image_token)}",
        CANDIDATES_LABEL,
    ]
    lines += [f"({i + 1}) {item_content(c, image_token)}" for i, c in enumerate(candidates)]
    return "\n".join(lines)


def listwise_prompt(
    scorer: JudgeScorer, query: JudgeInput, candidates: Sequence[JudgeInput]
) -> str:
    """The full chat text (generation prompt included) of a listwise prompt for ``scorer``'s
    backbone. Inputs are checked like the pairwise ones (ValueError naming the item)."""
    check = scorer._check  # the judge's own input checks: one rule set for both prompts
    check(query, "query")
    for i, c in enumerate(candidates):
        check(c, f"candidate {i}")
    query, candidates = scorer.fit(query), [scorer.fit(c) for c in candidates]
    content = listwise_content(query, candidates, scorer.image_token)
    owner = scorer.processor if scorer.processor is not None else scorer.tokenizer
    return wrap_chat(content, owner, scorer.settings)


@dataclass(frozen=True)
class ListwiseAnswer:
    """A parsed listwise answer: ``choice`` is the 0-based candidate index, or None with
    ``error`` saying why the text could not be read."""

    text: str
    choice: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the answer named exactly one candidate in range."""
        return self.choice is not None


def parse_listwise_answer(text: str, n: int) -> ListwiseAnswer:
    """Read ``Ans: (k)`` from generated ``text`` for a list of ``n`` candidates.

    Strict: exactly one distinct ``(k)`` with ``1 <= k <= n``. No number, several different
    numbers, or one out of range give ``choice=None`` and the reason in ``error``.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    found = sorted({int(m) for m in ANSWER_PATTERN.findall(text)})
    if not found:
        return ListwiseAnswer(text, None, "no '(k)' candidate number in the answer")
    if len(found) > 1:
        return ListwiseAnswer(text, None, f"several candidate numbers {found} in the answer")
    k = found[0]
    if not 1 <= k <= n:
        return ListwiseAnswer(text, None, f"candidate number {k} is outside 1..{n}")
    return ListwiseAnswer(text, k - 1)


class ListwiseReranker:
    """Greedy listwise generation with a loaded reranker (a :class:`JudgeScorer`).

    Example:
        >>> scorer = JudgeScorer.load("outputs/train/reranker/export")
        >>> answer = ListwiseReranker(scorer).choose(JudgeInput("a cat"), candidates)
        >>> answer.choice if answer.ok else answer.error
    """

    def __init__(self, scorer: JudgeScorer, max_new_tokens: int = 8) -> None:
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        self.scorer = scorer
        self.max_new_tokens = max_new_tokens

    def _inputs(self, prompt: str, images: list[Any]) -> dict[str, torch.Tensor]:
        if self.scorer.processor is not None:
            batch = self.scorer.processor(text=[prompt], images=images or None, return_tensors="pt")
        else:
            chat = bool(
                self.scorer.settings.use_chat_template and self.scorer.tokenizer.chat_template
            )
            batch = self.scorer.tokenizer(
                [prompt], add_special_tokens=not chat, return_tensors="pt"
            )
        param = next(self.scorer.model.parameters())
        return {
            k: v.to(param.device, param.dtype) if v.is_floating_point() else v.to(param.device)
            for k, v in batch.items()
            if isinstance(v, torch.Tensor)
        }

    def generate(self, query: JudgeInput, candidates: Sequence[JudgeInput]) -> str:
        """The model's greedy answer text (special tokens removed) for the listwise prompt."""
        prompt = listwise_prompt(self.scorer, query, candidates)
        images = [x.image for x in (query, *candidates) if x.image is not None]
        batch = self._inputs(prompt, images)
        tok = self.scorer.tokenizer
        with torch.inference_mode():
            out = self.scorer.model.generate(
                **batch,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
            )
        new = out[0, batch["input_ids"].shape[1] :]
        return tok.decode(new, skip_special_tokens=True)

    def choose(self, query: JudgeInput, candidates: Sequence[JudgeInput]) -> ListwiseAnswer:
        """Generate and parse: the chosen candidate, or the reason none could be read."""
        return parse_listwise_answer(self.generate(query, candidates), len(candidates))
