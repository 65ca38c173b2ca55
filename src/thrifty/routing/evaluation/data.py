"""Loading the routing evaluation data (RouterBench slice, RouteLLM pairs).

Paths follow ``../shared/data/routing`` (see its README). Rows with a missing
value are skipped and counted; contaminated RouteLLM prompts are excluded.
"""

from __future__ import annotations

import ast
import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    Matrix = NDArray[np.float64]

ROUTERBENCH_TASKS = ("arc_challenge", "mbpp", "winograde")
WEAK, STRONG = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"


@dataclass
class Table:
    """Prompts with per-model quality (n, m), cost (n, m) and optional responses."""

    prompts: list[str]
    models: list[str]
    quality: Matrix
    cost: Matrix
    groups: list[str] = field(default_factory=list)  # task or subject of each prompt
    responses: list[list[str]] = field(default_factory=list)  # [row][model], may be empty
    skipped: int = 0
    excluded: int = 0


def _number(text: str | None) -> float | None:
    if text is None or text.strip() == "":
        return None
    if text in ("True", "False"):
        return 1.0 if text == "True" else 0.0
    try:
        value = float(text)
    except ValueError:
        return None
    return None if math.isnan(value) else value


def _prompt(raw: str) -> str:
    """RouterBench stores prompts as a Python list literal of turns."""
    if raw.startswith("["):
        try:
            turns = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            return raw
        if isinstance(turns, list):
            return "\n".join(str(t) for t in turns)
    return raw


def load_routerbench(root: Path, split: str) -> Table:
    """All three tasks' ``<task>_<split>.csv`` files as one table."""
    import numpy as np

    csv.field_size_limit(1 << 30)
    prompts: list[str] = []
    groups: list[str] = []
    quality: list[list[float]] = []
    cost: list[list[float]] = []
    responses: list[list[str]] = []
    models: list[str] = []
    skipped = 0
    for task in ROUTERBENCH_TASKS:
        with open(root / "routerbench" / f"{task}_{split}.csv", newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            fields = reader.fieldnames or []
            models = models or [f.removesuffix("|total_cost") for f in fields if f.endswith("|total_cost")]
            for row in reader:
                q = [_number(row.get(m)) for m in models]
                c = [_number(row.get(f"{m}|total_cost")) for m in models]
                if any(v is None for v in q + c) or not row.get("prompt"):
                    skipped += 1
                    continue
                prompts.append(_prompt(row["prompt"]))
                groups.append(task)
                quality.append([float(v or 0.0) for v in q])
                cost.append([float(v or 0.0) for v in c])
                responses.append([row.get(f"{m}|model_response") or "" for m in models])
    return Table(prompts, models, np.array(quality), np.array(cost), groups, responses, skipped=skipped)


def _contaminated(path: Path) -> set[str]:
    if not path.exists():
        return set()
    out: set[str] = set()
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                out.add(json.loads(line)["eval_prompt"].strip())
    return out


def load_pair(root: Path, name: str) -> Table:
    """A RouteLLM strong/weak benchmark: ``mmlu``, ``gsm8k`` or ``mt_bench``."""
    if name == "mt_bench":
        return _load_mt_bench(root / "routellm" / "mt_bench")
    import numpy as np

    csv.field_size_limit(1 << 30)
    folder = root / "routellm" / name
    dirty = _contaminated(folder / "contaminated_prompts.jsonl")
    prompts: list[str] = []
    groups: list[str] = []
    quality: list[list[float]] = []
    responses: list[list[str]] = []
    skipped = excluded = 0
    for path in sorted(folder.glob("*.csv")):
        with open(path, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                weak, strong = _number(row.get(WEAK)), _number(row.get(STRONG))
                prompt = row.get("prompt") or ""
                if weak is None or strong is None or not prompt:
                    skipped += 1
                    continue
                if prompt.strip() in dirty:
                    excluded += 1
                    continue
                prompts.append(prompt)
                groups.append(path.stem.removeprefix("mmlu_"))
                quality.append([weak, strong])
                responses.append([row.get(f"{WEAK}_response") or "", row.get(f"{STRONG}_response") or ""])
    q = np.array(quality)
    return Table(
        prompts,
        ["weak", "strong"],
        q,
        np.tile([0.0, 1.0], (len(q), 1)),
        groups,
        responses,
        skipped=skipped,
        excluded=excluded,
    )


def _load_mt_bench(folder: Path) -> Table:
    """One row per (question, turn); quality = GPT-4 judge score / 10."""
    import numpy as np

    questions: dict[int, list[str]] = {}
    with open(folder / "question.jsonl", encoding="utf-8") as fh:
        for line in fh:
            q = json.loads(line)
            questions[int(q["question_id"])] = list(q["turns"])
    dirty = _contaminated(folder / "contaminated_prompts.jsonl")
    scores: dict[tuple[int, int], dict[str, float]] = {}
    with open(folder / "judgements.jsonl", encoding="utf-8") as fh:
        for line in fh:
            j = json.loads(line)
            key = (int(j["question_id"]), int(j["turn"]))
            side = "strong" if j["model"] == STRONG else "weak"
            if isinstance(j.get("score"), (int, float)) and j["score"] >= 0:
                scores.setdefault(key, {})[side] = float(j["score"]) / 10.0
    prompts, groups, quality = [], [], []
    skipped = excluded = 0
    for (qid, turn), pair in sorted(scores.items()):
        turns = questions.get(qid)
        if turns is None or len(pair) != 2:
            skipped += 1
            continue
        if turns[0].strip() in dirty:
            excluded += 1
            continue
        prompts.append("\n".join(turns[:turn]))
        groups.append(str(qid))
        quality.append([pair["weak"], pair["strong"]])
    q = np.array(quality)
    return Table(
        prompts,
        ["weak", "strong"],
        q,
        np.tile([0.0, 1.0], (len(q), 1)),
        groups,
        skipped=skipped,
        excluded=excluded,
    )
