"""The embedder for every family: one transformers backbone, prompted and pooled per family.

MLLMs (Qwen2-VL, LLaVA, ...) go through their processor, text LMs and encoders through
their tokenizer; the forward pass, pooling and normalisation are shared. Batches are
right-padded: with causal attention real tokens never see the padding and keep their
positions, so an input embedded alone and inside a padded batch gives the same vector.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from uniembed.models.backbone import Backbone
from uniembed.models.inputs import EmbedInput, check_input
from uniembed.models.pooling import pool_and_normalize
from uniembed.models.pooling_config import ResolvedPooling
from uniembed.models.prompts import build_prompt
from uniembed.models.truncation import DEFAULT_MAX_TEXT_TOKENS, truncate_text


class TransformerEmbedder(Backbone):
    """An :class:`~uniembed.models.embedder.Embedder` over a transformers base model
    (``AutoModel``: its output has ``last_hidden_state``); arguments as :class:`Backbone`'s.
    """

    backend = "torch"  # what runs the forward pass (see models.onnx_embedder)

    def __init__(
        self,
        name: str,
        model: torch.nn.Module,
        tokenizer: Any,
        processor: Any | None,
        settings: ResolvedPooling,
    ) -> None:
        # Right padding everywhere (see the module docstring); pooling reads the mask anyway.
        super().__init__(name, model, tokenizer, processor, settings)
        self.family = settings.family
        self.dim = int(model.config.get_text_config().hidden_size)

    # --- prompts and batches ---------------------------------------------------------
    @property
    def max_text_tokens(self) -> int:
        """Texts are cut to this many tokens before prompting (see models.truncation)."""
        return self.settings.max_length or DEFAULT_MAX_TEXT_TOKENS

    def fit(self, inp: EmbedInput) -> EmbedInput:
        """``inp`` with its text cut to ``max_text_tokens`` tokens; ``inp`` itself (the same
        object) when it fits, so callers can count what was cut."""
        if not isinstance(inp.text, str):
            return inp
        text, cut = truncate_text(self.tokenizer, inp.text, self.max_text_tokens)
        return dataclasses.replace(inp, text=text) if cut else inp

    def prompts(self, inputs: Sequence[EmbedInput]) -> list[str]:
        """The full prompt string per input (texts cut by :meth:`fit`); ValueError naming
        the model for bad inputs."""
        out = []
        for i, inp in enumerate(inputs):
            check_input(inp, i, self.name)
            inp = self.fit(inp)
            if inp.has_image and not self.supports_images:
                raise ValueError(
                    f"{self.name}: input {i} has an image but model {self.name} "
                    f"({self.family.name} family) embeds text only"
                )
            out.append(build_prompt(inp, self._chat_owner(), self.settings))
        return out

    def encode(self, inputs: Sequence[EmbedInput]) -> dict[str, torch.Tensor]:
        """Model inputs for a batch: ``input_ids``/``attention_mask`` (n, seq) plus, for
        MLLMs, the processor's image tensors; on the model's device and float dtype."""
        images = [inp.image for inp in inputs if inp.image is not None]
        return self._model_inputs(self.prompts(inputs), images, self.settings.max_length)

    # --- forward -------------------------------------------------------------------
    def hidden_states(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Final-layer hidden states (n, seq, hidden) for an encoded batch."""
        return self.model(**batch).last_hidden_state

    def features(self, inputs: Sequence[EmbedInput]) -> torch.Tensor:
        """Pooled, L2-normalised embeddings (n, dim) float32, with autograd left on (training)."""
        if len(inputs) == 0:
            raise ValueError(f"{self.name}: no inputs to embed")
        batch = self.encode(inputs)
        hidden = self.hidden_states(batch)
        return pool_and_normalize(hidden, batch["attention_mask"], self.settings.pooling)

    def embed(self, inputs: Sequence[EmbedInput]) -> np.ndarray:
        """Embed ``inputs`` in one forward pass: (n, dim) float32, unit rows."""
        if len(inputs) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        with torch.inference_mode():
            vectors = self.features(inputs)
        return vectors.cpu().numpy().astype(np.float32, copy=False)

    # --- texts tokenised once (text-only families) -------------------------------------
    def token_ids(self, inputs: Sequence[EmbedInput]) -> list[list[int]] | None:
        """Each input's token ids, prompted and cut exactly as :meth:`embed` would, in one
        tokenizer call; None for a family with a processor (MLLMs), whose inputs go through
        :meth:`embed`. ValueError (from :meth:`prompts`) for an input it cannot take."""
        if self.processor is not None:
            return None
        batch = self._tokenize_text(self.prompts(inputs), None, self.settings.max_length)
        return batch["input_ids"]

    def id_batch(self, ids: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
        """Model inputs (n, seq) for token ids from :meth:`token_ids`, right-padded: the
        tensors :meth:`encode` makes for the same inputs, on the CPU."""
        n, width = len(ids), max((len(row) for row in ids), default=0)
        input_ids = np.full((n, width), self.tokenizer.pad_token_id or 0, dtype=np.int64)
        mask = np.zeros((n, width), dtype=np.int64)
        for i, row in enumerate(ids):
            input_ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        batch = {"input_ids": input_ids, "attention_mask": mask}
        if "token_type_ids" in self.tokenizer.model_input_names:
            batch["token_type_ids"] = np.zeros((n, width), dtype=np.int64)
        return {name: torch.from_numpy(value) for name, value in batch.items()}

    def embed_ids(self, ids: Sequence[Sequence[int]]) -> np.ndarray:
        """Embed inputs given as :meth:`token_ids` in one forward pass: (n, dim) float32,
        unit rows, equal to :meth:`embed` of the same inputs."""
        if len(ids) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        batch = self.id_batch(ids)
        if self.model is not None:  # torch: onto the model's device
            device = next(self.model.parameters()).device
            batch = {name: value.to(device) for name, value in batch.items()}
        with torch.inference_mode():
            hidden = self.hidden_states(batch)
            vectors = pool_and_normalize(hidden, batch["attention_mask"], self.settings.pooling)
        return vectors.cpu().numpy().astype(np.float32, copy=False)

    def token_length(self, inp: EmbedInput) -> int:
        """Tokens ``inp`` will take, image tokens included; tokenizes text only (cheap)."""
        (prompt,) = self.prompts([inp])
        if self.processor is None:
            tokens = self._tokenize_text([prompt], None, self.settings.max_length)
            return len(tokens["input_ids"][0])
        n = len(self.tokenizer(prompt)["input_ids"])
        if inp.image is not None:
            n += self._image_tokens(inp) - 1  # the one placeholder token expands to N
        return n

    def _image_tokens(self, inp: EmbedInput) -> int:
        assert inp.image is not None and self.processor is not None
        width, height = inp.image.size
        try:
            data = self.processor._get_num_multimodal_tokens(image_sizes=[(height, width)])
            return int(data.num_image_tokens[0])
        except (AttributeError, NotImplementedError, TypeError, KeyError):
            # Processors without the size formula: count by processing this image.
            batch = self.processor(text=[self.prompts([inp])[0]], images=[inp.image])
            placeholder = self.tokenizer(self.prompts([inp])[0])["input_ids"]
            return len(batch["input_ids"][0]) - len(placeholder) + 1
