"""The vLLM judge engine without vLLM: the logprob -> P(Yes) reading, the engine config
(mine ``judge.engine``, evaluate ``rerank_engine``), the actors' Ray options and the
prompts, which must be token for token those of ``JudgeScorer``."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from uniembed.config import ConfigError, from_dict, load_yaml
from uniembed.evaluation.config import EvalConfig
from uniembed.mining.config import JudgeSection, MineConfig
from uniembed.reranker.engine_config import VllmSection
from uniembed.reranker.prompts import JudgeInput
from uniembed.reranker.scorer import JudgeScorer
from uniembed.reranker.vllm_engine import (
    SETUP_COMMAND,
    EngineMissingError,
    JudgePrompts,
    actor_setup,
    engine_args,
    p_yes_from_logprobs,
    vllm_model_folder,
)

REPO = Path(__file__).resolve().parents[2]


# --- logprobs -> P(Yes) ---------------------------------------------------------------
def test_p_yes_hand_computed() -> None:
    # e^{l_yes} / (e^{l_yes} + e^{l_no}) with P(yes-token) 0.3, P(no-token) 0.1: 0.75
    assert p_yes_from_logprobs({7: math.log(0.3), 9: math.log(0.1)}, 7, 9) == pytest.approx(0.75)
    assert p_yes_from_logprobs({7: math.log(0.1), 9: math.log(0.3)}, 7, 9) == pytest.approx(0.25)
    assert p_yes_from_logprobs({7: -2.0, 9: -2.0, 3: -0.1}, 7, 9) == 0.5


def test_p_yes_reads_vllm_logprob_objects() -> None:
    logprobs = {5: SimpleNamespace(logprob=0.0), 6: SimpleNamespace(logprob=math.log(1 / 3))}
    assert p_yes_from_logprobs(logprobs, 5, 6) == pytest.approx(0.75)


def test_p_yes_extremes_do_not_overflow() -> None:
    assert p_yes_from_logprobs({1: 0.0, 2: -1000.0}, 1, 2) == 1.0
    assert p_yes_from_logprobs({1: -1000.0, 2: 0.0}, 1, 2) == pytest.approx(0.0, abs=1e-300)
    assert p_yes_from_logprobs({1: 0.0, 2: -math.inf}, 1, 2) == 1.0  # masked-out No


def test_p_yes_equals_the_scorers_softmax() -> None:
    """Full-vocabulary log-softmax values (raw logprobs) and the two-token renormalised ones
    (processed logprobs) both give the transformers scorer's softmax over the two logits."""
    torch.manual_seed(0)
    logits = torch.randn(6, 50) * 4
    yes, no = 11, 23
    scorer = SimpleNamespace(yes_token_id=yes, no_token_id=no)
    want = JudgeScorer._p_yes(scorer, logits).numpy()  # type: ignore[arg-type]
    raw = torch.log_softmax(logits.double(), dim=-1)
    pair = torch.log_softmax(logits[:, [yes, no]].double(), dim=-1)
    for i in range(len(logits)):
        got_raw = p_yes_from_logprobs({yes: raw[i, yes].item(), no: raw[i, no].item()}, yes, no)
        got_pair = p_yes_from_logprobs({yes: pair[i, 0].item(), no: pair[i, 1].item()}, yes, no)
        assert got_raw == pytest.approx(float(want[i]), abs=1e-6)
        assert got_pair == pytest.approx(float(want[i]), abs=1e-6)


def test_p_yes_missing_answer_token_is_an_error() -> None:
    with pytest.raises(ValueError, match="answer token No"):
        p_yes_from_logprobs({7: -0.1, 8: -3.0}, 7, 9)
    with pytest.raises(ValueError, match="no information"):
        p_yes_from_logprobs({7: -math.inf, 9: -math.inf}, 7, 9)


# --- config ---------------------------------------------------------------------------
def test_engine_defaults_to_transformers_everywhere() -> None:
    assert JudgeSection().engine == "transformers"
    shipped = from_dict(MineConfig, load_yaml(REPO / "jobs" / "configs" / "mine.yaml"))
    assert shipped.judge.engine == "transformers"
    assert EvalConfig(data=["x.jsonl"], output="out").rerank_engine == "transformers"


def test_engine_from_config_and_bad_values() -> None:
    data = load_yaml(REPO / "jobs" / "configs" / "mine.yaml")
    data["judge"].update(engine="vllm", vllm={"block_size": 64, "cpu_kv_cache_gib": 2})
    cfg = from_dict(MineConfig, data)
    assert cfg.judge.engine == "vllm"
    assert cfg.judge.vllm == VllmSection(block_size=64, cpu_kv_cache_gib=2)
    data["judge"]["engine"] = "onnx"
    with pytest.raises(ConfigError, match="engine"):
        from_dict(MineConfig, data)
    with pytest.raises(ConfigError, match="block_size"):
        VllmSection(block_size=20)
    with pytest.raises(ConfigError, match="gpu_memory_utilization"):
        VllmSection(gpu_memory_utilization=1.5)
    evaluate = from_dict(EvalConfig, {"data": ["x"], "output": "o", "rerank_engine": "vllm"})
    assert evaluate.rerank_engine == "vllm" and evaluate.rerank_vllm == VllmSection()


