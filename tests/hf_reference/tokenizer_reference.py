#!/usr/bin/env python3
"""An independent reading of a Hugging Face tokenizer.json (byte-level BPE), the way the `tokenizers` library runs it.

Standard library only (no `tokenizers`, no `regex`): Python's `re` has no \\p{L}, so the pre-tokenizer patterns that
GPT-2, Qwen2 and Llama 3 use are hand-written matchers over code points with `unicodedata` categories, following the
regex engine's leftmost-first alternation and greedy backtracking. The pipeline is tokenizers' own:

  1. added tokens with normalized=false are split out of the raw text (leftmost match, longest at a tie);
  2. the rest is normalized (NFC, or nothing), then added tokens with normalized=true are split out;
  3. pre-tokenizers in sequence: Split(pattern, Isolated), Digits(individual_digits), ByteLevel (GPT-2's pattern when
     use_regex) -- every match and every stretch between matches is a piece;
  4. each piece's UTF-8 bytes in GPT-2's byte alphabet; with ignore_merges a piece found whole in the vocabulary is
     one token; else BPE: repeatedly merge the adjacent pair of lowest merge rank (leftmost on a tie).

Decoding is the ByteLevel decoder: token strings to bytes (an added token whose characters are not all in the byte
alphabet gives its own UTF-8), then UTF-8 with replacement characters.

`chat` renders a conversation as the checkpoint's Jinja chat_template does for the templates of Qwen2/2.5 and SmolLM2
(ChatML with a default system message) and Llama 3 / 3.1 / 3.2, then encodes the text.

usage: tokenizer_reference.py encode|decode|chat DIR, or nfc   (JSON list on stdin, JSON list on stdout)
  encode: ["text", ...] -> [[id, ...], ...]
  decode: [[id, ...], ...] -> ["text", ...]
  chat:   [{"messages": [{"role", "content"}], "add_generation_prompt": bool}, ...] -> [{"text", "ids"}, ...]
  nfc:    ["text", ...] -> [unicodedata.normalize("NFC", text), ...]
"""
import json, re, sys, unicodedata

GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
QWEN2 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
LLAMA3 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"


# ---- character classes (over code points) ----------------------------------------------------------------------

def is_letter(c):
    return unicodedata.category(c)[0] == "L"


def is_number(c):
    return unicodedata.category(c)[0] == "N"


def is_space(c):
    # Unicode White_Space, what \s means to onig and to .NET: the ASCII controls, NEL, and the Z categories.
    return c in "\t\n\x0b\x0c\r\x85" or unicodedata.category(c) in ("Zs", "Zl", "Zp")


def is_other(c):
    return not (is_space(c) or is_letter(c) or is_number(c))


def run(s, i, pred):
    """End of the longest run of pred from i."""
    while i < len(s) and pred(s[i]):
        i += 1
    return i


# ---- the alternatives, each: (s, i) -> end or None ----------------------------------------------------------------

def contractions(ignore_case):
    words = ["s", "t", "re", "ve", "m", "ll", "d"]

    def alt(s, i):
        if i >= len(s) or s[i] != "'":
            return None
        for w in words:
            tail = s[i + 1:i + 1 + len(w)]
            if len(tail) == len(w) and all(a == b or (ignore_case and a.casefold() == b) for a, b in zip(tail, w)):
                return i + 1 + len(w)
        return None
    return alt


def opt_space_then(pred):
    """` ?X+`: the optional space is tried first, then without it."""
    def alt(s, i):
        j = i + 1 if i < len(s) and s[i] == " " else i
        e = run(s, j, pred)
        if e > j:
            return e
        e = run(s, i, pred)
        return e if e > i else None
    return alt


def prefix_then_letters(s, i):
    """`[^\\r\\n\\p{L}\\p{N}]?\\p{L}+`"""
    if i < len(s) and s[i] not in "\r\n" and not is_letter(s[i]) and not is_number(s[i]):
        e = run(s, i + 1, is_letter)
        if e > i + 1:
            return e
    e = run(s, i, is_letter)
    return e if e > i else None


def numbers(limit):
    """`\\p{N}` (limit 1) or `\\p{N}{1,3}` (limit 3)."""
    def alt(s, i):
        e = i
        while e < len(s) and e - i < limit and is_number(s[e]):
            e += 1
        return e if e > i else None
    return alt


