"""The batch progress line: done, failed, rate, ETA and cost so far."""

from __future__ import annotations

import io

from thrifty.tasks.progress import ProgressBar, response_cost
from thrifty.types import ChatResponse, Usage


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_rate_eta_and_cost_count_only_this_runs_work() -> None:
    clock, out = Clock(), io.StringIO()
    bar = ProgressBar(100, done=40, failed=2, cost=0.5, stream=out, clock=clock, width=10)
    for i in range(20):
        clock.now += 0.5
        bar.update(ok=i % 10 != 0, cost=0.01)
    line = bar.render()
    assert line.startswith("[######----] 60/100 done, 4 failed, 2.0 req/s, ETA 0:20, $0.7000")
    bar.close()
    assert out.getvalue().splitlines()[-1] == line


def test_priced_by_the_model_the_response_names() -> None:
    usage = Usage(prompt_tokens=1_000_000, completion_tokens=0)
    known = ChatResponse(body={"model": "gpt-4o-mini"}, usage=usage)
    unknown = ChatResponse(body={"model": "my-local-model"}, usage=usage)
    assert 0 < response_cost(known) < 10
    assert response_cost(unknown) == 0.0
