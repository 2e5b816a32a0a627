"""The corpora of ``benchmarks/scale.py``: 10k, 100k and 1M real English texts with
query -> positive pairs, built offline from Debian packages.

    PYTHONPATH=platform .venv/bin/python benchmarks/scale_corpus.py [--sizes 10k,100k,1m]
        [--install] [--list]

Sources (Debian packages, installed with ``--install`` when run as root; ``apt-get update``
once if a package is unknown):

* dictionaries: ``dict-gcide`` (Webster 1913 + additions), ``wordnet-base`` (WordNet 3.0
  glosses and usage examples), ``dict-foldoc``, ``dict-jargon``, ``dict-vera``,
  ``dict-devil``. Every sense or paragraph of an entry is one text; the pairs for mining are
  *headword -> first sense* (GCIDE, FOLDOC, Jargon, V.E.R.A., Devil) and *lemma: "usage
  example" -> gloss* (WordNet; lemmas without an example give *lemmas -> gloss*);
* prose passages: ``linux-doc-6.1`` (kernel documentation), ``python3.11-doc``,
  ``postgresql-doc-15``, ``debian-reference-en``, ``debian-handbook`` (English),
  ``git-doc`` (HTML and text),
  ``perl-doc`` (POD), ``fortunes``, then the English manual pages in
  ``/usr/share/man/man*`` (roff: ``manpages``, ``manpages-dev`` and whatever else the
  machine has installed; the order is fixed). Paragraphs that
  read as prose (at least 6 words, mostly letters) are cut at sentence ends into passages
  of at most 48 words.

These sources give 937,759 distinct texts. The 1M size is filled from a supplement read
after them: the quotations GCIDE prints under its senses, the Debian Administrator's
Handbook (``debian-handbook``, English), Django's documentation (``python-django-doc``) and
the Debian Policy Manual (``debian-policy``); its texts come after all the others in the
order, so the 10k and 100k sizes never contain them. Known defect: the manual pages are
those of every installed package, so the texts (and which of them the 10k and 100k sizes
hold) depend on what the machine has installed; on the 2026-12-07 machine all sources but
the Policy Manual gave 999,853 texts, 147 short of 1M, and the Policy Manual fills it.

Texts are deduplicated by content (first source in the order above wins), ordered by the
SHA-1 of their id (so the order does not depend on file system order), and every size is
drawn from the same order: the ``N/10`` queries are the first pairs, the pool is their
positives followed by the first other texts, up to ``N``. So 10k is inside 100k, which is
inside 1M.

Written under ``$UNIEMBED_CACHE/scale-corpus-v1/`` (default ``~/.cache/uniembed``), never
into the repository; a size already built is kept. Each size folder holds:

* ``pool.jsonl``: ``N`` items ``{id, text, source}``;
* ``queries.jsonl``: ``N/10`` items ``{id, text, pos_id, source}`` (``pos_id`` in the pool);
* ``judge_queries.jsonl`` / ``judge_pool.jsonl``: the fixed judge sample, 100 queries (with
  the task instruction) and a pool of 2,000 texts from this size's pool (their positives
  first), so that the judge job scores 100 x K=20 = 2,000 pairs at every size;
* ``tune/part-0.parquet``: ``N`` training rows in the mine job's output schema (query,
  positive, 8 negatives drawn from the texts in a fixed order; above 255,755 rows the pairs
  repeat, under new query ids);
* ``manifest.json``: counts per source and what each file holds.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import html
import html.parser
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

VERSION = "scale-corpus-v1"
SIZES = {"10k": 10_000, "100k": 100_000, "1m": 1_000_000}
JUDGE_QUERIES = 100
JUDGE_POOL = 2_000
TUNE_NEGATIVES = 8
MAX_WORDS = 48
INSTRUCTION = "Find the dictionary definition of the word or phrase."
PACKAGES = (
    "dict-gcide wordnet-base dict-foldoc dict-jargon dict-vera dict-devil linux-doc-6.1 "
    "python3.11-doc postgresql-doc-15 debian-reference-en debian-handbook git-doc perl-doc "
    "manpages manpages-dev fortunes python-django-doc debian-policy"
).split()
DICTD = Path("/usr/share/dictd")
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def corpus_root() -> Path:
    """``$UNIEMBED_CACHE/scale-corpus-v1`` (the model cache's root, never the repo)."""
    root = os.environ.get("UNIEMBED_CACHE") or os.path.join("~", ".cache", "uniembed")
    return Path(root).expanduser() / VERSION


def size_dir(size: str) -> Path:
    """The folder of one size (``10k``, ``100k``, ``1m``)."""
    return corpus_root() / size


def install_packages() -> None:
    """apt-get install the source packages that are missing (root only)."""
    missing = [
        p
        for p in PACKAGES
        if subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True
        ).stdout.strip()
        != "install ok installed"
    ]
    if not missing:
        return
    if os.geteuid() != 0:
        raise SystemExit(
            f"missing Debian packages (install as root): apt-get install {' '.join(missing)}"
        )
    if subprocess.run(["apt-cache", "show", *missing], capture_output=True).returncode:
        subprocess.run(["apt-get", "update", "-q", "-o", "DPkg::Lock::Timeout=600"], check=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends",
         "-o", "DPkg::Lock::Timeout=600", *missing],
        check=True,
        env=env,
    )  # fmt: skip


