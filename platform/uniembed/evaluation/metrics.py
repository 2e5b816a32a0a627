"""Retrieval metrics as pure numpy functions.

Four task shapes are covered:

- candidate lists (MMEB-eval): each query has its own candidates, the gold one at index 0;
- retrieval over a shared corpus with a set of relevant documents per query, defined exactly
  as sentence-transformers' ``InformationRetrievalEvaluator`` defines its metrics;
- caption retrieval (Flickr30K / COCO style, several captions per image);
- compositional pairs (SugarCrepe style: the true caption must beat an altered one).

Every function validates its input and raises ``ValueError`` naming the argument (and the
row) that is wrong. Ties are never resolved in the model's favour: a model that scores every
candidate the same must not look good.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

CandidateScores = Sequence[np.ndarray] | np.ndarray


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    ks = tuple(ks)
    if not ks:
        raise ValueError("ks: need at least one cutoff")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"ks: every cutoff must be an integer >= 1, got {k!r}")
    return tuple(int(k) for k in ks)


def _finite_rows(name: str, rows: list[np.ndarray]) -> None:
    for i, row in enumerate(rows):
        if not np.all(np.isfinite(row)):
            raise ValueError(f"{name}[{i}]: scores must be finite (found NaN or inf)")


def candidate_list_metrics(
    scores: CandidateScores, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, Any]:
    """Metrics for tasks where each query ranks its own candidate list, gold at index 0.

    Args:
        scores: one 1-D array per query, shape ``(n_candidates_i,)``, or a 2-D array
            ``(n_queries, n_candidates)``; entry 0 of each row is the gold candidate's score.
            Every query needs the gold and at least one distractor.
        ks: cutoffs for ``hit@k``.

    The gold's rank is ``1 + #(distractors with score >= gold score)``: ties count against
    the gold, so constant scores give precision@1 = 0.

    Returns:
        ``precision@1`` (the MMEB number), ``hit@k`` for each k, ``mrr``, ``ndcg@10``
        (one relevant item, so ``1 / log2(rank + 1)`` when rank <= 10), ``n_queries``, and
        per-query arrays ``gold_rank`` (int64), ``gold_score`` and ``best_distractor_score``
        (float64), each of shape ``(n_queries,)``.
    """
    ks = _check_ks(ks)
    if isinstance(scores, np.ndarray) and scores.ndim != 2:
        raise ValueError(f"scores: expected a 2-D array (queries, candidates), got {scores.shape}")
    rows = [np.asarray(r, dtype=np.float64) for r in scores]
    if not rows:
        raise ValueError("scores: no queries")
    for i, row in enumerate(rows):
        if row.ndim != 1:
            raise ValueError(
                f"scores[{i}]: expected a 1-D array of candidate scores, got {row.shape}"
            )
        if row.shape[0] < 2:
            raise ValueError(
                f"scores[{i}]: has {row.shape[0]} candidate(s); need the gold and a distractor"
            )
    _finite_rows("scores", rows)

    gold = np.array([r[0] for r in rows])
    best = np.array([r[1:].max() for r in rows])
    rank = np.array([1 + int(np.count_nonzero(r[1:] >= r[0])) for r in rows], dtype=np.int64)

    out: dict[str, Any] = {"precision@1": float(np.mean(rank == 1))}
    for k in ks:
        out[f"hit@{k}"] = float(np.mean(rank <= k))
    out["mrr"] = float(np.mean(1.0 / rank))
    out["ndcg@10"] = float(np.mean(np.where(rank <= 10, 1.0 / np.log2(rank + 1.0), 0.0)))
    out["n_queries"] = len(rows)
    out["gold_rank"] = rank
    out["gold_score"] = gold
    out["best_distractor_score"] = best
    return out


def _top_order(row: np.ndarray, top: int) -> np.ndarray:
    """Indices of the ``top`` best entries by descending score, ties by ascending index.

    Exact even with ties at the cut: every entry tied with the cut value is considered
    before the stable sort picks the lowest indices.
    """
    if top < row.shape[0]:
        part = np.argpartition(-row, top - 1)[:top]
        cand = np.flatnonzero(row >= row[part].min())
    else:
        cand = np.arange(row.shape[0])
    return cand[np.argsort(-row[cand], kind="stable")][:top]


def retrieval_metrics(
    scores: np.ndarray, relevant: Sequence[set[int]], ks: Sequence[int] = (1, 3, 5, 10)
) -> dict[str, float]:
    """Retrieval over a shared corpus with a set of relevant documents per query.

    Definitions follow sentence-transformers' ``InformationRetrievalEvaluator``: documents
    are ranked by descending score, ties by ascending corpus index (the evaluator breaks
    them by ascending corpus id, which is the same order when ids sort like indices).
    For each query with relevant set R and top-k list T:

    - ``accuracy@k``: 1 if T holds any relevant document;
    - ``precision@k``: ``|T & R| / k`` (k, not ``len(T)``, even if the corpus is smaller);
    - ``recall@k``: ``|T & R| / |R|``;
    - ``mrr@k``: 1 / rank of the first relevant document in T, else 0;
    - ``ndcg@k``: binary DCG of T over the DCG of ``min(k, |R|)`` relevant documents;
    - ``map@k``: sum of precision at each relevant rank in T, over ``min(k, |R|)``.

    Each is averaged over queries.

    Args:
        scores: ``(n_queries, n_corpus)`` similarity matrix, higher is more relevant.
        relevant: one non-empty set of corpus indices per query.
        ks: cutoffs; every metric is reported at every k, keys like ``"ndcg@10"``.
    """
    ks = _check_ks(ks)
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores: expected a 2-D array (queries, corpus), got {scores.shape}")
    n_q, n_c = scores.shape
    if n_q == 0 or n_c == 0:
        raise ValueError(f"scores: empty matrix of shape {scores.shape}")
    if len(relevant) != n_q:
        raise ValueError(f"relevant: has {len(relevant)} sets for {n_q} queries in scores")
    if not np.all(np.isfinite(scores)):
        bad = int(np.flatnonzero(~np.all(np.isfinite(scores), axis=1))[0])
        raise ValueError(f"scores[{bad}]: scores must be finite (found NaN or inf)")
    for i, rel in enumerate(relevant):
        if len(rel) == 0:
            raise ValueError(f"relevant[{i}]: empty set; every query needs a relevant document")
        for d in rel:
            if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or not 0 <= d < n_c:
                raise ValueError(f"relevant[{i}]: {d!r} is not a corpus index in [0, {n_c})")

    max_k = max(ks)
    top = min(max_k, n_c)
    names = ("accuracy", "precision", "recall", "mrr", "ndcg", "map")
    sums = {f"{m}@{k}": 0.0 for m in names for k in ks}
    discounts = 1.0 / np.log2(np.arange(2, max_k + 2))
    for i in range(n_q):
        rel = {int(d) for d in relevant[i]}
        order = _top_order(scores[i], top)
        hits = np.array([int(d) in rel for d in order], dtype=np.float64)
        for k in ks:
            h = hits[:k]
            n_hit = h.sum()
            sums[f"accuracy@{k}"] += float(n_hit > 0)
            sums[f"precision@{k}"] += n_hit / k
            sums[f"recall@{k}"] += n_hit / len(rel)
            first = np.flatnonzero(h)
            sums[f"mrr@{k}"] += 1.0 / (first[0] + 1) if first.size else 0.0
            ideal = discounts[: min(k, len(rel))].sum()
            sums[f"ndcg@{k}"] += float((h * discounts[: h.shape[0]]).sum() / ideal)
            prec_at_hit = np.cumsum(h)[first] / (first + 1)
            sums[f"map@{k}"] += float(prec_at_hit.sum() / min(k, len(rel)))
    return {key: float(value / n_q) for key, value in sums.items()}


def _normalise(name: str, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"{name}: expected a non-empty 2-D array (n, dim), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name}: embeddings must be finite (found NaN or inf)")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    zero = np.flatnonzero(norms[:, 0] == 0)
    if zero.size:
        raise ValueError(f"{name}[{int(zero[0])}]: zero vector has no direction")
    return x / norms


def caption_retrieval_metrics(
    image_emb: np.ndarray,
    text_emb: np.ndarray,
    text_to_image: np.ndarray,
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    """Recall@K both ways for image-caption retrieval with several captions per image.

    Args:
        image_emb: ``(n_images, dim)`` image embeddings (cosine; normalised here).
        text_emb: ``(n_texts, dim)`` caption embeddings.
        text_to_image: ``(n_texts,)`` int, the image index each caption describes; every
            image needs at least one caption.
        ks: cutoffs.

    Returns ``image_to_text_R@k`` (hit if any of the image's captions is in the top k) and
    ``text_to_image_R@k`` (hit if the caption's image is in the top k) for each k, plus
    ``n_images`` and ``n_texts``. Ties count against the correct item.
    """
    ks = _check_ks(ks)
    img = _normalise("image_emb", image_emb)
    txt = _normalise("text_emb", text_emb)
    if img.shape[1] != txt.shape[1]:
        raise ValueError(f"text_emb: dim {txt.shape[1]} differs from image_emb dim {img.shape[1]}")
    owner = np.asarray(text_to_image)
    if owner.shape != (txt.shape[0],):
        raise ValueError(f"text_to_image: expected shape ({txt.shape[0]},), got {owner.shape}")
    if not np.issubdtype(owner.dtype, np.integer):
        raise ValueError(f"text_to_image: expected integer image indices, got {owner.dtype}")
    n_img = img.shape[0]
    out_of_range = np.flatnonzero((owner < 0) | (owner >= n_img))
    if out_of_range.size:
        j = int(out_of_range[0])
        raise ValueError(
            f"text_to_image[{j}]: {int(owner[j])} is not an image index in [0, {n_img})"
        )
    captioned = np.bincount(owner, minlength=n_img)
    if np.any(captioned == 0):
        raise ValueError(
            f"text_to_image: image {int(np.flatnonzero(captioned == 0)[0])} has no caption"
        )

    sim = img @ txt.T  # (n_images, n_texts)
    mine = owner[None, :] == np.arange(n_img)[:, None]  # (n_images, n_texts)
    # image -> text: the best caption of the image, outranked by every foreign caption
    # scoring at least as high.
    best_own = np.where(mine, sim, -np.inf).max(axis=1, keepdims=True)
    i2t_rank = 1 + np.count_nonzero(~mine & (sim >= best_own), axis=1)
    # text -> image: the caption's image against every other image.
    sim_t = sim.T  # (n_texts, n_images)
    gold = sim_t[np.arange(txt.shape[0]), owner][:, None]
    t2i_rank = np.count_nonzero(sim_t >= gold, axis=1)  # counts the gold itself: 1 + others
    out: dict[str, float] = {}
    for k in ks:
        out[f"image_to_text_R@{k}"] = float(np.mean(i2t_rank <= k))
    for k in ks:
        out[f"text_to_image_R@{k}"] = float(np.mean(t2i_rank <= k))
    out["n_images"] = n_img
    out["n_texts"] = int(txt.shape[0])
    return out


def compositional_accuracy(
    image_emb: np.ndarray,
    true_text_emb: np.ndarray,
    altered_text_emb: np.ndarray,
    categories: Sequence[str],
) -> dict[str, Any]:
    """SugarCrepe-style accuracy: the true caption must score strictly above the altered one.

    Args:
        image_emb: ``(n, dim)`` image embeddings.
        true_text_emb: ``(n, dim)`` embeddings of the matching captions.
        altered_text_emb: ``(n, dim)`` embeddings of the altered (wrong) captions.
        categories: ``n`` category names (e.g. ``"replace_att"``).

    Returns ``accuracy`` and ``n`` overall, and ``per_category`` / ``n_per_category`` dicts
    keyed by category in first-seen order. Cosine similarity; a tie counts as wrong.
    """
    img = _normalise("image_emb", image_emb)
    pos = _normalise("true_text_emb", true_text_emb)
    neg = _normalise("altered_text_emb", altered_text_emb)
    for name, arr in (("true_text_emb", pos), ("altered_text_emb", neg)):
        if arr.shape != img.shape:
            raise ValueError(f"{name}: shape {arr.shape} differs from image_emb shape {img.shape}")
    cats = list(categories)
    if len(cats) != img.shape[0]:
        raise ValueError(f"categories: has {len(cats)} entries for {img.shape[0]} images")
    for i, c in enumerate(cats):
        if not isinstance(c, str) or not c:
            raise ValueError(f"categories[{i}]: expected a non-empty string, got {c!r}")
    correct = (img * pos).sum(axis=1) > (img * neg).sum(axis=1)
    labels = np.array(cats, dtype=object)
    per_cat: dict[str, float] = {}
    n_cat: dict[str, int] = {}
    for c in dict.fromkeys(cats):
        sel = labels == c
        per_cat[c] = float(correct[sel].mean())
        n_cat[c] = int(sel.sum())
    return {
        "accuracy": float(correct.mean()),
        "n": int(correct.shape[0]),
        "per_category": per_cat,
        "n_per_category": n_cat,
    }
