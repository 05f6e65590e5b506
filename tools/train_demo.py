#!/usr/bin/python3
"""Trains lamina's demo model and its adapters from Debian's fortune cookies.

    apt-get install python3-torch python3-numpy fortunes
    /usr/bin/python3 tools/train_demo.py --out models/demo        # about 30 minutes on 2 cores

(Install libopenblas0-pthread too: with Debian's reference BLAS, PyTorch trains 5x slower.)

What it does, all seeded (the same files come out of the same packages):
  1. reads the quotations of Debian's `fortunes` package (/usr/share/games/fortunes; BSD
     licence, see models/demo/SOURCE.md) and holds 5% of them out for validation;
  2. trains a SentencePiece-style BPE vocabulary (1024 pieces: <unk> <s> </s>, 256 byte-fallback
     tokens, the common characters and the learned merges, scored by merge order), and encodes
     the text with exactly the algorithm lamina and llama.cpp use for such vocabularies;
  3. trains a small Llama (6 layers, width 128, 4 query heads sharing 2 key/value heads, SwiGLU
     of 384, RoPE on adjacent pairs as GGUF's llama expects, tied embeddings) and writes it as
     GGUF (F32, about 5 MB) that lamina and llama.cpp load;
  4. trains LoRA adapters (rank 8, alpha 16, all seven matrices of every layer) on themed
     subsets and writes them as Hugging Face PEFT directories;
  5. writes reference logits computed by this PyTorch model for a few prompts and adapter
     stacks (reference/*.json + .f32, the layout of ../shared/reference), which lamina's tests
     compare against, and a SHA256SUMS file.
"""
import argparse
import hashlib
import heapq
import json
import math
import os
import random
import struct
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

FORTUNES = "/usr/share/games/fortunes"
# Not prose: pictures drawn in characters, and a file of non-English fortunes.
SKIPPED = {"ascii-art", "art", "translate-me"}
ADAPTERS = {
    "computers": ["computers", "linux", "linuxcookie"],
    "startrek": ["startrek"],
    "love": ["love", "men-women"],
}
SPACE = "\u2581"  # SentencePiece's visible space
SPECIAL = ["<unk>", "<s>", "</s>"]
UNK, BOS, EOS = 0, 1, 2

CONFIG = dict(dim=128, layers=6, heads=4, kv_heads=2, ffn=384, vocab=1024, context=128, rope_base=10000.0, eps=1e-5)


# --- the corpus ---------------------------------------------------------------------------

def read_fortunes(names):
    quotes = []
    for name in names:
        with open(os.path.join(FORTUNES, name), encoding="utf-8", errors="replace") as f:
            for quote in f.read().split("\n%\n"):
                quote = quote.replace("\t", "    ").strip("\n%")
                if quote.strip():
                    quotes.append(quote)
    return quotes


def categories():
    return sorted(n for n in os.listdir(FORTUNES) if "." not in n and n not in SKIPPED)


# --- the vocabulary: SentencePiece-style BPE with byte fallback ------------------------------

def normalize(text):
    return SPACE + text.replace(" ", SPACE)  # lamina / llama.cpp add the space prefix too


