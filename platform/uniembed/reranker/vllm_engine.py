"""The judge on vLLM (``judge.engine: vllm``): the same prompts and P(Yes) as ``JudgeScorer``.

A Ray Data actor (the judge stage's ``JudgeWorker``, the evaluate job's ``RerankWorker``)
owns one ``vllm.LLM``: each query's prompts (the positive and its candidates, or the top-k)
go to ``LLM.generate`` together, vLLM's automatic prefix cache computes the shared query
prefix once per full KV block, and the answer is read from the logprobs of one generated
token restricted to the two answer tokens::

    SamplingParams(max_tokens=1, logprobs=2, allowed_token_ids=[yes, no])
    P(Yes) = e^{l_yes} / (e^{l_yes} + e^{l_no})

The engine runs with ``logprobs_mode="processed_logprobs"`` (logprobs after the
allowed-token mask), so both answer tokens are always the two returned; the ratio is the
same as over the raw logits. Why an actor that owns ``vllm.LLM`` rather than
``ray.data.llm.build_processor``: the judge's unit is a query with its candidates (one row
in, the row's scores, AUC and per-record errors out, the quarantine contract of the mine
job), which the actor keeps exactly as the transformers engine does; the processor is one
row per prompt with its own pre/post-processing stages, wants ``ray[serve]`` and CPU
placement-group bundles on CPU clusters, and cannot run its engine in another venv than
the driver's without the same ``runtime_env`` anyway.

Isolation: vLLM pins its own transformers, so it lives in ``.venv-vllm``
(``UNIEMBED_VLLM=1 bash scripts/setup.sh``); :func:`actor_setup` (driver side, main venv)
resolves the model to a plain safetensors folder (registry names are converted and merged
in the model cache first: vLLM reads neither GGUF nor runtime LoRA at our speed) and gives
the actors ``runtime_env={"py_executable": <.venv-vllm python>, "env_vars": ...}``. This
module imports vLLM only inside :meth:`VllmJudge.load`, so the main venv can import it.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from uniembed.models.backbone import Backbone
from uniembed.models.pooling_config import ResolvedPooling
from uniembed.reranker.engine_config import JUDGE_ENGINES, VllmSection
from uniembed.reranker.prompts import JudgeInput
from uniembed.reranker.scorer import JudgeScorer

__all__ = [
    "SETUP_COMMAND",
    "EngineMissingError",
    "VllmJudge",
    "actor_setup",
    "engine_args",
    "p_yes_from_logprobs",
    "vllm_python",
]

SETUP_COMMAND = "UNIEMBED_VLLM=1 bash scripts/setup.sh"
REPO_ROOT = Path(__file__).resolve().parents[3]
CPU_BLOCK_SIZE = 32  # prefix caching reuses full blocks: 128 (vLLM's CPU default) wastes most
MAX_IMAGES_PER_PROMPT = 2  # the query's and the candidate's


class EngineMissingError(RuntimeError):
    """The vLLM engine's venv is not built; the message names the set-up command."""


def p_yes_from_logprobs(logprobs: Mapping[int, Any], yes_id: int, no_id: int) -> float:
    """P(Yes) = e^{l_yes} / (e^{l_yes} + e^{l_no}) from one generated position's logprobs.

    ``logprobs`` maps token id to a logprob (a float or an object with ``.logprob``, as
    vLLM returns). Computed as ``1 / (1 + e^{l_no - l_yes})`` in float64 (no overflow).

    Raises:
        ValueError: an answer token is missing, or both are -inf / NaN.
    """
    values = []
    for token, word in ((yes_id, "Yes"), (no_id, "No")):
        if token not in logprobs:
            raise ValueError(
                f"the engine returned no logprob for the answer token {word} (id {token}); "
                f"got ids {sorted(logprobs)[:10]}"
            )
        value = logprobs[token]
        values.append(float(getattr(value, "logprob", value)))
    l_yes, l_no = values
    if math.isnan(l_yes) or math.isnan(l_no) or (l_yes == -math.inf and l_no == -math.inf):
        raise ValueError(f"answer logprobs carry no information: Yes {l_yes}, No {l_no}")
    diff = l_no - l_yes
    if diff >= 0:
        e = math.exp(-diff)
        return e / (1.0 + e)
    return 1.0 / (1.0 + math.exp(diff))