def other_then_newlines(s, i):
    """` ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*`"""
    e = opt_space_then(is_other)(s, i)
    return None if e is None else run(s, e, lambda c: c in "\r\n")


def spaces_then_newlines(s, i):
    """`\\s*[\\r\\n]+`: the greedy \\s* gives back to the last newline of the run."""
    k = run(s, i, is_space)
    last = max((m for m in range(i, k) if s[m] in "\r\n"), default=None)
    return None if last is None else last + 1


def spaces_not_before_text(s, i):
    """`\\s+(?!\\S)`"""
    k = run(s, i, is_space)
    if k == i:
        return None
    if k == len(s):
        return k
    return k - 1 if k - 1 > i else None


def spaces(s, i):
    e = run(s, i, is_space)
    return e if e > i else None


PATTERNS = {
    GPT2: [contractions(False), opt_space_then(is_letter), opt_space_then(is_number), opt_space_then(is_other),
           spaces_not_before_text, spaces],
    QWEN2: [contractions(True), prefix_then_letters, numbers(1), other_then_newlines, spaces_then_newlines,
            spaces_not_before_text, spaces],
    LLAMA3: [contractions(True), prefix_then_letters, numbers(3), other_then_newlines, spaces_then_newlines,
             spaces_not_before_text, spaces],
}


def split_isolated(piece, alts):
    """Every match (leftmost-first alternation, scanning left to right) and every stretch between matches."""
    out, i, gap = [], 0, 0
    while i < len(piece):
        end = next((e for e in (alt(piece, i) for alt in alts) if e is not None and e > i), None)
        if end is None:
            i += 1
            continue
        if gap < i:
            out.append(piece[gap:i])
        out.append(piece[i:end])
        i = gap = end
    if gap < len(piece):
        out.append(piece[gap:])
    return out


def split_digits(piece, individual):
    out, cur, cur_num = [], "", False
    for c in piece:
        num = is_number(c)
        if num and individual:
            if cur:
                out.append(cur)
            out.append(c)
            cur, cur_num = "", False
            continue
        if cur and num != cur_num:
            out.append(cur)
            cur = ""
        cur += c
        cur_num = num
    if cur:
        out.append(cur)
    return out


# ---- GPT-2's byte alphabet --------------------------------------------------------------------------------------

def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


BYTE_TO_CHAR = bytes_to_unicode()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}


# ---- the tokenizer ------------------------------------------------------------------------------------------------