def test_engine_args_cpu_and_gpu() -> None:
    cpu = engine_args("/m", "cpu", None, VllmSection(), images=False)
    assert cpu["dtype"] == "float32" and cpu["block_size"] == 32 and cpu["enforce_eager"]
    assert cpu["enable_prefix_caching"] and cpu["logprobs_mode"] == "processed_logprobs"
    assert "gpu_memory_utilization" not in cpu and "limit_mm_per_prompt" not in cpu
    gpu = engine_args("/m", "cuda", None, VllmSection(), images=True)
    assert gpu["dtype"] == "bfloat16" and "block_size" not in gpu and "enforce_eager" not in gpu
    assert gpu["gpu_memory_utilization"] == 0.85 and gpu["limit_mm_per_prompt"] == {"image": 2}
    bf16 = engine_args("/m", "cpu", "bfloat16", VllmSection(block_size=16), False)
    assert bf16["block_size"] == 16 and bf16["dtype"] == "bfloat16"
    assert engine_args("/m", "cuda", "float32", VllmSection(), False)["dtype"] == "float32"


# --- the actors' Ray options ------------------------------------------------------------
def test_transformers_engine_needs_nothing() -> None:
    assert actor_setup("transformers", "smollm2-135m-judge", "cpu", None) == (
        "smollm2-135m-judge",
        {},
    )
    with pytest.raises(ValueError, match="not one of transformers, vllm"):
        actor_setup("onnx", "m", "cpu", None)


def test_missing_vllm_venv_names_the_setup_command(tmp_path: Path) -> None:
    section = VllmSection(venv=str(tmp_path / "no-venv"))
    with pytest.raises(EngineMissingError) as err:
        actor_setup("vllm", "tiny-text-lm", "cpu", section)
    assert SETUP_COMMAND in str(err.value) and "no-venv" in str(err.value)


def test_vllm_actors_run_in_the_vllm_venv(tmp_path: Path) -> None:
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.touch()
    section = VllmSection(venv=str(tmp_path / "venv"), cpu_kv_cache_gib=2)
    model, remote = actor_setup("vllm", "tiny-text-lm", "cpu", section)
    assert Path(model).is_dir() and any(Path(model).glob("*.safetensors"))
    env = remote["runtime_env"]
    assert env["py_executable"] == str(python)
    assert env["env_vars"]["VLLM_CPU_KVCACHE_SPACE"] == "2"
    _, gpu = actor_setup("vllm", "tiny-text-lm", "cuda", section)
    assert "VLLM_CPU_KVCACHE_SPACE" not in gpu["runtime_env"]["env_vars"]


def test_model_folders_vllm_cannot_load(tmp_path: Path) -> None:
    gguf = tmp_path / "gguf"
    gguf.mkdir()
    (gguf / "config.json").write_text("{}")
    (gguf / "model.Q4_1.gguf").write_bytes(b"")
    with pytest.raises(ValueError, match="only GGUF: model.Q4_1.gguf"):
        vllm_model_folder(str(gguf))
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    with pytest.raises(ValueError, match="LoRA adapter"):
        vllm_model_folder(str(adapter))


# --- prompts: those of the transformers scorer ------------------------------------------
@pytest.mark.parametrize("name", ["tiny-text-lm", "tiny-qwen2-vl"])
def test_prompts_are_the_scorers(name: str) -> None:
    scorer = JudgeScorer.load(name)
    prompts = JudgePrompts.load(name, vllm_model_folder(name))
    assert (prompts.yes_token_id, prompts.no_token_id) == (
        scorer.yes_token_id,
        scorer.no_token_id,
    )
    pairs = [
        (JudgeInput(text="a cat sits."), JudgeInput(text="a dog")),
        (JudgeInput(text="Instruction\nfind the sense"), JudgeInput(text='word: "quoted" 42')),
    ]
    for query, candidate in pairs:
        text = scorer.prompt(query, candidate)
        assert prompts.prompt(query, candidate) == text
        want = scorer._encode([text], [])["input_ids"][0].tolist()
        assert prompts.request(query, candidate) == {"prompt_token_ids": want}
    with pytest.raises(ValueError, match="candidate 2 has neither text nor image"):
        prompts._check(JudgeInput(), "candidate 2")


def test_image_prompts_carry_their_images() -> None:
    from PIL import Image

    prompts = JudgePrompts.load("tiny-qwen2-vl", vllm_model_folder("tiny-qwen2-vl"))
    image = Image.fromarray(np.zeros((28, 28, 3), dtype=np.uint8))
    request = prompts.request(JudgeInput(image=image), JudgeInput(text="a black square"))
    assert request["multi_modal_data"] == {"image": [image]}
    pad = prompts.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert request["prompt_token_ids"].count(pad) == 1  # vLLM expands it from the image


def test_the_judge_stage_imports_without_faiss() -> None:
    """The vLLM judge actors run in vLLM's own venv, which has no FAISS: importing the judge
    stage must not pull in retrieval through the mining package."""
    import subprocess
    import sys

    code = (
        "import sys; import uniembed.mining.judge_stage; "
        "from uniembed.mining import select_with_judge; "
        "assert 'faiss' not in sys.modules, 'faiss imported'"
    )
    root = Path(__file__).resolve().parents[2]
    run = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(root / "platform"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-2000:]
