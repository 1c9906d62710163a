"""Tiny random-weight transformers models, built from configs and saved to a directory.

Nothing is downloaded: every tokenizer is made in memory from a word list, every model from a
config with a few dozen hidden units. The weights are random, so the text they generate is
garbage; tests use them to check the plumbing (templates, loading, generation, post-processing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from strokegraph.schema import COLOURS

__all__ = [
    "CHAT_TEMPLATE",
    "VLM_CHAT_TEMPLATE",
    "save_tiny_chat",
    "save_tiny_grounding_dino",
    "save_tiny_owlv2",
    "save_tiny_vlm",
]

_SPECIAL = ["<pad>", "<s>", "</s>", "<unk>"]
# JSON punctuation and the planner/critic reply keys, so that a reply could at least be spelled.
_WORDS = [
    *'{}[]:,."_',
    "user",
    "assistant",
    "system",
    "scene",
    "plan",
    "steps",
    "entities",
    "relations",
    "constraints",
    "violations",
    "detections",
    "id",
    "noun",
    "count",
    "colour",
    "attributes",
    "instruction",
    "description",
    "entity",
    "ids",
    "subject",
    "predicate",
    "object",
    "null",
    "e0",
    "e1",
    "0",
    "1",
    "2",
    "a",
    "cat",
    "dog",
    "left",
    "right",
    "above",
    "below",
    "of",
    *COLOURS,
]

#: Text parts only; content may be a string or a list of parts.
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ bos_token }} {{ m['role'] }} : "
    "{% if m['content'] is string %}{{ m['content'] }}"
    "{% else %}{% for p in m['content'] %}{% if p['type'] == 'text' %}{{ p['text'] }} {% endif %}{% endfor %}"
    "{% endif %} {{ eos_token }} {% endfor %}"
    "{% if add_generation_prompt %}{{ bos_token }} assistant : {% endif %}"
)
#: Like :data:`CHAT_TEMPLATE`, with ``<image>`` where an image part is.
VLM_CHAT_TEMPLATE = CHAT_TEMPLATE.replace(
    "{% if p['type'] == 'text' %}", "{% if p['type'] == 'image' %}<image> {% elif p['type'] == 'text' %}"
)


def _word_tokenizer(extra_special: tuple[str, ...] = ()):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(dict.fromkeys([*_SPECIAL, *_WORDS]))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    core.decoder = decoders.WordPiece(prefix="##", cleanup=True)  # joins words with spaces
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    if extra_special:
        # As special tokens, or the word-level model would map them to <unk> and counts mismatch.
        tok.add_tokens(list(extra_special), special_tokens=True)
    return tok


def _llama_config(vocab_size: int, tok):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=4096,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )


def _save(path: Path, *parts: Any) -> Path:
    """``save_pretrained`` each of ``parts`` (a model, its tokenizer or processor) to ``path``."""
    for part in parts:
        part.save_pretrained(path)
    return Path(path)


def save_tiny_chat(path: Path) -> Path:
    """A one-layer Llama with a word-level tokenizer and :data:`CHAT_TEMPLATE`, saved to ``path``."""
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    tok = _word_tokenizer()
    tok.chat_template = CHAT_TEMPLATE
    model = LlamaForCausalLM(_llama_config(len(tok), tok)).eval()
    return _save(path, model, tok)


def save_tiny_vlm(path: Path) -> Path:
    """A LLaVA with a 32 px CLIP vision tower and a one-layer Llama, with processor, saved to ``path``."""
    import torch
    from transformers import (
        CLIPImageProcessorPil,
        CLIPVisionConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    torch.manual_seed(0)
    tok = _word_tokenizer(extra_special=("<image>",))
    vision = CLIPVisionConfig(
        image_size=32, patch_size=8, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=_llama_config(len(tok), tok),
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
    )
    model = LlavaForConditionalGeneration(config).eval()
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        patch_size=8,
        vision_feature_select_strategy="default",
        chat_template=VLM_CHAT_TEMPLATE,
        num_additional_image_tokens=1,
    )
    return _save(path, model, processor)


def save_tiny_owlv2(path: Path) -> Path:
    """An OWLv2 detector on 32 px inputs (4 x 4 patches) with a tiny CLIP tokenizer, saved to ``path``."""
    import torch
    from transformers import (
        CLIPTokenizer,
        Owlv2Config,
        Owlv2ForObjectDetection,
        Owlv2ImageProcessorPil,
        Owlv2Processor,
    )

    torch.manual_seed(0)
    # Byte-level BPE over single characters: every query spells out. <|startoftext|> must not be id
    # 0, since OWL masks out queries whose first id is 0 (all of their logits become -inf).
    chars = [*(chr(c) for c in range(ord("a"), ord("z") + 1)), "."]
    words = ["!", *chars, *(c + "</w>" for c in chars), "<|startoftext|>", "<|endoftext|>"]
    vocab = {w: i for i, w in enumerate(words)}
    tok = CLIPTokenizer(vocab=vocab, merges=[], pad_token="!", model_max_length=16)
    config = Owlv2Config(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "max_position_embeddings": 16,
            "bos_token_id": vocab["<|startoftext|>"],
            "eos_token_id": vocab["<|endoftext|>"],
            "pad_token_id": 0,
        },
        vision_config={
            "image_size": 32,
            "patch_size": 8,
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
        },
        projection_dim=16,
    )
    model = Owlv2ForObjectDetection(config).eval()
    image_processor = Owlv2ImageProcessorPil(size={"height": 32, "width": 32})
    processor = Owlv2Processor(image_processor=image_processor, tokenizer=tok)
    return _save(path, model, processor)


def save_tiny_grounding_dino(path: Path) -> Path:
    """A Grounding DINO (d_model 32, a two-stage Swin, a one-layer BERT, 10 queries) on 32 px inputs, saved to ``path``.

    Its WordPiece vocabulary holds the words of :data:`_WORDS` whole (so "cat" is one token and a
    phrase label reads "cat") and every letter as a word start and a "##" continuation, so that any
    other noun still spells out.
    """
    import torch
    from transformers import (
        BertConfig,
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessorPil,
        GroundingDinoProcessor,
        SwinConfig,
    )

    torch.manual_seed(0)
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    words = [w for w in _WORDS if w.isalnum()]
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *letters, *(f"##{c}" for c in letters), *words]
    tok = BertTokenizer(vocab={w: i for i, w in enumerate(dict.fromkeys(tokens))}, model_max_length=32)
    backbone = SwinConfig(
        image_size=32,
        patch_size=4,
        embed_dim=8,
        depths=[1, 1],
        num_heads=[1, 1],
        window_size=2,
        # Taken by the backbone mixin at run time; the typed signature names only _out_features.
        out_features=["stage1", "stage2"],  # type: ignore[call-arg]
    )
    text = BertConfig(
        vocab_size=len(tok),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=32,
    )
    config = GroundingDinoConfig(
        backbone_config=backbone,
        text_config=text,
        d_model=32,  # GroupNorm over 32 groups: the least it can be
        encoder_layers=1,
        decoder_layers=2,  # one layer leaves the shared box head nothing to tie to, and fails to build
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_n_points=2,
        decoder_n_points=2,
        num_feature_levels=2,
        num_queries=10,
        max_text_len=32,
    )
    model = GroundingDinoForObjectDetection(config).eval()
    image_processor = GroundingDinoImageProcessorPil(size={"shortest_edge": 32, "longest_edge": 64})
    processor = GroundingDinoProcessor(image_processor=image_processor, tokenizer=tok)
    return _save(path, model, processor)
