"""The shipped demo data set (data/demo) and its builder (scripts/build_demo_data.py)."""

from __future__ import annotations

import functools
import importlib.util
import json
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest
from PIL import Image

from uniembed.data import demo, schema

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILDER = REPO_ROOT / "scripts" / "build_demo_data.py"
SHIPPED = REPO_ROOT / "data" / "demo"

QUERY_KEYS = [schema.ID, schema.TEXT, schema.INSTRUCTION, demo.POS_ID, demo.SYNSET, demo.LEMMA]
CORPUS_KEYS = [schema.ID, schema.TEXT, demo.SYNSET, demo.DEFINITION_GROUP]
PAIR_KEYS = [schema.ID, demo.PAIR_IMAGE, demo.TITLE]
MMEB_KEYS = [demo.QRY_TEXT, demo.QRY_IMG_PATH, demo.TGT_TEXT, demo.TGT_IMG_PATH]
ITEM_KEYS = [schema.ID, schema.TEXT, schema.IMAGE_URI, schema.INSTRUCTION]


@functools.cache
def _builder() -> ModuleType:
    """The builder script as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("build_demo_data", BUILDER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _rows(root: Path, name: str, keys: list[str]) -> list[dict]:
    """Parse a JSON Lines file, checking every row has exactly ``keys`` (in order)."""
    rows = []
    for number, line in enumerate((root / name).read_text(encoding="utf-8").splitlines(), 1):
        row = json.loads(line)
        assert list(row) == keys, f"{name}:{number} has keys {list(row)}"
        rows.append(row)
    assert rows, f"{name} is empty"
    return rows


def _unique_ids(rows: list[dict], name: str) -> None:
    repeated = [i for i, n in Counter(r[schema.ID] for r in rows).items() if n > 1]
    assert not repeated, f"{name}: repeated ids {repeated[:5]}"


def check_demo_set(root: Path, n_wordnet_candidates: int = 20) -> dict[str, int]:
    """Every invariant of a built demo folder; returns a few counts for further checks."""
    queries = _rows(root, demo.WORDNET_QUERIES, QUERY_KEYS)
    corpus = _rows(root, demo.WORDNET_CORPUS, CORPUS_KEYS)
    pairs = _rows(root, demo.OPENCLIPART_PAIRS, PAIR_KEYS)
    items = _rows(root, demo.EMBED_CORPUS, ITEM_KEYS)
    for rows, name in ((queries, "queries"), (corpus, "corpus"), (pairs, "pairs")):
        _unique_ids(rows, name)
    _unique_ids(items, "embed_corpus")

    # Every query's gold definition is in the corpus, and is its own synset's definition.
    by_id = {r[schema.ID]: r for r in corpus}
    for q in queries:
        assert q[demo.POS_ID] in by_id, f"query {q[schema.ID]}: pos_id not in corpus"
        assert by_id[q[demo.POS_ID]][demo.SYNSET] == q[demo.SYNSET]
        assert q[schema.TEXT].startswith(f'{q[demo.LEMMA]}: "'), q[schema.TEXT]

    # definition_group is exactly "same definition text".
    group_texts: dict[str, set[str]] = {}
    text_groups: dict[str, set[str]] = {}
    for r in corpus:
        group_texts.setdefault(r[demo.DEFINITION_GROUP], set()).add(r[schema.TEXT])
        text_groups.setdefault(r[schema.TEXT], set()).add(r[demo.DEFINITION_GROUP])
    assert all(len(t) == 1 for t in group_texts.values()), "a group holds two definitions"
    assert all(len(g) == 1 for g in text_groups.values()), "a definition is in two groups"
    sizes = Counter(r[demo.DEFINITION_GROUP] for r in corpus)
    shared = sum(sizes[by_id[q[demo.POS_ID]][demo.DEFINITION_GROUP]] > 1 for q in queries)

    # WordNet eval: gold first, equal lengths, distinct candidates, held out from training.
    wn_eval = _rows(root, demo.WORDNET_EVAL, MMEB_KEYS)
    query_texts = {q[schema.TEXT] for q in queries}
    corpus_texts = {r[schema.TEXT] for r in corpus}
    for number, row in enumerate(wn_eval, 1):
        targets = row[demo.TGT_TEXT]
        assert len(targets) == n_wordnet_candidates == len(row[demo.TGT_IMG_PATH])
        assert len(set(targets)) == len(targets), f"wordnet eval {number}: repeated candidate"
        assert row[demo.QRY_IMG_PATH] == "" and set(row[demo.TGT_IMG_PATH]) == {""}
        instruction, _, query = row[demo.QRY_TEXT].partition("\n")
        assert instruction and query, f"wordnet eval {number}: no instruction line"
        assert query not in query_texts, f"wordnet eval {number} is also a training query"
        assert targets[0] not in corpus_texts, f"wordnet eval {number}: gold is in the corpus"

    # Images: decode, RGB, <= 96 px, every file referenced, eval images held out.
    clip_root = root / "openclipart"
    clip_eval = _rows(root, demo.OPENCLIPART_EVAL, MMEB_KEYS)
    pair_images = {p[demo.PAIR_IMAGE] for p in pairs}
    eval_images = {row[demo.QRY_IMG_PATH] for row in clip_eval}
    assert not pair_images & eval_images, "an eval image is also a training pair"
    for row in clip_eval:
        assert row[demo.QRY_TEXT].startswith(demo.MMEB_IMAGE_TOKEN + "\n")
        assert len(row[demo.TGT_TEXT]) == 10 == len(row[demo.TGT_IMG_PATH])
        assert len(set(row[demo.TGT_TEXT])) == 10 and set(row[demo.TGT_IMG_PATH]) == {""}
    on_disk = {f"images/{p.name}" for p in (root / demo.OPENCLIPART_IMAGES).glob("*.png")}
    assert on_disk == pair_images | eval_images, "images on disk and in the files differ"
    for relative in sorted(on_disk):
        with Image.open(clip_root / relative) as im:
            im.load()
            assert im.mode == "RGB" and max(im.size) <= 96, f"{relative}: {im.mode} {im.size}"

    # Embed corpus: each row has text or an image; image paths resolve from the file's folder.
    kinds = Counter()
    for item in items:
        has_text, uri = item[schema.TEXT] is not None, item[schema.IMAGE_URI]
        assert has_text or uri is not None, f"embed item {item[schema.ID]} is empty"
        if uri is not None:
            assert (root / uri).is_file(), f"embed item {item[schema.ID]}: {uri} missing"
        kinds[(has_text, uri is not None)] += 1
    assert set(kinds) == {(True, False), (False, True), (True, True)}, kinds

    licences = (root / "LICENSES.md").read_text(encoding="utf-8")
    assert "WordNet 3.0 Copyright 2006 by Princeton University" in licences
    assert "Public Domain Dedication" in licences
    assert "build_demo_data.py" in (root / "README.md").read_text(encoding="utf-8")
    return {"queries": len(queries), "corpus": len(corpus), "shared": shared}


@pytest.mark.skipif(not SHIPPED.is_dir(), reason="data/demo is not built")
def test_shipped_demo_set_is_valid_and_small() -> None:
    counts = check_demo_set(SHIPPED)
    assert counts["queries"] >= 500 and counts["corpus"] >= 2 * counts["queries"]
    assert counts["shared"] >= 100, "too few natural false negatives for the mine job"
    size = sum(p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file())
    assert size < 3.5e6, f"data/demo is {size} bytes"


def test_demo_path_names_missing_file_and_build_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(demo.DEMO_DIR_ENV, str(tmp_path))
    (tmp_path / "wordnet").mkdir()
    (tmp_path / "wordnet" / "queries.jsonl").write_text("{}\n")
    assert demo.demo_path(demo.WORDNET_QUERIES) == str(tmp_path / "wordnet" / "queries.jsonl")
    with pytest.raises(FileNotFoundError, match=r"wordnet/corpus\.jsonl.*build_demo_data\.py"):
        demo.demo_path("wordnet", "corpus.jsonl")
    monkeypatch.delenv(demo.DEMO_DIR_ENV)
    assert demo.demo_root() == SHIPPED


def test_lemma_matching_accepts_inflections_only() -> None:
    builder = _builder()
    assert builder.mentions("carry", "she carried the box")
    assert builder.mentions("pile_up", "The work keeps piling up")
    assert builder.mentions("stop", "he stopped")
    assert not builder.mentions("do", "Don't behave like a fool")
    assert not builder.mentions("bank", "the banker smiled")
    definition, examples = builder._split_gloss('a slope; a ridge; "the bank"; "a high bank"')
    assert definition == "a slope; a ridge" and examples == ("the bank", "a high bank")


def test_clip_titles_drop_noise_and_foreign_words() -> None:
    builder = _builder()
    vocab = builder.Vocabulary(
        frozenset({"pin", "green", "sleeping", "cat", "black", "white"}), frozenset({"germany"})
    )
    assert builder.clean_title("Clipart by Nicu Buculei - pin - green", vocab) == "pin - green"
    assert builder.clean_title("sleeping_cat", vocab) == "sleeping cat"
    assert builder.clean_title(" germany", vocab) == "germany"
    assert builder.clean_title("Lemon SVG theme", vocab) is None
    assert builder.clean_title("glace_01_bw", vocab) is None
    assert builder.clean_title("Uccello bianco e nero", vocab) is None
    assert builder.clean_title("MS", vocab) is None


@pytest.mark.skipif(
    not (Path("/usr/share/wordnet/data.noun").exists() and Path("/usr/share/openclipart").exists()),
    reason="Debian packages wordnet-base and openclipart-png are not installed",
)
def test_builder_is_deterministic(tmp_path: Path) -> None:
    builder = _builder()
    args = ["--wordnet-queries", "40", "--wordnet-eval", "8", "--images", "8", "--embed-rows"]
    outputs = []
    for name in ("a", "b"):
        out = tmp_path / name
        assert builder.main([*args, "12", "--out", str(out)]) == 0
        files = {}
        for path in sorted(p for p in out.rglob("*") if p.is_file()):
            data = path.read_bytes()
            # The README quotes the command, whose --out differs between the two runs.
            files[path.relative_to(out).as_posix()] = data.replace(str(out).encode(), b"OUT")
        outputs.append(files)
    assert outputs[0] == outputs[1]
    counts = check_demo_set(tmp_path / "a")
    assert counts["queries"] == 40 and counts["corpus"] >= 120 and counts["shared"] >= 1