def train_vocabulary(quotes, size):
    words = {}
    char_counts = {}
    for quote in quotes:
        text = normalize(quote)
        for word in text.replace(SPACE, "\0" + SPACE).split("\0"):
            if word:
                words[word] = words.get(word, 0) + 1
        for c in text:
            char_counts[c] = char_counts.get(c, 0) + 1
    alphabet = sorted(c for c, n in char_counts.items() if n >= 20)
    pieces = list(SPECIAL) + ["<0x%02X>" % b for b in range(256)] + alphabet
    known = set(alphabet)
    # Each word as a list of symbols (characters outside the alphabet stay alone: bytes later).
    # Pair counts are kept up to date incrementally: a merge only touches the words holding it.
    corpus = [list(word) for word in words]
    counts = list(words.values())
    pair_count, pair_words = {}, {}

    def add_pairs(index, sign):
        symbols = corpus[index]
        for a, b in zip(symbols, symbols[1:]):
            if a in known and b in known:
                pair_count[(a, b)] = pair_count.get((a, b), 0) + sign * counts[index]
                if sign > 0:
                    pair_words.setdefault((a, b), set()).add(index)

    for index in range(len(corpus)):
        add_pairs(index, 1)
    merges = []
    while len(pieces) < size and pair_count:
        best = max(pair_count.items(), key=lambda item: (item[1], item[0]))
        if best[1] <= 0:
            break
        pair = best[0]
        merged = pair[0] + pair[1]
        merges.append(merged)
        if merged not in known:
            pieces.append(merged)
            known.add(merged)
        for index in list(pair_words.get(pair, ())):
            add_pairs(index, -1)
            symbols, i, out = corpus[index], 0, []
            while i < len(symbols):
                if i + 1 < len(symbols) and symbols[i] == pair[0] and symbols[i + 1] == pair[1]:
                    out.append(merged)
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            corpus[index] = out
            add_pairs(index, 1)
        pair_count = {p: c for p, c in pair_count.items() if c > 0} if len(merges) % 50 == 0 else pair_count
        pair_count.pop(pair, None)
    # Scores: merged pieces by merge order (earlier: higher), everything else 0.
    order = {piece: i for i, piece in enumerate(merges)}
    scores = [(-float(order[p] + 1) if p in order else 0.0) for p in pieces]
    types = [2, 3, 3] + [6] * 256 + [1] * (len(pieces) - 259)
    return pieces, scores, types


class Encoder:
    """The SentencePiece BPE of llama.cpp (and lamina): start from characters, repeatedly merge
    the adjacent pair whose concatenation is a piece with the highest score (leftmost on ties),
    then emit pieces, or their bytes (<0xXX>) when a character is not a piece."""

    def __init__(self, pieces, scores):
        self.index = {p: i for i, p in enumerate(pieces)}
        self.scores = scores
        self.byte_token = {b: self.index["<0x%02X>" % b] for b in range(256)}

    def encode(self, text, bos=True):
        word = normalize(text)
        symbols = list(word)
        prev = list(range(-1, len(symbols) - 1))
        nxt = list(range(1, len(symbols) + 1))
        nxt[-1] = -1
        heap = []

        def consider(left, right):
            if left < 0 or right < 0:
                return
            token = self.index.get(symbols[left] + symbols[right])
            if token is not None:
                heapq.heappush(heap, (-self.scores[token], left, right, len(symbols[left]) + len(symbols[right])))

        for i in range(1, len(symbols)):
            consider(i - 1, i)
        while heap:
            _, left, right, length = heapq.heappop(heap)
            if not symbols[left] or not symbols[right] or len(symbols[left]) + len(symbols[right]) != length:
                continue
            symbols[left] += symbols[right]
            symbols[right] = ""
            nxt[left] = nxt[right]
            if nxt[right] >= 0:
                prev[nxt[right]] = left
            consider(prev[left], left)
            consider(left, nxt[left])
        tokens = [BOS] if bos else []
        i = 0
        while i >= 0:
            piece = symbols[i]
            token = self.index.get(piece)
            if token is not None:
                tokens.append(token)
            else:
                tokens.extend(self.byte_token[b] for b in piece.encode("utf-8"))
            i = nxt[i]
        return tokens


# --- the model -------------------------------------------------------------------------------

