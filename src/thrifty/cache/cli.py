"""``thrifty cache fit --pairs FILE -o pairs.npz``: fit a pair scorer for the semantic cache.

FILE is a CSV with ``question1,question2,is_duplicate`` (1 when one answer
serves both) or JSONL with the same fields; ``--pairs`` may repeat. The
questions are embedded with the same MiniLM model the cache uses; the
threshold comes from grouped cross-validation (folds share no question) so
that the out-of-fold false-hit rate is at most ``--max-false-hits``. Point
``cache.pair_model`` at the output to use it.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

from ..errors import ConfigError
from .pairfit import FitSettings, LabelledPair, fit, read_pairs
from .pairs import FEATURE_SETS, uses_tokens


def cache_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="thrifty cache", description="Tools for the response cache.")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    fit_cmd = sub.add_parser("fit", help="fit a pair scorer on labelled question pairs")
    fit_cmd.add_argument("--pairs", action="append", required=True, help="CSV or JSONL of labelled pairs")
    fit_cmd.add_argument("-o", "--output", required=True, help="model file to write (.npz)")
    fit_cmd.add_argument("--max-false-hits", type=float, default=0.01, help="out-of-fold limit (0.01)")
    fit_cmd.add_argument(
        "--features",
        choices=FEATURE_SETS,
        default="tokens",
        help="feature set (default: tokens, the best on held-out Quora pairs; lexical+cosine costs less)",
    )
    fit_cmd.add_argument("--hidden", type=int, default=0, help="MLP hidden units (0: logistic regression)")
    fit_cmd.add_argument("--floor", type=float, default=0.7, help="cosine below which no pair is scored")
    fit_cmd.add_argument("--folds", type=int, default=5)
    args = parser.parse_args(argv)
    try:
        return _fit(args)
    except ConfigError as exc:
        print(f"thrifty cache fit: {exc.message}", file=sys.stderr)
        return 2


def _fit(args: argparse.Namespace) -> int:
    if not 0 <= args.max_false_hits < 1:
        raise ConfigError("--max-false-hits must be in [0, 1)")
    pairs: list[LabelledPair] = []
    for path in args.pairs:
        pairs += read_pairs(path)
    texts = sorted({t for p in pairs for t in (p.query, p.cached)})
    print(f"{len(pairs)} pairs ({sum(p.same for p in pairs)} same), {len(texts)} questions", file=sys.stderr)
    from ..embeddings import Embedder

    start = time.perf_counter()
    try:
        embedder = Embedder()
    except RuntimeError as exc:
        raise ConfigError(str(exc)) from exc
    vectors = dict(zip(texts, embedder.embed(texts), strict=True))
    tokens = None
    if uses_tokens(args.features):
        by_text = dict(zip(texts, embedder.tokens(texts), strict=True))

        def tokens(pair: Sequence[str]) -> list[Any]:
            return [by_text[t] for t in pair]

    print(f"embedded in {time.perf_counter() - start:.0f}s", file=sys.stderr)
    settings = FitSettings(
        kind=args.features,
        hidden=args.hidden,
        max_false_hits=args.max_false_hits,
        floor=args.floor,
        folds=args.folds,
    )
    model, cv = fit(pairs, vectors.__getitem__, settings, tokens)
    model.save(args.output)
    print(
        f"cross-validated ({args.folds} folds, no question shared): recall {cv.recall:.3f}, "
        f"false-hit rate {cv.false_hit_rate:.4f} (limit {args.max_false_hits}), "
        f"precision {cv.precision:.3f}; threshold {model.threshold:.4f}; wrote {args.output}"
    )
    return 0
