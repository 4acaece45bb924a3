#!/usr/bin/env python3
"""An independent Llama-family forward pass, as Hugging Face's modeling_llama.py defines it, in plain Python.

Standard library only (no torch): reads config.json (model_type llama or qwen2) and model.safetensors with
LlamaForCausalLM's tensor names, then runs the forward pass -- RMSNorm (x / sqrt(mean(x^2) + eps) * weight),
rotary embeddings with the rotate-half convention (and rope_scaling of type llama3), grouped-query attention
(key/value head h // (heads / kv_heads) serves query head h, as repeat_kv does), q/k/v biases when
attention_bias is set or the model is qwen2, the SwiGLU MLP, and lm_head or the tied embedding -- and prints
the logits of the last position as JSON. The C# test compares them with ChatForge's Llama.

usage: llama_reference.py MODEL_DIR TOKEN_ID [TOKEN_ID ...]
"""
import json, math, sys
import safetensors_f32

def load_safetensors(path):  # 2-D tensors as lists of rows
    return {name: [flat[r * shape[1]:(r + 1) * shape[1]] for r in range(shape[0])] if len(shape) == 2 else flat
            for name, (shape, flat) in safetensors_f32.read(path).items()}

def linear(x, w, b=None):  # nn.Linear: x @ w.T + b, w is [out, in]
    return [[sum(xi * wi for xi, wi in zip(row, wr)) + (b[j] if b else 0.0) for j, wr in enumerate(w)] for row in x]

def rms_norm(x, w, eps):
    return [[v / math.sqrt(sum(u * u for u in row) / len(row) + eps) * w[i] for i, v in enumerate(row)] for row in x]

def inv_freq(cfg, d):
    inv = [1.0 / cfg.get("rope_theta", 10000.0) ** (2 * i / d) for i in range(d // 2)]
    s = cfg.get("rope_scaling")
    if not s:
        return inv
    assert s.get("rope_type", s.get("type")) == "llama3"
    old = s["original_max_position_embeddings"]
    low, high = old / s["low_freq_factor"], old / s["high_freq_factor"]
    out = []
    for f in inv:
        wavelen = 2 * math.pi / f
        if wavelen < high:
            out.append(f)
        elif wavelen > low:
            out.append(f / s["factor"])
        else:
            smooth = (old / wavelen - s["low_freq_factor"]) / (s["high_freq_factor"] - s["low_freq_factor"])
            out.append((1 - smooth) * f / s["factor"] + smooth * f)
    return out

def rope(v, pos, inv):  # v * cos + rotate_half(v) * sin, emb = cat(freqs, freqs)
    half = len(v) // 2
    ang = [pos * f for f in inv] * 2
    rot = [-x for x in v[half:]] + v[:half]
    return [v[i] * math.cos(ang[i]) + rot[i] * math.sin(ang[i]) for i in range(len(v))]

def main():
    model_dir, ids = sys.argv[1], [int(a) for a in sys.argv[2:]]
    cfg = json.load(open(model_dir + "/config.json"))
    assert cfg["model_type"] in ("llama", "qwen2"), cfg["model_type"]
    t = load_safetensors(model_dir + "/model.safetensors")
    c, nh = cfg["hidden_size"], cfg["num_attention_heads"]
    kvh = cfg.get("num_key_value_heads", nh)
    d, eps = c // nh, cfg["rms_norm_eps"]
    bias = cfg.get("attention_bias", cfg["model_type"] == "qwen2")
    inv = inv_freq(cfg, d)
    emb = t["model.embed_tokens.weight"]
    x = [list(emb[tok]) for tok in ids]
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        a = rms_norm(x, t[p + "input_layernorm.weight"], eps)
        B = lambda n: t[p + f"self_attn.{n}.bias"] if bias else None
        q = linear(a, t[p + "self_attn.q_proj.weight"], B("q_proj"))
        k = linear(a, t[p + "self_attn.k_proj.weight"], B("k_proj"))
        v = linear(a, t[p + "self_attn.v_proj.weight"], B("v_proj"))
        y = [[0.0] * (nh * d) for _ in ids]
        for h in range(nh):
            g = h // (nh // kvh)  # repeat_kv
            qs = [rope(r[h * d:(h + 1) * d], i, inv) for i, r in enumerate(q)]
            ks = [rope(r[g * d:(g + 1) * d], i, inv) for i, r in enumerate(k)]
            vs = [r[g * d:(g + 1) * d] for r in v]
            for i in range(len(ids)):
                s = [sum(qs[i][e] * ks[j][e] for e in range(d)) / math.sqrt(d) for j in range(i + 1)]  # causal
                m = max(s)
                w = [math.exp(z - m) for z in s]
                z = sum(w)
                for e in range(d):
                    y[i][h * d + e] = sum(w[j] / z * vs[j][e] for j in range(i + 1))
        o = linear(y, t[p + "self_attn.o_proj.weight"], t[p + "self_attn.o_proj.bias"] if bias and cfg["model_type"] == "llama" else None)  # LlamaAttention: o_proj too; Qwen2: never
        x = [[x[i][j] + o[i][j] for j in range(c)] for i in range(len(ids))]
        a = rms_norm(x, t[p + "post_attention_layernorm.weight"], eps)
        gate, up = linear(a, t[p + "mlp.gate_proj.weight"]), linear(a, t[p + "mlp.up_proj.weight"])
        act = [[gv / (1 + math.exp(-gv)) * uv for gv, uv in zip(gr, ur)] for gr, ur in zip(gate, up)]  # silu(gate) * up
        o = linear(act, t[p + "mlp.down_proj.weight"])
        x = [[x[i][j] + o[i][j] for j in range(c)] for i in range(len(ids))]
    last = rms_norm(x, t["model.norm.weight"], eps)[-1]
    head = emb if cfg.get("tie_word_embeddings", False) else t["lm_head.weight"]
    print(json.dumps([sum(a * b for a, b in zip(last, row)) for row in head]))

if __name__ == "__main__":
    main()