class Tokenizer:
    def __init__(self, directory):
        tj = json.load(open(directory + "/tokenizer.json", encoding="utf-8"))
        try:
            self.config = json.load(open(directory + "/tokenizer_config.json", encoding="utf-8"))
        except FileNotFoundError:
            self.config = {}
        model = tj["model"]
        assert model["type"] == "BPE"
        self.vocab = model["vocab"]
        self.ranks = {}
        for rank, m in enumerate(model["merges"]):
            a, b = m.split(" ") if isinstance(m, str) else m
            self.ranks[(a, b)] = rank
        self.ignore_merges = model.get("ignore_merges", False)
        self.added = {t["content"]: t for t in tj.get("added_tokens") or []}
        self.added_by_id = {t["id"]: t for t in tj.get("added_tokens") or []}
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        norm = tj.get("normalizer")
        assert norm is None or norm["type"] == "NFC", norm
        self.nfc = norm is not None
        pre = tj["pre_tokenizer"]
        self.steps = pre["pretokenizers"] if pre["type"] == "Sequence" else [pre]

    def split_added(self, text, normalized):
        tokens = sorted((c for c, t in self.added.items() if t.get("normalized", False) == normalized), key=len, reverse=True)
        out, start, i = [], 0, 0
        while i < len(text):
            hit = next((t for t in tokens if text.startswith(t, i)), None)
            if hit is None:
                i += 1
                continue
            if start < i:
                out.append((text[start:i], None))
            out.append((hit, self.added[hit]["id"]))
            i = start = i + len(hit)
        if start < len(text):
            out.append((text[start:], None))
        return out

    def pre_tokenize(self, text):
        pieces = [text]
        for step in self.steps:
            t = step["type"]
            if t == "Split":
                alts = PATTERNS[step["pattern"]["Regex"]]
                pieces = [q for p in pieces for q in split_isolated(p, alts)]
            elif t == "Digits":
                pieces = [q for p in pieces for q in split_digits(p, step.get("individual_digits", False))]
            elif t == "ByteLevel":
                assert not step.get("add_prefix_space", False)
                if step.get("use_regex", True):
                    pieces = [q for p in pieces for q in split_isolated(p, PATTERNS[GPT2])]
            else:
                raise SystemExit("unsupported pre-tokenizer " + t)
        return pieces

    def bpe(self, word):
        if self.ignore_merges and word in self.vocab:
            return [self.vocab[word]]
        symbols = list(word)
        while len(symbols) > 1:
            best = None
            for i in range(len(symbols) - 1):
                r = self.ranks.get((symbols[i], symbols[i + 1]))
                if r is not None and (best is None or r < best[0]):
                    best = (r, i)
            if best is None:
                break
            i = best[1]
            symbols[i:i + 2] = [symbols[i] + symbols[i + 1]]
        return [self.vocab[s] for s in symbols]

    def encode(self, text):
        ids = []
        for raw, rid in self.split_added(text, normalized=False):
            if rid is not None:
                ids.append(rid)
                continue
            norm = unicodedata.normalize("NFC", raw) if self.nfc else raw
            for piece, nid in self.split_added(norm, normalized=True):
                if nid is not None:
                    ids.append(nid)
                    continue
                for word in self.pre_tokenize(piece):
                    ids.extend(self.bpe("".join(BYTE_TO_CHAR[b] for b in word.encode("utf-8"))))
        return ids

    def decode(self, ids):
        out = bytearray()
        for i in ids:
            if i in self.added_by_id:
                content = self.added_by_id[i]["content"]
                if all(c in CHAR_TO_BYTE for c in content):
                    out.extend(CHAR_TO_BYTE[c] for c in content)
                else:
                    out.extend(content.encode("utf-8"))
            else:
                out.extend(CHAR_TO_BYTE[c] for c in self.id_to_token[i])
        return out.decode("utf-8", errors="replace")

    # ---- chat templates, rendered as their Jinja source does -------------------------------------------------------

    def token(self, key):
        v = self.config.get(key)
        return v["content"] if isinstance(v, dict) else v

    def render(self, messages, add_generation_prompt):
        template = self.config["chat_template"]
        if "<|im_start|>" in template:
            out = ""
            m = re.search(r"'<\|im_start\|>system\\n([^']*?)<\|im_end\|>\\n'", template)
            if m and (not messages or messages[0]["role"] != "system"):
                out += "<|im_start|>system\n" + m.group(1) + "<|im_end|>\n"
            for msg in messages:
                out += "<|im_start|>" + msg["role"] + "\n" + msg["content"] + "<|im_end|>\n"
            if add_generation_prompt:
                out += "<|im_start|>assistant\n"
            return out
        if "<|start_header_id|>" in template:
            out = self.token("bos_token") if "bos_token" in template else ""
            if "Cutting Knowledge Date" in template:
                date = re.search(r'set date_string = "([^"]*)"', template).group(1)
                system = ""
                if messages and messages[0]["role"] == "system":
                    system, messages = messages[0]["content"].strip(), messages[1:]
                out += ("<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
                        "Today Date: " + date + "\n\n" + system + "<|eot_id|>")
            for msg in messages:
                out += "<|start_header_id|>" + msg["role"] + "<|end_header_id|>\n\n" + msg["content"].strip() + "<|eot_id|>"
            if add_generation_prompt:
                out += "<|start_header_id|>assistant<|end_header_id|>\n\n"
            return out
        raise SystemExit("unknown chat template")


def main():
    command = sys.argv[1]
    data = json.loads(sys.stdin.read())
    if command == "nfc":
        sys.stdout.write(json.dumps([unicodedata.normalize("NFC", t) for t in data]))
        return
    tok = Tokenizer(sys.argv[2])
    if command == "encode":
        result = [tok.encode(t) for t in data]
    elif command == "decode":
        result = [tok.decode(ids) for ids in data]
    elif command == "chat":
        result = []
        for conv in data:
            text = tok.render(conv["messages"], conv.get("add_generation_prompt", False))
            result.append({"text": text, "ids": tok.encode(text)})
    else:
        raise SystemExit("usage: tokenizer_reference.py encode|decode|chat DIR, or nfc")
    sys.stdout.write(json.dumps(result))


if __name__ == "__main__":
    main()
