"""How often does the semantic cache hit, and how often is a hit wrong? thrifty vs GPTCache.

    .venv/bin/python benchmarks/cache_quality.py [--qqp-pairs 3000 | --full]

Data: QQP duplicate pairs (../shared/data/cache, labels noisy) and fow-cache's labelled
pairs: 600 single-turn (300 hard negatives: negation, entity swap, number/date, scope)
and 240 multi-turn conversation pairs (context swaps, detail swaps, intent flips vs
rewordings). Protocol, per pair: cache the first side, ask the second, record hit/miss.

* thrifty: cosine >= threshold, then the verifier, inside the partition of the history
  before the last turn (multi-turn pairs only match when that history is identical).
  The defaults are also run end to end through the real CacheLayer (one namespace per pair).
* GPTCache 0.1.44 (own venv, benchmarks/.venv-gptcache): its similar-search setup with
  default Config (sqlite + faiss + SearchDistanceEvaluation, threshold 0.8, last message
  only); embeddings = the same MiniLM vectors (its default ONNX model is a hub download).
  Its rule equals cosine >= 0.6 on unit vectors, so the sweep column "cosine only" is
  GPTCache's logic at other thresholds.

Writes the tables into docs/bench/cache.md (between the quality markers) and
docs/img/cache_quality.png.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import glob
import json
import os
import platform
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from thrifty.cache.keys import partition_key  # noqa: E402
from thrifty.cache.settings import DEFAULT_THRESHOLD  # noqa: E402
from thrifty.cache.verify import verify  # noqa: E402
from thrifty.types import ChatRequest  # noqa: E402

QQP = next(
    (
        p
        for p in (
            ROOT.parent / "shared" / "data" / "cache" / "qqp_pairs_meancache_test.csv",
            Path("/work/shared/data/cache/qqp_pairs_meancache_test.csv"),
        )
        if p.exists()
    ),
    ROOT.parent / "shared" / "data" / "cache" / "qqp_pairs_meancache_test.csv",
)
GPT_VENV = ROOT / "benchmarks" / ".venv-gptcache"
OUT = ROOT / "benchmarks" / "out"
DOC = ROOT / "docs" / "bench" / "cache.md"
THRESHOLDS = [0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]


@dataclass
class Pair:
    dataset: str
    category: str
    cached: list[dict[str, str]]
    query: list[dict[str, str]]
    same: bool


def ensure_gptcache() -> Path:
    python = GPT_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {GPT_VENV} (GPTCache, faiss-cpu, fow-cache; benchmark-only)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(GPT_VENV)], check=True)
    check = subprocess.run([str(python), "-c", "import gptcache, faiss, fow_cache"], capture_output=True)
    if check.returncode:
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "gptcache==0.1.44",
                "faiss-cpu",
                "numpy",
                "sqlalchemy",
            ],
            check=True,
        )
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--no-deps", "fow-cache==0.1.0"], check=True
        )
    return python


def fow_data(python: Path) -> Path:
    out = subprocess.run(
        [str(python), "-c", "import fow_cache, os; print(os.path.dirname(fow_cache.__file__))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip()) / "data"


def load_pairs(data: Path, qqp_pairs: int | None) -> list[Pair]:
    pairs: list[Pair] = []
    for line in (data / "pairs.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        pairs.append(
            Pair(
                "fow single-turn",
                row["category"],
                [{"role": "user", "content": row["a"]}],
                [{"role": "user", "content": row["b"]}],
                bool(row["same_answer"]),
            )
        )
    for path in sorted(glob.glob(str(data / "conv-*" / "*.jsonl"))):
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            pairs.append(Pair("fow multi-turn", row["subtype"], row["a"], row["b"], bool(row["same_answer"])))
    with QQP.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if qqp_pairs is not None and qqp_pairs < len(rows):
        rows = random.Random(0).sample(rows, qqp_pairs)
    for row in rows:
        pairs.append(
            Pair(
                "QQP",
                "duplicate" if row["is_duplicate"] == "1" else "different",
                [{"role": "user", "content": row["question1"]}],
                [{"role": "user", "content": row["question2"]}],
                row["is_duplicate"] == "1",
            )
        )
    return pairs


def embed_all(texts: list[str]) -> np.ndarray:
    """MiniLM vectors for every text; vectors already computed are kept in benchmarks/out."""
    path = OUT / "cache_vectors.npz"
    known: dict[str, np.ndarray] = {}
    if path.exists():
        saved = np.load(path)
        known = dict(zip(saved["texts"].tolist(), saved["vectors"], strict=True))
    missing = [t for t in texts if t not in known]
    if missing:
        from thrifty.embeddings import Embedder

        start = time.perf_counter()
        fresh = Embedder().embed(missing)
        seconds = time.perf_counter() - start
        print(
            f"embedded {len(missing)} texts in {seconds:.1f}s ({len(missing) / seconds:.0f} texts/s)",
            flush=True,
        )
        known.update(zip(missing, fresh, strict=True))
        OUT.mkdir(parents=True, exist_ok=True)
        names = list(known)
        np.savez(path, texts=np.array(names), vectors=np.stack([known[t] for t in names]))
    return np.stack([known[t] for t in texts]).astype(np.float32)


def last_text(messages: list[dict[str, str]]) -> str:
    return messages[-1]["content"]


def thrifty_decisions(pairs: list[Pair], sims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(same partition, verifier passes) per pair."""
    same_part = np.array(
        [
            partition_key(ChatRequest("m", p.cached), "g", "n")
            == partition_key(ChatRequest("m", p.query), "g", "n")
            for p in pairs
        ]
    )
    verified = np.array([verify(last_text(p.query), last_text(p.cached)).ok for p in pairs])
    return same_part, verified


