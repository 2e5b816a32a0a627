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


def test_rerank_answers_the_fused_score_by_default_and_the_raw_ones_on_request(
    app, tiny_qwen2_vl, judge
) -> None:  # noqa: ANN001
    from uniembed.reranker.fusion import Fusion
    from uniembed.reranker.scorer import JudgeInput

    fusion = Fusion(0.4, 0.1, 2.0, 0.2, 0.3, embedder=tiny_qwen2_vl.name, reranker="tiny-text-lm")
    backend = LocalBackend(tiny_qwen2_vl, scorer=judge, fusion=fusion)
    fused_app = asyncio.run(create_http_app(backend, load_serve_config({}), b"k"))
    docs = ["a cat", "a stone", "cats purr", "the stock market fell"]
    p_yes = judge.score(JudgeInput(text="cat"), [JudgeInput(text=d) for d in docs])
    vectors = tiny_qwen2_vl.embed([EmbedInput(text=t) for t in ["cat", *docs]])
    cosines = vectors[1:] @ vectors[0]
    want = {"fused": fusion.fuse(cosines, p_yes), "reranker": p_yes, "embedder": cosines}
    body = {"query": "cat", "documents": docs}
    for score, request in [("fused", body), *((s, {**body, "score": s}) for s in want)]:
        r = _call(fused_app, "POST", "/v1/rerank", request)
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["score"] == score and "note" not in got
        assert got.get("fusion_weight") == (0.4 if score == "fused" else None)
        order = np.argsort(-want[score], kind="stable")
        assert [x["index"] for x in got["results"]] == order.tolist(), score
        scores = [x["relevance_score"] for x in got["results"]]
        np.testing.assert_allclose(scores, want[score][order], atol=1e-4)
    infinity = _call(fused_app, "POST", "/rerank", {**body, "top_n": 1}).json()
    assert infinity["score"] == "fused" and len(infinity["results"]) == 1
    # No fusion stored with the reranker: its P(Yes) alone, and the response says so.
    r = _call(app, "POST", "/v1/rerank", body).json()
    assert r["score"] == "reranker" and "no stored fusion" in r["note"]
    np.testing.assert_allclose(sorted(x["relevance_score"] for x in r["results"]), sorted(p_yes),
                               atol=1e-5)  # fmt: skip
    r = _call(app, "POST", "/v1/rerank", {**body, "score": "fused"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "score"
    # A fusion fitted with another embedder is not applied to this one.
    other = LocalBackend(tiny_qwen2_vl, scorer=judge, fusion=Fusion(
        0.4, 0.1, 2.0, 0.2, 0.3, embedder="minilm", reranker="tiny-text-lm"))  # fmt: skip
    cfg = load_serve_config({"embedder": {"model": tiny_qwen2_vl.name}})  # what is served
    other_app = asyncio.run(create_http_app(other, cfg, b"k"))
    r = _call(other_app, "POST", "/v1/rerank", body).json()
    assert r["score"] == "reranker" and "fitted with embedder minilm" in r["note"]


def test_search_reranks_by_the_fused_score_by_default(app, tiny_qwen2_vl, judge) -> None:  # noqa: ANN001
    from uniembed.reranker.fusion import Fusion
    from uniembed.reranker.scorer import JudgeInput

    # Scales under which the cosine decides the fused order, which the P(Yes) orders otherwise.
    fusion = Fusion(
        0.5, 0.0, 100.0, 0.0, 0.01, embedder=tiny_qwen2_vl.name, reranker="tiny-text-lm"
    )
    text_docs = DOCS[:3]
    index = index_over(text_docs, tiny_qwen2_vl.embed([EmbedInput(text=d.text) for d in text_docs]))
    backend = LocalBackend(tiny_qwen2_vl, scorer=judge, index=index, fusion=fusion)
    fused_app = asyncio.run(create_http_app(backend, load_serve_config({}), b"k"))
    query = "a cat"
    body = {"query": query, "top_k": 3, "rerank": True}
    hits = _call(fused_app, "POST", "/v1/search", {"query": query, "top_k": 3}).json()["results"]
    cosine = {h["id"]: h["score"] for h in hits}
    ids = [d.id for d in text_docs]
    p_yes = judge.score(JudgeInput(text=query), [JudgeInput(text=d.text) for d in text_docs])
    want = {
        "fused": dict(zip(ids, fusion.fuse(np.array([cosine[i] for i in ids]), p_yes))),
        "reranker": dict(zip(ids, p_yes)),
    }
    orders = {k: sorted(ids, key=lambda i, k=k: -want[k][i]) for k in want}
    assert orders["fused"] != orders["reranker"]  # the test tells the two apart
    for score, request in [("fused", body), *((s, {**body, "score": s}) for s in want)]:
        got = _call(fused_app, "POST", "/v1/search", request).json()
        assert got["rerank_score"] == score and got.get("note") is None, got
        assert got.get("fusion_weight") == (0.5 if score == "fused" else None)
        assert [h["id"] for h in got["results"]] == orders[score], score
        for h in got["results"]:
            assert h["rerank_score"] == pytest.approx(want[score][h["id"]], abs=1e-4)
    # No fusion stored with the reranker: P(Yes) alone, and the response says so.
    got = _call(app, "POST", "/v1/search", body).json()
    assert got["rerank_score"] == "reranker" and "no stored fusion" in got["note"]


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
