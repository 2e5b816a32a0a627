"""Request and response bodies of the HTTP API (pydantic; they make the OpenAPI page).

``/v1/embeddings`` follows OpenAI's embeddings API, extended with image inputs and an
instruction; ``/v1/rerank`` follows the Cohere/Jina rerank shape and ``/rerank`` Infinity's
(same request; documents echoed as sent).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

RerankScore = Literal["fused", "reranker", "embedder"]


class _Strict(BaseModel):
    # Unknown fields are refused: a misspelt option must not be silently ignored.
    model_config = ConfigDict(extra="forbid")


class ContentItem(_Strict):
    """One multimodal input: text, an image, or both (an interleaved input)."""

    text: str | None = Field(default=None, description="text of the input")
    image: str | None = Field(
        default=None,
        description="a data URI (data:image/png;base64,...) or an allowed storage URI",
    )
    instruction: str | None = Field(default=None, description="overrides the request's")

    @model_validator(mode="after")
    def _not_empty(self) -> ContentItem:
        if not self.text and not self.image:
            raise ValueError("needs text or image")
        return self


class EmbeddingRequest(_Strict):
    """OpenAI-compatible embeddings request, extended with images and an instruction."""

    input: str | list[str | ContentItem] | list[int] | list[list[int]] = Field(
        description="a string, or a list of strings and/or {text, image, instruction} items "
        "(OpenAI's token-id inputs are refused with 400: this server takes text)"
    )
    model: str | None = Field(default=None, description="must name the served embedder")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(
        default=None, ge=1, description="truncate + renormalise (Matryoshka models only)"
    )
    instruction: str | None = Field(default=None, description="task instruction for all inputs")
    user: str | None = Field(default=None, description="accepted for compatibility, unused")


class EmbeddingData(BaseModel):
    """One embedding, at the position of its input."""

    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class Usage(BaseModel):
    """Tokens the request took (image tokens included)."""

    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    """OpenAI-compatible embeddings response."""

    object: Literal["list"] = "list"
    data: list[EmbeddingData]
    model: str
    usage: Usage


class RerankRequest(_Strict):
    """Cohere/Jina-style rerank request; documents may be text, images or both."""

    query: str | ContentItem
    documents: list[str | ContentItem] = Field(min_length=1)
    top_n: int | None = Field(default=None, ge=1, description="keep the n best (default: all)")
    return_documents: bool = False
    model: str | None = None
    raw_scores: bool = Field(
        default=False,
        description="Infinity's option; only false (for the reranker's own P(Yes), send "
        '"score": "reranker")',
    )
    score: RerankScore | None = Field(
        default=None,
        description="which relevance_score: fused (the reranker's and the embedder's, with "
        "the weight stored with the reranker), reranker (its P(Yes) in [0, 1]) or embedder "
        "(the served embedder's cosine); default fused, or reranker when the reranker has "
        "no stored fusion (the response says so)",
    )


class RerankResult(BaseModel):
    """A document's position in the request and its relevance score (the response's
    ``score`` says which)."""

    index: int
    relevance_score: float
    document: ContentItem | None = None


class RerankResponse(BaseModel):
    """Results sorted by relevance, best first; ``score`` says what ``relevance_score``
    holds, ``fusion_weight`` the reranker's weight in a fused score, ``note`` why the
    score is not the one requested by default."""

    model: str
    score: RerankScore
    fusion_weight: float | None = None
    note: str | None = None
    results: list[RerankResult]


class InfinityRerankResult(BaseModel):
    """``/rerank`` (Infinity's shape): a string document is echoed as the string."""

    index: int
    relevance_score: float
    document: str | ContentItem | None = None


class InfinityRerankResponse(BaseModel):
    """``/rerank`` (Infinity's shape): results sorted by relevance, best first."""

    object: Literal["rerank"] = "rerank"
    model: str
    score: RerankScore
    fusion_weight: float | None = None
    note: str | None = None
    results: list[InfinityRerankResult]


class SearchRequest(_Strict):
    """Top-k documents of the index for a query, optionally reranked."""

    query: str | ContentItem
    top_k: int = Field(default=10, ge=1)
    rerank: bool = False
    rerank_candidates: int | None = Field(
        default=None, ge=1, description="how many retrieved documents the reranker scores"
    )
    return_documents: bool = True
    score: Literal["fused", "reranker"] | None = Field(
        default=None,
        description="with rerank: what orders the hits and fills rerank_score: fused (the "
        "reranker's P(Yes) and the hit's cosine, with the weight stored with the reranker) "
        "or reranker (its P(Yes) alone); default fused, or reranker when the reranker has "
        "no stored fusion for the served embedder (the response's note says so)",
    )


class SearchDocument(BaseModel):
    """A document of the index."""

    text: str | None = None
    image_uri: str | None = None


class SearchResult(BaseModel):
    """One hit: id, cosine score, and, when reranked, the score that ordered it (the
    response's ``rerank_score`` says which)."""

    id: str
    score: float
    rerank_score: float | None = None
    document: SearchDocument | None = None


class SearchResponse(BaseModel):
    """Hits, best first; when reranked, ``rerank_score`` says what the hits'
    ``rerank_score`` holds (fused or reranker), ``fusion_weight`` the reranker's weight in
    a fused score and ``note`` why the score is not the fused default."""

    model: str
    reranker: str | None = None
    rerank_score: Literal["fused", "reranker"] | None = None
    fusion_weight: float | None = None
    note: str | None = None
    results: list[SearchResult]


class ModelCard(BaseModel):
    """A served model."""

    id: str
    object: Literal["model"] = "model"
    owned_by: str = "uniembed"
    type: Literal["embedding", "reranker"]
    dim: int | None = None
    supports_images: bool | None = None
    matryoshka: bool | None = None


class ModelList(BaseModel):
    """OpenAI-style model list."""

    object: Literal["list"] = "list"
    data: list[ModelCard]
