"""The MLLM judge: P(Yes) that a candidate meets a query (DESIGN §1, UniME-V2).

s = e^{l_yes} / (e^{l_yes} + e^{l_no}) from the causal-LM logits at the first generated
token after the pairwise prompt (``judge_prompts``). A fine-tuned pairwise reranker is the
same thing with other weights: load its folder with :meth:`JudgeScorer.load`.

Two ways to score, one forward function:

* :meth:`JudgeScorer.score_pairs` runs each full prompt alone (no padding, no cache, the
  model computes its own positions): the reference and the baseline.
* :meth:`JudgeScorer.score` computes the query prefix once. By default
  (``packs_candidates``) the candidate suffixes are packed end to end in one row behind
  the prefix, with a block attention mask and positions restarting after the prefix
  (``judge_pack``): no padding and no cache copies. Otherwise (attention kernels that
  take no custom mask, such as flash-attention) the prefix runs with ``use_cache=True``
  and the suffixes in right-padded batches on copies of that cache (``judge_cache``).
  Either way positions are explicit, logits are taken at each suffix's last real token,
  and candidate images travel with their suffix (``pixel_values``/``image_grid_thw``).

Yes/No token ids: the first token of the answer as the model would emit it right after the
generation prompt, tokenised in context: ``Yes`` after a newline or special token
(ChatML ``assistant\\n``), `` Yes`` after a label like LLaVA-1.5's ``ASSISTANT:``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from uniembed.models.backbone import Backbone
from uniembed.models.families import Family
from uniembed.models.pooling_config import ResolvedPooling
from uniembed.models.prompts import wrap_chat
from uniembed.models.registry import load_backbone
from uniembed.models.truncation import truncate_text
from uniembed.reranker import cache as judge_cache
from uniembed.reranker import pack as judge_pack
from uniembed.reranker.prompts import (
    JUDGE_TEXT_TOKENS,
    NO,
    SPLIT_ANCHOR,
    YES,
    JudgeInput,
    answer_text,
    candidate_content,
    check_judge_input,
    first_answer_token,
    query_content,
    split_chat,
)

__all__ = ["JudgeInput", "JudgeScorer"]

logger = logging.getLogger(__name__)
_SEQUENCE_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids")


class JudgeScorer(Backbone):
    """Scores (query, candidate) pairs with a causal (M)LLM's Yes/No logits.

    Attributes:
        name: registry name, folder or hub id the judge was loaded from.
        supports_images: False for text-only LMs; they reject image inputs.
        yes_token_id, no_token_id: the answer tokens whose logits are compared.
        shares_prefix: False when the load-time probe found that this tokenizer or cache
            cannot split at the query/candidate boundary; ``score`` then runs pair by pair.
        packs_candidates: True when ``score`` packs a query's candidates in one row behind
            its prefix (the attention reads a custom mask and every layer sees the whole
            sequence); False: batches of padded suffixes on copies of the prefix cache.
            Settable, to compare the two.
    """

    def __init__(
        self,
        name: str,
        model: torch.nn.Module,
        tokenizer: Any,
        processor: Any | None,
        settings: ResolvedPooling,
    ) -> None:
        super().__init__(name, model, tokenizer, processor, settings)  # right-padded suffixes
        self.image_token = settings.image_token if self.supports_images else None
        self.image_token_id: int | None = getattr(model.config, "image_token_id", None)
        self._rope_index = judge_cache.rope_index_fn(model)
        self._anchor_ids = self._encode([SPLIT_ANCHOR], [])["input_ids"][0].tolist()
        self.yes_token_id, self.no_token_id = self._answer_token_ids()
        self.shares_prefix = self._split_is_clean()
        self._attention = judge_pack.attention_implementation(model)
        self.packs_candidates = (
            self._attention in judge_pack.MASKABLE_ATTENTION and self._attends_to_everything()
        )

    # --- loading -----------------------------------------------------------------------
    @classmethod
    def load(
        cls, name_or_path: str, *, device: str = "cpu", dtype: str | None = None
    ) -> JudgeScorer:
        """Load a judge by registry name (``tiny-qwen2-vl``, ``tiny-llava``, ``tiny-text-lm``,
        ``smollm2-135m``), model folder or hub id, with its causal-LM head.

        Args:
            device: torch device string. dtype: "float32", "bfloat16" or "float16"; default
                float32 on CPU, bfloat16 elsewhere.

        Raises:
            UnknownModelError: nothing loadable behind the name.
            ValueError: a bad dtype, or a model that is not a causal (M)LLM.
        """
        from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

        def causal_lm(family: Family) -> Any:
            if family.kind == "encoder":
                raise ValueError(
                    f"{name_or_path}: a {family.name} model has no causal-LM head to judge with"
                )
            return AutoModelForImageTextToText if family.kind == "mllm" else AutoModelForCausalLM

        loaded = load_backbone(
            name_or_path, causal_lm, device=device, dtype=dtype, role="judge model"
        )
        return cls(name_or_path, loaded.model, loaded.tokenizer, loaded.processor, loaded.settings)

    # --- prompts -----------------------------------------------------------------------
    # Each text a prompt holds is cut to this many tokens (models.truncation: the text
    # alone, never an image or the template); the serve app sets reranker.max_text_tokens,
    # the mine job judge.max_text_tokens, the reranker job data.max_text_tokens.
    max_text_tokens: int = JUDGE_TEXT_TOKENS

    def fit(self, inp: JudgeInput) -> JudgeInput:
        """``inp`` with its text cut to :attr:`max_text_tokens` tokens (itself when it fits):
        a 200 KB document would otherwise be a prompt of ~50k tokens, minutes of compute
        and, on a GPU, memory enough to stop the actor."""
        if not isinstance(inp, JudgeInput) or not isinstance(inp.text, str):
            return inp
        text, cut = truncate_text(self.tokenizer, inp.text, self.max_text_tokens)
        return JudgeInput(text=text, image=inp.image) if cut else inp

    def _split(self, query: JudgeInput, candidate: JudgeInput) -> tuple[str, str]:
        query, candidate = self.fit(query), self.fit(candidate)
        query_part = query_content(query, self.image_token)
        content = query_part + candidate_content(candidate, self.image_token)
        return split_chat(wrap_chat(content, self._chat_owner(), self.settings), query_part)

    def prompt(self, query: JudgeInput, candidate: JudgeInput) -> str:
        """The full chat text fed to the model for one pair (generation prompt included)."""
        self._check(query, "query")
        self._check(candidate, "candidate")
        return "".join(self._split(query, candidate))

    def _check(self, inp: object, where: str) -> None:
        check_judge_input(inp, where, self.name, self.image_token, self.supports_images)

    # --- tokenisation ------------------------------------------------------------------
    def _encode(self, texts: list[str], images: list[Any]) -> dict[str, torch.Tensor]:
        """Model inputs for ``texts`` (right-padded), images in text order, on the model's
        device; floating tensors in the model's dtype."""
        return self._model_inputs(texts, images)

    def _token_ids(self, text: str) -> list[int]:
        return self._encode([text], [])["input_ids"][0].tolist()

    def _encode_suffixes(self, suffixes: list[str], images: list[Any]) -> dict[str, torch.Tensor]:
        """Tokenise suffixes behind the anchor newline and cut the anchor's tokens off, so
        each suffix is tokenised exactly as it is inside the full prompt."""
        batch = self._encode([SPLIT_ANCHOR + s for s in suffixes], images)
        n = len(self._anchor_ids)
        anchor = torch.tensor(self._anchor_ids, device=batch["input_ids"].device)
        if not bool((batch["input_ids"][:, :n] == anchor).all()):
            raise ValueError(f"{self.name}: a candidate's tokens merge across the prompt split")
        return {k: v[:, n:] if k in _SEQUENCE_KEYS else v for k, v in batch.items()}

    def _answer_token_ids(self) -> tuple[int, int]:
        probe = JudgeInput(text="a cat")
        generation_prompt = "".join(self._split(probe, probe))
        special = [str(t) for t in self.tokenizer.all_special_tokens]
        special += [str(t) for t in getattr(self.tokenizer, "added_tokens_decoder", {}).values()]
        space = answer_text(generation_prompt, special)
        yes = first_answer_token(self._token_ids, generation_prompt, space + YES)
        no = first_answer_token(self._token_ids, generation_prompt, space + NO)
        if space and not (
            self.tokenizer.decode([yes]).strip() and self.tokenizer.decode([no]).strip()
        ):
            # The vocabulary has no word-start form of an answer (its first token would be a
            # lone space, which says nothing): compare the bare words instead, both alike.
            yes = first_answer_token(self._token_ids, generation_prompt, YES)
            no = first_answer_token(self._token_ids, generation_prompt, NO)
        if yes == no:
            raise ValueError(f"{self.name}: 'Yes' and 'No' start with the same token {yes}")
        return yes, no

    def _split_is_clean(self) -> bool:
        # Probe texts end in characters that tokenisers like to merge with what follows.
        probes = [("a cat sits.", "a dog"), ('word: "quoted"', "x"), ("ends in 42", "No")]
        for q_text, c_text in probes:
            prefix, suffix = self._split(JudgeInput(text=q_text), JudgeInput(text=c_text))
            full = self._token_ids(prefix + suffix)
            try:
                tail = self._encode_suffixes([suffix], [])["input_ids"][0].tolist()
            except ValueError:
                tail = []
            if self._token_ids(prefix) + tail != full:
                logger.warning(
                    "%s: prompt split is not token-clean; scoring pair by pair", self.name
                )
                return False
        return True

    def _attends_to_everything(self) -> bool:
        """True when a forward's KV cache is full attention in every layer (no sliding
        window or recurrent state), probed on one token."""
        ids = torch.tensor([self._anchor_ids], device=next(self.model.parameters()).device)
        with torch.inference_mode():
            out = self.model(input_ids=ids, use_cache=True, logits_to_keep=1)
        return judge_cache.can_share(out.past_key_values)

    # --- forward -----------------------------------------------------------------------
    def _positions(
        self, batch: dict[str, torch.Tensor], mask: torch.Tensor, offset: int
    ) -> torch.Tensor:
        """Explicit positions of a right-padded segment starting at ``offset``."""
        return judge_cache.positions(
            self._rope_index,
            batch["input_ids"],
            mask,
            self.image_token_id,
            batch.get("image_grid_thw"),
            offset=offset,
        )

    def _p_yes(self, logits: torch.Tensor) -> torch.Tensor:
        """P(Yes) (n,) float32 from answer-position logits (n, vocab)."""
        pair = logits[:, [self.yes_token_id, self.no_token_id]].float()
        return torch.softmax(pair, dim=-1)[:, 0]

    def _yes_probability(
        self,
        batch: dict[str, torch.Tensor],
        suffix_mask: torch.Tensor,
        past: Any | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """P(Yes) (b,) float32 from the logits at each row's last real token.

        ``batch`` holds ``input_ids`` (b, s) and an ``attention_mask`` over cache + input;
        ``suffix_mask`` (b, s) marks the real tokens of ``input_ids``.
        """
        out = self.model(
            **batch,
            position_ids=position_ids,
            past_key_values=past,
            use_cache=past is not None,
            logits_to_keep=judge_cache.last_token_positions(suffix_mask),
        )
        return self._p_yes(out.logits[:, 0])

    # --- scoring -----------------------------------------------------------------------
    def score_pairs(self, pairs: Sequence[tuple[JudgeInput, JudgeInput]]) -> np.ndarray:
        """P(Yes) per (query, candidate) pair, each full prompt in its own forward pass
        (no padding, no sharing): (n,) float32."""
        for i, (query, candidate) in enumerate(pairs):
            self._check(query, f"pair {i} query")
            self._check(candidate, f"pair {i} candidate")
        scores = np.zeros(len(pairs), dtype=np.float32)
        with torch.inference_mode():
            for i, (query, candidate) in enumerate(pairs):
                images = [x.image for x in (query, candidate) if x.image is not None]
                batch = self._encode(["".join(self._split(query, candidate))], images)
                scores[i] = self._yes_probability(batch, batch["attention_mask"]).item()
        return scores

    def score(
        self, query: JudgeInput, candidates: Sequence[JudgeInput], *, batch_size: int = 16
    ) -> np.ndarray:
        """P(Yes) of each candidate for ``query``: (c,) float32, in candidate order.

        The query prefix is encoded and computed once; candidates run ``batch_size`` per
        forward: packed in one row behind the prefix (``packs_candidates``, the first
        chunk in the prefix's own forward, later ones on its KV cache), or as padded rows
        on copies of the prefix cache, sorted by length.
        """
        if batch_size < 1:
            raise ValueError(f"{self.name}: batch_size must be >= 1, got {batch_size}")
        self._check(query, "query")
        for i, candidate in enumerate(candidates):
            self._check(candidate, f"candidate {i}")
        if len(candidates) == 0:
            return np.zeros(0, dtype=np.float32)
        if not self.shares_prefix:
            return self.score_pairs([(query, c) for c in candidates])
        splits = [self._split(query, c) for c in candidates]
        prefix = splits[0][0]
        if any(p != prefix for p, _ in splits):
            raise ValueError(f"{self.name}: the chat template makes the query prefix differ")
        suffixes = [suffix for _, suffix in splits]
        with torch.inference_mode():
            prefix_batch = self._encode([prefix], [query.image] if query.image else [])
            if self.packs_candidates:
                return self._score_packed(prefix_batch, suffixes, candidates, batch_size)
            return self._score_expanded(query, prefix_batch, suffixes, candidates, batch_size)

    def _score_packed(
        self,
        prefix_batch: dict[str, torch.Tensor],
        suffixes: list[str],
        candidates: Sequence[JudgeInput],
        batch_size: int,
    ) -> np.ndarray:
        """Candidates ``batch_size`` at a time packed in one row (``judge_pack``): the first
        chunk behind the prefix in one forward, later chunks on the prefix's KV cache."""
        prefix_pos = self._positions(prefix_batch, prefix_batch["attention_mask"], 0)
        prefix_len, start = prefix_pos.shape[-1], judge_cache.next_position(prefix_pos)
        del prefix_batch["attention_mask"]  # replaced by the block mask
        device = prefix_pos.device
        scores = np.zeros(len(candidates), dtype=np.float32)
        cache = None
        for lo in range(0, len(candidates), batch_size):
            rows = list(range(lo, min(lo + batch_size, len(candidates))))
            inputs, positions, lengths = self._packed_chunk(
                [suffixes[i] for i in rows], [candidates[i] for i in rows], start
            )
            first, more = lo == 0, lo + batch_size < len(candidates)
            if first:  # the prefix runs in the same forward, ahead of the candidates
                inputs = _joined(prefix_batch, inputs)
                positions = torch.cat([prefix_pos, positions], dim=-1)
            allowed = judge_pack.allowed_attention(prefix_len, lengths, with_prefix=first)
            param = next(self.model.parameters())
            out = self.model(
                **inputs,
                attention_mask=judge_pack.attention_mask_4d(
                    allowed, self._attention, param.dtype
                ).to(device),
                position_ids=positions,
                past_key_values=None
                if first
                else judge_cache.expand_cache(cache, 1, self.model.config, prefix_len),
                use_cache=more or not first,
                logits_to_keep=judge_pack.last_tokens(prefix_len if first else 0, lengths).to(
                    device
                ),
            )
            if first and more:
                cache = out.past_key_values
            scores[rows] = self._p_yes(out.logits[0]).cpu().numpy()
        return scores

    def _packed_chunk(
        self, suffixes: list[str], candidates: list[JudgeInput], start: int
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, list[int]]:
        """Model inputs of ``suffixes`` laid end to end in one row, their positions (each
        starting at ``start``) and their token counts."""
        images = [c.image for c in candidates if c.image is not None]
        chunk = self._encode_suffixes(suffixes, images)
        suffix_mask = chunk.pop("attention_mask")
        lengths = judge_pack.candidate_lengths(suffix_mask)
        positions = judge_pack.packed_rows(self._positions(chunk, suffix_mask, start), lengths)
        inputs = {
            k: judge_pack.packed_rows(v, lengths) if k in _SEQUENCE_KEYS else v
            for k, v in chunk.items()
        }
        return inputs, positions, lengths

    def _score_expanded(
        self,
        query: JudgeInput,
        prefix_batch: dict[str, torch.Tensor],
        suffixes: list[str],
        candidates: Sequence[JudgeInput],
        batch_size: int,
    ) -> np.ndarray:
        prefix_pos = self._positions(prefix_batch, prefix_batch["attention_mask"], 0)
        out = self.model(**prefix_batch, position_ids=prefix_pos, use_cache=True, logits_to_keep=1)
        cache = out.past_key_values
        if not judge_cache.can_share(cache):
            return self.score_pairs([(query, c) for c in candidates])
        start = judge_cache.next_position(prefix_pos)
        order = sorted(
            range(len(candidates)),
            key=lambda i: (candidates[i].image is not None, len(suffixes[i])),
        )
        scores = np.zeros(len(candidates), dtype=np.float32)
        for lo in range(0, len(order), batch_size):
            rows = order[lo : lo + batch_size]
            scores[rows] = self._score_suffixes(
                cache, start, [suffixes[i] for i in rows], [candidates[i] for i in rows]
            ).numpy()
        return scores

    def _score_suffixes(
        self, cache: Any, start: int, suffixes: list[str], candidates: list[JudgeInput]
    ) -> torch.Tensor:
        images = [c.image for c in candidates if c.image is not None]
        return self._score_encoded(cache, start, self._encode_suffixes(suffixes, images))

    def _score_encoded(
        self, cache: Any, start: int, batch: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """P(Yes) (n,) of right-padded suffixes ``batch`` (``_encode_suffixes``) on copies of
        the prefix ``cache``, their positions starting at ``start``."""
        batch = dict(batch)
        suffix_mask = batch["attention_mask"]
        n, prefix_len = suffix_mask.shape[0], cache.get_seq_length()
        position_ids = self._positions(batch, suffix_mask, start)
        ones = torch.ones(n, prefix_len, dtype=suffix_mask.dtype, device=suffix_mask.device)
        batch["attention_mask"] = torch.cat([ones, suffix_mask], dim=1)
        past = judge_cache.expand_cache(cache, n, self.model.config)
        return self._yes_probability(batch, suffix_mask, past, position_ids).cpu()


def _joined(
    head: dict[str, torch.Tensor], tail: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Model inputs of ``head`` followed by ``tail``: token-aligned values joined along
    the sequence, others (``pixel_values``, ``image_grid_thw``) in image order."""
    out = dict(head)
    for key, value in tail.items():
        if key not in out:
            out[key] = value
        else:
            out[key] = torch.cat([out[key], value], dim=-1 if key in _SEQUENCE_KEYS else 0)
    return out
