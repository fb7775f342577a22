"""Build a tiny random Qwen3-VL (or Qwen2.5-VL) model folder that ms-swift and transformers load like the real one.

Usage: python scripts/build_tiny_model.py --out DIR [--family qwen3_vl|qwen2_5_vl] [--shape tiny|8b|7b]

Same architecture and processing as Qwen3-VL-8B-Instruct (patch 16, spatial merge 2, temporal
patch 2, interleaved M-RoPE, DeepStack, vocab 151936) or, with ``--family qwen2_5_vl``, as
Qwen2.5-VL-7B-Instruct (patch 14, merge 2, window attention in the ViT, M-RoPE, vocab 152064, CLIP
normalisation), but a few MB of random weights. The
tokenizer is a byte-level BPE trained here on the project's prompt/answer text with Qwen2's
pre-tokenizer (digits split one by one), padded so that every Qwen special token sits at its real
id (ms-swift hard-codes <|image_pad|> = 151655 and <|video_pad|> = 151656). ``--shape 8b`` (Qwen3-VL)
or ``--shape 7b`` (Qwen2.5-VL) builds the real shapes with random weights instead (GPU benchmarks; ~17 /
~16 GB in bf16).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # data_prep, run as a script

QWEN_SPECIAL = [  # id 151643 onwards, in order (Qwen2.5 / Qwen3 tokenizers)
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>",
    "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>", "<think>", "</think>",
]
FIRST_SPECIAL = 151643

# ChatML with Qwen-VL image/video placeholders (the real template also handles tools and
# thinking; ms-swift uses its own qwen3_vl template for training and inference anyway).
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "<|im_start|>{{ message['role'] }}\n"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' or 'image' in part -%}<|vision_start|><|image_pad|><|vision_end|>"
    "{%- elif part['type'] == 'video' or 'video' in part -%}<|vision_start|><|video_pad|><|vision_end|>"
    "{%- elif 'text' in part -%}{{ part['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}<|im_end|>\n"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|im_start|>assistant\n{%- endif -%}"
)

SHAPES = {  # Qwen3-VL
    "tiny": dict(text=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                           head_dim=16, intermediate_size=128, mrope_section=[4, 2, 2]),
                 vision=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2,
                             deepstack_visual_indexes=[1])),
    "8b": dict(text=dict(hidden_size=4096, num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8,
                         head_dim=128, intermediate_size=12288, mrope_section=[24, 20, 20]),
               vision=dict(depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16,
                           deepstack_visual_indexes=[8, 16, 24])),
}
SHAPES_25 = {  # Qwen2.5-VL (head_dim = hidden / heads; ViT window attention except the full-attention blocks)
    "tiny": dict(text=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                           intermediate_size=128, mrope_section=[2, 3, 3]),
                 vision=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, fullatt_block_indexes=[1])),
    "7b": dict(text=dict(hidden_size=3584, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
                         intermediate_size=18944, mrope_section=[16, 24, 24]),
               vision=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16,
                           fullatt_block_indexes=[7, 15, 23, 31])),
}
# What differs between the families' configs (as in the real models' config.json); patch and merge sizes
# come from data_prep/family.py.
ARCH = {
    "qwen3_vl": dict(shapes=SHAPES, config="Qwen3VLConfig", model="Qwen3VLForConditionalGeneration", vocab=151936,
                     max_positions=262144, rope=dict(rope_theta=5000000.0, mrope_interleaved=True),
                     vision=dict(num_position_embeddings=2304, hidden_act="gelu_pytorch_tanh")),
    "qwen2_5_vl": dict(shapes=SHAPES_25, config="Qwen2_5_VLConfig", model="Qwen2_5_VLForConditionalGeneration",
                       vocab=152064, max_positions=128000, rope=dict(rope_theta=1000000.0),
                       vision=dict(window_size=112, hidden_act="silu", tokens_per_second=2)),
}


def corpus(prompt: str = "pigg") -> list[str]:
    """Text the tokenizer is trained on: the prompt, answers, synthetic intents/elements, digits."""
    from data_prep.schema import answer_text, prompt_text
    from data_prep.synth import APPS

    lines = [prompt_text("x", prompt), "You are a helpful assistant.", "user", "assistant", "system"]
    for app in APPS:
        for intent, elements in app["intents"]:
            lines.append(prompt_text(intent, prompt))
            for el in elements:
                lines.append(answer_text(el, 123, 456))
    lines += [" ".join(str(i) for i in range(1001)), "[0, 0] (0, 0) point_2d bbox_2d click start_box"]
    lines += ["".join(chr(c) for c in range(0x4E00, 0x4E00 + 2000))]  # common CJK, byte-level anyway
    return lines


def build_tokenizer(vocab_size: int = 3000, prompt: str = "pigg"):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX, Qwen2Tokenizer
    from tokenizers import AddedToken

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus(prompt) * 4, trainer=trainer)
    state = json.loads(tok.to_str())["model"]
    vocab, merges = dict(state["vocab"]), state["merges"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in merges]
    n = len(vocab)
    for i in range(n, FIRST_SPECIAL):  # unused ids: never produced (no merge builds them)
        vocab[f"<|unused_{i}|>"] = i
    for i, t in enumerate(QWEN_SPECIAL):
        vocab[t] = FIRST_SPECIAL + i
    qtok = Qwen2Tokenizer(vocab=vocab, merges=merges, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                          unk_token=None, model_max_length=262144)
    qtok.add_special_tokens({"additional_special_tokens": [AddedToken(t, special=True) for t in QWEN_SPECIAL]})
    for i, t in enumerate(QWEN_SPECIAL):
        got = qtok.convert_tokens_to_ids(t)
        if got != FIRST_SPECIAL + i:
            raise RuntimeError(f"special token {t} got id {got}, want {FIRST_SPECIAL + i}")
    return qtok


def build_processor(tokenizer, family: str = "qwen3_vl"):
    from transformers import Qwen2VLImageProcessor

    from data_prep.family import get

    fam = get(family)

    if family == "qwen2_5_vl":  # Qwen2.5-VL-7B-Instruct's preprocessor_config.json
        from transformers import Qwen2_5_VLProcessor
        from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

        common = dict(patch_size=fam.patch, temporal_patch_size=2, merge_size=fam.merge,
                      image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711])
        image = Qwen2VLImageProcessor(size={"shortest_edge": 3136, "longest_edge": 12845056}, **common)
        video = Qwen2VLVideoProcessor(size={"shortest_edge": 3136, "longest_edge": 12845056}, **common)
        return Qwen2_5_VLProcessor(image_processor=image, tokenizer=tokenizer, video_processor=video,
                                   chat_template=CHAT_TEMPLATE)
    from transformers import Qwen3VLProcessor
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    common = dict(patch_size=fam.patch, temporal_patch_size=2, merge_size=fam.merge, image_mean=[0.5, 0.5, 0.5],
                  image_std=[0.5, 0.5, 0.5])
    image = Qwen2VLImageProcessor(size={"shortest_edge": 65536, "longest_edge": 16777216}, **common)
    video = Qwen3VLVideoProcessor(size={"shortest_edge": 4096, "longest_edge": 25165824}, **common)
    return Qwen3VLProcessor(image_processor=image, tokenizer=tokenizer, video_processor=video,
                            chat_template=CHAT_TEMPLATE)


def build_config(shape: str, family: str = "qwen3_vl"):
    import transformers
    from data_prep.family import get

    a, fam = ARCH[family], get(family)
    s = a["shapes"][shape]
    t = dict(s["text"])
    mrope = t.pop("mrope_section")
    text = dict(vocab_size=a["vocab"], max_position_embeddings=a["max_positions"], rms_norm_eps=1e-6,
                hidden_act="silu", rope_parameters={"rope_type": "default", "mrope_section": mrope, **a["rope"]},
                bos_token_id=151643, eos_token_id=151645, **t)
    vision = dict(patch_size=fam.patch, spatial_merge_size=fam.merge, temporal_patch_size=2, in_channels=3,
                  out_hidden_size=t["hidden_size"], **a["vision"], **s["vision"])
    return getattr(transformers, a["config"])(
        text_config=text, vision_config=vision, image_token_id=151655, video_token_id=151656,
        vision_start_token_id=151652, vision_end_token_id=151653, tie_word_embeddings=shape == "tiny")


def model_class(family: str):
    import transformers

    return getattr(transformers, ARCH[family]["model"])


def build(out: str | Path, shape: str = "tiny", seed: int = 0, dtype: str = "bfloat16", device: str = "cpu",
          family: str = "qwen3_vl") -> Path:
    import torch
    from transformers import GenerationConfig

    if shape not in ARCH[family]["shapes"]:
        raise SystemExit(f"--shape {shape}: {family} has shapes {sorted(ARCH[family]['shapes'])}")
    out = Path(out).resolve()
    torch.manual_seed(seed)
    config = build_config(shape, family)
    config.dtype = dtype
    # Initialise in float32 (as transformers does) and cast; only the 8B shape is built in its target
    # dtype directly, to avoid a 32 GB float32 copy. (Initialising the tiny model in bf16 draws other
    # weights for the same seed: the demo's figures in README.md are for the float32-initialised one.)
    init_dtype = getattr(torch, dtype) if shape != "tiny" else torch.float32
    old = torch.get_default_dtype()
    torch.set_default_dtype(init_dtype)
    try:
        with torch.device(device):
            model = model_class(family)(config).to(getattr(torch, dtype))
    finally:
        torch.set_default_dtype(old)
    model.generation_config = GenerationConfig(bos_token_id=151643, eos_token_id=[151645, 151643],
                                               pad_token_id=151643, do_sample=False)
    model.save_pretrained(out)
    from data_prep.family import get

    build_processor(build_tokenizer(prompt=get(family).prompt), family).save_pretrained(out)
    return out


def write_shapes(out: str | Path, shape: str = "8b") -> Path:
    """config.json + a safetensors *header* of the shape (names, dtypes, shapes; no weights): enough for
    swift_configs/preflight.py to count parameters on a machine that never holds the 17 GB model."""
    import json
    import struct

    import torch
    from transformers import Qwen3VLForConditionalGeneration

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    config = build_config(shape)
    config.dtype = "bfloat16"
    with torch.device("meta"):
        model = Qwen3VLForConditionalGeneration(config)
    config.save_pretrained(out)
    header, off = {}, 0
    for name, t in model.state_dict().items():
        n = t.numel() * 2
        header[name] = {"dtype": "BF16", "shape": list(t.shape), "data_offsets": [off, off + n]}
        off += n
    raw = json.dumps(header).encode()
    (out / "model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw)  # header only: not loadable
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--family", choices=sorted(ARCH), default="qwen3_vl")
    p.add_argument("--shape", choices=sorted({k for a in ARCH.values() for k in a["shapes"]}), default="tiny")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--device", default="cpu")
    p.add_argument("--force", action="store_true", help="rebuild even if DIR already holds a model")
    a = p.parse_args(argv)
    if (Path(a.out) / "config.json").exists() and not a.force:
        print(f"{a.out}: model already there (use --force to rebuild)")
        return
    path = build(a.out, a.shape, a.seed, a.dtype, a.device, a.family)
    size = sum(f.stat().st_size for f in path.iterdir()) / 2**20
    print(f"wrote {path} ({size:.1f} MiB)")


if __name__ == "__main__":
    main()
