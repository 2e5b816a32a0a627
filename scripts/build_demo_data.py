"""Build the committed demo data set (``data/demo``) from two Debian packages.

    apt-get install wordnet-base openclipart-png
    python scripts/build_demo_data.py --out data/demo

WordNet 3.0 gives word-sense retrieval: a query is a word plus an example sentence that
pins its sense, the target is that sense's definition. Other senses of the same word are
hard negatives, and synsets whose definitions are word-for-word identical are natural false
negatives for the mining filters to find. openclipart gives image-title pairs.

The build is deterministic: inputs are read in sorted order and every random choice comes
from a ``random.Random`` seeded with ``--seed``. See ``data/demo/README.md`` for the files.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import re
import sys
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "platform"))

from uniembed.data import demo, schema  # noqa: E402

WORDNET_DIR = Path("/usr/share/wordnet")
OPENCLIPART_DIR = Path("/usr/share/openclipart/png")
WORDNET_COPYRIGHT = Path("/usr/share/doc/wordnet-base/copyright")
OPENCLIPART_COPYRIGHT = Path("/usr/share/doc/openclipart-png/copyright")

POS_FILES = ("noun", "verb", "adj", "adv")
WORDNET_INSTRUCTION = "Find the dictionary definition of the word as used in this sentence."
DEFINITION_INSTRUCTION = "Represent the dictionary definition for retrieval."
IMAGE_QUERY = f"{demo.MMEB_IMAGE_TOKEN}\nRepresent the given image for finding its title."
IMAGE_INSTRUCTION = "Represent the given image."
IMAGE_TEXT_INSTRUCTION = "Represent the given image with its title."

EVAL_WORDNET_CANDIDATES = 20  # gold + 19 distractors per held-out query
EVAL_IMAGE_CANDIDATES = 10  # gold + 9 distractor titles per held-out image
HARD_NEGATIVES_PER_QUERY = 2  # other senses of the query's word put into the corpus
EVAL_HARD_NEGATIVES = 5  # other senses among the 20 eval candidates
SHARED_FRACTION = 0.15  # share of queries whose definition is identical to another synset's
MAX_TWINS = 3  # same-definition rows added per shared query (one group has 23 members)
THUMB_PX = 96
MAX_SOURCE_PIXELS = 16_000_000  # a few sources are 170 Mpx; decoding them costs seconds


# --- WordNet ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Synset:
    """One WordNet synset: name ``lemma.pos.NN``, its words, definition and examples."""

    name: str
    words: tuple[str, ...]
    definition: str
    examples: tuple[str, ...]


def _split_gloss(gloss: str) -> tuple[str, tuple[str, ...]]:
    """A gloss is ``definition; "example"; "example"``; a definition may contain ';'."""
    cut = gloss.find('; "')
    if cut < 0:
        return gloss.strip(), ()
    examples = re.findall(r'"([^"]+)"', gloss[cut:])
    return gloss[:cut].strip(), tuple(e.strip() for e in examples if e.strip())


def _sense_numbers(root: Path) -> dict[tuple[str, str, str], int]:
    """(lemma, index file, offset) -> 1-based sense number, from ``index.<pos>``."""
    numbers: dict[tuple[str, str, str], int] = {}
    for pos in POS_FILES:
        for line in (root / f"index.{pos}").read_text(encoding="utf-8").splitlines():
            if line.startswith("  "):  # licence header
                continue
            fields = line.split()
            n_synsets, n_pointers = int(fields[2]), int(fields[3])
            offsets = fields[6 + n_pointers : 6 + n_pointers + n_synsets]
            for sense, offset in enumerate(offsets, start=1):
                numbers[(fields[0], pos, offset)] = sense
    return numbers


def _strip_marker(word: str) -> str:
    """'galore(ip)' -> 'galore': adjective position markers are not part of the word."""
    return word[: word.index("(")] if word.endswith(")") else word


def read_wordnet(root: Path = WORDNET_DIR) -> list[Synset]:
    """Parse ``data.{noun,verb,adj,adv}`` (WordNet database format, wndb(5)).

    A data line is ``offset lex_filenum ss_type w_cnt (word lex_id)* p_cnt ... | gloss``
    with ``w_cnt`` in hex; adjective words may carry a marker such as ``(a)``.
    """
    senses = _sense_numbers(root)
    synsets: list[Synset] = []
    for pos in POS_FILES:
        for line in (root / f"data.{pos}").read_text(encoding="utf-8").splitlines():
            if line.startswith("  "):
                continue
            head, _, gloss = line.partition(" | ")
            fields = head.split()
            offset, ss_type, n_words = fields[0], fields[2], int(fields[3], 16)
            words = tuple(_strip_marker(fields[4 + 2 * i]) for i in range(n_words))
            first = words[0].lower()
            name = f"{first}.{ss_type}.{senses[(first, pos, offset)]:02d}"
            definition, examples = _split_gloss(gloss)
            synsets.append(Synset(name, words, definition, examples))
    if len({s.name for s in synsets}) != len(synsets):
        raise RuntimeError(f"synset names are not unique in {root}")
    return synsets


def _stems(lemma: str) -> tuple[str, ...]:
    """Prefixes that match a lemma's regular inflections: 'carry' matches 'carried', 'make'
    'making'; irregular forms ('shook') are not matched, which only drops a few examples."""
    return tuple(t[:-1] if len(t) > 3 and t[-1] in "ey" else t for t in lemma.lower().split("_"))


# Endings of regular inflections; a bare prefix test would let 'do' match "don't". No '-er':
# 'banker' is another word than 'bank' (comparatives such as 'bigger' are lost with it).
_ENDINGS = frozenset(
    ["", "e", "y", "s", "es", "ed", "d", "en", "ing", "ying", "ies", "ied", "est", "iest"]
    + ["ly", "ily"]
)


def _inflects(token: str, stem: str) -> bool:
    if not token.startswith(stem):
        return False
    ending = token[len(stem) :]
    # Doubled final consonant: stop -> stopped, big -> bigger.
    return ending in _ENDINGS or (ending[:1] == stem[-1:] and ending[1:] in _ENDINGS)


def mentions(lemma: str, sentence: str) -> bool:
    """Whether ``sentence`` contains ``lemma`` (all its words, in order, adjacent)."""
    stems = _stems(lemma)
    tokens = re.findall(r"\w+", sentence.lower())
    return any(
        all(_inflects(tokens[i + k], stem) for k, stem in enumerate(stems))
        for i in range(len(tokens) - len(stems) + 1)
    )


def sense_query(synset: Synset, sense_counts: Counter[str]) -> tuple[str, str] | None:
    """(lemma, example) where the example sentence contains the lemma, or None.

    Among matching words, the most polysemous is chosen: its other senses are the hard
    negatives, and the example sentence is what tells them apart.
    """
    best: tuple[int, str, str] | None = None
    for word in synset.words:
        example = next((e for e in synset.examples if mentions(word, e)), None)
        if example is not None and (best is None or sense_counts[word.lower()] > best[0]):
            best = (sense_counts[word.lower()], word, example)
    return None if best is None else (best[1], best[2])


def _query_text(lemma: str, example: str) -> str:
    return f'{lemma.replace("_", " ")}: "{example}"'


def build_wordnet(
    synsets: Sequence[Synset], n_queries: int, n_eval: int, rng: random.Random
) -> tuple[list[dict], list[dict], list[dict]]:
    """Sample queries, their definition corpus and a held-out MMEB-eval split.

    Returns:
        (queries, corpus, eval_rows) as lists of JSON-ready dicts.
    """
    by_name = {s.name: s for s in synsets}
    senses_of: dict[str, list[str]] = defaultdict(list)
    for s in synsets:
        for word in s.words:
            senses_of[word.lower()].append(s.name)
    sense_counts = Counter({w: len(names) for w, names in senses_of.items()})
    same_definition: dict[str, list[str]] = defaultdict(list)
    for s in synsets:
        same_definition[s.definition].append(s.name)
    # A group is named after its first member, so the label does not depend on the sample.
    group_of = {s.name: same_definition[s.definition][0] for s in synsets}

    with_examples = [s.name for s in synsets if s.examples]
    shared = [n for n in with_examples if len(same_definition[by_name[n].definition]) > 1]
    unique = [n for n in with_examples if len(same_definition[by_name[n].definition]) == 1]
    rng.shuffle(shared)
    rng.shuffle(unique)
    candidates: dict[str, tuple[str, str]] = {}

    def take(names: Iterable[str], count: int) -> list[str]:
        """The first ``count`` shuffled synsets with an example naming the word: checking
        lazily keeps a small build from matching all 33K example sentences."""
        chosen = []
        for name in names:
            if len(chosen) == count:
                break
            found = sense_query(by_name[name], sense_counts)
            if found is not None:
                candidates[name] = found
                chosen.append(name)
        if len(chosen) < count:
            raise RuntimeError(f"WordNet has only {len(chosen)} usable synsets, {count} asked")
        return chosen

    # Held-out queries come first and only from unique definitions, so their gold is never
    # ambiguous and never appears as a training query's positive.
    eval_names = take(unique, n_eval)
    n_shared = min(len(shared), max(1, round(SHARED_FRACTION * n_queries)))
    query_names = take(shared, n_shared)
    query_names += take(unique[unique.index(eval_names[-1]) + 1 :], n_queries - n_shared)
    query_names.sort()

    eval_definitions = {by_name[n].definition for n in eval_names}
    corpus_names: dict[str, None] = {}  # insertion-ordered set
    for name in query_names:
        corpus_names[name] = None
    for name in query_names:
        twins = [t for t in same_definition[by_name[name].definition] if t != name]
        for twin in twins[:MAX_TWINS]:
            corpus_names[twin] = None
        lemma = candidates[name][0].lower()
        others = [o for o in senses_of[lemma] if o != name]
        for other in rng.sample(others, min(HARD_NEGATIVES_PER_QUERY, len(others))):
            if by_name[other].definition not in eval_definitions:
                corpus_names[other] = None
    pool = [s.name for s in synsets if s.definition not in eval_definitions]
    while len(corpus_names) < 3 * n_queries:
        corpus_names[rng.choice(pool)] = None

    corpus = [
        {
            schema.ID: f"wnd-{n}",
            schema.TEXT: by_name[n].definition,
            demo.SYNSET: n,
            demo.DEFINITION_GROUP: group_of[n],
        }
        for n in sorted(corpus_names)
    ]
    queries = []
    for n in query_names:
        lemma, example = candidates[n]
        queries.append(
            {
                schema.ID: f"wnq-{n}",
                schema.TEXT: _query_text(lemma, example),
                schema.INSTRUCTION: WORDNET_INSTRUCTION,
                demo.POS_ID: f"wnd-{n}",
                demo.SYNSET: n,
                demo.LEMMA: lemma.replace("_", " "),
            }
        )

    all_definitions = sorted(same_definition)
    eval_rows = []
    for n in sorted(eval_names):
        lemma, example = candidates[n]
        gold = by_name[n].definition
        hard = sorted({by_name[o].definition for o in senses_of[lemma.lower()]} - {gold})
        chosen = rng.sample(hard, min(EVAL_HARD_NEGATIVES, len(hard)))
        while len(chosen) < EVAL_WORDNET_CANDIDATES - 1:
            pick = rng.choice(all_definitions)
            if pick != gold and pick not in chosen:
                chosen.append(pick)
        rng.shuffle(chosen)
        eval_rows.append(
            _mmeb_row(f"{WORDNET_INSTRUCTION}\n{_query_text(lemma, example)}", "", [gold, *chosen])
        )
    return queries, corpus, eval_rows


def _mmeb_row(qry_text: str, qry_img_path: str, targets: list[str]) -> dict:
    return {
        demo.QRY_TEXT: qry_text,
        demo.QRY_IMG_PATH: qry_img_path,
        demo.TGT_TEXT: targets,
        demo.TGT_IMG_PATH: [""] * len(targets),
    }


# --- openclipart -----------------------------------------------------------------------

# Titles that name a collection, a theme or an uploader rather than the picture.
_NOISE = re.compile(
    r"HASH\(|theme|collection|icon ?set|clip ?arts?\b|submission|sibmission|iconset", re.I
)


@dataclass(frozen=True)
class Vocabulary:
    """English words known to WordNet, to tell English titles from the Italian and French
    ones of the package.

    ``words`` holds the tokens of lower-case lemmas only: WordNet also lists people and
    places (``Uccello``, ``Nero``), which would let ``Uccello bianco e nero`` through.
    ``lemmas`` holds whole lemmas of any case, so ``Germany`` or ``Isle of Man`` pass.
    """

    words: frozenset[str]
    lemmas: frozenset[str]

    @classmethod
    def from_synsets(cls, synsets: Iterable[Synset]) -> Vocabulary:
        """Collect the vocabulary of every word of every synset."""
        all_words = {w for s in synsets for w in s.words}
        tokens = {t for w in all_words if w.islower() for t in re.split(r"[_\-]", w)}
        return cls(frozenset(tokens), frozenset(w.lower().replace("_", " ") for w in all_words))

    def is_english(self, title: str) -> bool:
        """The whole title is a lemma, or at least half its words of 3+ letters are known."""
        words = [w for w in re.findall(r"[a-z]+", title.lower()) if len(w) > 2]
        if not words:  # 'MS', 'oh': too short to name a picture
            return False
        known = sum(w in self.words or w.rstrip("s") in self.words for w in words)
        return title.lower() in self.lemmas or 2 * known >= len(words)


def clean_title(raw: str, vocabulary: Vocabulary) -> str | None:
    """A usable title, or None for metadata noise.

    Drops collection/theme labels, file-name-like titles (``filmPhoto2``, ``glace_01_bw``)
    and titles that are not English (see ``Vocabulary``).
    """
    title = re.sub(r"^clipart by [^-]+ - ", "", raw.strip(), flags=re.I)
    title = re.sub(r"\.(svg|png)$", "", title, flags=re.I)
    if _NOISE.search(title) or (re.search(r"\d", title) and not re.search(r"\s", title)):
        return None
    title = re.sub(r"\s+", " ", title.replace("_", " ")).strip()
    return title if vocabulary.is_english(title) else None


def _title_key(title: str) -> str:
    """Titles equal up to case, digits and punctuation (``BlueMan#305``/``#306``) collide."""
    return " ".join(re.findall(r"[a-z]+", title.lower()))


def read_clipart(root: Path, vocabulary: Vocabulary) -> list[tuple[Path, str]]:
    """(png path, clean title) for every picture whose title is usable and not repeated.

    Titles come from the PNG ``Title`` text chunk. A title shared by several files (a
    collection name, or ``jigsaw_red_10`` on 48 different pieces) would make the gold
    ambiguous, so every file of a repeated title is dropped, before and after cleaning.
    """
    raw: list[tuple[Path, str]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        for path in sorted(root.rglob("*.png")):
            try:
                with Image.open(path) as im:
                    title = im.info.get("Title")
                    small = im.width * im.height <= MAX_SOURCE_PIXELS and min(im.size) >= 32
            except Image.DecompressionBombError:  # 230 Mpx posters: too big to be worth it
                continue
            if isinstance(title, str) and small:
                raw.append((path, title))
    raw_counts = Counter(t.strip().lower() for _, t in raw)
    cleaned = [
        (p, clean_title(t, vocabulary)) for p, t in raw if raw_counts[t.strip().lower()] == 1
    ]
    kept = [(p, t) for p, t in cleaned if t is not None]
    key_counts = Counter(_title_key(t) for _, t in kept)
    return [(p, t) for p, t in kept if key_counts[_title_key(t)] == 1]


def thumbnail_png(path: Path) -> bytes | None:
    """RGB PNG, at most THUMB_PX a side, transparency flattened onto white; None if blank."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path) as im:
            im = im.convert("RGBA")
    im.thumbnail((THUMB_PX, THUMB_PX), Image.Resampling.LANCZOS)
    canvas = Image.new("RGBA", im.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(canvas, im).convert("RGB")
    lo, hi = rgb.convert("L").getextrema()
    if hi - lo < 48:  # white-on-transparent icons become blank on white
        return None
    # A 256-colour palette keeps clip art faithful and the files ~4x smaller; converting
    # back to RGB keeps the promised mode while PNG still compresses the few colours.
    rgb = rgb.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    buffer = io.BytesIO()
    rgb.convert("RGB").save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _clip_id(path: Path, root: Path) -> str:
    stem = path.relative_to(root).with_suffix("").as_posix().lower()
    return "oc-" + re.sub(r"[^a-z0-9]+", "-", stem).strip("-")


def build_openclipart(
    root: Path, vocabulary: Vocabulary, n_images: int, out: Path, rng: random.Random
) -> tuple[list[dict], list[dict], int]:
    """Write ``n_images`` thumbnails to ``out/images``; a quarter are held out for eval.

    Returns:
        (pairs, eval_rows, n_usable): pairs.jsonl rows, MMEB-eval rows (10 titles, gold
        first) and how many usable pictures the package holds.
    """
    available = read_clipart(root, vocabulary)
    order = rng.sample(range(len(available)), len(available))
    picked: list[tuple[str, str]] = []
    # A third of the usable pictures are flags: cap each folder for a varied sample.
    per_folder: Counter[str] = Counter()
    cap = max(2, n_images // 10)
    (out / "images").mkdir(parents=True, exist_ok=True)
    for index in order:
        if len(picked) == n_images:
            break
        path, title = available[index]
        folder = "/".join(path.relative_to(root).parts[:-1][:2])
        if per_folder[folder] >= cap:
            continue
        per_folder[folder] += 1
        png = thumbnail_png(path)
        if png is None:
            continue
        clip_id = _clip_id(path, root)
        (out / "images" / f"{clip_id}.png").write_bytes(png)
        picked.append((clip_id, title))
    if len(picked) < n_images:
        raise RuntimeError(f"only {len(picked)} usable openclipart images, {n_images} asked")

    n_eval = n_images // 4
    held_out, train = sorted(picked[:n_eval]), sorted(picked[n_eval:])
    pairs = [{schema.ID: c, demo.PAIR_IMAGE: f"images/{c}.png", demo.TITLE: t} for c, t in train]
    # Distractors come from every usable title, so even a tiny build has nine of them.
    titles = sorted(t for _, t in available)
    eval_rows = []
    for clip_id, gold in held_out:
        distractors = rng.sample([t for t in titles if t != gold], EVAL_IMAGE_CANDIDATES - 1)
        eval_rows.append(_mmeb_row(IMAGE_QUERY, f"images/{clip_id}.png", [gold, *distractors]))
    return pairs, eval_rows, len(available)


# --- mixed embed corpus ----------------------------------------------------------------


def build_embed_corpus(
    queries: Sequence[dict],
    corpus: Sequence[dict],
    pairs: Sequence[dict],
    n_rows: int,
    rng: random.Random,
) -> list[dict]:
    """Item rows for the embed job: a sixth queries, a sixth definitions (text only), a
    third images alone and a third images with their titles."""
    n_text = n_rows // 6
    n_image = (n_rows - 2 * n_text) // 2
    rows = []
    for q in rng.sample(list(queries), min(n_text, len(queries))):
        rows.append(_item(q[schema.ID], q[schema.TEXT], None, q[schema.INSTRUCTION]))
    for d in rng.sample(list(corpus), min(n_text, len(corpus))):
        rows.append(_item(d[schema.ID], d[schema.TEXT], None, DEFINITION_INSTRUCTION))
    for p in rng.sample(list(pairs), min(n_image, len(pairs))):
        uri = f"openclipart/{p[demo.PAIR_IMAGE]}"
        rows.append(_item(f"{p[schema.ID]}-image", None, uri, IMAGE_INSTRUCTION))
    for p in rng.sample(list(pairs), min(n_rows - len(rows), len(pairs))):
        uri = f"openclipart/{p[demo.PAIR_IMAGE]}"
        rows.append(_item(f"{p[schema.ID]}-titled", p[demo.TITLE], uri, IMAGE_TEXT_INSTRUCTION))
    return rows


def _item(item_id: str, text: str | None, image_uri: str | None, instruction: str) -> dict:
    return {
        schema.ID: item_id,
        schema.TEXT: text,
        schema.IMAGE_URI: image_uri,
        schema.INSTRUCTION: instruction,
    }


# --- writing ---------------------------------------------------------------------------


def write_jsonl(path: Path, rows: Iterable[dict]) -> int:
    """Write UTF-8 JSON Lines with a fixed key order; returns the number of rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(row, ensure_ascii=False) for row in rows]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return len(lines)


def _licence_body(copyright_file: Path, start: str, stop: str | None) -> str:
    """The paragraph of a Debian copyright file from ``start`` up to ``stop``."""
    text = copyright_file.read_text(encoding="utf-8")
    body = text[text.index(start) :]
    if stop is not None:
        body = body[: body.index(stop)]
    # Continuation lines are indented by one space; " ." stands for an empty line.
    lines = [line.removeprefix(" ") for line in body.rstrip().splitlines()]
    return "\n".join("" if line == "." else line for line in lines)


def write_licenses(out: Path) -> None:
    """LICENSES.md with the WordNet 3.0 licence and the openclipart dedication, verbatim."""
    wordnet = _licence_body(WORDNET_COPYRIGHT, "License: WordNet3.0", "\nFiles: debian/*")
    clipart = _licence_body(OPENCLIPART_COPYRIGHT, "Copyright:", None)
    out.joinpath("LICENSES.md").write_text(
        "# Licences of the demo data\n\n"
        "## WordNet 3.0 (`wordnet/`, and definitions quoted in `embed_corpus.jsonl`)\n\n"
        f"Copied from `{WORDNET_COPYRIGHT}` (Debian package `wordnet-base`):\n\n"
        f"```\n{wordnet}\n```\n\n"
        "## openclipart 0.18 (`openclipart/`, and images in `embed_corpus.jsonl`)\n\n"
        "The pictures and their titles are public domain. openclipart.org released them under\n"
        "the Creative Commons Public Domain Dedication quoted below (the predecessor of CC0,\n"
        "which openclipart.org uses today). The thumbnails here are downscaled copies.\n"
        f"Copied from `{OPENCLIPART_COPYRIGHT}` (Debian package `openclipart-png`):\n\n"
        f"```\n{clipart}\n```\n",
        encoding="utf-8",
    )


def write_readme(out: Path, command: str, counts: dict[str, int]) -> None:
    """README.md: what each file holds, the command that built it, and the counts."""
    c = counts
    out.joinpath("README.md").write_text(
        f"""# Demo data

Small real data sets for examples, tests and the embedded defaults of the jobs. Built from
the Debian packages `wordnet-base` (WordNet 3.0) and `openclipart-png` (openclipart 0.18) by

    {command}

The build is deterministic (fixed seed, sorted inputs): the same command with the same
package and Pillow versions gives the same bytes. Code finds these files through
`uniembed.data.demo.demo_path` (`UNIEMBED_DEMO_DIR` points it at another copy).
Licences: `LICENSES.md`. All files are UTF-8 JSON Lines; image paths are relative to the
folder of the file naming them.

## wordnet/ — which sense of a word does a sentence use?

- `queries.jsonl` ({c["queries"]} rows): `id`, `text`, `instruction`, `pos_id`, `synset`,
  `lemma`. `text` is a word plus an example sentence of one of its senses, e.g.
  `bank: "they pulled the canoe up on the bank"`; `pos_id` is the id of that sense's
  definition in `corpus.jsonl`; `synset` is `lemma.pos.NN` (WordNet sense order).
- `corpus.jsonl` ({c["corpus"]} rows): `id`, `text` (a definition), `synset`,
  `definition_group`. It holds every query's positive, up to {HARD_NEGATIVES_PER_QUERY} other
  senses of the query's word per query (hard negatives) and random definitions.
  `definition_group` is shared by rows whose definitions are identical (named after the
  first such synset in WordNet order): WordNet has {c["wordnet_shared"]:,} synsets that share
  their definition with another one (`worthy of notice`: *noteworthy* and *notable*...).
  {c["shared_queries"]} queries have a positive whose definition also belongs to another
  corpus row: natural false negatives ({c["shared_groups"]} groups, {c["shared_rows"]} rows)
  for measuring what a false-negative filter catches.
- `eval.jsonl` ({c["wordnet_eval"]} rows, MMEB-eval format): `qry_text` (instruction and
  query), `qry_img_path` (""), `tgt_text` ({EVAL_WORDNET_CANDIDATES} definitions, the gold at
  index 0; up to {EVAL_HARD_NEGATIVES} are other senses of the same word), `tgt_img_path` (""s).
  Held out: its senses are neither queries nor corpus rows, and their definitions are unique
  in WordNet.

## openclipart/ — find the title of a clip-art picture

- `images/*.png` ({c["images"]} files): RGB on white, at most {THUMB_PX} px a side, 256 colours.
  Titles come from the PNGs' `Title` chunk; repeated titles (collection names, numbered
  series), file-name-like ones and mostly non-English ones are dropped
  ({c["usable_clipart"]} usable pictures in the package, a seeded sample here).
- `pairs.jsonl` ({c["pairs"]} rows): `id`, `image` (`images/<id>.png`), `title`.
- `eval.jsonl` ({c["clip_eval"]} rows, MMEB-eval): the held-out images (not in `pairs.jsonl`),
  `qry_text` `<|image_1|>` plus the instruction (MMEB's image token, swapped per backbone by the
  reader), `tgt_text` {EVAL_IMAGE_CANDIDATES} titles with the gold first.

## embed_corpus.jsonl — mixed items for the embed job

{c["embed"]} rows in the item format `id`, `text`, `image_uri`, `instruction` (`null` where
absent; `image_uri` relative to this folder): {c["embed_text"]} text only (queries and
definitions), {c["embed_image"]} image only, {c["embed_both"]} image with its title.
""",
        encoding="utf-8",
    )


def _count_shared(queries: Sequence[dict], corpus: Sequence[dict]) -> tuple[int, int, int]:
    """(queries whose gold shares its group with another row, groups of 2+, rows in them)."""
    sizes = Counter(row[demo.DEFINITION_GROUP] for row in corpus)
    group_of = {row[schema.ID]: row[demo.DEFINITION_GROUP] for row in corpus}
    shared_queries = sum(sizes[group_of[q[demo.POS_ID]]] > 1 for q in queries)
    big = [n for n in sizes.values() if n > 1]
    return shared_queries, len(big), sum(big)


def _count_wordnet_shared(synsets: Sequence[Synset]) -> int:
    """How many synsets of WordNet share their exact definition with another synset."""
    sizes = Counter(s.definition for s in synsets)
    return sum(sizes[s.definition] > 1 for s in synsets)


def main(argv: list[str] | None = None) -> int:
    """Build the demo data set; returns 0 on success."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "data" / "demo")
    parser.add_argument("--wordnet-queries", type=int, default=1000)
    parser.add_argument("--wordnet-eval", type=int, default=200)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--embed-rows", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for flag in ("wordnet_queries", "wordnet_eval", "images", "embed_rows"):
        if getattr(args, flag) < 4:
            parser.error(f"--{flag.replace('_', '-')} must be at least 4")
    for needed in (WORDNET_DIR / "data.noun", OPENCLIPART_DIR, WORDNET_COPYRIGHT):
        if not needed.exists():
            parser.error(f"{needed} is missing: apt-get install wordnet-base openclipart-png")

    started = time.perf_counter()
    out: Path = args.out
    for old in sorted(out.glob(f"{demo.OPENCLIPART_IMAGES}/*.png")):
        old.unlink()  # a smaller rebuild must not leave stale pictures behind
    synsets = read_wordnet()
    queries, corpus, wn_eval = build_wordnet(
        synsets, args.wordnet_queries, args.wordnet_eval, random.Random(args.seed)
    )
    vocabulary = Vocabulary.from_synsets(synsets)
    clip_out = out / demo.OPENCLIPART_PAIRS.split("/")[0]
    pairs, clip_eval, n_usable = build_openclipart(
        OPENCLIPART_DIR, vocabulary, args.images, clip_out, random.Random(args.seed + 1)
    )
    embed = build_embed_corpus(
        queries, corpus, pairs, args.embed_rows, random.Random(args.seed + 2)
    )

    write_jsonl(out / demo.WORDNET_QUERIES, queries)
    write_jsonl(out / demo.WORDNET_CORPUS, corpus)
    write_jsonl(out / demo.WORDNET_EVAL, wn_eval)
    write_jsonl(out / demo.OPENCLIPART_PAIRS, pairs)
    write_jsonl(out / demo.OPENCLIPART_EVAL, clip_eval)
    write_jsonl(out / demo.EMBED_CORPUS, embed)
    shared_queries, shared_groups, shared_rows = _count_shared(queries, corpus)
    counts = {
        "queries": len(queries),
        "corpus": len(corpus),
        "wordnet_eval": len(wn_eval),
        "shared_queries": shared_queries,
        "wordnet_shared": _count_wordnet_shared(synsets),
        "shared_groups": shared_groups,
        "shared_rows": shared_rows,
        "images": len(pairs) + len(clip_eval),
        "usable_clipart": n_usable,
        "pairs": len(pairs),
        "clip_eval": len(clip_eval),
        "embed": len(embed),
        "embed_text": sum(r[schema.IMAGE_URI] is None for r in embed),
        "embed_image": sum(r[schema.TEXT] is None for r in embed),
        "embed_both": sum(
            r[schema.TEXT] is not None and r[schema.IMAGE_URI] is not None for r in embed
        ),
    }
    shown_out = out.resolve()
    if shown_out.is_relative_to(REPO_ROOT):
        shown_out = shown_out.relative_to(REPO_ROOT)
    command = "python scripts/build_demo_data.py " + " ".join(
        [
            f"--out {shown_out}",
            f"--wordnet-queries {args.wordnet_queries}",
            f"--wordnet-eval {args.wordnet_eval}",
            f"--images {args.images}",
            f"--embed-rows {args.embed_rows}",
            f"--seed {args.seed}",
        ]
    )
    write_readme(out, command, counts)
    write_licenses(out)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    elapsed = time.perf_counter() - started
    print(json.dumps({**counts, "bytes": size, "seconds": round(elapsed, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