def rope_tables(head_size, context, base):
    pairs = torch.arange(head_size // 2, dtype=torch.float64)
    theta = base ** (-2.0 * pairs / head_size)
    angles = torch.arange(context, dtype=torch.float64)[:, None] * theta[None, :]
    return torch.cos(angles).float(), torch.sin(angles).float()


def rotate(x, cos, sin):
    # x: [batch, heads, positions, head_size]; adjacent pairs (2i, 2i+1), as GGUF's llama.
    a, b = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = a * cos - b * sin
    out[..., 1::2] = a * sin + b * cos
    return out


class LoRALinear(nn.Module):
    def __init__(self, base, rank, alpha):
        super().__init__()
        self.base = base
        self.rank = rank
        self.scaling = alpha / rank
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # PEFT's initialization

    def forward(self, x):
        return self.base(x) + self.scaling * (x @ self.lora_A.t() @ self.lora_B.t())


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.heads, self.kv_heads, self.head_size = c["heads"], c["kv_heads"], c["dim"] // c["heads"]
        self.attn_norm = nn.Parameter(torch.ones(c["dim"]))
        self.q_proj = nn.Linear(c["dim"], c["dim"], bias=False)
        self.k_proj = nn.Linear(c["dim"], self.kv_heads * self.head_size, bias=False)
        self.v_proj = nn.Linear(c["dim"], self.kv_heads * self.head_size, bias=False)
        self.o_proj = nn.Linear(c["dim"], c["dim"], bias=False)
        self.ffn_norm = nn.Parameter(torch.ones(c["dim"]))
        self.gate_proj = nn.Linear(c["dim"], c["ffn"], bias=False)
        self.up_proj = nn.Linear(c["dim"], c["ffn"], bias=False)
        self.down_proj = nn.Linear(c["ffn"], c["dim"], bias=False)
        self.eps = c["eps"]

    def norm(self, x, weight):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * weight

    def forward(self, x, cos, sin):
        batch, n, _ = x.shape
        h = self.norm(x, self.attn_norm)
        q = self.q_proj(h).view(batch, n, self.heads, self.head_size).transpose(1, 2)
        k = self.k_proj(h).view(batch, n, self.kv_heads, self.head_size).transpose(1, 2)
        v = self.v_proj(h).view(batch, n, self.kv_heads, self.head_size).transpose(1, 2)
        q, k = rotate(q, cos[:n], sin[:n]), rotate(k, cos[:n], sin[:n])
        repeat = self.heads // self.kv_heads
        k, v = k.repeat_interleave(repeat, dim=1), v.repeat_interleave(repeat, dim=1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_size)
        causal = torch.ones(n, n, dtype=torch.bool, device=x.device).triu(1)
        a = torch.softmax(scores.masked_fill(causal, float("-inf")), dim=-1) @ v
        x = x + self.o_proj(a.transpose(1, 2).reshape(batch, n, -1))
        h = self.norm(x, self.ffn_norm)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Model(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed = nn.Embedding(c["vocab"], c["dim"])
        nn.init.normal_(self.embed.weight, std=0.02)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c["layers"]))
        self.output_norm = nn.Parameter(torch.ones(c["dim"]))
        cos, sin = rope_tables(c["dim"] // c["heads"], c["context"], c["rope_base"])
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def forward(self, tokens):
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x, self.cos, self.sin)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.c["eps"]) * self.output_norm
        return x @ self.embed.weight.t()  # tied embeddings

    def add_lora(self, rank, alpha):
        for block in self.blocks:
            for name in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
                setattr(block, name, LoRALinear(getattr(block, name), rank, alpha))

    def lora_modules(self):
        for i, block in enumerate(self.blocks):
            for name in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
                module = getattr(block, name)
                if isinstance(module, LoRALinear):
                    part = "self_attn" if name in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"
                    yield f"base_model.model.model.layers.{i}.{part}.{name}", module


# --- training --------------------------------------------------------------------------------

def batches(stream, context, batch_size, generator):
    while True:
        starts = torch.randint(0, len(stream) - context - 1, (batch_size,), generator=generator)
        chunk = torch.stack([stream[s:s + context + 1] for s in starts.tolist()])
        yield chunk[:, :-1], chunk[:, 1:]


def evaluate(model, stream, context, batches_count=20):
    generator = torch.Generator().manual_seed(1234)
    model.eval()
    with torch.no_grad():
        losses = []
        for _, (x, y) in zip(range(batches_count), batches(stream, context, 16, generator)):
            losses.append(F.cross_entropy(model(x).reshape(-1, model.c["vocab"]), y.reshape(-1)).item())
    model.train()
    return sum(losses) / len(losses)