# --- cleaning -------------------------------------------------------------------------

_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'])")


def squash(text: str) -> str:
    """Whitespace collapsed to single spaces."""
    return _SPACE.sub(" ", text).strip()


def is_prose(text: str, min_words: int = 6) -> bool:
    """At least ``min_words`` words and mostly letters (code, tables and lists of
    options are not)."""
    words = _WORD.findall(text)
    if len(words) < min_words:
        return False
    letters = sum(c.isalpha() for c in text)
    visible = sum(not c.isspace() for c in text)
    return visible > 0 and letters / visible >= 0.75


def passages(paragraph: str, max_words: int = MAX_WORDS) -> list[str]:
    """A paragraph cut at sentence ends into passages of at most ``max_words`` words (a
    sentence longer than that is cut at a word)."""
    out: list[str] = []
    cur: list[str] = []
    for sentence in _SENTENCE_END.split(paragraph):
        words = sentence.split()
        while len(words) > max_words:
            if cur:
                out.append(" ".join(cur))
                cur = []
            out.append(" ".join(words[:max_words]))
            words = words[max_words:]
        if len(cur) + len(words) > max_words:
            out.append(" ".join(cur))
            cur = []
        cur.extend(words)
    if cur:
        out.append(" ".join(cur))
    return out


# --- dictionaries ---------------------------------------------------------------------


def _b64(s: str) -> int:
    n = 0
    for c in s:
        n = n * 64 + B64.index(c)
    return n


_ONLY_TAG = re.compile(r"^\s*\[[^\]]*\]\s*$")  # [1913 Webster], [PJC], [Is there ...?]
_ACCENT = re.compile(r"\[[a-zA-Z'`^\"=~,.:]{1,4}\]")  # GCIDE accents: ['e], [u^]
_SENSE = re.compile(r"^(\d+\.\s*|\([a-z]\)\s*|\([A-Z][A-Za-z. &]*\.\)\s*)+")
_CITE = re.compile(r"\s--\s?[A-Z][^.]{0,40}\.?$")
_DATE = re.compile(r"^\(\d{4}-\d{2}-\d{2}\)$")
_TAGS = re.compile(r"<[^>]{1,40}>\s*")


def _clean_block(lines: list[str]) -> str:
    kept = [ln for ln in lines if not _ONLY_TAG.match(ln)]
    text = squash(" ".join(kept))
    text = _ACCENT.sub("", text).replace("{", "").replace("}", "")
    text = _TAGS.sub("", text)
    text = _SENSE.sub("", text)
    text = _CITE.sub("", text).strip()
    return "" if _DATE.match(text) else text