def vllm_python(section: VllmSection) -> Path:
    """The Python of vLLM's venv (``section.venv``, relative to the repository root).

    Raises:
        EngineMissingError: no such venv, naming the set-up command that builds it.
    """
    venv = Path(section.venv).expanduser()
    if not venv.is_absolute():
        venv = REPO_ROOT / venv
    python = venv / "bin" / "python"
    if not python.exists():
        raise EngineMissingError(
            f"judge engine vllm: no vLLM venv at {venv} (no {python}); build it with "
            f"`{SETUP_COMMAND}` (GPU machines: `UNIEMBED_TORCH=cuda {SETUP_COMMAND}`), "
            "or use engine transformers"
        )
    return python


def vllm_env(section: VllmSection, device: str) -> dict[str, str]:
    """Environment variables of a vLLM judge actor."""
    env = {
        # One engine per actor, in the actor's process: no engine-core subprocess per actor.
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        "VLLM_NO_USAGE_STATS": "1",
        "VLLM_DO_NOT_TRACK": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    if device == "cpu":
        # The KV cache's memory in GiB (vLLM's CPU default is 4 GiB per engine); threads are
        # not pinned to cores: the machine's cores are shared with the other actors.
        env["VLLM_CPU_KVCACHE_SPACE"] = str(section.cpu_kv_cache_gib)
        env["VLLM_CPU_OMP_THREADS_BIND"] = "nobind"
    return env


def vllm_model_folder(name_or_path: str) -> str:
    """The plain model folder vLLM loads for ``name_or_path`` (registry names are built,
    converted from GGUF and adapter-merged in the model cache, in this process).

    Raises:
        ValueError: a folder vLLM cannot load (GGUF only, or an unmerged LoRA adapter).
    """
    from uniembed.models.registry import resolve_model

    folder = resolve_model(name_or_path)
    path = Path(folder)
    if not path.is_dir():
        return folder  # a hub id: vLLM resolves it where a hub is reachable
    if (path / "adapter_config.json").is_file() and not (path / "config.json").is_file():
        raise ValueError(
            f"judge {name_or_path}: {folder} is a LoRA adapter; vLLM loads merged weights "
            "(runtime LoRA is several times slower): merge it first (scripts/package_adapter.py "
            "and a registry entry, or peft's merge_and_unload + save_pretrained)"
        )
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        ggufs = sorted(p.name for p in path.glob("*.gguf"))
        raise ValueError(
            f"judge {name_or_path}: {folder} has no safetensors weights"
            + (f" (only GGUF: {', '.join(ggufs)}; convert it with transformers)" if ggufs else "")
        )
    return folder


def actor_setup(
    engine: str, model: str, device: str, section: VllmSection | None
) -> tuple[str, dict[str, Any]]:
    """Driver side: the model to hand the judge actors and their extra Ray options.

    ``transformers``: ``(model, {})``. ``vllm``: the plain model folder and
    ``{"runtime_env": {"py_executable": <vLLM venv python>, "env_vars": ...}}``.

    Raises:
        ValueError: an unknown engine or a model vLLM cannot load.
        EngineMissingError: ``vllm`` without its venv.
    """
    if engine not in JUDGE_ENGINES:
        raise ValueError(f"judge engine {engine!r} is not one of {', '.join(JUDGE_ENGINES)}")
    if engine == "transformers":
        return model, {}
    section = section or VllmSection()
    python = vllm_python(section)
    runtime_env = {"py_executable": str(python), "env_vars": vllm_env(section, device)}
    return vllm_model_folder(model), {"runtime_env": runtime_env}


def engine_args(
    folder: str, device: str, dtype: str | None, section: VllmSection, images: bool
) -> dict[str, Any]:
    """Keyword arguments of ``vllm.LLM`` for a judge: prefix caching on, ``block_size`` 32
    on CPU unless set, float32 on CPU and bfloat16 elsewhere unless ``dtype`` says."""
    args: dict[str, Any] = {
        "model": folder,
        "dtype": dtype or ("float32" if device == "cpu" else "bfloat16"),
        "enable_prefix_caching": True,
        "max_model_len": section.max_model_len,
        "max_num_seqs": section.max_num_seqs,
        "logprobs_mode": "processed_logprobs",
        "max_logprobs": 2,
        "seed": 0,
    }
    block_size = section.block_size or (CPU_BLOCK_SIZE if device == "cpu" else 0)
    if block_size:
        args["block_size"] = block_size
    if device != "cpu":
        args["gpu_memory_utilization"] = section.gpu_memory_utilization
    compiled = section.compile if section.compile is not None else device != "cpu"
    if not compiled:
        args["enforce_eager"] = True
    if images:
        args["limit_mm_per_prompt"] = {"image": MAX_IMAGES_PER_PROMPT}
    return args


class JudgePrompts(Backbone):
    """``JudgeScorer``'s prompts and answer tokens without its weights: the same chat
    text, split check, tokenisation and Yes/No ids (the scorer's own methods)."""

    def __init__(self, name: str, tokenizer: Any, processor: Any | None, settings: ResolvedPooling):
        super().__init__(name, None, tokenizer, processor, settings)  # type: ignore[arg-type]
        self.image_token = settings.image_token if self.supports_images else None
        self.yes_token_id, self.no_token_id = self._answer_token_ids()

    max_text_tokens = JudgeScorer.max_text_tokens
    fit = JudgeScorer.fit
    _split = JudgeScorer._split
    _check = JudgeScorer._check
    _answer_token_ids = JudgeScorer._answer_token_ids
    prompt = JudgeScorer.prompt

    def _token_ids(self, text: str) -> list[int]:
        """Token ids of ``text`` as the scorer tokenises it (image placeholders unexpanded:
        vLLM expands them from the image it is given)."""
        if self.processor is not None and self.image_token and self.image_token in text:
            # The processor refuses placeholders without their images; its tokenizer does not.
            return list(self.tokenizer([text])["input_ids"][0])
        if self.processor is not None:
            return list(self.processor(text=[text], images=None)["input_ids"][0])
        return list(self._tokenize_text([text], None)["input_ids"][0])

    @classmethod
    def load(cls, name: str, folder: str) -> JudgePrompts:
        """Tokenizer, processor and family settings of the model folder ``folder``."""
        from uniembed.models.pooling_config import resolve_pooling
        from uniembed.models.registry import (
            inspect_model,
            load_tokenizer_and_processor,
            quiet_transformers,
        )

        src = inspect_model(folder, role="judge model")
        if src.family.kind == "encoder":
            raise ValueError(f"{name}: a {src.family.name} model has no causal-LM head")
        with quiet_transformers():
            settings = resolve_pooling(src.family, src.override)
            tokenizer, processor = load_tokenizer_and_processor(src.folder, src.family)
        return cls(name, tokenizer, processor, settings)

    def request(self, query: JudgeInput, candidate: JudgeInput) -> dict[str, Any]:
        """One vLLM prompt: ``prompt_token_ids`` (and ``multi_modal_data``)."""
        out: dict[str, Any] = {"prompt_token_ids": self._token_ids(self.prompt(query, candidate))}
        images = [x.image for x in (query, candidate) if x.image is not None]
        if images:
            out["multi_modal_data"] = {"image": images}
        return out


class VllmJudge:
    """Scores (query, candidate) pairs on a ``vllm.LLM``; the interface of ``JudgeScorer``
    that the judge actors use (``name``, ``supports_images``, ``tokenizer``, ``score``,
    ``score_pairs``).

    Attributes:
        prompts: the scorer's prompts and answer tokens (:class:`JudgePrompts`).
        llm: the engine.
    """

    def __init__(self, name: str, prompts: JudgePrompts, llm: Any) -> None:
        from vllm import SamplingParams

        self.name = name
        self.prompts = prompts
        self.llm = llm
        self.supports_images = prompts.supports_images
        self.tokenizer = prompts.tokenizer
        self.yes_token_id, self.no_token_id = prompts.yes_token_id, prompts.no_token_id
        self.sampling = SamplingParams(
            max_tokens=1,
            temperature=0.0,
            logprobs=2,
            allowed_token_ids=[self.yes_token_id, self.no_token_id],
            detokenize=False,
        )

    @classmethod
    def load(
        cls,
        folder: str,
        *,
        name: str | None = None,
        device: str = "cpu",
        dtype: str | None = None,
        section: VllmSection | None = None,
    ) -> VllmJudge:
        """Start a vLLM engine on the plain model folder ``folder`` (see
        :func:`vllm_model_folder`); ``name`` is what errors call it.

        Raises:
            EngineMissingError: vLLM is not importable in this Python.
        """
        try:
            import vllm
        except ImportError as e:
            raise EngineMissingError(
                f"judge engine vllm: vLLM is not importable in {sys.executable} "
                f"({e}); build its venv with `{SETUP_COMMAND}` and run the judge actors in it "
                "(the jobs do this through Ray's runtime_env)"
            ) from e
        name = name or folder
        prompts = JudgePrompts.load(name, folder)
        args = engine_args(folder, device, dtype, section or VllmSection(), prompts.supports_images)
        return cls(name, prompts, vllm.LLM(**args))

    def _check(self, inp: object, where: str) -> None:
        self.prompts._check(inp, where)

    def _generate(self, requests: list[dict[str, Any]]) -> np.ndarray:
        if not requests:
            return np.zeros(0, dtype=np.float32)
        outputs = self.llm.generate(requests, self.sampling, use_tqdm=False)
        scores = np.zeros(len(requests), dtype=np.float32)
        for i, out in enumerate(outputs):
            logprobs = out.outputs[0].logprobs
            if not logprobs:
                raise ValueError(f"{self.name}: vLLM returned no logprobs for prompt {i}")
            scores[i] = p_yes_from_logprobs(logprobs[0], self.yes_token_id, self.no_token_id)
        return scores

    def score_many(
        self, requests: Sequence[tuple[JudgeInput, Sequence[JudgeInput]]]
    ) -> list[np.ndarray]:
        """P(Yes) of every candidate of every (query, candidates): one (c,) float32 array per
        request, all prompts in one ``generate`` (vLLM batches and shares prefixes)."""
        prompts, bounds = [], []
        for r, (query, candidates) in enumerate(requests):
            self._check(query, f"request {r} query")
            for i, c in enumerate(candidates):
                self._check(c, f"request {r} candidate {i}")
            lo = len(prompts)
            prompts += [self.prompts.request(query, c) for c in candidates]
            bounds.append((lo, len(prompts)))
        scores = self._generate(prompts)
        return [scores[lo:hi] for lo, hi in bounds]

    def score(
        self, query: JudgeInput, candidates: Sequence[JudgeInput], *, batch_size: int = 16
    ) -> np.ndarray:
        """P(Yes) of each candidate for ``query``: (c,) float32 in candidate order. All
        candidates go to the engine at once (it schedules them; ``batch_size`` is the
        transformers engine's knob and is only checked here)."""
        if batch_size < 1:
            raise ValueError(f"{self.name}: batch_size must be >= 1, got {batch_size}")
        self._check(query, "query")
        for i, candidate in enumerate(candidates):
            self._check(candidate, f"candidate {i}")
        return self._generate([self.prompts.request(query, c) for c in candidates])

    def score_pairs(self, pairs: Sequence[tuple[JudgeInput, JudgeInput]]) -> np.ndarray:
        """P(Yes) per (query, candidate) pair: (n,) float32."""
        for i, (query, candidate) in enumerate(pairs):
            self._check(query, f"pair {i} query")
            self._check(candidate, f"pair {i} candidate")
        return self._generate([self.prompts.request(q, c) for q, c in pairs])
