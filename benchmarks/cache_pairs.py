"""A learned pair scorer for the semantic cache, fitted on one half of QQP and read on the other.

    PYTHONPATH=src .venv/bin/python benchmarks/cache_pairs.py --fow-data DIR

QQP's 9,042 pairs are split in two halves that share no question text (pairs
linked through a shared question go to the same half). A model is fitted on
one half (threshold by 5-fold grouped cross-validation inside it, false hits
<= 1%) and measured on the other; then the halves swap. The models fitted on
each half are also run on fow-cache's trap pairs (single-turn; multi-turn,
where the history partition applies as in the gateway) and on the non-Latin
trap set (benchmarks/data/nonlatin_traps.jsonl). Ablation: feature sets
(cosine only, lexical only, lexical + cosine, vectors, all) and logistic
regression vs a one-hidden-layer MLP. MiniLM vectors are kept in
benchmarks/out/cache_vectors.npz (shared with cache_quality.py).

Writes its tables into docs/bench/cache.md between the pairs markers.
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from cache_quality import DOC, NONLATIN, OUT, QQP, embed_all  # noqa: E402
from thrifty.cache.keys import partition_key  # noqa: E402
from thrifty.cache.pairfit import (  # noqa: E402
    FitSettings,
    LabelledPair,
    Rates,
    fit,
    pick_threshold,
    question_groups,
    rates,
    scores,
    serve,
    split_groups,
)
from thrifty.cache.pairs import PairModel  # noqa: E402
from thrifty.cache.verify import verify  # noqa: E402
from thrifty.types import ChatRequest  # noqa: E402

if TYPE_CHECKING:
    from thrifty.cache.pairs import Tokens

DEFAULT_THRESHOLD = 0.85
ABLATION = [
    ("cosine", 0),
    ("lexical", 0),
    ("lexical+cosine", 0),
    ("tokens", 0),
    ("vectors", 0),
    ("all", 0),
    ("all+tokens", 0),
    ("lexical+cosine", 16),
    ("all+tokens", 16),
]


def token_vectors(texts: list[str]) -> dict[str, np.ndarray]:
    """Each text's MiniLM token vectors (float16 on disk), kept in benchmarks/out like the pooled ones."""
    path = OUT / "cache_tokens.npz"
    known: dict[str, np.ndarray] = {}
    if path.exists():
        saved = np.load(path)
        ends = np.cumsum(saved["lengths"])
        flat = saved["tokens"]
        for text, end, n in zip(saved["texts"].tolist(), ends, saved["lengths"], strict=True):
            known[text] = flat[end - n : end]
    missing = [t for t in texts if t not in known]
    if missing:
        from thrifty.embeddings import Embedder

        start = time.perf_counter()
        fresh = Embedder().tokens(missing)
        print(f"token vectors of {len(missing)} texts in {time.perf_counter() - start:.0f}s", flush=True)
        known.update((t, v.astype(np.float16)) for t, v in zip(missing, fresh, strict=True))
        names = list(known)
        OUT.mkdir(parents=True, exist_ok=True)
        np.savez(
            path,
            texts=np.array(names),
            lengths=np.array([len(known[t]) for t in names]),
            tokens=np.concatenate([known[t] for t in names]),
        )
    return known


def qqp_pairs() -> list[LabelledPair]:
    with QQP.open(encoding="utf-8") as f:
        return [
            LabelledPair(r["question1"], r["question2"], r["is_duplicate"] == "1") for r in csv.DictReader(f)
        ]