def dictd_entries(name: str) -> Iterator[tuple[str, list[str]]]:
    """``(headword, senses)`` of every entry of ``/usr/share/dictd/<name>``, in file order.

    The header (first line: headword, pronunciation, part of speech, and an etymology in
    brackets that may run over several lines) is dropped; each block after it is a sense or
    a paragraph; blocks indented as quotations and source tags are left out.
    """
    data = gzip.open(DICTD / f"{name}.dict.dz").read()
    seen: set[int] = set()
    spans = []
    for line in (DICTD / f"{name}.index").read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or parts[0].startswith("00-database"):
            continue
        off = _b64(parts[1])
        if off not in seen:
            seen.add(off)
            spans.append((off, _b64(parts[2])))
    spans.sort()
    for off, length in spans:
        entry = data[off : off + length].decode("utf-8", "replace")
        lines = entry.rstrip().split("\n")
        if not lines:
            continue
        headword = re.split(r"\s*\\|\s+/|,\s", lines[0].strip())[0].strip()
        body = lines[1:]
        depth = lines[0].count("[") - lines[0].count("]")
        while body and depth > 0:  # the etymology continues
            depth += body[0].count("[") - body[0].count("]")
            body = body[1:]
        senses = []
        for block in re.split(r"\n\s*\n", "\n".join(body)):
            blines = [ln for ln in block.split("\n") if ln.strip()]
            if not blines:
                continue
            indent = len(blines[0]) - len(blines[0].lstrip())
            if indent >= 8:  # a quotation under a sense
                continue
            text = _clean_block(blines)
            if len(_WORD.findall(text)) >= 3:
                senses.extend(passages(text))
        if headword and senses:
            yield headword, senses


_WN_WORD = re.compile(r"^[0-9]{8} [0-9]{2} [nvasr] ([0-9a-f]{2}) ")


def wordnet_synsets() -> Iterator[tuple[str, list[str], str, list[str]]]:
    """``(synset key, lemmas, gloss, usage examples)`` from WordNet's data files."""
    for pos in ("noun", "verb", "adj", "adv"):
        path = Path(f"/usr/share/wordnet/data.{pos}")
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("  ") or "|" not in line:
                continue
            head, gloss = line.split("|", 1)
            fields = head.split()
            n = int(fields[3], 16)
            lemmas = [fields[4 + 2 * i].replace("_", " ") for i in range(n)]
            lemmas = [re.sub(r"\([a-z]+\)$", "", w) for w in lemmas]
            parts = [p.strip() for p in gloss.strip().split(";")]
            definition = "; ".join(p for p in parts if not p.startswith('"'))
            examples = [p.strip('"') for p in parts if p.startswith('"')]
            if len(_WORD.findall(definition)) >= 2:
                yield f"{pos}-{fields[0]}", lemmas, squash(definition), examples


# --- documents ------------------------------------------------------------------------


