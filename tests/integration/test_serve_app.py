"""The serve app on a local Serve, over real HTTP: every endpoint, auth, limits, batching.

One Serve instance per module holds two apps on tiny random models:

- ``secure`` at ``/``: API key from a secret file, Matryoshka on, tiny-text-lm reranker, and
  the FAISS index written by the embed job (text, image and image+text items);
- ``open`` at ``/open``: no auth, no reranker, the packaged all-MiniLM-L6-v2 on ONNX
  Runtime (the shipped config's embedder), an index built at start-up from the demo
  WordNet corpus.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import random
import socket
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from fixtures.bad_inputs import bad_embedding_request
from uniembed.data.demo import OPENCLIPART_PAIRS, WORDNET_CORPUS, demo_path, demo_root
from uniembed.serving.vectors import from_base64

pytestmark = pytest.mark.integration

KEY = "test-key-" + uuid.uuid4().hex
DEPLOY = {"num_cpus": 0.1, "max_batch_size": 16, "batch_wait_timeout_s": 0.25}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _png_uri(size: tuple[int, int], color: tuple[int, int, int]) -> str:
    img = Image.new("RGB", size, color)
    for x in range(0, size[0], 7):
        img.putpixel((x, x % size[1]), (255 - color[0], 40, 90))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _corpus(folder: Path) -> Path:
    """24 WordNet definitions, 4 clip-art images and 2 image+text items."""
    rows = [json.loads(x) for x in Path(demo_path(WORDNET_CORPUS)).read_text().splitlines()]
    items = [{"id": r["id"], "text": r["text"]} for r in rows[:24]]
    pairs_file = Path(demo_path(OPENCLIPART_PAIRS))
    pairs = [json.loads(x) for x in pairs_file.read_text().splitlines()][:6]
    for i, p in enumerate(pairs):
        image = str(pairs_file.parent / p["image"])
        item = {"id": p["id"], "image_uri": image}
        if i >= 4:
            item["text"] = p["title"]
        items.append(item)
    path = folder / "corpus.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in items))
    return path


def _wait_healthy(url: str, timeout_s: float = 300.0) -> None:
    """Poll /healthz until every route is ready: embeddings answer at once, the index is
    loaded (or the demo one built) in the background, and /healthz says 503 until then."""
    deadline = time.monotonic() + timeout_s
    seen = []
    while True:
        r = httpx.get(url + "/healthz", timeout=30)
        seen.append(r.status_code)
        if r.status_code == 200:
            assert r.json()["status"] == "ok" and all(r.json()["routes"].values())
            return
        assert r.status_code == 503 and r.json()["status"] == "starting", r.text
        assert r.json()["routes"]["/v1/embeddings"] is True
        assert time.monotonic() < deadline, f"{url} not ready: {r.text}"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def served(ray_start_2_cpus, tmp_path_factory):  # noqa: ANN001, ANN201
    from ray import serve

    from uniembed.embed.config import EmbedConfig, IndexSection
    from uniembed.embed.pipeline import run_embed
    from uniembed.sections import ActorPoolSection, ModelSection
    from uniembed.serving import build_app

    tmp = tmp_path_factory.mktemp("serve")
    corpus = _corpus(tmp)
    out = str(tmp / "embed")
    summary = run_embed(
        EmbedConfig(
            input=str(corpus),
            output=out,
            model=ModelSection(name="tiny-qwen2-vl", device="cpu"),
            compute=ActorPoolSection(cpus_per_actor=0.25, micro_batch_size=8, rows_per_call=32),
            index=IndexSection(kind="flat"),
            # the corpus names the demo's clip-art images where they lie, outside its folder
            image_prefixes=[str(Path(demo_path(OPENCLIPART_PAIRS)).parent)],
        )
    )
    assert summary.rows_out == 30 and summary.index == f"{out}/index.faiss"
    key_file = tmp / "api_key"
    key_file.write_text(KEY + "\n")
    secure = {
        "embedder": {"model": "tiny-qwen2-vl", "device": "cpu",
                     "matryoshka": True, "deployment": DEPLOY},
        "reranker": {"model": "tiny-text-lm", "device": "cpu", "deployment": DEPLOY},
        "retriever": {"index": summary.index, "documents": str(corpus),
                      "deployment": DEPLOY},
        "ingress": {"num_cpus": 0.1},
        "auth": {"api_key_file": str(key_file), "api_key_env": None},
        "limits": {"max_body_bytes": 400_000, "max_inputs": 20, "max_image_pixels": 1_000_000,
                   "image_uri_prefixes": [str(demo_root())]},
    }  # fmt: skip
    open_ = {
        "embedder": {"model": "minilm", "device": "cpu", "deployment": DEPLOY},
        "reranker": {"enabled": False},
        "retriever": {"demo_limit": 40, "deployment": DEPLOY},
        "ingress": {"num_cpus": 0.1},
        "auth": {"api_key_env": None},
    }
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(build_app(secure), name="secure", route_prefix="/")
        serve.run(build_app(open_), name="open", route_prefix="/open")
        url = f"http://127.0.0.1:{port}"
        for prefix in ("", "/open"):
            _wait_healthy(url + prefix)
        yield {"url": url, "corpus": corpus}
    finally:
        serve.shutdown()


@pytest.fixture
def client(served) -> httpx.Client:  # noqa: ANN001
    with httpx.Client(
        base_url=served["url"], headers={"Authorization": f"Bearer {KEY}"}, timeout=120
    ) as c:
        yield c


def _embed(client: httpx.Client, inputs: list, **kw) -> np.ndarray:  # noqa: ANN003
    r = client.post("/v1/embeddings", json={"input": inputs, **kw})
    assert r.status_code == 200, r.text
    return np.array([d["embedding"] for d in r.json()["data"]], dtype=np.float32)


def test_health_models_and_docs(served, client) -> None:  # noqa: ANN001
    anon = httpx.get(served["url"] + "/healthz")
    assert anon.status_code == 200 and anon.json()["retriever"]["count"] == 30
    models = client.get("/v1/models").json()["data"]
    assert [(m["id"], m["type"]) for m in models] == [
        ("tiny-qwen2-vl", "embedding"),
        ("tiny-text-lm", "reranker"),
    ]
    assert models[0]["dim"] == 64 and models[0]["supports_images"] is True
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/embeddings", "/v1/rerank", "/v1/search", "/v1/models"} <= set(paths)


def test_auth_on_and_off(served) -> None:  # noqa: ANN001
    url = served["url"]
    body = {"input": "a cat"}
    assert httpx.post(url + "/v1/embeddings", json=body).status_code == 401
    wrong = httpx.post(url + "/v1/embeddings", json=body, headers={"Authorization": "Bearer x"})
    assert wrong.status_code == 401 and KEY not in wrong.text
    assert wrong.headers["www-authenticate"] == "Bearer"
    ok = httpx.post(url + "/v1/embeddings", json=body, headers={"X-API-Key": KEY})
    assert ok.status_code == 200
    assert httpx.post(url + "/open/v1/embeddings", json=body).status_code == 200
    assert httpx.get(url + "/open/v1/models").status_code == 200


def test_embeddings_openai_shape(served, client) -> None:  # noqa: ANN001
    r = client.post("/v1/embeddings", json={"input": "a cat", "model": "tiny-qwen2-vl"})
    body = r.json()
    assert body["object"] == "list" and body["model"] == "tiny-qwen2-vl"
    assert body["data"][0]["index"] == 0 and len(body["data"][0]["embedding"]) == 64
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 2
    full = np.array(body["data"][0]["embedding"], np.float32)
    assert abs(np.linalg.norm(full) - 1) < 1e-5
    b64 = client.post("/v1/embeddings", json={"input": ["a cat"], "encoding_format": "base64"})
    np.testing.assert_allclose(from_base64(b64.json()["data"][0]["embedding"]), full, atol=1e-6)
    cut = _embed(client, ["a cat"], dimensions=16)[0]
    np.testing.assert_allclose(cut, full[:16] / np.linalg.norm(full[:16]), atol=1e-5)
    other = client.post("/v1/embeddings", json={"input": "a cat", "model": "text-embedding-3"})
    assert other.status_code == 404 and other.json()["error"]["param"] == "model"
    # The open app's model is not marked Matryoshka: dimensions is refused, naming it.
    r = httpx.post(served["url"] + "/open/v1/embeddings", json={"input": "x", "dimensions": 8})
    assert r.status_code == 400 and r.json()["error"]["param"] == "dimensions"


def test_validation_and_limits(client) -> None:  # noqa: ANN001
    def error(body: dict, path: str = "/v1/embeddings") -> tuple[int, str, str]:
        r = client.post(path, json=body)
        err = r.json()["error"]
        return r.status_code, err["param"], err["message"]

    assert error({"input": "x", "encoding_format": "int8"})[:2] == (422, "encoding_format")
    assert error({"input": ["x", {"imagex": "y"}]})[:2] == (422, "input[1].imagex")
    assert error({"input": ["x", {"instruction": "only"}]})[:2] == (422, "input[1]")
    assert error({"inputs": "x"})[0] == 422
    assert error({"input": []})[:2] == (422, "input")
    assert error({"query": "x", "top_k": 1000}, "/v1/search")[:2] == (422, "top_k")
    assert error({"query": "x", "documents": []}, "/v1/rerank")[:2] == (422, "documents")
    assert error({"input": ["x"] * 21})[:2] == (413, "input")
    assert error({"input": "x" * 500_000})[:2] == (413, "body")
    big = _png_uri((1200, 1000), (10, 200, 10))
    assert error({"input": [{"image": big}]})[:2] == (413, "input[0].image")
    bad = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\nbroken").decode()
    status, param, message = error({"input": ["ok", {"image": bad}]})
    assert (status, param) == (400, "input[1].image") and "decode" in message
    assert error({"input": [{"image": "/etc/passwd"}]})[:2] == (400, "input[0].image")


def _mixed_inputs() -> list:
    """Different lengths and modalities; two storage-URI images, three inline ones."""
    pairs_file = Path(demo_path(OPENCLIPART_PAIRS))
    first = json.loads(pairs_file.read_text().splitlines()[0])
    clip = str(pairs_file.parent / first["image"])
    return [
        "a cat",
        "the quick brown fox jumps over the lazy dog " * 6,
        {"image": _png_uri((40, 30), (200, 20, 20))},
        {"image": _png_uri((90, 120), (20, 20, 200)), "text": "a blue picture of a thing"},
        {"text": "a mat", "instruction": "Find me an everyday image that matches:"},
        {"image": clip},
        {"image": clip, "text": "bird", "instruction": "Represent the image:"},
        {"image": _png_uri((64, 64), (250, 250, 250))},
        "x",
        "an embedding of a much longer sentence with many more tokens in it than the rest",
    ]


async def _concurrent(url: str, bodies: list[dict]) -> list[httpx.Response]:
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as c:
        return await asyncio.gather(*(c.post("/v1/embeddings", json=b) for b in bodies))


def test_same_embedding_alone_and_in_a_full_batch(served, client) -> None:  # noqa: ANN001
    from ray import serve

    inputs = _mixed_inputs()
    alone = np.concatenate([_embed(client, [x]) for x in inputs])
    handle = serve.get_deployment_handle("Ingress", app_name="secure")
    before = handle.stats.remote().result()
    responses = asyncio.run(_concurrent(served["url"], [{"input": [x]} for x in inputs]))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    together = np.array([r.json()["data"][0]["embedding"] for r in responses], np.float32)
    np.testing.assert_allclose(together, alone, atol=1e-5)
    one_request = _embed(client, inputs)
    np.testing.assert_allclose(one_request, alone, atol=1e-5)
    after = handle.stats.remote().result()
    grown = {size: n - before.get(size, 0) for size, n in after.items()}
    # The concurrent requests really shared forward passes.
    assert max(size for size, n in grown.items() if n > 0) >= 4, grown


def test_bad_request_never_fails_its_batch(served, client) -> None:  # noqa: ANN001
    good = ["a cat", "a dog on a mat", {"image": _png_uri((40, 30), (200, 20, 20))}, "x"]
    alone = np.concatenate([_embed(client, [x]) for x in good])
    bad_image = "data:image/png;base64," + base64.b64encode(b"GIF89a-not-really").decode()
    # Passes the ingress checks but fails inside the model (an image slot with no image):
    # it shares a batch with the good requests and must fail alone.
    poisoned = "look <|vision_start|><|image_pad|><|vision_end|> here"
    bodies = [{"input": [x]} for x in good]
    bodies.insert(1, {"input": [poisoned]})
    bodies.insert(3, {"input": ["fine", {"image": bad_image}]})
    responses = asyncio.run(_concurrent(served["url"], bodies))
    codes = [r.status_code for r in responses]
    assert codes == [200, 400, 200, 400, 200, 200], [r.text for r in responses]
    assert responses[1].json()["error"]["param"] == "input[0]"
    assert responses[3].json()["error"]["param"] == "input[1].image"
    ok = [r for r in responses if r.status_code == 200]
    got = np.array([r.json()["data"][0]["embedding"] for r in ok], np.float32)
    np.testing.assert_allclose(got, alone, atol=1e-5)


async def _fuzz(url: str, bodies: list[bytes], clients: int, budget_s: float) -> list:
    """Post ``bodies`` from ``clients`` concurrent clients until all are sent or ``budget_s``
    has passed (then no new request starts); the answers in order, None for unsent."""
    headers = {"Authorization": f"Bearer {KEY}", "content-type": "application/json"}
    answers: list = [None] * len(bodies)
    queue = list(range(len(bodies)))
    stop = time.monotonic() + budget_s

    async def worker(c: httpx.AsyncClient) -> None:
        while queue and time.monotonic() < stop:
            i = queue.pop(0)
            answers[i] = await c.post("/v1/embeddings", content=bodies[i])

    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as c:
        await asyncio.gather(*(worker(c) for _ in range(clients)))
    return answers


def test_fuzz_over_http_bad_requests_are_4xx_and_good_ones_exact(served, client) -> None:  # noqa: ANN001
    """Mixed good and hostile requests from 8 concurrent clients against Serve over HTTP, for
    at most 96 requests or 90 s: every hostile one is a 4xx naming its field, every good one
    a 200 with the vector it gets alone (to 1e-5)."""
    rng = random.Random(7)
    words = ["cat", "dog", "red", "tree", "a", "mat", "over", "blue"]
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 9))) for _ in range(8)]
    alone = {t: _embed(client, [t])[0] for t in texts}
    plan = [rng.choice(texts) if rng.random() < 0.5 else None for _ in range(96)]
    bodies = [
        json.dumps({"input": [t]}).encode() if t else bad_embedding_request(rng) for t in plan
    ]
    answers = asyncio.run(_fuzz(served["url"], bodies, clients=8, budget_s=90))
    sent = [(t, body, r) for t, body, r in zip(plan, bodies, answers) if r is not None]
    assert sum(t is not None for t, _, _ in sent) >= 4 and sum(t is None for t, _, _ in sent) >= 4
    for text, body, r in sent:
        if text is None:
            assert 400 <= r.status_code < 500, (body[:80], r.status_code, r.text)
            assert r.json()["error"]["param"], (body[:80], r.text)
        else:
            assert r.status_code == 200, (text, r.text)
            got = np.array(r.json()["data"][0]["embedding"], np.float32)
            np.testing.assert_allclose(got, alone[text], atol=1e-5)


def test_rerank(client) -> None:  # noqa: ANN001
    from uniembed.reranker.scorer import JudgeInput, JudgeScorer

    docs = ["a small cat", "a red car on the road", "cats are animals", "the stock market"]
    r = client.post(
        "/v1/rerank",
        json={"query": "cat", "documents": docs, "top_n": 3, "return_documents": True},
    )
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == 3
    # tiny-text-lm has no stored fusion: its P(Yes) alone, and the response says so
    assert r.json()["score"] == "reranker" and "no stored fusion" in r.json()["note"]
    scores = [x["relevance_score"] for x in results]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    assert [x["document"]["text"] for x in results] == [docs[x["index"]] for x in results]
    judge = JudgeScorer.load("tiny-text-lm")
    expected = judge.score(JudgeInput(text="cat"), [JudgeInput(text=d) for d in docs])
    np.testing.assert_allclose(scores, np.sort(expected)[::-1][:3], atol=1e-4)
    # Infinity's /rerank: the same request (its raw_scores flag too), the same scores.
    r = client.post(
        "/rerank",
        json={"query": "cat", "documents": docs, "top_n": 3, "return_documents": True,
              "raw_scores": False},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    infinity = r.json()["results"]
    assert [x["index"] for x in infinity] == [x["index"] for x in results]
    assert [x["document"] for x in infinity] == [docs[x["index"]] for x in infinity]
    np.testing.assert_allclose([x["relevance_score"] for x in infinity], scores, atol=1e-6)
    image_doc = {"query": "cat", "documents": ["x", {"image": _png_uri((8, 8), (1, 2, 3))}]}
    r = client.post("/v1/rerank", json=image_doc)
    assert r.status_code == 400 and r.json()["error"]["param"] == "documents[1].image"


def test_search_over_the_embed_job_index(served, client) -> None:  # noqa: ANN001
    items = [json.loads(x) for x in served["corpus"].read_text().splitlines()]
    text_item = items[5]
    r = client.post("/v1/search", json={"query": text_item["text"], "top_k": 3})
    assert r.status_code == 200, r.text
    hits = r.json()["results"]
    assert hits[0]["id"] == text_item["id"] and hits[0]["score"] > 0.999
    assert hits[0]["document"]["text"] == text_item["text"]
    image_item = items[26]
    data = base64.b64encode(Path(image_item["image_uri"]).read_bytes()).decode()
    query = {"image": "data:image/png;base64," + data}
    hits = client.post("/v1/search", json={"query": query, "top_k": 2}).json()["results"]
    assert hits[0]["id"] == image_item["id"] and hits[0]["score"] > 0.999
    reranked = client.post(
        "/v1/search", json={"query": "sound", "top_k": 4, "rerank": True, "rerank_candidates": 8}
    ).json()
    assert reranked["reranker"] == "tiny-text-lm" and len(reranked["results"]) == 4
    rerank_scores = [h["rerank_score"] for h in reranked["results"]]
    assert rerank_scores == sorted(rerank_scores, reverse=True)


def test_onnx_encoder_alone_in_a_request_and_across_requests(served) -> None:  # noqa: ANN001
    from ray import serve

    url = served["url"] + "/open"
    health = httpx.get(url + "/healthz", timeout=60).json()
    assert health["embedder"]["name"] == "minilm" and health["embedder"]["backend"] == "onnx"
    texts = ["a cat", "x", "the bark of a dog at night", " ".join(["long text"] * 60), "Paris"]

    def post(inputs: list[str]) -> np.ndarray:
        r = httpx.post(url + "/v1/embeddings", json={"input": inputs}, timeout=60)
        assert r.status_code == 200, r.text
        return np.array([d["embedding"] for d in r.json()["data"]], dtype=np.float32)

    alone = np.concatenate([post([t]) for t in texts])
    assert alone.shape == (len(texts), 384)
    np.testing.assert_allclose(post(texts), alone, atol=1e-5)
    handle = serve.get_deployment_handle("Ingress", app_name="open")
    before = handle.stats.remote().result()

    async def concurrent() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=120) as c:
            bodies = [{"input": [t]} for t in texts] + [{"input": texts}]
            return await asyncio.gather(*(c.post("/v1/embeddings", json=b) for b in bodies))

    responses = asyncio.run(concurrent())
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    singles = np.array([r.json()["data"][0]["embedding"] for r in responses[:-1]], np.float32)
    together = np.array([d["embedding"] for d in responses[-1].json()["data"]], np.float32)
    np.testing.assert_allclose(singles, alone, atol=1e-5)
    np.testing.assert_allclose(together, alone, atol=1e-5)
    after = handle.stats.remote().result()
    grown = {size: n - before.get(size, 0) for size, n in after.items()}
    # The requests' inputs shared forward passes (batches of up to 16 inputs).
    assert max(size for size, n in grown.items() if n > 0) > len(texts), grown


def test_search_over_the_start_up_demo_index(served) -> None:  # noqa: ANN001
    rows = [json.loads(x) for x in Path(demo_path(WORDNET_CORPUS)).read_text().splitlines()]
    url = served["url"] + "/open/v1/search"
    r = httpx.post(url, json={"query": rows[7]["text"], "top_k": 1}, timeout=60)
    assert r.status_code == 200 and r.json()["results"][0]["id"] == rows[7]["id"]
    r = httpx.post(url, json={"query": "x", "rerank": True}, timeout=60)
    assert r.status_code == 404 and "reranker" in r.json()["error"]["message"]