def fow_pairs(data: Path) -> tuple[list[LabelledPair], list[str], list[LabelledPair], list[bool]]:
    """Single-turn pairs with categories; multi-turn last turns with 'same history' flags."""
    single, cats = [], []
    for line in (data / "pairs.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        single.append(LabelledPair(row["a"], row["b"], bool(row["same_answer"])))
        cats.append(row["category"])
    multi, same_history = [], []
    for path in sorted(glob.glob(str(data / "conv-*" / "*.jsonl"))):
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            multi.append(
                LabelledPair(row["a"][-1]["content"], row["b"][-1]["content"], bool(row["same_answer"]))
            )
            same_history.append(
                partition_key(ChatRequest("m", row["a"]), "g", "n")
                == partition_key(ChatRequest("m", row["b"]), "g", "n")
            )
    return single, cats, multi, same_history


def nonlatin_pairs() -> tuple[list[LabelledPair], list[str]]:
    rows = [json.loads(line) for line in NONLATIN.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [LabelledPair(r["cached"], r["asked"], bool(r["same"])) for r in rows], [r["lang"] for r in rows]


def strict(pairs: list[LabelledPair], vec: dict[str, np.ndarray]) -> np.ndarray:
    """Today's rule: cosine >= 0.85 and the strict verifier."""
    return np.array(
        [
            float(vec[p.query] @ vec[p.cached]) >= DEFAULT_THRESHOLD and verify(p.query, p.cached).ok
            for p in pairs
        ]
    )


def fmt(r: Rates) -> str:
    precision = "-" if r.precision != r.precision else f"{r.precision:.3f}"
    false_hits = round(r.false_hit_rate * r.negatives)
    return f"{r.recall:.3f} | {r.false_hit_rate:.4f} ({false_hits}/{r.negatives}) | {precision}"


def run(args: argparse.Namespace) -> list[str]:
    qqp = qqp_pairs()
    single, cats, multi, same_history = fow_pairs(args.fow_data)
    nonlatin, langs = nonlatin_pairs()
    texts = sorted({t for p in qqp + single + multi + nonlatin for t in (p.query, p.cached)})
    vectors = embed_all(texts)
    vec = dict(zip(texts, vectors, strict=True))
    toks = token_vectors(texts)

    def tokens(pair: Sequence[str]) -> list[np.ndarray]:
        return [toks[t] for t in pair]

    half = np.array(split_groups(question_groups(qqp), 2, seed=0))
    halves = [[p for p, h in zip(qqp, half, strict=True) if h == k] for k in (0, 1)]
    shared = {t for p in halves[0] for t in (p.query, p.cached)} & {
        t for p in halves[1] for t in (p.query, p.cached)
    }
    lines = [
        f"QQP halves: {len(halves[0])} and {len(halves[1])} pairs "
        f"({sum(p.same for p in halves[0])} and {sum(p.same for p in halves[1])} duplicates); "
        f"question texts in both halves: {len(shared)}.",
        "",
        "### Held-out QQP: fit on one half, measure on the other",
        "",
        f"Served as the cache serves with `pair_model`: what the strict rule serves (cosine >= 0.85 + "
        f"verifier) plus what the model accepts (cosine >= {args.floor}, vetoes, probability >= threshold). "
        f"Threshold picked by 5-fold grouped cross-validation on the training half so that out-of-fold "
        f"false hits (strict ones included) stay <= {args.max_false_hits}. Rates over every pair of the "
        "test half (a vetoed duplicate is a miss). 'strict verifier' = today's rule alone.",
        "",
        "| features | model | fit on | CV recall | CV false-hit rate | test recall | test false-hit rate "
        "(false hits) | test precision | seconds to fit |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for k in (0, 1):
        r = rates(strict(halves[1 - k], vec), np.array([p.same for p in halves[1 - k]]))
        lines.append(f"| strict verifier | - | - | - | - | {fmt(r)} | - |")
    models: dict[tuple[str, int, int], PairModel] = {}
    curves: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    saved_rows = OUT / "cache_pairs_rows.json"
    done: dict[str, str] = json.loads(saved_rows.read_text()) if args.reuse and saved_rows.exists() else {}
    for kind, hidden in ABLATION:
        if args.quick and (kind, hidden) not in (("all+tokens", 0), ("cosine", 0)):
            continue
        if args.only and f"{kind}:{hidden}" not in args.only.split(","):
            continue
        for k in (0, 1):
            key = f"{kind}:{hidden}:{k}"
            if key in done and (kind, hidden) != args.main:
                lines.append(done[key][0])
                got_saved, same_saved = done[key][1]
                curves.setdefault(done[key][2], []).append((np.array(got_saved), np.array(same_saved)))
                continue
            settings = FitSettings(
                kind=kind, hidden=hidden, max_false_hits=args.max_false_hits, floor=args.floor
            )
            start = time.perf_counter()
            model, cv = fit(halves[k], vec.__getitem__, settings, tokens)
            seconds = time.perf_counter() - start
            models[(kind, hidden, k)] = model
            test = halves[1 - k]
            test_same = np.array([p.same for p in test])
            got = scores(model, test, vec.__getitem__, tokens)
            r = rates((got >= model.threshold) | strict(test, vec), test_same)  # as the cache serves
            name = "logistic" if not hidden else f"MLP ({hidden})"
            curves[f"{kind} | {name}"] = curves.get(f"{kind} | {name}", []) + [(got, test_same)]
            row = (
                f"| {kind} | {name} | {'AB'[k]} | {cv.recall:.3f} | {cv.false_hit_rate:.4f} | {fmt(r)} | "
                f"{seconds:.0f} |"
            )
            print(row, flush=True)
            lines.append(row)
            done = json.loads(saved_rows.read_text()) if saved_rows.exists() else {}
            record = [row, [got.tolist(), test_same.tolist()], f"{kind} | {name}"]
            saved_rows.write_text(json.dumps({**done, key: record}))
    lines += ["", *roc(curves)]
    if args.main not in {(k, h) for k, h, _ in models}:
        return lines
    sets = (single, cats, multi, same_history, nonlatin, langs)
    lines += ["", *traps(models, args.main, sets, vec, tokens)]
    return lines


def roc(curves: dict[str, list[tuple[np.ndarray, np.ndarray]]]) -> list[str]:
    """Recall on the held-out halves at false-hit rates set with the test labels (no threshold choice)."""
    levels = (0.005, 0.01, 0.02, 0.05, 0.10)
    lines = [
        "### Ranking quality on the held-out halves",
        "",
        "The threshold set on the test half itself at each false-hit rate (the ROC curve's points; both "
        "held-out halves pooled): how well each scorer ranks, free of the threshold choice. Vetoed pairs "
        "and pairs under the cosine floor are never served.",
        "",
        "| features | model | " + " | ".join(f"recall at {x:.1%} false hits" for x in levels) + " |",
        "|---|---|" + "---:|" * len(levels),
    ]
    for name, runs in curves.items():
        cells = []
        for level in levels:
            hits = positives = 0
            for got, same in runs:
                threshold = pick_threshold(got, same, level)
                hits += int(((got >= threshold) & (got >= 0) & same).sum())
                positives += int(same.sum())
            cells.append(f"{hits / max(1, positives):.3f}")
        lines.append(f"| {name} | {' | '.join(cells)} |")
    return lines


def traps(
    models: dict[tuple[str, int, int], PairModel],
    main: tuple[str, int],
    sets_in: tuple[Any, ...],
    vec: dict[str, np.ndarray],
    tokens: Tokens,
) -> list[str]:
    single, cats, multi, same_history, nonlatin, langs = sets_in
    kind, hidden = main
    lines = [
        f"### Trap pairs with the QQP-fitted model on (features {kind}, "
        f"{'logistic' if not hidden else f'MLP ({hidden})'})",
        "",
        "Model A was fitted on QQP half A, model B on half B; nothing of these sets was used to fit. "
        "Multi-turn pairs are served only inside the same history partition, as in the gateway.",
        "",
        "| data | pairs (same/different) | strict verifier: recall / false hits | model A: recall / false hits "
        "| model B: recall / false hits |",
        "|---|---|---|---|---|",
    ]
    sets = [
        ("fow single-turn", single, np.ones(len(single), dtype=bool)),
        ("fow multi-turn", multi, np.array(same_history)),
        ("non-Latin traps", nonlatin, np.ones(len(nonlatin), dtype=bool)),
    ]
    served_by: dict[str, list[np.ndarray]] = {}
    for name, pairs, allowed in sets:
        same = np.array([p.same for p in pairs])
        cells = []
        outcomes = [strict(pairs, vec) & allowed]
        for k in (0, 1):
            outcomes.append(serve(models[(kind, hidden, k)], pairs, vec.__getitem__, tokens) & allowed)
        served_by[name] = outcomes
        for served in outcomes:
            r = rates(served, same)
            cells.append(f"{r.recall:.3f} / {int((served & ~same).sum())} of {r.negatives}")
        lines.append(
            f"| {name} | {len(pairs)} ({int(same.sum())}/{int((~same).sum())}) | {' | '.join(cells)} |"
        )
    lines += [
        "",
        "By category (fow single-turn) and language (non-Latin): hits, strict / model A / model B.",
        "",
    ]
    lines += ["| data | category | label | pairs | hits |", "|---|---|---|---:|---|"]
    for name, pairs, groups in (("fow single-turn", single, cats), ("non-Latin traps", nonlatin, langs)):
        for group in dict.fromkeys(groups):
            for label in (True, False):
                ids = [i for i, g in enumerate(groups) if g == group and pairs[i].same == label]
                if not ids:
                    continue
                hits = " / ".join(str(int(s[ids].sum())) for s in served_by[name])
                lines.append(
                    f"| {name} | {group} | {'same' if label else 'different'} answer | {len(ids)} | {hits} |"
                )
    return lines


def write_doc(lines: list[str]) -> None:
    begin, end = "<!-- pairs:begin -->", "<!-- pairs:end -->"
    text = DOC.read_text(encoding="utf-8")
    if begin not in text:
        text += f"\n{begin}\n{end}\n"
    head, rest = text.split(begin, 1)
    DOC.write_text(
        head + begin + "\n" + "\n".join(lines) + "\n" + end + rest.split(end, 1)[1], encoding="utf-8"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fow-data", type=Path, required=True, help="fow_cache/data folder")
    parser.add_argument("--max-false-hits", type=float, default=0.01)
    parser.add_argument("--floor", type=float, default=0.7)
    parser.add_argument("--quick", action="store_true", help="only cosine-only and all+tokens logistic")
    parser.add_argument("--main-features", default="all+tokens", help="the model run on the trap sets")
    parser.add_argument("--main-hidden", type=int, default=0)
    parser.add_argument(
        "--only", default="", help="comma-separated FEATURES:HIDDEN to run, e.g. all:0,tokens:0"
    )
    parser.add_argument(
        "--reuse", action="store_true", help="take ablation rows already measured from benchmarks/out"
    )
    parser.add_argument("--no-doc", action="store_true", help="print, do not write docs/bench/cache.md")
    args = parser.parse_args()
    args.main = (args.main_features, args.main_hidden)
    load = os.getloadavg()[0]
    command = "python benchmarks/cache_pairs.py --fow-data DIR" + (" --quick" if args.quick else "")
    header = [
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average {load:.1f}; "
        f"command `{command}`.",
        "",
    ]
    lines = header + run(args)
    print("\n".join(lines))
    if not args.no_doc:
        write_doc(lines)


if __name__ == "__main__":
    main()
