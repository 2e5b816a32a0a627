"""One query's candidates scored in bounded steps (chunked prefill), for a server that
must not let one long request hold the others up.

:meth:`JudgeScorer.score <uniembed.reranker.scorer.JudgeScorer.score>` computes a query's
prefix and candidates in as few forwards as it can. A server needs the opposite bound: no
forward longer than ``step_tokens`` tokens, and the work resumable between forwards, so
that another request's forwards can run in between. :class:`ScoringSteps` plans a request
as a list of such forwards and runs them a few at a time (:meth:`ScoringSteps.advance`):

* the query prefix in chunks of at most ``step_tokens`` tokens, each extending one KV cache
  (a prefix holding an image runs whole: its image tokens cannot be split);
* candidates that fit packed end to end behind the prefix cache (``judge_pack``: block
  mask, positions restarting after the prefix), at most ``step_tokens`` tokens and
  ``batch_size`` candidates a pack; or, for attention that takes no custom mask, as padded
  rows on copies of the prefix cache;
* a longer text-only candidate in chunks of at most ``step_tokens`` tokens on its own view
  of the prefix cache (extended by concatenation: the prefix cache is never written), P(Yes)
  read at its last chunk's last token.

Every candidate computes what it would behind the prefix alone, so the scores equal
:meth:`JudgeScorer.score`'s (to float rounding; pinned by the unit tests). Judges that
cannot split or share the prefix (``shares_prefix`` False, sliding-window caches) take one
pair per forward (:meth:`JudgeScorer.score_pairs`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from uniembed.reranker import cache as judge_cache
from uniembed.reranker import pack as judge_pack
from uniembed.reranker.prompts import JudgeInput
from uniembed.reranker.scorer import _SEQUENCE_KEYS

if TYPE_CHECKING:
    from uniembed.reranker.scorer import JudgeScorer
Forward = Callable[[], None]


class ScoringSteps:
    """The scores of ``candidates`` for ``query``, computed a bounded forward at a time.

    Args:
        scorer: the judge.
        query, candidates: as for :meth:`JudgeScorer.score` (checked here: a candidate the
            judge cannot take raises ValueError before anything runs).
        step_tokens: the most tokens one forward computes (an image-bearing prefix or
            candidate, which cannot be split, may cost more).
        batch_size: the most candidates one forward packs.

    Tokenising happens here; forwards only in :meth:`advance`.
    """

    def __init__(
        self,
        scorer: JudgeScorer,
        query: JudgeInput,
        candidates: Sequence[JudgeInput],
        *,
        step_tokens: int,
        batch_size: int = 16,
    ) -> None:
        if step_tokens < 1 or batch_size < 1:
            raise ValueError(
                f"step_tokens and batch_size must be >= 1: {step_tokens}, {batch_size}"
            )
        scorer._check(query, "query")
        for i, candidate in enumerate(candidates):
            scorer._check(candidate, f"candidate {i}")
        self.scorer = scorer
        self.step_tokens = step_tokens
        self.batch_size = batch_size
        self.scores = np.zeros(len(candidates), dtype=np.float32)
        self._cache: Any = None  # the prefix's KV cache, once computed
        self._prefix_len = 0
        self._start = 0  # the position a candidate's first token takes
        # Each planned forward: (its tokens, the call that runs it).
        self._plan: list[tuple[int, Forward]] = []
        self._next = 0
        with torch.inference_mode():
            self._make_plan(query, list(candidates))

    @property
    def done(self) -> bool:
        """True once every candidate has its score."""
        return self._next >= len(self._plan)

    @property
    def forwards(self) -> int:
        """How many forwards the request takes in all."""
        return len(self._plan)

    def advance(self, budget: int | None = None) -> int:
        """Run the next forwards, as many as fit in ``budget`` tokens (default
        ``step_tokens``; at least one); the tokens they computed."""
        budget = self.step_tokens if budget is None else budget
        spent = 0
        with torch.inference_mode():
            while not self.done:
                tokens, forward = self._plan[self._next]
                if spent and spent + tokens > budget:
                    break
                forward()
                self._next += 1
                spent += tokens
        if self.done:
            self._cache = None  # the KV cache is the request's only large state
        return spent

    def run(self) -> np.ndarray:
        """Every remaining forward; the scores."""
        while not self.done:
            self.advance()
        return self.scores

    # --- planning ----------------------------------------------------------------------
    def _make_plan(self, query: JudgeInput, candidates: list[JudgeInput]) -> None:
        s = self.scorer
        if not candidates:
            return
        if not s.shares_prefix:
            self._plan_pairs(query, candidates, range(len(candidates)))
            return
        splits = [s._split(query, c) for c in candidates]
        prefix = splits[0][0]
        if any(p != prefix for p, _ in splits):
            raise ValueError(f"{s.name}: the chat template makes the query prefix differ")
        batch = s._encode([prefix], [query.image] if query.image else [])
        positions = s._positions(batch, batch["attention_mask"], 0)
        self._prefix_len = int(batch["input_ids"].shape[1])
        self._start = judge_cache.next_position(positions)
        self._plan_prefix(batch, positions)
        encoded = [
            s._encode_suffixes([suffix], _images([c])) for (_, suffix), c in zip(splits, candidates)
        ]
        lengths = [int(e["input_ids"].shape[1]) for e in encoded]
        pack: list[int] = []
        for i, n in enumerate(lengths):
            whole = n <= self.step_tokens or candidates[i].image is not None
            fits = sum(lengths[j] for j in pack) + n <= self.step_tokens
            if pack and (not whole or not fits or len(pack) == self.batch_size):
                self._plan_pack(pack, splits, candidates, encoded, query)
                pack = []
            if whole:
                pack.append(i)
            else:
                self._plan_long(i, dict(encoded[i]), query, candidates)
        if pack:
            self._plan_pack(pack, splits, candidates, encoded, query)

    def _plan_pairs(
        self, query: JudgeInput, candidates: list[JudgeInput], rows: Sequence[int]
    ) -> None:
        """One full-prompt forward per pair (judges that cannot share a prefix)."""
        for i in rows:

            def forward(i: int = i) -> None:
                self.scores[i] = self.scorer.score_pairs([(query, candidates[i])])[0]

            tokens = len(self.scorer._token_ids(self.scorer.prompt(query, candidates[i])))
            self._plan.append((tokens, forward))

    def _plan_prefix(self, batch: dict[str, torch.Tensor], positions: torch.Tensor) -> None:
        """The prefix in chunks, each extending the KV cache (whole when it holds an image)."""
        n = self._prefix_len
        step = n if _has_images(batch) else self.step_tokens
        for lo in range(0, n, step):
            hi = min(n, lo + step)

            def forward(lo: int = lo, hi: int = hi) -> None:
                chunk = {k: v[:, lo:hi] for k, v in batch.items() if k in _SEQUENCE_KEYS}
                chunk.update({k: v for k, v in batch.items() if k not in _SEQUENCE_KEYS})
                chunk.pop("attention_mask", None)  # one row, no padding: causal
                out = self.scorer.model(
                    **chunk,
                    position_ids=positions[..., lo:hi],
                    past_key_values=self._cache,
                    use_cache=True,
                    logits_to_keep=1,
                )
                self._cache = out.past_key_values

            self._plan.append((hi - lo, forward))

    def _shareable(self, query: JudgeInput, candidates: list[JudgeInput], rows: list[int]) -> bool:
        """False (and the rows scored pair by pair) when the prefix cache cannot be shared."""
        if judge_cache.can_share(self._cache):
            return True
        for i in rows:
            self.scores[i] = self.scorer.score_pairs([(query, candidates[i])])[0]
        return False

    def _plan_pack(
        self,
        rows: list[int],
        splits: list[tuple[str, str]],
        candidates: list[JudgeInput],
        encoded: list[dict[str, torch.Tensor]],
        query: JudgeInput,
    ) -> None:
        """Whole candidates behind the prefix cache in one forward (inputs made here, so
        that a forward never tokenises)."""
        s = self.scorer
        inputs, positions, lens = _packed(s, [encoded[i] for i in rows], self._start)
        padded = None
        if not s.packs_candidates:  # attention that takes no custom mask: padded rows
            suffixes = [splits[i][1] for i in rows]
            padded = s._encode_suffixes(suffixes, _images([candidates[i] for i in rows]))

        def forward() -> None:
            if not self._shareable(query, candidates, rows):
                return
            if padded is not None:
                self.scores[rows] = s._score_encoded(self._cache, self._start, padded).numpy()
                return
            allowed = judge_pack.allowed_attention(self._prefix_len, lens, with_prefix=False)
            param = next(s.model.parameters())
            out = s.model(
                **inputs,
                attention_mask=judge_pack.attention_mask_4d(allowed, s._attention, param.dtype).to(
                    param.device
                ),
                position_ids=positions,
                past_key_values=judge_cache.expand_cache(self._cache, 1, s.model.config),
                use_cache=True,
                logits_to_keep=judge_pack.last_tokens(0, lens).to(param.device),
            )
            self.scores[rows] = s._p_yes(out.logits[0]).cpu().numpy()

        self._plan.append((sum(lens), forward))

    def _plan_long(
        self,
        row: int,
        encoded: dict[str, torch.Tensor],
        query: JudgeInput,
        candidates: list[JudgeInput],
    ) -> None:
        """A text-only candidate longer than a step, in chunks on its own view of the
        prefix cache; P(Yes) at its last token."""
        s = self.scorer
        n = int(encoded["input_ids"].shape[1])
        mask = encoded.pop("attention_mask")
        positions = s._positions(encoded, mask, self._start)
        state: dict[str, Any] = {}
        for lo in range(0, n, self.step_tokens):
            hi = min(n, lo + self.step_tokens)

            def forward(lo: int = lo, hi: int = hi) -> None:
                if lo == 0:
                    if not self._shareable(query, candidates, [row]):
                        state["cache"] = None
                        return
                    state["cache"] = judge_cache.expand_cache(self._cache, 1, s.model.config)
                if state["cache"] is None:  # scored pair by pair at its first chunk
                    return
                out = s.model(
                    **{k: v[:, lo:hi] for k, v in encoded.items() if k in _SEQUENCE_KEYS},
                    position_ids=positions[..., lo:hi],
                    past_key_values=state["cache"],
                    use_cache=True,
                    logits_to_keep=1,
                )
                state["cache"] = out.past_key_values
                if hi == n:
                    self.scores[row] = float(s._p_yes(out.logits[:, -1])[0])
                    state["cache"] = None

            self._plan.append((hi - lo, forward))


def _images(candidates: Sequence[JudgeInput]) -> list[Any]:
    return [c.image for c in candidates if c.image is not None]


def _has_images(batch: dict[str, torch.Tensor]) -> bool:
    return any(k not in _SEQUENCE_KEYS for k in batch)


def _packed(
    scorer: JudgeScorer, encoded: list[dict[str, torch.Tensor]], start: int
) -> tuple[dict[str, torch.Tensor], torch.Tensor, list[int]]:
    """Candidates tokenised one by one (each (1, n), no padding) laid end to end in one
    row: the model inputs, their positions (each candidate's starting at ``start``) and
    their token counts; images in candidate order."""
    inputs: dict[str, torch.Tensor] = {}
    positions, lengths = [], []
    for enc in encoded:
        mask = enc["attention_mask"]
        positions.append(scorer._positions(enc, mask, start))
        lengths.append(int(mask.shape[1]))
        for key, value in enc.items():
            if key == "attention_mask":
                continue
            if key in inputs:
                dim = -1 if key in _SEQUENCE_KEYS else 0
                inputs[key] = torch.cat([inputs[key], value], dim=dim)
            else:
                inputs[key] = value
    return inputs, torch.cat(positions, dim=-1), lengths
