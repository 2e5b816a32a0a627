"""Serving building blocks without Ray: config, request checks, images, vectors, auth."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from uniembed.config import ConfigError
from uniembed.data.demo import demo_root
from uniembed.models import EmbedInput
from uniembed.reranker.fusion import fusion_path, load_fusion
from uniembed.runtime import usable_cpus
from uniembed.serving import LimitsSection, ServeConfig, load_serve_config
from uniembed.serving.artifacts import ArtifactError, check_index, resolve_model_source
from uniembed.serving.auth import AuthConfigError, key_matches, load_api_key, presented_key
from uniembed.serving.batching import (
    ItemFailure,
    count_inputs,
    embed_isolated,
    run_isolated,
    split_like,
)
from uniembed.serving.config import AuthSection, DeploymentSection
from uniembed.serving.http_app import field_name
from uniembed.serving.inputs import RequestError, load_image_ref, parse_image_ref
from uniembed.serving.vectors import from_base64, to_base64, truncate

SERVE_YAML = Path(__file__).resolve().parents[2] / "jobs" / "configs" / "serve.yaml"


def _png(size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (10, 120, 200)).save(buf, "PNG")
    return buf.getvalue()


def _data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def test_shipped_serve_yaml_is_a_valid_config() -> None:
    doc = yaml.safe_load(SERVE_YAML.read_text())
    (app,) = doc["applications"]
    assert app["import_path"] == "uniembed.serving:build_app"
    cfg = load_serve_config(app["args"])
    assert cfg.embedder.model == "minilm" and cfg.reranker.model == "smollm2-135m-judge"
    # the shipped reranker carries its fusion with the shipped embedder (default rerank score)
    fusion = fusion_path(cfg.reranker.model, cfg.reranker.model)
    assert fusion is not None and load_fusion(fusion).embedder == cfg.embedder.model
    assert cfg.retriever.index is None  # built from the demo corpus at start-up
    opts = cfg.embedder.deployment.options()
    assert opts["max_ongoing_requests"] >= cfg.embedder.deployment.max_batch_size
    assert opts["autoscaling_config"]["max_replicas"] == 2


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match="embedder.modle"):
        load_serve_config({"embedder": {"modle": "minilm"}})
    with pytest.raises(ConfigError, match="max_ongoing_requests"):
        DeploymentSection(max_batch_size=32, max_ongoing_requests=5)
    fixed = DeploymentSection(min_replicas=2, max_replicas=2).options()
    assert fixed["num_replicas"] == 2 and "autoscaling_config" not in fixed
    assert isinstance(load_serve_config(None), ServeConfig)
    with pytest.raises(ConfigError, match="cpu_threads"):
        load_serve_config({"embedder": {"cpu_threads": 0}})


def test_cpu_threads_follow_the_replica_cpus_rounded_up() -> None:
    def threads(**embedder: object) -> int:
        return load_serve_config({"embedder": embedder}).embedder.threads

    assert threads(deployment={"num_cpus": 0.5}) == 1
    assert threads(deployment={"num_cpus": 1.75}) == 2
    assert threads(deployment={"num_cpus": 4}) == 4
    assert threads(cpu_threads=3, deployment={"num_cpus": 1}) == 3
    # auto: every CPU this process may run on (its affinity; a container's quota caps it).
    assert threads(cpu_threads="auto", deployment={"num_cpus": 1}) == usable_cpus()
    assert 1 <= usable_cpus() <= len(os.sched_getaffinity(0))
    with pytest.raises(ConfigError, match="cpu_threads"):
        threads(cpu_threads="all")


def test_image_refs_and_limits() -> None:
    limits = LimitsSection(max_image_bytes=50_000, max_image_pixels=10_000, image_uri_prefixes=[])
    img = load_image_ref(parse_image_ref(_data_uri(_png((40, 30))), "input[0].image", limits),
                         "input[0].image", limits)  # fmt: skip
    assert img.size == (40, 30) and img.mode == "RGB"
    cases = [
        ("data:image/png,abc", 400),  # not base64
        ("data:image/png;base64,@@@", 400),
        ("s3://bucket/x.png", 400),  # no URI prefix allowed
        (_data_uri(b"x" * 80_000), 413),  # bytes
    ]
    for value, status in cases:
        with pytest.raises(RequestError) as err:
            parse_image_ref(value, "input[2].image", limits)
        assert err.value.status == status and err.value.param == "input[2].image"
    for data, status in [(_png((200, 100)), 413), (b"\x89PNG\r\n\x1a\nbroken", 400)]:
        with pytest.raises(RequestError) as err:
            load_image_ref(parse_image_ref(_data_uri(data), "q", limits), "q", limits)
        assert err.value.status == status and err.value.param == "q"


def test_storage_uri_images_only_under_allowed_prefixes() -> None:
    root = str(demo_root())
    limits = LimitsSection(image_uri_prefixes=[root])
    path = next(Path(root, "openclipart", "images").glob("*.png"))
    assert load_image_ref(parse_image_ref(str(path), "f", limits), "f", limits).mode == "RGB"
    with pytest.raises(RequestError, match="allowed prefix"):
        parse_image_ref("/etc/hostname", "f", limits)
    with pytest.raises(RequestError) as err:
        load_image_ref(parse_image_ref(root + "/missing.png", "f", limits), "f", limits)
    assert err.value.status == 400 and "cannot read" in err.value.message


def test_truncate_and_base64() -> None:
    rng = np.random.default_rng(0)
    v = rng.normal(size=(3, 16)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    cut = truncate(v, 4)
    np.testing.assert_allclose(np.linalg.norm(cut, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(cut[0], v[0, :4] / np.linalg.norm(v[0, :4]), atol=1e-6)
    with pytest.raises(ValueError, match="dimensions"):
        truncate(v, 17)
    assert np.array_equal(from_base64(to_base64(v[1])), v[1])
    # OpenAI clients decode base64 as little-endian float32.
    assert base64.b64decode(to_base64(np.array([1.0], np.float32))) == b"\x00\x00\x80?"


def test_api_key_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UNIEMBED_TEST_KEY", raising=False)
    assert load_api_key(AuthSection(api_key_env="UNIEMBED_TEST_KEY")) is None
    monkeypatch.setenv("UNIEMBED_TEST_KEY", "s3cret")
    assert load_api_key(AuthSection(api_key_env="UNIEMBED_TEST_KEY")) == b"s3cret"
    secret = tmp_path / "key"
    secret.write_text("from-file\n")
    section = AuthSection(api_key_env="UNIEMBED_TEST_KEY", api_key_file=str(secret))
    assert load_api_key(section) == b"from-file"
    with pytest.raises(AuthConfigError, match="api_key_file") as err:
        load_api_key(AuthSection(api_key_file=str(tmp_path / "nope")))
    assert "s3cret" not in str(err.value)
    assert presented_key("Bearer abc", None) == "abc"
    assert presented_key("Basic abc", "xyz") == "xyz"
    assert presented_key(None, None) is None
    assert key_matches(b"abc", "abc") and not key_matches(b"abc", "abd")
    assert not key_matches(b"abc", None)


def test_field_names_from_validation_locations() -> None:
    assert field_name(("body", "input", "list[union[str,ContentItem]]", 2, "ContentItem",
                       "image")) == "input[2].image"  # fmt: skip
    assert field_name(("body", "encoding_format")) == "encoding_format"
    assert field_name(("body",)) == "body"


def test_one_bad_item_fails_alone(tiny_text_lm) -> None:  # noqa: ANN001
    inputs = [
        EmbedInput(text="a cat"),
        EmbedInput(image=Image.new("RGB", (8, 8))),  # a text-only model cannot take it
        EmbedInput(text="a much longer sentence about a dog"),
    ]
    out = embed_isolated(tiny_text_lm, inputs)
    assert isinstance(out[1], ItemFailure) and out[1].client_error
    assert "embeds text only" in out[1].message
    alone = tiny_text_lm.embed([inputs[2]])[0]
    np.testing.assert_allclose(out[2].vector, alone, atol=1e-5)
    assert out[0].tokens == tiny_text_lm.token_length(inputs[0])

    def boom(items: list[int]) -> list[int]:
        raise RuntimeError("batch failed")

    def one(x: int) -> int:
        if x == 2:
            raise KeyError("x")
        return x * 10

    got = run_isolated([1, 2, 3], boom, one)
    assert got[0] == 10 and got[2] == 30
    assert isinstance(got[1], ItemFailure) and not got[1].client_error


def test_missing_artifacts_fail_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="embedder.model: model folder .* does not exist"):
        resolve_model_source(str(tmp_path / "no-model"), "embedder.model")
    assert resolve_model_source("minilm", "embedder.model") == "minilm"
    with pytest.raises(ArtifactError, match="retriever.index: .*index.faiss does not exist"):
        check_index(str(tmp_path / "index.faiss"), "retriever.index")


def test_lists_merged_into_one_batch_come_back_in_their_own_pieces() -> None:
    lists = [["a"], [], ["b", "c", "d"], ["e", "f"]]
    assert count_inputs(lists) == 6
    flat = [x.upper() for part in lists for x in part]
    assert split_like(flat, lists) == [["A"], [], ["B", "C", "D"], ["E", "F"]]


def test_storage_uri_prefix_judged_where_the_uri_really_points(tmp_path: Path) -> None:
    allowed = tmp_path / "images"
    allowed.mkdir()
    (tmp_path / "secret.png").write_bytes(_png((4, 4)))
    (allowed / "ok.png").write_bytes(_png((4, 4)))
    (allowed / "link.png").symlink_to(tmp_path / "secret.png")
    limits = LimitsSection(image_uri_prefixes=[str(allowed)])
    assert parse_image_ref(str(allowed / "ok.png"), "f", limits).uri == str(allowed / "ok.png")
    for escape in (
        f"{allowed}/../secret.png",  # climbs out with ..
        f"file://{allowed}/../secret.png",
        str(allowed / "link.png"),  # a link inside the folder to a file outside it
        f"{allowed}x/ok.png",  # a sibling folder sharing the prefix string
    ):
        with pytest.raises(RequestError, match="allowed prefix") as err:
            parse_image_ref(escape, "f", limits)
        assert err.value.status == 400 and str(tmp_path) + "/secret" not in err.value.message