class _Html(html.parser.HTMLParser):
    """Text of <p>, <li>, <dd> and <blockquote> elements (code, tables and menus left out)."""

    BLOCKS = {"p", "li", "dd", "blockquote"}
    SKIP = {"pre", "code", "script", "style", "table", "nav", "tt", "kbd", "samp"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.paragraphs: list[str] = []
        self.buf: list[str] = []
        self.depth = 0
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:  # noqa: ARG002
        if tag in self.SKIP:
            self.skip += 1
        if tag in self.BLOCKS:
            self._flush()
            self.depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP and self.skip:
            self.skip -= 1
        if tag in self.BLOCKS and self.depth:
            self._flush()
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        if self.depth and not self.skip:
            self.buf.append(data)

    def _flush(self) -> None:
        if self.buf:
            self.paragraphs.append(squash("".join(self.buf)))
            self.buf = []


def _read(path: Path) -> str:
    raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    return raw.decode("utf-8", "replace")


def _files(root: str, suffixes: tuple[str, ...]) -> list[Path]:
    base = Path(root)
    if not base.exists():
        return []
    return sorted(p for p in base.rglob("*") if p.is_file() and p.name.endswith(suffixes))


def _text_paragraphs(text: str) -> list[str]:
    return [squash(b) for b in re.split(r"\n\s*\n", text)]


def _html_paragraphs(text: str) -> list[str]:
    parser = _Html()
    parser.feed(text)
    parser.close()
    return parser.paragraphs


_ROFF_ESC = re.compile(r"\\f[BIRPC(][A-Z]?|\\\(..|\\\*\(..|\\\*.|\\[-&e|^ ]|\\s[-+]?\d")


def _roff_paragraphs(text: str) -> list[str]:
    out, cur = [], []
    for line in text.split("\n"):
        if line.startswith((".", "'")):
            macro = line[1:3]
            if (
                macro in ("PP", "SH", "SS", "LP", "P", "TP", "IP", "sp", "HP", "br")
                or not line[1:].strip()
            ):
                out.append(" ".join(cur))
                cur = []
            elif macro in ("B ", "I ", "BR", "IR", "RB", "BI", "IB", "RI"):
                cur.append(line[3:].replace('"', ""))
            continue
        cur.append(line)
    out.append(" ".join(cur))
    return [squash(_ROFF_ESC.sub("", p)) for p in out]


def _pod_paragraphs(text: str) -> list[str]:
    out = []
    for block in re.split(r"\n\s*\n", text):
        if block.startswith(("=", " ", "\t")):  # commands and verbatim code
            continue
        out.append(squash(re.sub(r"[A-Z]<+\s?([^<>]*?)\s?>+", r"\1", block)))
    return out


def _fortunes(text: str) -> list[str]:
    return [squash(b) for b in text.split("\n%\n")]


TEXT_SUFFIXES = (".rst", ".rst.gz", ".txt", ".txt.gz")
DOCUMENTS = (
    # (source, folder, file suffixes, paragraph splitter)
    ("linux-doc", "/usr/share/doc/linux-doc-6.1/Documentation", TEXT_SUFFIXES, _text_paragraphs),
    ("python-doc", "/usr/share/doc/python3.11/html", (".html",), _html_paragraphs),
    ("postgresql-doc", "/usr/share/doc/postgresql-doc-15/html", (".html",), _html_paragraphs),
    ("debian-reference", "/usr/share/debian-reference", (".en.html",), _html_paragraphs),
    ("debian-handbook", "/usr/share/doc/debian-handbook/html/en-US", (".html",), _html_paragraphs),
    ("git-doc", "/usr/share/doc/git-doc", (".txt", ".txt.gz"), _text_paragraphs),
    ("perl-doc", "/usr/share/perl/5.36/pod", (".pod",), _pod_paragraphs),
    ("fortunes", "/usr/share/games/fortunes", ("",), _fortunes),
    ("manpages", "/usr/share/man", (".gz",), _roff_paragraphs),
)  # fmt: skip


def document_passages(folder: str, suffixes: tuple[str, ...], split) -> Iterator[str]:  # noqa: ANN001
    """Prose passages of every file under ``folder`` (sorted paths)."""
    for path in _files(folder, suffixes):
        if path.name.endswith((".dat", ".u8")):
            continue
        if folder == "/usr/share/man" and path.parent.parent != Path(folder):
            continue  # translations live in /usr/share/man/<lang>/
        try:
            text = _read(path)
        except (OSError, EOFError):
            continue
        for para in split(text):
            if is_prose(para):
                yield from (p for p in passages(para) if is_prose(p, 4))


# --- the supplement: read only to fill the 1M size ------------------------------------


def gcide_quotations() -> Iterator[str]:
    """The quotations GCIDE prints under its senses (indented blocks), their author tags
    and source lines dropped."""
    data = gzip.open(DICTD / "gcide.dict.dz").read().decode("utf-8", "replace")
    for block in re.split(r"\n\s*\n", data):
        if block.startswith(" " * 8):
            text = _clean_block([ln for ln in block.split("\n") if ln.strip()])
            if is_prose(text):
                yield from passages(text)


def _div_para_paragraphs(text: str) -> list[str]:
    """Publican/DocBook HTML (the Debian Administrator's Handbook): ``<div class="para">``."""
    found = re.findall(r'<div class="para">(.*?)</div>', text, flags=re.S)
    return [squash(html.unescape(re.sub(r"<[^>]+>", " ", p))) for p in found]


def supplement_passages() -> Iterator[tuple[str, str]]:
    """``(source, passage)`` of the supplementary sources, in a fixed order."""
    if (DICTD / "gcide.index").is_file():
        yield from (("gcide-quotations", t) for t in gcide_quotations())
    handbook = "/usr/share/doc/debian-handbook/html/en-US"
    for p in document_passages(handbook, (".html",), _div_para_paragraphs):
        yield "debian-handbook", p
    for p in document_passages(
        "/usr/share/doc/python-django-doc/html", (".html",), _html_paragraphs
    ):
        yield "django-doc", p
    for p in document_passages("/usr/share/doc/debian-policy", (".html",), _html_paragraphs):
        yield "debian-policy", p


# --- assembling -----------------------------------------------------------------------


def _key(item_id: str) -> str:
    return hashlib.sha1(item_id.encode()).hexdigest()


def collect(limit: int) -> tuple[list[dict], list[dict], dict[str, int]]:
    """Every text (``{id, text, source}``) and every pair (``{id, text, pos_id, source}``),
    deduplicated by content; stops reading documents once ``limit`` texts are in."""
    texts: list[dict] = []
    pairs: list[dict] = []
    seen: dict[str, str] = {}  # normalised text -> id
    counts: dict[str, int] = {}

    def add(source: str, text: str) -> str | None:
        norm = text.lower()
        if norm in seen:
            return None
        item_id = f"{source}-{counts.get(source, 0)}"
        counts[source] = counts.get(source, 0) + 1
        seen[norm] = item_id
        texts.append({"id": item_id, "text": text, "source": source})
        return item_id

    for name in ("gcide", "foldoc", "jargon", "vera", "devil"):
        if not (DICTD / f"{name}.index").is_file():
            continue
        for headword, senses in dictd_entries(name):
            ids = [add(name, s) for s in senses]
            if ids[0] is not None and headword.lower() not in seen:
                pairs.append(
                    {"id": f"q-{ids[0]}", "text": headword, "pos_id": ids[0], "source": name}
                )
    if Path("/usr/share/wordnet/data.noun").is_file():
        for _key_, lemmas, gloss, examples in wordnet_synsets():
            pos_id = add("wordnet", gloss)
            if pos_id is None:
                continue
            query = f'{lemmas[0]}: "{examples[0]}"' if examples else ", ".join(lemmas)
            pairs.append(
                {"id": f"q-{pos_id}", "text": query, "pos_id": pos_id, "source": "wordnet"}
            )
    for source, folder, suffixes, split in DOCUMENTS:
        for passage in document_passages(folder, suffixes, split):
            if len(texts) >= limit:
                break
            add(source, passage)
    # The supplement fills what the sources above leave short of the largest size; its
    # texts come after theirs in the order (tier 1), so the smaller sizes never see them.
    base = len(texts)
    for source, passage in supplement_passages():
        if len(texts) >= limit:
            break
        add(source, passage)
    for t in texts[base:]:
        t["tier"] = 1
    return texts, pairs, counts


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)


