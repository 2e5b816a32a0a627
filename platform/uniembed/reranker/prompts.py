"""The pairwise judge prompt (DESIGN §1, UniME-V2 MLLM-as-a-Judge) and where it splits.

The user turn is::

    <JUDGE_INSTRUCTION>
    Query: [image token\\n][query text]
    Candidate: [image token\\n][candidate text]

wrapped in the backbone's chat template with the generation prompt. Everything up to and
including the newline after the query is the *prefix*: it is identical for every candidate
of a query, so its KV cache is computed once. The split sits right after a newline and
right before the letters of ``Candidate:``; byte-level BPE pre-tokenisers (GPT-2, Qwen,
Llama-3, SmolLM) never merge a newline with the letters after it, so the prefix tokens are
a prefix of the full tokens. The suffix is tokenised behind an anchor newline that is then
cut off (see ``JudgeScorer``), which also keeps SentencePiece tokenisers from adding their
word-start marker to ``Candidate``. The scorer checks the split on a probe at load time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PIL import Image

JUDGE_INSTRUCTION = (
    "I will provide you with a query and a candidate. Please evaluate whether the candidate "
    "meets the requirements of the query. If it does, respond with 'Yes'; if it doesn't, "
    "respond with 'No'."
)
QUERY_LABEL = "Query: "
CANDIDATE_LABEL = "Candidate: "
# The text the suffix is tokenised behind (and then cut from): the prefix's last character.
SPLIT_ANCHOR = "\n"
YES = "Yes"
NO = "No"
# The tokens of each text a judge prompt holds, by default: what the served reranker cuts
# to (reranker.max_text_tokens) and the judge of the mine and reranker jobs too.
JUDGE_TEXT_TOKENS = 512


@dataclass(frozen=True)
class JudgeInput:
    """One side of a judged pair: text and/or a decoded RGB ``PIL.Image.Image``."""

    text: str | None = None
    image: Image.Image | None = None


def check_judge_input(
    inp: object, where: str, model: str, image_token: str | None, supports_images: bool
) -> None:
    """Raise ValueError naming ``model`` and ``where`` ("query", "candidate 3") if ``inp``
    cannot be judged: wrong type, empty, bad field types, an image for a text-only judge,
    or text that spells the image placeholder (it would be read as an image slot)."""
    if not isinstance(inp, JudgeInput):
        raise ValueError(f"{model}: {where} is a {type(inp).__name__}, not a JudgeInput")
    if inp.text is not None and not isinstance(inp.text, str):
        raise ValueError(f"{model}: {where} field text is a {type(inp.text).__name__}, not str")
    if inp.image is not None and not isinstance(inp.image, Image.Image):
        raise ValueError(
            f"{model}: {where} field image is a {type(inp.image).__name__}, not a decoded PIL image"
        )
    if not (inp.text and inp.text.strip()) and inp.image is None:
        raise ValueError(f"{model}: {where} has neither text nor image")
    if inp.image is not None and not supports_images:
        raise ValueError(
            f"{model}: {where} has an image but judge model {model} reads text only "
            "(load a multimodal judge such as tiny-qwen2-vl)"
        )
    if image_token and inp.text and image_token in inp.text:
        raise ValueError(
            f"{model}: {where} field text contains the image placeholder {image_token!r}"
        )


def item_content(inp: JudgeInput, image_token: str | None) -> str:
    """``[image token\\n][text]`` for one side of the pair; the text is stripped so that
    no whitespace can run into the split newline."""
    text = (inp.text or "").strip()
    if inp.image is None:
        return text
    if image_token is None:
        raise ValueError("a judge without an image token cannot take image inputs")
    return f"{image_token}\n{text}" if text else image_token


def query_content(query: JudgeInput, image_token: str | None) -> str:
    """The query part of the user turn (instruction + query), ending with the split newline."""
    return f"{JUDGE_INSTRUCTION}\n{QUERY_LABEL}{item_content(query, image_token)}{SPLIT_ANCHOR}"


def candidate_content(candidate: JudgeInput, image_token: str | None) -> str:
    """The candidate part of the user turn."""
    return f"{CANDIDATE_LABEL}{item_content(candidate, image_token)}"


def split_chat(chat_text: str, query_part: str) -> tuple[str, str]:
    """Split a full chat text into (prefix, suffix) right after ``query_part``.

    ValueError when the chat template did not copy ``query_part`` verbatim (then no split
    with an identical prefix exists).
    """
    start = chat_text.find(query_part)
    if start < 0:
        raise ValueError("the chat template altered the query part; cannot split the prompt")
    end = start + len(query_part)
    return chat_text[:end], chat_text[end:]


def answer_text(generation_prompt: str, special_tokens: list[str]) -> str:
    """How the model spells its answer after ``generation_prompt``.

    After a newline or a special token (ChatML ``<|im_start|>assistant\\n``) an answer
    begins with the bare word ``Yes``; after a label such as LLaVA-1.5's ``ASSISTANT:``
    the answer is written with a leading space (``ASSISTANT: Yes``), so the first token is
    that of `` Yes``.
    """
    if not generation_prompt or generation_prompt[-1].isspace():
        return ""
    if any(generation_prompt.endswith(t) for t in special_tokens if t):
        return ""
    return " "


def first_answer_token(tokenize: Any, generation_prompt: str, answer: str) -> int:
    """The first token the model emits for ``answer`` right after ``generation_prompt``.

    Tokenised in context (prompt + answer, minus the prompt's tokens), because the spelling
    of a word's first token depends on what precedes it (SentencePiece word-start markers,
    byte-level space merges). ``tokenize`` maps a string to a list of token ids.
    """
    context = tokenize(generation_prompt)
    full = tokenize(generation_prompt + answer)
    if full[: len(context)] != context or len(full) == len(context):
        raise ValueError(f"answer {answer!r} does not tokenise as a continuation of the prompt")
    return int(full[len(context)])
