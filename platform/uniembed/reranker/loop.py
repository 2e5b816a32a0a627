"""The reranker job's worker task, run by the train jobs' loop (``training.loop``).

Checkpoints (weights, optimizer, scheduler, RNG, data position), the deterministic batch
order, the metrics file and the export folder are those of :func:`run_worker`; only the
model (a causal (M)LLM with its LM head, loaded by ``JudgeScorer.load``) and the step
(next-token cross-entropy on the answer tokens of the row's chats) differ. Each rank
computes the mean over its own answer tokens, so gradients are averaged across ranks.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from uniembed.data import schema as S
from uniembed.losses.rerank import RerankGroupLoss, RerankLMLoss
from uniembed.models.pooling_config import PoolingConfig
from uniembed.models.registry import resolve_model
from uniembed.reranker.config import RerankConfig
from uniembed.reranker.data import plan_rows
from uniembed.reranker.model import RankTerm, prepare_reranker, rerank_step
from uniembed.reranker.scorer import JudgeScorer
from uniembed.reranker.tokens import ChatEncoder
from uniembed.training.export import export_model
from uniembed.training.loop import WorkerTask, autocast_for, run_worker


def load_reranker(cfg: RerankConfig, device: str) -> JudgeScorer:
    """The scorer whose model is trained, its language model made trainable."""
    scorer = JudgeScorer.load(cfg.model.name, device=device, dtype="float32")
    scorer.model = prepare_reranker(scorer.model, cfg.lora).train()
    return scorer


def reranker_task(cfg: RerankConfig, device: str) -> WorkerTask:
    """The reranker's model, step (its rows' chats) and export (with the LM head)."""
    scorer = load_reranker(cfg, device)
    scorer.max_text_tokens = cfg.data.max_text_tokens
    encoder = ChatEncoder(scorer)
    loss_fn = RerankLMLoss()
    autocast = autocast_for(cfg.scaling.precision, device)
    rank = None
    if cfg.loss.rank_weight > 0:
        rank = RankTerm(
            RerankGroupLoss(cfg.loss.rank_temperature),
            cfg.loss.rank_weight,
            scorer.yes_token_id,
            scorer.no_token_id,
        )

    def step(rows: list[dict[str, Any]]) -> tuple[Tensor, dict[str, float], list[str]]:
        chats, _ = plan_rows(rows, cfg.data.list_size, cfg.data.seed, cfg.data.pairwise_negatives)
        loss, stats = rerank_step(
            scorer.model,
            encoder,
            chats,
            loss_fn,
            cfg.data.chats_per_forward,
            autocast,
            cfg.data.share_prefix,
            rank,
        )
        return loss, {**stats, "chats": float(len(chats))}, [str(r[S.QUERY_ID]) for r in rows]

    def export(out: str) -> None:
        # The export keeps the LM head: JudgeScorer.load(<export>) scores with it.
        export_model(scorer.model, resolve_model(cfg.model.name), out, PoolingConfig())

    return WorkerTask(scorer.model, step, export, mean_gradients=True)


def rerank_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train entry point: ``config = {"cfg": RerankConfig}``."""
    cfg: RerankConfig = config["cfg"]
    run_worker(cfg, lambda device: reranker_task(cfg, device))