def metrics(hit: np.ndarray, same: np.ndarray) -> dict[str, float]:
    hits = int(hit.sum())
    return {
        "n": len(hit),
        "pos": int(same.sum()),
        "neg": int((~same).sum()),
        "hit_rate": hits / len(hit),
        "recall": float(hit[same].mean()) if same.any() else 0.0,
        "precision": float(same[hit].mean()) if hits else float("nan"),
        "false_hit_rate": float(hit[~same].mean()) if (~same).any() else 0.0,
        "false_hits": int((hit & ~same).sum()),
    }


async def through_layer(pairs: list[Pair], texts: dict[str, int], vectors: np.ndarray) -> np.ndarray:
    """The defaults end to end: CacheLayer + FakeBackend, one namespace per pair."""
    from thrifty.cache.layer import CacheLayer
    from thrifty.cache.settings import CacheSettings, StoreSettings
    from thrifty.cache.store import CacheStore
    from thrifty.testing import FakeBackend

    def embed(batch: Any) -> np.ndarray:
        return vectors[[texts[t] for t in batch]]

    store = CacheStore(StoreSettings(l2_path=None), embed=embed)
    await store.start()
    layer = CacheLayer(FakeBackend("answer"), "bench", CacheSettings(enabled=True, semantic=True), store)
    hits = []
    for i, pair in enumerate(pairs):
        for messages in (pair.cached, pair.query):
            request = ChatRequest(
                "bench",
                [dict(m) for m in messages],
                params={"temperature": 0},
                options={"cache": {"namespace": f"pair{i}"}},
            )
            await layer.complete(request)
            await store.tiers.flush()
        hits.append(request.trace.annotations["cache"] == "hit-semantic")
    await store.stop()
    return np.array(hits)


