"""The demo data set shipped in ``<repo>/data/demo``: where it lives and what it holds.

The files are built from two Debian packages by ``scripts/build_demo_data.py`` (WordNet 3.0
definitions and openclipart images) and committed, so jobs and tests have real data without
any download. ``UNIEMBED_DEMO_DIR`` points the code at another copy (for example one built
with larger sizes).

Layout (paths relative to ``DEMO_ROOT``; image paths inside a file are relative to that
file's folder)::

    wordnet/queries.jsonl     id, text, instruction, pos_id, synset, lemma
    wordnet/corpus.jsonl      id, text, synset, definition_group
    wordnet/eval.jsonl        MMEB-eval rows (qry_text, qry_img_path, tgt_text, tgt_img_path)
    openclipart/pairs.jsonl   id, image, title
    openclipart/eval.jsonl    MMEB-eval rows, held-out images
    openclipart/images/*.png  RGB thumbnails on white, at most 96 px a side
    embed_corpus.jsonl        item rows: id, text, image_uri, instruction
"""

from __future__ import annotations

import os
from pathlib import Path

DEMO_DIR_ENV = "UNIEMBED_DEMO_DIR"
BUILD_COMMAND = "python scripts/build_demo_data.py --out data/demo"

# The package lives in <repo>/platform/uniembed/, so the data is <repo>/data/demo.
_REPO_ROOT = Path(__file__).resolve().parents[3]
_DEFAULT_ROOT = _REPO_ROOT / "data" / "demo"

# Files of the demo set, relative to the demo root.
WORDNET_QUERIES = "wordnet/queries.jsonl"
WORDNET_CORPUS = "wordnet/corpus.jsonl"
WORDNET_EVAL = "wordnet/eval.jsonl"
OPENCLIPART_PAIRS = "openclipart/pairs.jsonl"
OPENCLIPART_EVAL = "openclipart/eval.jsonl"
OPENCLIPART_IMAGES = "openclipart/images"
EMBED_CORPUS = "embed_corpus.jsonl"

# Columns specific to the demo files (the item columns id/text/image_uri/instruction come
# from uniembed.data.schema).
POS_ID = "pos_id"  # query -> id of its gold definition row in corpus.jsonl
SYNSET = "synset"  # WordNet synset name, lemma.pos.NN
LEMMA = "lemma"  # the word the query asks about
DEFINITION_GROUP = "definition_group"  # rows with identical definition text share it
TITLE = "title"  # openclipart title of an image
PAIR_IMAGE = "image"  # image path of an openclipart pair, relative to pairs.jsonl

# MMEB-eval columns (gold target at index 0 of the target lists).
QRY_TEXT = "qry_text"
QRY_IMG_PATH = "qry_img_path"
TGT_TEXT = "tgt_text"
TGT_IMG_PATH = "tgt_img_path"

# MMEB's image placeholder (Phi-3.5-V spelling); readers swap it for the backbone's token.
MMEB_IMAGE_TOKEN = "<|image_1|>"


def demo_root() -> Path:
    """The demo data folder: ``$UNIEMBED_DEMO_DIR`` if set, else ``<repo>/data/demo``.

    Read at call time, so a test or a job can point it elsewhere after import.
    """
    override = os.environ.get(DEMO_DIR_ENV)
    return Path(override).expanduser().resolve() if override else _DEFAULT_ROOT


DEMO_ROOT: Path = demo_root()
"""The demo folder as resolved at import time; ``demo_path`` re-reads the environment."""


def demo_path(*parts: str) -> str:
    """Absolute path of a file or folder inside the demo data set.

    Args:
        parts: path components below the demo root, e.g. ``demo_path("wordnet",
            "queries.jsonl")`` or ``demo_path(WORDNET_QUERIES)``.

    Returns:
        The path as a string.

    Raises:
        FileNotFoundError: the path does not exist; the message names the missing path, the
            root in use and the command that builds the data.
    """
    root = demo_root()
    path = root.joinpath(*parts)
    if not path.exists():
        where = "/".join(parts) or "."
        source = f"${DEMO_DIR_ENV}" if os.environ.get(DEMO_DIR_ENV) else "the repository"
        raise FileNotFoundError(
            f"demo data {where!r} not found under {root} (from {source}); build it with "
            f"`{BUILD_COMMAND}` from the repository root (needs the Debian packages "
            "wordnet-base and openclipart-png)"
        )
    return str(path)
