#!/usr/bin/env python3
"""An independent reading of a ChatForge checkpoint, the way Hugging Face's GPT2LMHeadModel reads it.

Standard library only (no torch here): parses config.json and model.safetensors, then runs GPT-2's
forward pass as transformers' modeling_gpt2.py defines it -- Conv1D layers computing x @ W + b with W
stored [in, out], pre-LayerNorm blocks, gelu_new, learned positions, lm_head tied to wte -- and prints
the logits of the last position as JSON. The C# test compares them with ChatForge's own logits.

usage: gpt2_reference.py MODEL_DIR TOKEN_ID [TOKEN_ID ...]
"""
import json, math, sys
import safetensors_f32

def load_safetensors(path):
    return safetensors_f32.read(path)

def matrix(t):
    shape, flat = t
    rows, cols = shape
    return [flat[r * cols:(r + 1) * cols] for r in range(rows)]

def conv1d(x, w, b):  # transformers' Conv1D: x @ w + b, w is [in, out]
    out = []
    for row in x:
        y = list(b)
        for i, xi in enumerate(row):
            wi = w[i]
            for j in range(len(y)):
                y[j] += xi * wi[j]
        out.append(y)
    return out

def layer_norm(x, g, b, eps):
    out = []
    for row in x:
        mu = sum(row) / len(row)
        var = sum((v - mu) ** 2 for v in row) / len(row)
        out.append([(v - mu) / math.sqrt(var + eps) * g[i] + b[i] for i, v in enumerate(row)])
    return out

def gelu_new(v):
    return 0.5 * v * (1.0 + math.tanh(math.sqrt(2.0 / math.pi) * (v + 0.044715 * v ** 3)))

def main():
    model_dir, ids = sys.argv[1], [int(a) for a in sys.argv[2:]]
    cfg = json.load(open(model_dir + "/config.json"))
    assert cfg["model_type"] == "gpt2" and cfg["activation_function"] == "gelu_new"
    t = load_safetensors(model_dir + "/model.safetensors")
    p = "transformer." if "transformer.wte.weight" in t else ""
    c, nh, eps = cfg["n_embd"], cfg["n_head"], cfg["layer_norm_epsilon"]
    hs = c // nh
    wte, wpe = matrix(t[p + "wte.weight"]), matrix(t[p + "wpe.weight"])
    x = [[wte[tok][i] + wpe[pos][i] for i in range(c)] for pos, tok in enumerate(ids)]
    for l in range(cfg["n_layer"]):
        h = f"{p}h.{l}."
        a = layer_norm(x, t[h + "ln_1.weight"][1], t[h + "ln_1.bias"][1], eps)
        qkv = conv1d(a, matrix(t[h + "attn.c_attn.weight"]), t[h + "attn.c_attn.bias"][1])
        y = [[0.0] * c for _ in ids]
        for head in range(nh):
            q = [r[head * hs:(head + 1) * hs] for r in qkv]
            k = [r[c + head * hs:c + (head + 1) * hs] for r in qkv]
            v = [r[2 * c + head * hs:2 * c + (head + 1) * hs] for r in qkv]
            for i in range(len(ids)):
                s = [sum(q[i][d] * k[j][d] for d in range(hs)) / math.sqrt(hs) for j in range(i + 1)]  # causal
                m = max(s)
                e = [math.exp(z - m) for z in s]
                z = sum(e)
                for d in range(hs):
                    y[i][head * hs + d] = sum(e[j] / z * v[j][d] for j in range(i + 1))
        o = conv1d(y, matrix(t[h + "attn.c_proj.weight"]), t[h + "attn.c_proj.bias"][1])
        x = [[x[i][j] + o[i][j] for j in range(c)] for i in range(len(ids))]
        a = layer_norm(x, t[h + "ln_2.weight"][1], t[h + "ln_2.bias"][1], eps)
        f = conv1d(a, matrix(t[h + "mlp.c_fc.weight"]), t[h + "mlp.c_fc.bias"][1])
        f = [[gelu_new(v) for v in r] for r in f]
        o = conv1d(f, matrix(t[h + "mlp.c_proj.weight"]), t[h + "mlp.c_proj.bias"][1])
        x = [[x[i][j] + o[i][j] for j in range(c)] for i in range(len(ids))]
    x = layer_norm(x, t[p + "ln_f.weight"][1], t[p + "ln_f.bias"][1], eps)
    last = x[-1]
    logits = [sum(last[i] * row[i] for i in range(c)) for row in wte]  # lm_head tied to wte
    print(json.dumps(logits))

if __name__ == "__main__":
    main()
