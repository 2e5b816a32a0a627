"""The HTTP app in one process (no Ray): LocalBackend over real tiny models, httpx ASGI."""

from __future__ import annotations

import asyncio
import base64
import io

import httpx
import numpy as np
import pytest
from PIL import Image

from uniembed.models import EmbedInput
from uniembed.serving import load_serve_config
from uniembed.serving.backend import LocalBackend
from uniembed.serving.documents import Document
from uniembed.serving.http_app import create_http_app
from uniembed.serving.retrieval import index_over

DOCS = [
    Document("d0", "a cat sleeps on the mat"),
    Document("d1", "the stock market fell today"),
    Document("d2", "a bird sings in a tree"),
    Document("d3", None, "/data/pictures/x.png"),
]


def _png_uri(size: tuple[int, int]) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def judge():  # noqa: ANN201
    from uniembed.reranker.scorer import JudgeScorer

    return JudgeScorer.load("tiny-text-lm")


def _call(app, method: str, path: str, body: dict | None = None, key: str | None = "k"):  # noqa: ANN001, ANN202
    async def go() -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await c.request(method, path, json=body, headers=headers)

    return asyncio.run(go())


@pytest.fixture(scope="module")
def app(tiny_qwen2_vl, judge):  # noqa: ANN001, ANN201
    texts = [EmbedInput(text=d.text) if d.text else EmbedInput(image=Image.new("RGB", (9, 9)))
             for d in DOCS]  # fmt: skip
    index = index_over(DOCS, tiny_qwen2_vl.embed(texts))
    backend = LocalBackend(tiny_qwen2_vl, matryoshka=True, scorer=judge, index=index)
    cfg = load_serve_config({"limits": {"max_inputs": 4, "max_body_bytes": 10_000}})
    return asyncio.run(create_http_app(backend, cfg, b"k"))


def test_embeddings_match_the_model(app, tiny_qwen2_vl) -> None:  # noqa: ANN001
    image = _png_uri((30, 20))
    r = _call(app, "POST", "/v1/embeddings", {"input": ["a cat", {"image": image, "text": "red"}]})
    assert r.status_code == 200, r.text
    got = np.array([d["embedding"] for d in r.json()["data"]], np.float32)
    want = tiny_qwen2_vl.embed([EmbedInput(text="a cat")])[0]
    np.testing.assert_allclose(got[0], want, atol=1e-5)
    assert r.json()["usage"]["total_tokens"] > tiny_qwen2_vl.token_length(EmbedInput(text="a cat"))


def test_errors_name_the_field(app) -> None:  # noqa: ANN001
    cases = [
        ({"input": ["a", {"text": "b", "imag": "c"}]}, 422, "input[1].imag"),
        ({"input": "a", "encoding_format": "hex"}, 422, "encoding_format"),
        ({"input": "a", "dimensions": 65}, 422, "dimensions"),
        ({"input": ["a"] * 5}, 413, "input"),
        ({"input": "a" * 20_000}, 413, "body"),
        ({"input": [{"image": "data:image/png;base64,AAAA"}]}, 400, "input[0].image"),
    ]
    for body, status, param in cases:
        r = _call(app, "POST", "/v1/embeddings", body)
        assert (r.status_code, r.json()["error"]["param"]) == (status, param), r.text
    r = _call(app, "POST", "/v1/embeddings", {"input": "a"}, key=None)
    assert r.status_code == 401
    assert _call(app, "GET", "/healthz", key=None).status_code == 200


def test_rerank_and_search(app, judge) -> None:  # noqa: ANN001
    from uniembed.reranker.scorer import JudgeInput

    docs = ["a cat", "a stone", "cats purr"]
    r = _call(app, "POST", "/v1/rerank", {"query": "cat", "documents": docs, "top_n": 2})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    want = judge.score(JudgeInput(text="cat"), [JudgeInput(text=d) for d in docs])
    assert [x["index"] for x in results] == list(np.argsort(-want, kind="stable")[:2])
    assert "document" not in results[0]
    r = _call(app, "POST", "/v1/search", {"query": DOCS[2].text, "top_k": 2, "rerank": True})
    body = r.json()
    assert r.status_code == 200 and body["reranker"] == "tiny-text-lm"
    assert DOCS[2].id in [h["id"] for h in body["results"]]
    r = _call(app, "POST", "/v1/search", {"query": DOCS[1].text, "top_k": 1})
    assert r.json()["results"][0]["id"] == "d1" and r.json()["results"][0]["score"] > 0.999


def test_rerank_in_infinity_and_cohere_shapes(app, judge) -> None:  # noqa: ANN001
    from uniembed.reranker.scorer import JudgeInput

    docs = ["a cat", "a stone", "cats purr"]
    want = judge.score(JudgeInput(text="cat"), [JudgeInput(text=d) for d in docs])
    best = list(np.argsort(-want, kind="stable")[:2])
    body = {"query": "cat", "documents": docs, "top_n": 2, "return_documents": True}
    infinity = _call(app, "POST", "/rerank", {**body, "raw_scores": False})
    assert infinity.status_code == 200, infinity.text
    assert infinity.json()["object"] == "rerank"
    results = infinity.json()["results"]
    assert [x["index"] for x in results] == best
    assert [x["document"] for x in results] == [docs[i] for i in best]  # the string, as sent
    np.testing.assert_allclose([x["relevance_score"] for x in results], want[best], atol=1e-5)
    cohere = _call(app, "POST", "/v1/rerank", body).json()["results"]
    assert [(x["index"], x["document"]) for x in cohere] == [(i, {"text": docs[i]}) for i in best]
    assert _call(app, "POST", "/rerank", body, key=None).status_code == 401
    r = _call(app, "POST", "/rerank", {**body, "raw_scores": True})
    assert r.status_code == 400 and r.json()["error"]["param"] == "raw_scores"


def test_float_and_base64_encodings_agree(app, tiny_qwen2_vl) -> None:  # noqa: ANN001
    from uniembed.serving.vectors import from_base64

    texts = ["a cat", "the stock market fell today"]
    floats = _call(app, "POST", "/v1/embeddings", {"input": texts}).json()
    b64 = _call(app, "POST", "/v1/embeddings", {"input": texts, "encoding_format": "base64"})
    assert b64.status_code == 200, b64.text
    want = tiny_qwen2_vl.embed([EmbedInput(text=t) for t in texts])
    got_f = np.array([d["embedding"] for d in floats["data"]], np.float32)
    got_b = np.stack([from_base64(d["embedding"]) for d in b64.json()["data"]])
    # JSON floats carry each float32 exactly (shortest round-tripping form); base64 is bytes.
    np.testing.assert_array_equal(got_f, got_b)
    np.testing.assert_allclose(got_f, want, atol=1e-5)
    assert [d["index"] for d in floats["data"]] == [0, 1] and floats["object"] == "list"
    assert floats["usage"]["total_tokens"] == floats["usage"]["prompt_tokens"] > 0


def test_health_names_each_route(app) -> None:  # noqa: ANN001
    r = _call(app, "GET", "/healthz", key=None)
    body = r.json()
    assert r.status_code == 200 and body["status"] == "ok", body
    assert body["routes"] == {"/v1/embeddings": True, "/v1/rerank": True, "/v1/search": True}
    assert body["retriever"]["ready"] and body["retriever"]["count"] == len(DOCS)