def train(model, parameters, stream, steps, learning_rate, context, seed, label, validation=None):
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate, betas=(0.9, 0.95), weight_decay=0.01)
    start = time.time()
    for step, (x, y) in zip(range(steps), batches(stream, context, 16, generator)):
        lr = learning_rate * min(1.0, (step + 1) / 100) * 0.5 * (1 + math.cos(math.pi * step / steps))
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = F.cross_entropy(model(x).reshape(-1, model.c["vocab"]), y.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        if step % 200 == 0 or step + 1 == steps:
            message = f"{label} step {step}/{steps} loss {loss.item():.3f} ({time.time() - start:.0f} s)"
            if validation is not None and (step % 500 == 0 or step + 1 == steps):
                message += f" validation {evaluate(model, validation, context):.3f}"
            print(message, flush=True)


def encode_quotes(encoder, quotes):
    tokens = []
    for quote in quotes:
        tokens.extend(encoder.encode(quote) + [EOS])
    return torch.tensor(tokens, dtype=torch.long)


# --- files -----------------------------------------------------------------------------------

def gguf_string(text):
    data = text.encode("utf-8")
    return struct.pack("<Q", len(data)) + data


def write_gguf(path, metadata, tensors):
    """GGUF v3: metadata [(key, type, value)], tensors [(name, float32 array)], F32, aligned to 32."""
    type_ids = {"u32": 4, "i32": 5, "f32": 6, "bool": 7, "str": 8, "arr": 9}
    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(metadata)))
    for key, kind, value in metadata:
        out += gguf_string(key) + struct.pack("<I", type_ids[kind if kind in type_ids else "arr"])
        if kind == "u32":
            out += struct.pack("<I", value)
        elif kind == "f32":
            out += struct.pack("<f", value)
        elif kind == "bool":
            out += struct.pack("<?", value)
        elif kind == "str":
            out += gguf_string(value)
        elif kind == "str[]":
            out += struct.pack("<IQ", type_ids["str"], len(value)) + b"".join(gguf_string(v) for v in value)
        elif kind == "f32[]":
            out += struct.pack("<IQ", type_ids["f32"], len(value)) + struct.pack(f"<{len(value)}f", *value)
        elif kind == "i32[]":
            out += struct.pack("<IQ", type_ids["i32"], len(value)) + struct.pack(f"<{len(value)}i", *value)
    offset = 0
    blobs = []
    for name, array in tensors:
        array = np.ascontiguousarray(array, dtype=np.float32)
        out += gguf_string(name) + struct.pack("<I", array.ndim)
        out += b"".join(struct.pack("<Q", d) for d in reversed(array.shape))  # innermost first
        out += struct.pack("<IQ", 0, offset)  # type F32
        blobs.append(array.tobytes())
        offset += (len(blobs[-1]) + 31) // 32 * 32
    out += b"\0" * ((32 - len(out) % 32) % 32)
    for blob in blobs:
        out += blob + b"\0" * ((32 - len(blob) % 32) % 32)
    with open(path, "wb") as f:
        f.write(out)


def write_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name, array in tensors:
        data = np.ascontiguousarray(array, dtype=np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, separators=(",", ":"))
    text += " " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text.encode() + b"".join(blobs))