def run_gptcache(python: Path, pairs: list[Pair], texts: list[str], vectors: np.ndarray) -> np.ndarray:
    OUT.mkdir(parents=True, exist_ok=True)
    cases, vec_path, out = (
        OUT / "gptcache_cases.json",
        OUT / "gptcache_vectors.npy",
        OUT / "gptcache_hits.json",
    )
    cases.write_text(
        json.dumps({"texts": texts, "pairs": [{"cached": p.cached, "query": p.query} for p in pairs]})
    )
    np.save(vec_path, vectors)
    start = time.perf_counter()
    subprocess.run(
        [
            str(python),
            str(ROOT / "benchmarks" / "cache_gptcache_run.py"),
            str(cases),
            str(vec_path),
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    print(f"GPTCache ran {len(pairs)} pairs in {time.perf_counter() - start:.1f}s", flush=True)
    return np.array(json.loads(out.read_text())["hits"])


def fmt(m: dict[str, float]) -> str:
    precision = "-" if m["precision"] != m["precision"] else f"{m['precision']:.3f}"
    return (
        f"{m['hit_rate']:.3f} | {m['recall']:.3f} | {precision} | {m['false_hit_rate']:.3f} "
        f"({m['false_hits']}/{m['neg']})"
    )


def tables(
    pairs: list[Pair],
    sims: np.ndarray,
    part: np.ndarray,
    ver: np.ndarray,
    gpt: np.ndarray,
    layer_hits: np.ndarray,
    layer_idx: np.ndarray,
) -> tuple[list[str], dict[str, Any]]:
    lines: list[str] = []
    curves: dict[str, Any] = {}
    datasets = ["fow single-turn", "fow multi-turn", "QQP"]
    same = np.array([p.same for p in pairs])
    lines += [
        "### At the defaults",
        "",
        f"thrifty: threshold {DEFAULT_THRESHOLD}, verifier on, history partitions. "
        "GPTCache: default Config (threshold 0.8 on its 0..4 distance score = cosine >= 0.6), last message only.",
        "",
        "| data | pairs (same/different) | system | hit rate | recall | precision | false-hit rate (false hits) |",
        "|---|---|---|---|---|---|---|",
    ]
    for ds in datasets:
        idx = np.array([p.dataset == ds for p in pairs])
        ours = (sims >= DEFAULT_THRESHOLD) & ver & part
        n = f"{int(idx.sum())} ({int(same[idx].sum())}/{int((~same[idx]).sum())})"
        lines.append(f"| {ds} | {n} | thrifty | {fmt(metrics(ours[idx], same[idx]))} |")
        lines.append(f"| {ds} | {n} | GPTCache | {fmt(metrics(gpt[idx], same[idx]))} |")
    in_layer = np.isin(np.arange(len(pairs)), layer_idx)
    expected = ((sims >= DEFAULT_THRESHOLD) & ver & part)[in_layer]
    lines += [
        "",
        f"End-to-end check: the real CacheLayer at its defaults made {int(layer_hits.sum())} semantic hits "
        f"on the {len(layer_idx)} fow pairs; the pairwise computation above predicts {int(expected.sum())} "
        f"({int((layer_hits == expected).sum())}/{len(layer_idx)} decisions agree).",
        "",
    ]
    lines += [
        "### By category at the defaults (fow pairs)",
        "",
        "| data | category | label | pairs | thrifty hits | GPTCache hits |",
        "|---|---|---|---|---|---|",
    ]
    ours_all = (sims >= DEFAULT_THRESHOLD) & ver & part
    for ds in ("fow single-turn", "fow multi-turn"):
        ids_ds = [i for i, p in enumerate(pairs) if p.dataset == ds]
        for cat in sorted({pairs[i].category for i in ids_ds}):
            ids = [i for i in ids_ds if pairs[i].category == cat]
            label = "same answer" if pairs[ids[0]].same else "different answer"
            lines.append(
                f"| {ds} | {cat} | {label} | {len(ids)} | {int(ours_all[ids].sum())} | "
                f"{int(gpt[ids].sum())} |"
            )
    lines += [""]
    for ds in datasets:
        idx = np.array([p.dataset == ds for p in pairs])
        lines += [
            f"### By threshold: {ds}",
            "",
            "| threshold | thrifty (verifier + partitions): hit rate / recall / precision / false-hit rate "
            "| cosine only, last message (GPTCache's rule): hit rate / recall / precision / false-hit rate |",
            "|---|---|---|",
        ]
        curves[ds] = []
        for th in THRESHOLDS:
            ours = (sims >= th) & ver & part
            raw = sims >= th
            mo, mr = metrics(ours[idx], same[idx]), metrics(raw[idx], same[idx])
            curves[ds].append((th, mo, mr))
            lines.append(f"| {th} | {fmt(mo).replace(' | ', ' / ')} | {fmt(mr).replace(' | ', ' / ')} |")
        lines.append("")
    return lines, curves


def plot(curves: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 4))
    for ax, (ds, rows) in zip(axes, curves.items(), strict=True):
        ths = [r[0] for r in rows]
        ax.plot(ths, [r[1]["recall"] for r in rows], "o-", color="tab:blue", label="thrifty recall")
        ax.plot(
            ths,
            [r[1]["false_hit_rate"] for r in rows],
            "o--",
            color="tab:red",
            label="thrifty false-hit rate",
        )
        ax.plot(ths, [r[2]["recall"] for r in rows], "s-", color="tab:cyan", label="cosine-only recall")
        ax.plot(
            ths,
            [r[2]["false_hit_rate"] for r in rows],
            "s--",
            color="tab:orange",
            label="cosine-only false-hit rate",
        )
        ax.axvline(DEFAULT_THRESHOLD, color="gray", lw=0.8)
        ax.axvline(0.6, color="gray", lw=0.8, ls=":")
        ax.set_title(ds)
        ax.set_xlabel("cosine threshold (grey: thrifty default; dotted: GPTCache default)")
        ax.set_ylim(-0.02, 1.02)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def write_doc(lines: list[str], header: list[str]) -> None:
    begin, end = "<!-- quality:begin -->", "<!-- quality:end -->"
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else f"# Cache benchmarks\n\n{begin}\n{end}\n"
    if begin not in text:
        text += f"\n{begin}\n{end}\n"
    head, rest = text.split(begin, 1)
    tail = rest.split(end, 1)[1]
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(
        head + begin + "\n" + "\n".join(header + [""] + lines) + "\n" + end + tail, encoding="utf-8"
    )


NONLATIN = ROOT / "benchmarks" / "data" / "nonlatin_traps.jsonl"


def nonlatin_section() -> list[str]:
    """Our non-Latin trap pairs (zh, ru, el, ar, hi): cosine alone vs the verifier, per language."""
    rows = [json.loads(line) for line in NONLATIN.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = sorted({r[k] for r in rows for k in ("cached", "asked")})
    index = {t: i for i, t in enumerate(texts)}
    vectors = embed_all(texts)
    lines = [
        "### Non-Latin trap pairs (`benchmarks/data/nonlatin_traps.jsonl`)",
        "",
        f"Per language: entity, number and negation swaps (different answer) and one trivial variant "
        f"(same answer). Cosine of MiniLM vectors; thrifty = threshold {DEFAULT_THRESHOLD} + verifier.",
        "",
        "| language | traps | traps with cosine >= 0.85 | thrifty false hits | same-answer pairs | thrifty hits |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for lang in dict.fromkeys(r["lang"] for r in rows):
        mine = [r for r in rows if r["lang"] == lang]
        sims = [float(vectors[index[r["cached"]]] @ vectors[index[r["asked"]]]) for r in mine]
        served = [
            s >= DEFAULT_THRESHOLD and verify(r["asked"], r["cached"]).ok
            for r, s in zip(mine, sims, strict=True)
        ]
        traps = [i for i, r in enumerate(mine) if not r["same"]]
        same = [i for i, r in enumerate(mine) if r["same"]]
        lines.append(
            f"| {lang} | {len(traps)} | {sum(sims[i] >= DEFAULT_THRESHOLD for i in traps)} | "
            f"{sum(served[i] for i in traps)} | {len(same)} | {sum(served[i] for i in same)} |"
        )
    return lines


def guard_run(
    sims: np.ndarray,
    ok: np.ndarray,
    same: np.ndarray,
    limit: float,
    share: float,
    use_verifier: bool,
    seed: int = 0,
    warmup: int = 30,
) -> dict[str, float]:
    """A stream of pairs through the error-rate guard; audits judged by the pair's label."""
    from thrifty.cache.guard import GuardSettings, ThresholdGuard

    rng = random.Random(seed)
    guard = ThresholdGuard(
        DEFAULT_THRESHOLD,
        GuardSettings(max_error_rate=limit, audit_share=share, floor=0.6, warmup=warmup),
        rng=random.Random(seed + 1),
    )
    order = list(range(len(sims)))
    rng.shuffle(order)
    served = np.zeros(len(sims), dtype=bool)
    audits = 0
    for i in order:
        if sims[i] < guard.threshold(str(i)) or (use_verifier and not ok[i]):
            continue
        if guard.audit():
            audits += 1
            guard.record(str(i), float(sims[i]), bool(same[i]))
            continue
        served[i] = True
    hits = int(served.sum())
    return {
        "recall": float(served[same].mean()),
        "false_hit_rate": float(served[~same].mean()),
        "error_among_hits": float((~same[served]).mean()) if hits else 0.0,
        "hits": hits,
        "audits": audits,
        "threshold": guard.base,
    }


def guard_section(pairs: list[Pair], sims: np.ndarray, ver: np.ndarray) -> list[str]:
    lines = [
        "### The error-rate guard (`max_error_rate`), simulated on a stream of pairs",
        "",
        "Each pair once, in a random order (seed 0): cache the first side, ask the second. A would-be hit "
        "is audited with probability `audit_share` (the label says whether the answers agree) and then "
        "served fresh; otherwise it is served. Start threshold 0.85, floor 0.6, step 0.01.",
        "",
        "| data | verifier | max_error_rate | audit_share | warm-up audits | recall | false-hit rate | "
        "errors among served hits | audits | final threshold |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in ("QQP", "fow single-turn"):
        idx = np.array([i for i, p in enumerate(pairs) if p.dataset == name])
        if not len(idx):
            continue
        same = np.array([pairs[i].same for i in idx])
        for use_verifier in (True, False):
            for limit, share, warmup in ((0.01, 0.05, 0), (0.01, 0.05, 30), (0.01, 0.2, 30), (0.05, 0.2, 30)):
                r = guard_run(sims[idx], ver[idx], same, limit, share, use_verifier, warmup=warmup)
                lines.append(
                    f"| {name} | {'on' if use_verifier else 'off'} | {limit} | {share} | {warmup} | "
                    f"{r['recall']:.3f} | "
                    f"{r['false_hit_rate']:.3f} | {r['error_among_hits']:.3f} ({r['hits']} hits) | "
                    f"{r['audits']} | {r['threshold']:.2f} |"
                )
    return lines


def new_sections(args: argparse.Namespace, header: list[str]) -> None:
    """The non-Latin traps and the guard, without GPTCache (fow data from --fow-data)."""
    pairs = load_pairs(args.fow_data, None if args.full else args.qqp_pairs)
    pairs = [p for p in pairs if p.dataset != "fow multi-turn"]
    texts = sorted({last_text(m) for p in pairs for m in (p.cached, p.query)})
    row = {t: i for i, t in enumerate(texts)}
    vectors = embed_all(texts)
    a = vectors[[row[last_text(p.cached)] for p in pairs]]
    b = vectors[[row[last_text(p.query)] for p in pairs]]
    _, ver = thrifty_decisions(pairs, (a * b).sum(axis=1))
    lines = nonlatin_section() + [""] + guard_section(pairs, (a * b).sum(axis=1), ver)
    print("\n".join(header + lines))
    begin, end = "<!-- guard:begin -->", "<!-- guard:end -->"
    text = DOC.read_text(encoding="utf-8")
    if begin not in text:
        text += f"\n{begin}\n{end}\n"
    head, rest = text.split(begin, 1)
    DOC.write_text(
        head + begin + "\n" + "\n".join(header + [""] + lines) + "\n" + end + rest.split(end, 1)[1],
        encoding="utf-8",
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--qqp-pairs", type=int, default=3000)
    parser.add_argument("--full", action="store_true", help="all 9,042 QQP pairs (slower)")
    parser.add_argument(
        "--guard-only",
        action="store_true",
        help="only the non-Latin traps and the error-rate guard (no GPTCache venv needed)",
    )
    parser.add_argument(
        "--fow-data", type=Path, default=None, help="fow_cache/data folder (with --guard-only)"
    )
    args = parser.parse_args()
    if args.guard_only:
        command = "python benchmarks/cache_quality.py --guard-only --fow-data DIR" + (
            " --full" if args.full else f" --qqp-pairs {args.qqp_pairs}"
        )
        new_sections(
            args,
            [
                f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
                f"{platform.python_version()}; date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
                f"command `{command}`."
            ],
        )
        return
    command = "python benchmarks/cache_quality.py" + (
        " --full" if args.full else f" --qqp-pairs {args.qqp_pairs}"
    )
    header = [
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average {os.getloadavg()[0]:.1f}; command `{command}`."
    ]
    print("\n".join(header), flush=True)
    python = ensure_gptcache()
    pairs = load_pairs(fow_data(python), None if args.full else args.qqp_pairs)
    texts = sorted({last_text(m) for p in pairs for m in (p.cached, p.query)})
    row = {t: i for i, t in enumerate(texts)}
    vectors = embed_all(texts)
    a = vectors[[row[last_text(p.cached)] for p in pairs]]
    b = vectors[[row[last_text(p.query)] for p in pairs]]
    sims = (a * b).sum(axis=1)
    part, ver = thrifty_decisions(pairs, sims)
    gpt = run_gptcache(python, pairs, texts, vectors)
    layer_idx = np.array([i for i, p in enumerate(pairs) if p.dataset.startswith("fow")])
    layer_hits = asyncio.run(through_layer([pairs[i] for i in layer_idx], row, vectors))
    lines, curves = tables(pairs, sims, part, ver, gpt, layer_hits, layer_idx)
    print("\n".join(lines))
    plot(curves, ROOT / "docs" / "img" / "cache_quality.png")
    lines.append("![recall and false-hit rate by threshold](../img/cache_quality.png)")
    write_doc(lines, header)


if __name__ == "__main__":
    main()
