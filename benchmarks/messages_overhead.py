"""/v1/messages (Anthropic's API, translated) against /v1/chat/completions on the same gateway.

One fake upstream (answering at once; streaming `--chunks` chunks), one `thrifty serve` in
front of it, wrk as the load generator. The four cells (chat and messages, plain and streamed)
are measured in interleaved rounds and the median of each kept, so both routes see the same
machine noise. The goal: /v1/messages within 10% of chat completions' requests/s.

    .venv/bin/python benchmarks/messages_overhead.py [--seconds 5] [--rounds 3] [--connections 10]
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import tempfile
from pathlib import Path

from gateway_overhead import PY, free_port, process, wait_ready, wrk

CHAT = {"model": "fake", "messages": [{"role": "user", "content": "Say ok."}], "max_tokens": 8}
MESSAGES = {"model": "fake", "max_tokens": 8, "messages": [{"role": "user", "content": "Say ok."}]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--chunks", type=int, default=20)
    args = parser.parse_args()
    thrifty = str(Path(PY).parent / "thrifty")
    up_port, port = free_port(), free_port()
    folder = Path(tempfile.mkdtemp())
    with process([PY, "-m", "thrifty.fakeupstream", "--port", str(up_port), "--chunks", str(args.chunks)]):
        upstream = f"http://127.0.0.1:{up_port}/v1"
        wait_ready(upstream + "/chat/completions")
        (folder / "thrifty.yaml").write_text(
            f"server: {{data_dir: {folder}}}\nmodel_list:\n  - model_name: fake\n"
            f"    litellm_params: {{model: openai/fake, api_base: {upstream}, api_key: sk-up}}\n"
        )
        cmd = [
            thrifty,
            "serve",
            "--config",
            str(folder / "thrifty.yaml"),
            "--port",
            str(port),
            "--log-level",
            "warning",
        ]
        with process(cmd):
            base = f"http://127.0.0.1:{port}/v1"
            wait_ready(base + "/chat/completions")
            cells = {
                "chat completions": (base + "/chat/completions", CHAT),
                "messages": (base + "/messages", MESSAGES),
                "chat completions, streamed": (base + "/chat/completions", {**CHAT, "stream": True}),
                "messages, streamed": (base + "/messages", {**MESSAGES, "stream": True}),
            }
            samples: dict[str, list[dict[str, float]]] = {name: [] for name in cells}
            for _ in range(args.rounds):
                for name, (url, body) in cells.items():
                    samples[name].append(wrk(url, args.connections, args.seconds, body))
    print(
        f"# /v1/messages vs /v1/chat/completions ({datetime.date.today()}, {platform.machine()}, "
        f"{platform.python_version()}; wrk -c{args.connections}, {args.seconds} s x {args.rounds} rounds, "
        f"median; upstream streams {args.chunks} chunks)\n"
    )
    print("| route | p50 ms | p99 ms | requests/s | errors | requests/s vs chat |")
    print("|---|---|---|---|---|---|")
    medians = {
        name: {key: statistics.median(s[key] for s in runs) for key in runs[0]}
        for name, runs in samples.items()
    }
    for name, m in medians.items():
        reference = medians["chat completions, streamed" if "streamed" in name else "chat completions"]
        print(
            f"| {name} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} | {m['rps']:.0f} | {m['errors']:.0f} "
            f"| {m['rps'] / reference['rps']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
