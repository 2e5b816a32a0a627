"""Bad requests against the HTTP app (LocalBackend over real tiny models, httpx ASGI):
every one is a 4xx naming the field, never a 500, and good requests around them succeed."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import random

import httpx
import numpy as np
import pytest
from PIL import Image

from fixtures.bad_inputs import bad_embedding_request, png_header
from uniembed.models import EmbedInput
from uniembed.serving import load_serve_config
from uniembed.serving.backend import LocalBackend
from uniembed.serving.http_app import create_http_app

KEY = "k"


@pytest.fixture(scope="module")
def judge():  # noqa: ANN201
    from uniembed.reranker.scorer import JudgeScorer

    return JudgeScorer.load("tiny-text-lm")


@pytest.fixture(scope="module")
def app(tiny_qwen2_vl, judge):  # noqa: ANN001, ANN201
    backend = LocalBackend(tiny_qwen2_vl, scorer=judge, max_text_tokens=32)
    cfg = load_serve_config({"limits": {"max_body_bytes": 200_000, "image_uri_prefixes": []}})
    return asyncio.run(create_http_app(backend, cfg, KEY.encode()))


def _send(app, path: str, content: bytes | object, key: str | None = KEY) -> httpx.Response:  # noqa: ANN001
    async def go() -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        headers["content-type"] = "application/json"
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await c.post(path, content=content, headers=headers)

    return asyncio.run(go())


def _post(app, path: str, body: dict, key: str | None = KEY) -> httpx.Response:  # noqa: ANN001
    return _send(app, path, json.dumps(body).encode(), key)


def _data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def _png(size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (9, 99, 199)).save(buf, "PNG")
    return buf.getvalue()


def _error(r: httpx.Response) -> tuple[int, str | None, str]:
    body = r.json()["error"]
    return r.status_code, body["param"], body["message"]


def test_lone_surrogate_is_a_400_naming_the_field(app) -> None:  # noqa: ANN001
    raw = b'{"input": ["fine", "a \\ud800 b"]}'
    status, param, message = _error(_send(app, "/v1/embeddings", raw))
    assert (status, param) == (400, "input[1]") and "U+D800" in message
    raw = b'{"input": [{"text": "x", "instruction": "\\udfff"}]}'
    assert _error(_send(app, "/v1/embeddings", raw))[:2] == (400, "input[0].instruction")


def test_decompression_bomb_is_413(app) -> None:  # noqa: ANN001
    body = {"input": [{"image": _data_uri(png_header(20000, 20000))}]}
    assert _error(_post(app, "/v1/embeddings", body))[:2] == (413, "input[0].image")


def test_auth_comes_before_the_body_is_parsed(app) -> None:  # noqa: ANN001
    r = _send(app, "/v1/embeddings", b"{not json", key=None)
    assert r.status_code == 401 and "JSON" not in r.text
    assert _send(app, "/v1/embeddings", b"{not json").status_code == 422


def test_errors_show_no_object_reprs(app) -> None:  # noqa: ANN001
    body = {"input": [{"image": _data_uri(b"not an image at all")}]}
    status, param, message = _error(_post(app, "/v1/embeddings", body))
    assert (status, param) == (400, "input[0].image")
    assert " at 0x" not in message and "BytesIO" not in message


def test_token_ids_and_empty_items(app) -> None:  # noqa: ANN001
    for ids in ([1, 2, 3], [[1, 2], [3]]):
        status, param, message = _error(_post(app, "/v1/embeddings", {"input": ids}))
        assert (status, param) == (400, "input") and "not supported" in message
    status, param, message = _error(_post(app, "/v1/embeddings", {"input": [{}]}))
    assert (status, param) == (422, "input[0]") and "needs text or image" in message


def test_oversize_chunked_body_is_413(app) -> None:  # noqa: ANN001
    async def chunks():  # noqa: ANN202 - no Content-Length: sent chunked
        yield b'{"input": "'
        for _ in range(30):
            yield b"x" * 10_000
        yield b'"}'

    assert _error(_send(app, "/v1/embeddings", chunks()))[:2] == (413, "body")


def test_long_rerank_query_is_cut_before_scoring(app, judge) -> None:  # noqa: ANN001
    from uniembed.models.truncation import truncate_text
    from uniembed.reranker.scorer import JudgeInput

    query = "why " * 7_500  # 30,000 characters
    r = _post(app, "/v1/rerank", {"query": query, "documents": ["a cat", "a car"]})
    assert r.status_code == 200, r.text
    cut, was_cut = truncate_text(judge.tokenizer, query, 32)
    assert was_cut
    want = judge.score(JudgeInput(text=cut), [JudgeInput(text="a cat"), JudgeInput(text="a car")])
    got = sorted((x["index"], x["relevance_score"]) for x in r.json()["results"])
    np.testing.assert_allclose([s for _, s in got], want, atol=1e-5)


def test_long_text_is_truncated_not_refused(app, tiny_qwen2_vl) -> None:  # noqa: ANN001
    text = "word " * 6_000  # under max_text_chars, over the model's token limit in a batch
    r = _post(app, "/v1/embeddings", {"input": text})
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["total_tokens"] <= tiny_qwen2_vl.max_text_tokens + 64


def test_fuzz_bad_requests_never_500_and_good_ones_succeed(app, tiny_qwen2_vl) -> None:  # noqa: ANN001
    rng = random.Random(13)
    image = _png((20, 12))
    for i in range(60):
        if rng.random() < 0.5:
            text = " ".join(
                rng.choice(["cat", "dog", "red", "tree"]) for _ in range(rng.randint(1, 9))
            )
            item: object = text if i % 3 else {"text": text, "image": _data_uri(image)}
            r = _post(app, "/v1/embeddings", {"input": [item]})
            assert r.status_code == 200, r.text
            if isinstance(item, str):
                want = tiny_qwen2_vl.embed([EmbedInput(text=text)])[0]
                np.testing.assert_allclose(r.json()["data"][0]["embedding"], want, atol=1e-5)
        else:
            raw = bad_embedding_request(rng)
            r = _send(app, "/v1/embeddings", raw)
            assert 400 <= r.status_code < 500, (raw[:80], r.status_code, r.text)
            assert "error" in r.json() and r.json()["error"]["param"], (raw[:80], r.text)
