"""The embed job's worker without Ray: ONNX Runtime for text encoders on CPU (vectors equal
to torch's), each text tokenised once, the embedding column built from arrays, and the
threads each actor asks for."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from uniembed.data import schema as S
from uniembed.embed.worker import EmbedWorker, WorkerOptions, vector_column
from uniembed.models import EmbedInput
from uniembed.models.micro_batches import Embedded, embed_micro_batches
from uniembed.models.onnx_embedder import use_onnx

TEXTS = [
    "A man is eating food.",
    "a",
    "Ünïcödé tèxt wörks töö — ☃",
    "",  # neither text nor image: quarantined by the worker
    " ".join(["the quick brown fox jumps over the lazy dog"] * 40),  # cut at 256 tokens
    "The girl is carrying a baby, and the man is riding a horse down the long road.",
]


def _batch(texts: list[str]) -> pa.Table:
    n = len(texts)
    return pa.table(
        {
            S.ID: [f"r{i}" for i in range(n)],
            S.TEXT: texts,
            S.IMAGE: pa.nulls(n, pa.binary()),
            S.IMAGE_URI: pa.nulls(n, pa.string()),
            S.INSTRUCTION: pa.nulls(n, pa.string()),
            S.SOURCE: [f"f.jsonl:{i + 1}" for i in range(n)],
            S.ERROR: pa.nulls(n, pa.string()),
        }
    )


@pytest.fixture
def cache(tmp_path, monkeypatch):  # noqa: ANN001, ANN201
    monkeypatch.setenv("UNIEMBED_CACHE", str(tmp_path))
    return tmp_path


def test_worker_runs_minilm_on_onnx_with_torch_vectors(minilm, cache) -> None:  # noqa: ANN001
    onnx = EmbedWorker(WorkerOptions(model="minilm", micro_batch_size=2, cpu_threads=1))
    torch_ = EmbedWorker(
        WorkerOptions(model="minilm", micro_batch_size=2, cpu_threads=1, backend="torch")
    )
    assert onnx.embedder.backend == "onnx" and torch_.embedder.backend == "torch"
    a, b = onnx(_batch(TEXTS)), torch_(_batch(TEXTS))
    assert a[S.ERROR].to_pylist() == b[S.ERROR].to_pylist()
    assert a[S.ERROR][3].as_py() and "neither text nor image" in a[S.ERROR][3].as_py()
    assert a[S.EMBEDDING][3].as_py() is None
    assert a["truncated"].to_pylist() == [False, False, False, False, True, False]
    assert a["tokens"].to_pylist() == b["tokens"].to_pylist()
    good = [i for i in range(len(TEXTS)) if i != 3]
    va = np.array([a[S.EMBEDDING][i].as_py() for i in good], np.float32)
    vb = np.array([b[S.EMBEDDING][i].as_py() for i in good], np.float32)
    np.testing.assert_allclose(va, vb, atol=1e-5)
    # and equal to the embedder's own one-input-at-a-time vectors
    alone = np.stack([minilm.embed([EmbedInput(text=TEXTS[i])])[0] for i in good])
    np.testing.assert_allclose(va, alone, atol=1e-5)


def test_backend_choice() -> None:
    assert use_onnx("auto", None) and use_onnx("onnx", None)
    assert not use_onnx("torch", None)
    assert not use_onnx("auto", "the model is a mllm, not a text encoder")
    with pytest.raises(ValueError, match="backend: onnx does not apply here: the model is on"):
        use_onnx("onnx", "the model is on cuda, not the CPU")
    with pytest.raises(ValueError, match="not one of"):
        use_onnx("tensorrt", None)


def test_decoders_stay_on_torch_and_onnx_is_refused_for_them() -> None:
    worker = EmbedWorker(WorkerOptions(model="tiny-text-lm", cpu_threads=1))
    assert worker.embedder.backend == "torch"
    with pytest.raises(ValueError, match="not a text encoder"):
        EmbedWorker(WorkerOptions(model="tiny-qwen2-vl", cpu_threads=1, backend="onnx"))


def test_texts_tokenised_once_give_the_per_input_vectors(tiny_text_lm) -> None:  # noqa: ANN001
    inputs = [EmbedInput(text=t) for t in ("a cat", "a much longer sentence about a dog", "x")]
    ids = tiny_text_lm.token_ids(inputs)
    assert [len(row) for row in ids] == [tiny_text_lm.token_length(i) for i in inputs]
    for key, value in tiny_text_lm.id_batch(ids).items():
        np.testing.assert_array_equal(value.numpy(), tiny_text_lm.encode(inputs)[key].numpy())
    out = embed_micro_batches(tiny_text_lm, inputs, micro_batch_size=2)
    assert all(isinstance(r, Embedded) for r in out)
    for inp, r in zip(inputs, out, strict=True):
        np.testing.assert_allclose(r.vector, tiny_text_lm.embed([inp])[0], atol=1e-5)


def test_mllms_are_not_tokenised_apart(tiny_qwen2_vl) -> None:  # noqa: ANN001
    assert tiny_qwen2_vl.token_ids([EmbedInput(text="a cat")]) is None


def test_a_bad_input_still_fails_alone(tiny_text_lm) -> None:  # noqa: ANN001
    image = EmbedInput(image=Image.new("RGB", (4, 4)))  # a text-only model cannot take it
    inputs = [EmbedInput(text="a cat"), EmbedInput(text=""), EmbedInput(text="a dog"), image]
    out = embed_micro_batches(tiny_text_lm, inputs, micro_batch_size=8)
    assert isinstance(out[1], ValueError) and "neither text nor image" in str(out[1])
    assert isinstance(out[3], ValueError) and "embeds text only" in str(out[3])
    assert isinstance(out[0], Embedded) and isinstance(out[2], Embedded)


def test_vector_column_keeps_nulls_and_values() -> None:
    rows = [Embedded(np.array([1, 2], np.float32), 3, 3), None, Embedded(np.array([3, 4]), 1, 3)]
    col = vector_column(rows)
    assert col.type == pa.list_(pa.float32())
    assert col.to_pylist() == [[1.0, 2.0], None, [3.0, 4.0]]
    assert vector_column([None, None]).to_pylist() == [None, None]


def test_threads_share_the_cores_among_the_actors() -> None:
    assert WorkerOptions(model="m", num_actors=1).threads(cores=2) == 2
    assert WorkerOptions(model="m", num_actors=2).threads(cores=2) == 1
    assert WorkerOptions(model="m", num_actors=4).threads(cores=2) == 1
    assert WorkerOptions(model="m", num_actors=2, cpu_threads=3).threads(cores=2) == 3
