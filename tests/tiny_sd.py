"""A tiny Stable Diffusion pipeline with random weights, built from configs, for offline tests.

Nothing is downloaded: the tokenizer is built in memory (upstream diffusers tests fetch
``hf-internal-testing/tiny-random-clip`` instead). The pipeline draws noise, at 64 x 64 pixels
(UNet ``sample_size`` 32 times the VAE's scale factor 2), in well under a second per call on a CPU.

The UNet has 4 input channels, as a text-to-image checkpoint does. Image-to-image and inpainting
pipelines are derived from it with ``AutoPipelineFor*.from_pipe``, the path the diffusers backend
takes; diffusers 0.42 runs ``StableDiffusionInpaintPipeline`` on a 4-channel UNet by blending the
known latents back in outside the mask at every step (the 9-channel UNet of dedicated inpainting
checkpoints takes the mask as input instead). So one saved directory exercises every pipeline.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["SIZE", "build_tiny_sd", "save_tiny_sd"]

#: Width and height of the images the tiny pipeline makes by default.
SIZE = 64

# Byte-level BPE needs every single character in the vocabulary; words the prompts use get their
# own token so a prompt encodes to a handful of ids (the rest fall back to characters).
_WORDS = "a an the of to and is in on with left right above below red blue green cup apple dog cat add draw missing"


def _tokenizer():
    from transformers import CLIPTokenizer

    chars = [chr(c) for c in range(33, 127)]
    vocab = {t: i for i, t in enumerate(["<|startoftext|>", "<|endoftext|>", *chars, *(c + "</w>" for c in chars)])}
    for word in _WORDS.split():
        vocab.setdefault(word + "</w>", len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def build_tiny_sd(seed: int = 0):
    """The tiny ``StableDiffusionPipeline`` (float32, CPU), weights drawn from ``seed``."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=SIZE // 2,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
    )
    vae = AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        latent_channels=4,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=32,  # must equal the UNet's cross_attention_dim
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=1000,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=_tokenizer(),
        unet=unet,
        scheduler=PNDMScheduler(skip_prk_steps=True, steps_offset=1),
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )


def save_tiny_sd(path: str | Path, seed: int = 0) -> Path:
    """Build the tiny pipeline and ``save_pretrained`` it to ``path``; returns ``path``."""
    path = Path(path)
    build_tiny_sd(seed).save_pretrained(path)
    return path
