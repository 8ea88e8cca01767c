"""Tiny randomly initialised decoders (Llama with GQA, GPT-2, OPT) for tests of mechanics; no downloads."""
from __future__ import annotations

import torch

TINY_ARCHITECTURES = ("llama", "gpt2", "opt")


def tiny_causal_lm(arch: str = "llama", *, layers: int = 3, hidden: int = 64, vocab: int = 128,
                   seed: int = 0, tie: bool = True) -> torch.nn.Module:
    """A small random causal LM of a given architecture, in eval mode (widths divisible by 8 for N:M)."""
    import transformers

    torch.manual_seed(seed)
    if arch == "llama":
        config = transformers.LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden,
                                          num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                                          max_position_embeddings=256, tie_word_embeddings=tie)
        model = transformers.LlamaForCausalLM(config)
    elif arch == "gpt2":
        config = transformers.GPT2Config(vocab_size=vocab, n_embd=hidden, n_layer=layers, n_head=4, n_positions=256,
                                         bos_token_id=0, eos_token_id=0, tie_word_embeddings=tie)
        model = transformers.GPT2LMHeadModel(config)
    elif arch == "opt":
        config = transformers.OPTConfig(vocab_size=vocab, hidden_size=hidden, ffn_dim=2 * hidden,
                                        num_hidden_layers=layers, num_attention_heads=4, max_position_embeddings=256,
                                        word_embed_proj_dim=hidden, bos_token_id=0, eos_token_id=0, pad_token_id=1,
                                        tie_word_embeddings=tie)
        model = transformers.OPTForCausalLM(config)
    else:
        raise ValueError(f"unknown tiny architecture {arch!r}; one of {TINY_ARCHITECTURES}")
    return model.eval()


def random_windows(n: int = 4, seqlen: int = 32, vocab: int = 128, seed: int = 0) -> torch.Tensor:
    """Reproducible random token windows [n, seqlen]."""
    return torch.randint(0, vocab, (n, seqlen), generator=torch.Generator().manual_seed(seed))
