"""GPTCache's decision on labelled pairs, run inside benchmarks/.venv-gptcache (never thrifty's venv).

Called by benchmarks/cache_quality.py as
    .venv-gptcache/bin/python cache_gptcache_run.py CASES.json VECTORS.npy OUT.json

GPTCache's documented similar-search setup (sqlite + faiss + SearchDistanceEvaluation,
default Config: similarity_threshold=0.8, default pre-processing ``last_content``),
with one change: its default ONNX embedding model would be downloaded from a hub at
run time, so ``embedding_func`` returns the same all-MiniLM-L6-v2 vectors thrifty
uses (computed by the caller, looked up here by text). Per pair: put the cached side,
get the query side, record hit or miss, then delete the entry so each pair is judged alone.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from gptcache import Cache, Config
from gptcache.adapter.api import get, put
from gptcache.manager import CacheBase, VectorBase, get_data_manager
from gptcache.processor.pre import last_content
from gptcache.similarity_evaluation import SearchDistanceEvaluation


def main() -> None:
    cases_path, vectors_path, out_path = sys.argv[1:4]
    cases = json.loads(Path(cases_path).read_text(encoding="utf-8"))
    vectors = np.load(vectors_path)
    row = {text: i for i, text in enumerate(cases["texts"])}

    def embed(text: str, **_: object) -> np.ndarray:
        return vectors[row[text]]

    def pre(data: dict, **kw: object) -> str:
        # GPTCache's default pre-processing: the last message's content only.
        return str(last_content(data, **kw))

    hits = []
    # On tmpfs where there is one: GPTCache commits every put, and disk syncs would dominate.
    tmp = tempfile.mkdtemp(prefix="gptcache-bench-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    atexit.register(shutil.rmtree, tmp, True)  # registered first, so it runs after GPTCache's own flush
    cache = Cache()
    manager = get_data_manager(
        CacheBase("sqlite", sql_url=f"sqlite:///{tmp}/cache.db"),
        VectorBase("faiss", dimension=vectors.shape[1], index_path=f"{tmp}/faiss.index"),
    )
    cache.init(
        pre_embedding_func=pre,
        embedding_func=embed,
        data_manager=manager,
        similarity_evaluation=SearchDistanceEvaluation(),
        config=Config(),
    )
    for case in cases["pairs"]:
        put(None, "cached answer", cache_obj=cache, messages=case["cached"])
        hits.append(get(None, cache_obj=cache, messages=case["query"]) is not None)
        # Empty the cache again, so each pair is judged alone.
        ids = manager.s.get_ids(deleted=False)
        manager.s.mark_deleted(ids)
        manager.s.clear_deleted_data()
        manager.v.delete(ids)
    Path(out_path).write_text(json.dumps({"hits": hits}), encoding="utf-8")


if __name__ == "__main__":
    main()