def export_model(model, pieces, scores, types, path):
    c = model.c
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    metadata = [
        ("general.architecture", "str", "llama"),
        ("general.name", "str", "lamina demo: fortunes"),
        ("general.license", "str", "BSD-3-Clause (training text: Debian's fortunes package)"),
        ("general.file_type", "u32", 0),
        ("llama.context_length", "u32", c["context"]),
        ("llama.embedding_length", "u32", c["dim"]),
        ("llama.block_count", "u32", c["layers"]),
        ("llama.feed_forward_length", "u32", c["ffn"]),
        ("llama.attention.head_count", "u32", c["heads"]),
        ("llama.attention.head_count_kv", "u32", c["kv_heads"]),
        ("llama.rope.dimension_count", "u32", c["dim"] // c["heads"]),
        ("llama.rope.freq_base", "f32", c["rope_base"]),
        ("llama.attention.layer_norm_rms_epsilon", "f32", c["eps"]),
        ("llama.vocab_size", "u32", c["vocab"]),
        ("tokenizer.ggml.model", "str", "llama"),
        ("tokenizer.ggml.tokens", "str[]", pieces),
        ("tokenizer.ggml.scores", "f32[]", scores),
        ("tokenizer.ggml.token_type", "i32[]", types),
        ("tokenizer.ggml.bos_token_id", "u32", BOS),
        ("tokenizer.ggml.eos_token_id", "u32", EOS),
        ("tokenizer.ggml.unknown_token_id", "u32", UNK),
        ("tokenizer.ggml.add_bos_token", "bool", True),
        ("tokenizer.ggml.add_eos_token", "bool", False),
        ("tokenizer.ggml.add_space_prefix", "bool", True),
    ]
    tensors = [("token_embd.weight", sd["embed.weight"])]
    for i in range(c["layers"]):
        p, b = f"blocks.{i}.", f"blk.{i}."
        tensors += [(b + "attn_norm.weight", sd[p + "attn_norm"]), (b + "attn_q.weight", sd[p + "q_proj.weight"]),
                    (b + "attn_k.weight", sd[p + "k_proj.weight"]), (b + "attn_v.weight", sd[p + "v_proj.weight"]),
                    (b + "attn_output.weight", sd[p + "o_proj.weight"]), (b + "ffn_norm.weight", sd[p + "ffn_norm"]),
                    (b + "ffn_gate.weight", sd[p + "gate_proj.weight"]), (b + "ffn_up.weight", sd[p + "up_proj.weight"]),
                    (b + "ffn_down.weight", sd[p + "down_proj.weight"])]
    tensors.append(("output_norm.weight", sd["output_norm"]))
    write_gguf(path, metadata, tensors)


def export_adapter(model, directory, rank, alpha, name):
    os.makedirs(directory, exist_ok=True)
    tensors = []
    for module_name, module in model.lora_modules():
        tensors.append((module_name + ".lora_A.weight", module.lora_A.detach().numpy()))
        tensors.append((module_name + ".lora_B.weight", module.lora_B.detach().numpy()))
    write_safetensors(os.path.join(directory, "adapter_model.safetensors"), tensors)
    config = {"peft_type": "LORA", "r": rank, "lora_alpha": alpha, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
              "bias": "none", "fan_in_fan_out": False, "use_rslora": False, "use_dora": False, "lora_dropout": 0.0,
              "task_type": "CAUSAL_LM", "base_model_name_or_path": "lamina-demo-fortunes", "lamina_demo_theme": name}
    with open(os.path.join(directory, "adapter_config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="models/demo")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--adapter-steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    torch.set_num_threads(args.threads)
    os.makedirs(os.path.join(args.out, "adapters"), exist_ok=True)
    os.makedirs(os.path.join(args.out, "reference"), exist_ok=True)

    quotes = read_fortunes(categories())
    random.Random(args.seed).shuffle(quotes)
    held_out = len(quotes) // 20
    validation_quotes, training_quotes = quotes[:held_out], quotes[held_out:]
    print(f"{len(quotes)} quotations from {len(categories())} files; {held_out} held out", flush=True)
    pieces, scores, types = train_vocabulary(training_quotes, CONFIG["vocab"])
    assert len(pieces) == CONFIG["vocab"], len(pieces)
    encoder = Encoder(pieces, scores)
    training = encode_quotes(encoder, training_quotes)
    validation = encode_quotes(encoder, validation_quotes)
    print(f"vocabulary {len(pieces)}; {len(training)} training tokens, {len(validation)} validation tokens", flush=True)

    model = Model(CONFIG)
    train(model, list(model.parameters()), training, args.steps, 3e-3, CONFIG["context"], args.seed, "base", validation)
    base_validation = evaluate(model, validation, CONFIG["context"])
    model_path = os.path.join(args.out, "fortunes-demo.gguf")
    export_model(model, pieces, scores, types, model_path)
    base_state = {k: v.clone() for k, v in model.state_dict().items()}

    summary = {"config": CONFIG, "base_validation_loss": base_validation, "adapters": {}}
    rank, alpha = 8, 16
    adapter_models = {}
    for index, (name, files) in enumerate(ADAPTERS.items()):
        themed = read_fortunes(files)
        random.Random(args.seed + 1).shuffle(themed)
        held = max(1, len(themed) // 20)
        themed_validation = encode_quotes(encoder, themed[:held])
        themed_training = encode_quotes(encoder, themed[held:])
        tuned = Model(CONFIG)
        tuned.load_state_dict(base_state)
        for p in tuned.parameters():
            p.requires_grad_(False)
        torch.manual_seed(args.seed + 10 + index)
        tuned.add_lora(rank, alpha)
        lora_parameters = [p for n, p in tuned.named_parameters() if "lora_" in n]
        before = evaluate(tuned, themed_validation, CONFIG["context"], 10)
        train(tuned, lora_parameters, themed_training, args.adapter_steps, 2e-3, CONFIG["context"], args.seed + 20 + index, name)
        after = evaluate(tuned, themed_validation, CONFIG["context"], 10)
        summary["adapters"][name] = {"files": files, "validation_loss_base": before, "validation_loss_adapter": after}
        print(f"adapter {name}: themed validation loss {before:.3f} -> {after:.3f}", flush=True)
        export_adapter(tuned, os.path.join(args.out, "adapters", name), rank, alpha, name)
        adapter_models[name] = tuned

    # Reference logits from this PyTorch model, for the base and two adapter stacks.
    cases = [("base", "A computer", []), ("computers", "A computer", [("computers", 1.0)]),
             ("startrek-love", "Captain, the", [("startrek", 0.8), ("love", -0.5)])]
    for case, prompt, stack in cases:
        tokens = torch.tensor([encoder.encode(prompt)])
        logits = stacked_logits(base_state, adapter_models, stack, tokens)[0]
        reference = {"model": "fortunes-demo.gguf", "text": prompt, "prompt": tokens[0].tolist(),
                     "adapters": [{"peft": f"adapters/{name}", "scale": scale} for name, scale in stack],
                     "logits": f"reference/{case}.logits.f32",
                     "logits_layout": "little-endian int32 n_vocab, then float32[len(prompt)][n_vocab]",
                     "produced_by": "tools/train_demo.py (PyTorch, float32)"}
        with open(os.path.join(args.out, "reference", case + ".json"), "w") as f:
            json.dump(reference, f, indent=1)
            f.write("\n")
        with open(os.path.join(args.out, "reference", case + ".logits.f32"), "wb") as f:
            f.write(struct.pack("<i", CONFIG["vocab"]) + logits.numpy().astype(np.float32).tobytes())

    with open(os.path.join(args.out, "training.json"), "w") as f:
        json.dump(summary, f, indent=1)
        f.write("\n")
    sums = []
    for folder, _, names in sorted(os.walk(args.out)):
        for name in sorted(names):
            if name == "SHA256SUMS":
                continue
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                sums.append(f"{hashlib.sha256(f.read()).hexdigest()}  {os.path.relpath(path, args.out)}")
    with open(os.path.join(args.out, "SHA256SUMS"), "w") as f:
        f.write("\n".join(sums) + "\n")
    print(json.dumps(summary, indent=1))


def stacked_logits(base_state, adapter_models, stack, tokens):
    """Logits of the base with every (adapter, scale) of `stack` applied: one model whose
    projections add each adapter's scale * scaling * B A x."""
    model = Model(CONFIG)
    model.load_state_dict(base_state)
    sources = [(adapter_models[name], scale) for name, scale in stack]
    for i, block in enumerate(model.blocks):
        for projection in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
            base = getattr(block, projection)
            loras = [(getattr(source.blocks[i], projection), scale) for source, scale in sources]

            def forward(x, base=base, loras=loras):
                y = base(x)
                for lora, scale in loras:
                    y = y + scale * lora.scaling * (x @ lora.lora_A.t() @ lora.lora_B.t())
                return y

            setattr(block, projection, _Function(forward))
    with torch.no_grad():
        return model(tokens)


class _Function(nn.Module):
    def __init__(self, function):
        super().__init__()
        self.function = function

    def forward(self, x):
        return self.function(x)


if __name__ == "__main__":
    main()
