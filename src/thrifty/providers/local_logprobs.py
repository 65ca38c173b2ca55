"""Token log-probabilities of a finished local completion, computed with numpy.

llama-cpp-python can return logprobs itself, but it sorts the whole
vocabulary in Python for every token (about 3x slower decoding for SmolLM2).
With ``logits_all`` the model keeps every position's logits, so after a plain
completion the log-softmax of the rows that predicted each generated token
gives the same numbers at a fraction of the cost.
"""

from __future__ import annotations

from typing import Any


def completion_ids(llama: Any, prompt_tokens: int, completion_tokens: int, text: str) -> list[int]:
    """The generated token ids; the last one is recovered from the text when it was never evaluated."""
    prompt = [int(t) for t in llama.input_ids[:prompt_tokens]]
    ids = [int(t) for t in llama.input_ids[prompt_tokens : int(llama.n_tokens)]][:completion_tokens]
    if len(ids) < completion_tokens:
        known = llama.detokenize(ids, prev_tokens=prompt)
        generated = text.encode("utf-8")
        if generated.startswith(known) and len(generated) > len(known):
            rest = llama.tokenize(generated[len(known) :], add_bos=False, special=True)
            if len(rest) == 1:
                ids.append(int(rest[0]))
    return ids


def logprobs(llama: Any, prompt_tokens: int, ids: list[int], top: int) -> dict[str, Any]:
    """OpenAI chat ``logprobs`` for ``ids`` generated after ``prompt_tokens`` prompt tokens."""
    import numpy as np

    rows = np.asarray(llama.scores[prompt_tokens - 1 : prompt_tokens - 1 + len(ids)], dtype=np.float32)
    peak = rows.max(axis=1, keepdims=True)
    logp = rows - (np.log(np.exp(rows - peak).sum(axis=1, keepdims=True)) + peak)
    content = []
    for i, token in enumerate(ids[: len(rows)]):
        entry = _entry(llama, token, float(logp[i, token]))
        best: list[dict[str, Any]] = []
        if top > 0:
            candidates = np.argpartition(-logp[i], top)[:top]
            ordered = candidates[np.argsort(-logp[i][candidates])]
            best = [_entry(llama, int(t), float(logp[i, t])) for t in ordered]
        content.append({**entry, "top_logprobs": best})
    return {"content": content, "refusal": None}


def _entry(llama: Any, token: int, logprob: float) -> dict[str, Any]:
    piece: bytes = llama.detokenize([token])
    return {"token": piece.decode("utf-8", errors="ignore"), "logprob": logprob, "bytes": list(piece)}