def _tune_rows(
    n: int, pairs: list[dict], by_id: dict[str, dict], others: list[dict]
) -> Iterator[dict]:
    """``n`` training rows: pair ``i mod len(pairs)`` with 8 negatives from ``others``."""
    from uniembed.data import schema as S

    for i in range(n):
        pair = pairs[i % len(pairs)]
        negs = [others[(i * TUNE_NEGATIVES + j) % len(others)] for j in range(TUNE_NEGATIVES)]
        yield {
            S.QUERY_ID: f"{pair['id']}#{i // len(pairs)}",
            S.QUERY_TEXT: pair["text"],
            S.POS_ID: pair["pos_id"],
            S.POS_TEXT: by_id[pair["pos_id"]]["text"],
            S.POS_SCORE: 1.0,
            S.NEG_IDS: [x["id"] for x in negs],
            S.NEG_TEXTS: [x["text"] for x in negs],
            S.NEG_SCORES: [0.0] * TUNE_NEGATIVES,
        }


def _write_tune(folder: Path, rows: Iterator[dict], n: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from uniembed.data import schema as S

    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "part-0.parquet.tmp"
    with pq.ParquetWriter(tmp, S.MINED_SCHEMA) as writer:
        batch: list[dict] = []
        for row in rows:
            batch.append(row)
            if len(batch) == 50_000:
                writer.write_table(pa.Table.from_pylist(batch, schema=S.MINED_SCHEMA))
                batch = []
        if batch:
            writer.write_table(pa.Table.from_pylist(batch, schema=S.MINED_SCHEMA))
    tmp.replace(folder / "part-0.parquet")


def build_size(name: str, texts: list[dict], pairs: list[dict]) -> Path:
    """Write one size's folder from the ordered texts and pairs (see the module doc)."""
    n = SIZES[name]
    n_queries = n // 10
    if len(pairs) < n_queries or len(texts) < n:
        raise SystemExit(
            f"{name}: need {n} texts and {n_queries} pairs, have {len(texts)} and {len(pairs)}"
        )
    out = size_dir(name)
    out.mkdir(parents=True, exist_ok=True)
    by_id = {t["id"]: t for t in texts}
    queries = pairs[:n_queries]
    positives = {q["pos_id"] for q in queries}
    others = [t for t in texts if t["id"] not in positives]
    pool = [by_id[q["pos_id"]] for q in queries] + others[: n - n_queries]
    pool = [{k: v for k, v in t.items() if k != "tier"} for t in pool]
    _write_jsonl(out / "pool.jsonl", pool)
    _write_jsonl(out / "queries.jsonl", queries)
    judge_q = [dict(q, instruction=INSTRUCTION) for q in queries[:JUDGE_QUERIES]]
    judge_pool = pool[:JUDGE_QUERIES] + pool[n_queries : n_queries + JUDGE_POOL - JUDGE_QUERIES]
    _write_jsonl(out / "judge_queries.jsonl", judge_q)
    _write_jsonl(out / "judge_pool.jsonl", judge_pool)
    _write_tune(out / "tune", _tune_rows(n, pairs, by_id, others), n)
    sources: dict[str, int] = {}
    for t in pool:
        sources[t["source"]] = sources.get(t["source"], 0) + 1
    manifest = {
        "version": VERSION,
        "size": name,
        "pool": len(pool),
        "queries": len(queries),
        "tune_rows": n,
        "judge": {"queries": len(judge_q), "pool": len(judge_pool)},
        "pool_sources": dict(sorted(sources.items(), key=lambda kv: -kv[1])),
        "pool_words_mean": sum(len(t["text"].split()) for t in pool) / len(pool),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return out


def ensure(sizes: list[str], install: bool = False) -> dict[str, Path]:
    """Build the sizes not yet in the cache; return each size's folder."""
    todo = [s for s in sizes if not (size_dir(s) / "manifest.json").is_file()]
    if todo:
        if install:
            install_packages()
        # Always the same texts, whichever sizes are asked for: each size is the same
        # whether built alone or with the others.
        limit = int(max(SIZES.values()) * 1.02) + 1000
        texts, pairs, counts = collect(limit)
        print(f"[scale_corpus] {len(texts)} texts, {len(pairs)} pairs: {counts}", file=sys.stderr)
        texts.sort(key=lambda t: (t.get("tier", 0), _key(t["id"])))
        pairs.sort(key=lambda p: _key(p["id"]))
        for s in todo:
            print(f"[scale_corpus] writing {size_dir(s)}", file=sys.stderr)
            build_size(s, texts, pairs)
    return {s: size_dir(s) for s in sizes}


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sizes", default="10k,100k,1m", help=f"comma list of {list(SIZES)}")
    p.add_argument("--install", action="store_true", help="apt-get install missing packages (root)")
    p.add_argument("--list", action="store_true", help="print each size's manifest")
    args = p.parse_args()
    sizes = [s.strip().lower() for s in args.sizes.split(",") if s.strip()]
    bad = [s for s in sizes if s not in SIZES]
    if bad:
        raise SystemExit(f"unknown sizes {bad}; choose from {list(SIZES)}")
    for s, folder in ensure(sizes, install=args.install).items():
        print(folder)
        if args.list:
            print((folder / "manifest.json").read_text())


if __name__ == "__main__":
    main()
