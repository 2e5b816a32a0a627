"""What the embedder and the judge share: a transformers model with its tokenizer, its
processor (MLLMs) and its family's resolved settings; the chat template's owner; batches
of prompts tokenised (right-padded) onto the model's device.

``TransformerEmbedder`` (``models/transformer_embedder.py``) and ``JudgeScorer``
(``reranker/scorer.py``) are both a :class:`Backbone`; both are loaded by
``models.registry.load_backbone``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from uniembed.models.pooling_config import ResolvedPooling


class Backbone:
    """A transformers model ready to take prompts.

    Args:
        name: registry name, folder or hub id, used in error messages.
        model: the loaded model (base model or causal-LM head).
        tokenizer: the text tokenizer (for MLLMs, the processor's tokenizer); set to pad
            on the right (real tokens keep their positions under causal attention).
        processor: the multimodal processor, or None for text-only families.
        settings: the resolved family, pooling and prompt templates.
    """

    def __init__(
        self,
        name: str,
        model: torch.nn.Module,
        tokenizer: Any,
        processor: Any | None,
        settings: ResolvedPooling,
    ) -> None:
        self.name = name
        self.model = model
        self.tokenizer = tokenizer
        self.processor = processor
        self.settings = settings
        self.supports_images = settings.family.supports_images and processor is not None
        tokenizer.padding_side = "right"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token

    def _chat_owner(self) -> Any:
        """What holds the chat template: the processor, else the tokenizer."""
        return self.processor if self.processor is not None else self.tokenizer

    def _chat_applied(self) -> bool:
        return bool(self.settings.use_chat_template and self._chat_owner().chat_template)

    def _tokenize_text(
        self, texts: list[str], return_tensors: str | None, max_length: int | None = None
    ) -> Any:
        """The tokenizer's output for ``texts`` (padded when tensors are asked for; cut to
        ``max_length`` tokens when given)."""
        return self.tokenizer(
            texts,
            padding=return_tensors is not None,
            truncation=max_length is not None,
            max_length=max_length,
            add_special_tokens=not self._chat_applied(),  # a chat template spells them
            return_tensors=return_tensors,
        )

    def _model_inputs(
        self, texts: list[str], images: Sequence[Any], max_length: int | None = None
    ) -> dict[str, torch.Tensor]:
        """Model inputs for ``texts`` (right-padded; ``input_ids``/``attention_mask`` of
        shape (n, seq)) with ``images`` in text order through the processor, on the model's
        device; floating tensors in the model's dtype."""
        if self.processor is not None:
            batch = self.processor(
                text=texts, images=list(images) or None, padding=True, return_tensors="pt"
            )
        else:
            batch = self._tokenize_text(texts, "pt", max_length)
        param = next(self.model.parameters())
        return {
            k: v.to(param.device, param.dtype) if v.is_floating_point() else v.to(param.device)
            for k, v in batch.items()
            if isinstance(v, torch.Tensor)
        }
