"""The sentence-transformers files of an export folder, so that
``SentenceTransformer(export_dir)`` gives the vectors our embedder gives.

An export of a text model (encoder, or decoder prompted without a chat template) gets:

    modules.json                       Transformer -> Pooling -> Normalize
    sentence_bert_config.json          max_seq_length: the length the model was trained with
    1_Pooling/config.json              our pooling: mean or last token
    2_Normalize/                       L2 normalisation (a marker file keeps the folder)
    config_sentence_transformers.json  prompts {"query", "document"}: the prompt template's
                                       text before ``{text}``; cosine similarity

Our prompt puts an input's instruction in front of its text (``"<instruction> <text>"``),
so an instruction is passed to sentence-transformers as
``model.encode(texts, prompt=model.prompts["query"] + instruction + " ")``.

A template with text after ``{text}`` or a chat template cannot be written as a
sentence-transformers prompt (a prefix), and MLLMs have no sentence-transformers pipeline:
those exports get no such files (the MLLM snippet in docs/benchmarks.md loads them with
``AutoModel``), and any copied from the source folder are removed.
"""

from __future__ import annotations

import json
from pathlib import Path

from uniembed.models.pooling_config import ResolvedPooling
from uniembed.models.truncation import DEFAULT_MAX_TEXT_TOKENS

ST_FILES = (
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "1_Pooling/config.json",
    "2_Normalize/.keep",
)
_POOLING_MODES = {"mean": "pooling_mode_mean_tokens", "last": "pooling_mode_lasttoken"}


def prompt_prefix(settings: ResolvedPooling, has_chat_template: bool) -> str | None:
    """The sentence-transformers prompt equal to our prompt, or None when there is none."""
    if settings.family.kind == "mllm" or settings.pooling not in _POOLING_MODES:
        return None
    if settings.use_chat_template and has_chat_template:
        return None
    head, found, tail = settings.text_template.partition("{text}")
    if not found or tail or "{" in head.replace("{{", "").replace("}}", ""):
        return None
    return head.replace("{{", "{").replace("}}", "}")


def sentence_transformers_files(
    settings: ResolvedPooling, dim: int, has_chat_template: bool
) -> dict[str, str] | None:
    """The files (relative path -> text) for an export with ``settings``, or None."""
    prefix = prompt_prefix(settings, has_chat_template)
    if prefix is None:
        return None
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
        {
            "idx": 2,
            "name": "2",
            "path": "2_Normalize",
            "type": "sentence_transformers.models.Normalize",
        },
    ]
    pooling = {"word_embedding_dimension": dim}
    pooling.update({flag: mode == settings.pooling for mode, flag in _POOLING_MODES.items()})
    pooling.update({"pooling_mode_cls_token": False, "pooling_mode_max_tokens": False})
    config = {
        "prompts": {"query": prefix, "document": prefix},
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    }
    max_len = settings.max_length or DEFAULT_MAX_TEXT_TOKENS
    return {
        "modules.json": json.dumps(modules, indent=2),
        "sentence_bert_config.json": json.dumps(
            {"max_seq_length": max_len, "do_lower_case": False}, indent=2
        ),
        "config_sentence_transformers.json": json.dumps(config, indent=2),
        "1_Pooling/config.json": json.dumps(pooling, indent=2),
        "2_Normalize/.keep": "",
    }


def write_sentence_transformers_files(
    folder: Path, settings: ResolvedPooling, dim: int, has_chat_template: bool
) -> bool:
    """Write (or, when the export cannot have them, remove) the files; True if written."""
    files = sentence_transformers_files(settings, dim, has_chat_template)
    for rel in ST_FILES:
        (folder / rel).unlink(missing_ok=True)
    if files is None:
        return False
    for rel, text in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return True
