"""Quantum-circuit tasks on 1-3 qubits (Grover up to 5), answered by a small numpy state-vector simulator.

Qubit 0 is the leftmost bit of a basis label: ``|10>`` means qubit 0 is 1.
Gates: H, X, Y, Z, S, T, RY(deg), RZ(deg) on one qubit; CNOT and CZ on two.

Grading, per task type (the reply is read with :func:`~.task.final_answer`):

- **solving** (the probability of one basis outcome after a given circuit):
  the first number of the answer (a decimal, a percentage, or a fraction
  ``a/b``) must be within 0.02 of the simulated probability.
- **analysis** (either: how many Grover iterations maximise the chance of
  measuring a marked item, for N items and M marked; or: the phase, in
  degrees, of one amplitude of the QFT of a basis state): the first integer
  must be an iteration count whose simulated success probability is the
  maximum (ties accepted); or the first number must be within 1 degree of
  the phase, modulo 360.
- **optimisation** (VQE-style: which of the listed angles θ minimises ⟨Z⟩
  after RY(θ) and a fixed gate): the first number must be that angle.
- **generation** (write a circuit from ``|0...0>`` with a given outcome
  distribution, one gate per line like ``H 0`` or ``CNOT 0 1``): every gate
  line of the answer is parsed; the circuit must use only known gates on
  existing qubits (at most 30) and its simulated probabilities must be within
  0.01 of the target for every outcome.

Anything unreadable is a failure with the reason, never an exception.
"""

from __future__ import annotations

import math
import random
import re
from typing import Any

from .task import (
    ANSWER_RULE,
    CORRECT,
    BenchTask,
    Grade,
    fail,
    final_answer,
    first_integer,
    first_number,
    task_id,
)

DOMAIN = "quantum"
Gate = tuple[str, tuple[int, ...], float]  # name, qubits, angle in degrees (0 if none)
ONE_QUBIT = ("H", "X", "Y", "Z", "S", "T", "RY", "RZ")
TWO_QUBIT = ("CNOT", "CZ")
MAX_GATES = 30


def _matrix(name: str, angle: float) -> Any:
    import numpy as np

    t = math.radians(angle)
    r = 1 / math.sqrt(2)
    return {
        "H": np.array([[r, r], [r, -r]], dtype=complex),
        "X": np.array([[0, 1], [1, 0]], dtype=complex),
        "Y": np.array([[0, -1j], [1j, 0]], dtype=complex),
        "Z": np.array([[1, 0], [0, -1]], dtype=complex),
        "S": np.array([[1, 0], [0, 1j]], dtype=complex),
        "T": np.array([[1, 0], [0, complex(math.cos(math.pi / 4), math.sin(math.pi / 4))]], dtype=complex),
        "RY": np.array(
            [[math.cos(t / 2), -math.sin(t / 2)], [math.sin(t / 2), math.cos(t / 2)]], dtype=complex
        ),
        "RZ": np.array(
            [[complex(math.cos(-t / 2), math.sin(-t / 2)), 0], [0, complex(math.cos(t / 2), math.sin(t / 2))]]
        ),
    }[name]


def simulate(n: int, gates: list[Gate]) -> Any:
    """The state vector after ``gates`` from ``|0...0>`` (index bit n-1-q is qubit q)."""
    import numpy as np

    state = np.zeros((2,) * n, dtype=complex)
    state[(0,) * n] = 1
    for name, qubits, angle in gates:
        if name in ONE_QUBIT:
            (q,) = qubits
            state = np.moveaxis(np.tensordot(_matrix(name, angle), state, axes=([1], [q])), 0, q)
        else:
            control, target = qubits
            sub: list[Any] = [slice(None)] * n
            sub[control] = 1  # only the control=1 half changes
            half = state[tuple(sub)]
            axis = target if target < control else target - 1
            op = _matrix("X" if name == "CNOT" else "Z", 0)
            state[tuple(sub)] = np.moveaxis(np.tensordot(op, half, axes=([1], [axis])), 0, axis)
    return state.reshape(-1)


def probabilities(n: int, gates: list[Gate]) -> dict[str, float]:
    state = simulate(n, gates)
    return {format(i, f"0{n}b"): float(abs(a) ** 2) for i, a in enumerate(state)}


def grover_curve(n: int, marked: int, most: int) -> list[float]:
    """P(measure a marked item) after 0..most Grover iterations, by simulation."""
    import numpy as np

    size = 2**n
    state = np.full(size, 1 / math.sqrt(size))
    sign = np.ones(size)
    sign[:marked] = -1  # which items are marked does not change the curve
    curve = [float(np.sum(state[:marked] ** 2))]
    for _ in range(most):
        state = state * sign
        state = 2 * state.mean() - state
        curve.append(float(np.sum(state[:marked] ** 2)))
    return curve


def qft_phase(n: int, k: int, j: int) -> float:
    """The phase in degrees [0, 360) of amplitude ``j`` of QFT|k> (numpy's inverse FFT is the QFT)."""
    import numpy as np

    basis = np.zeros(2**n, dtype=complex)
    basis[k] = 1
    amplitude = np.fft.ifft(basis, norm="ortho")[j]
    return round(math.degrees(math.atan2(amplitude.imag, amplitude.real)) % 360, 6) % 360


def z_expectation(theta: float, after: str) -> float:
    gates: list[Gate] = [("RY", (0,), theta)]
    if after != "none":
        gates.append((after, (0,), 0.0))
    p = probabilities(1, gates)
    return p["0"] - p["1"]


def describe(gates: list[Gate]) -> str:
    def one(g: Gate) -> str:
        name, qubits, angle = g
        text = (
            f"{name} on qubit {qubits[0]}"
            if len(qubits) == 1
            else f"{name} with control {qubits[0]} and target {qubits[1]}"
        )
        return f"{text} (angle {angle:g} degrees)" if name in ("RY", "RZ") else text

    return "; then ".join(one(g) for g in gates)


def random_circuit(rng: random.Random, n: int) -> list[Gate]:
    gates: list[Gate] = []
    for _ in range(rng.randint(2, 4)):
        if n > 1 and rng.random() < 0.35:
            c, t = rng.sample(range(n), 2)
            gates.append(("CNOT", (c, t), 0.0))
        else:
            name = rng.choice(["H", "X", "RY", "H", "Z"])
            angle = float(rng.choice([60, 90, 120, 180])) if name == "RY" else 0.0
            gates.append((name, (rng.randrange(n),), angle))
    return gates


def generate(kind: str, rng: random.Random, index: int) -> BenchTask:
    tid = task_id(DOMAIN, kind, index)
    if kind == "solving":
        n = rng.randint(1, 2)
        gates = random_circuit(rng, n)
        outcome = rng.choice(sorted(probabilities(n, gates)))
        p = probabilities(n, gates)[outcome]
        prompt = (
            f"{n} qubit(s) start in |{'0' * n}>. Apply: {describe(gates)}. What is the probability of "
            f"measuring |{outcome}> (qubit 0 is the leftmost bit)? Give a decimal. {ANSWER_RULE}"
        )
        return BenchTask(tid, DOMAIN, kind, prompt, {"p": round(p, 6)})
    if kind == "analysis":
        if index % 2 == 0:
            n, marked = rng.randint(2, 5), rng.randint(1, 2)
            curve = grover_curve(n, marked, 12)
            prompt = (
                f"Grover search over N = {2**n} items of which {marked} are marked. How many Grover "
                f"iterations maximise the probability of measuring a marked item? {ANSWER_RULE}"
            )
            return BenchTask(tid, DOMAIN, kind, prompt, {"curve": [round(x, 9) for x in curve]})
        n = rng.randint(2, 3)
        k, j = rng.randrange(1, 2**n), rng.randrange(1, 2**n)
        prompt = (
            f"The quantum Fourier transform on {n} qubits maps |k> to the sum over j of "
            f"exp(2*pi*i*j*k/{2**n}) |j> / sqrt({2**n}). For k = {k}, what is the phase of the amplitude of "
            f"|j> = |{j}>, in degrees between 0 and 360? {ANSWER_RULE}"
        )
        return BenchTask(tid, DOMAIN, kind, prompt, {"degrees": qft_phase(n, k, j)})
    if kind == "optimisation":
        after = rng.choice(["none", "X", "H"])
        while True:
            angles = sorted(rng.sample([0, 45, 90, 135, 180, 225, 270, 315], 4))
            values = [z_expectation(a, after) for a in angles]
            best = min(values)
            if sum(1 for v in values if v < best + 1e-6) == 1:
                break
        then = "" if after == "none" else f" and then {after}"
        prompt = (
            f"A one-qubit VQE ansatz applies RY(theta) to |0>{then}. Which theta among {angles} (degrees) "
            f"gives the lowest expectation value of Z? {ANSWER_RULE}"
        )
        return BenchTask(tid, DOMAIN, kind, prompt, {"theta": angles[values.index(best)]})
    if kind == "generation":
        n = rng.randint(2, 3)
        goal = rng.choice(["basis", "bell", "uniform"])
        if goal == "basis":
            bits = format(rng.randrange(1, 2**n), f"0{n}b")
            target = {bits: 1.0}
            want = f"measuring |{bits}> with certainty"
        elif goal == "bell":
            target = {"0" * n: 0.5, "1" * n: 0.5}
            want = f"|{'0' * n}> and |{'1' * n}> each with probability 0.5 and nothing else"
        else:
            target = {format(i, f"0{n}b"): 1 / 2**n for i in range(2**n)}
            want = "every outcome with equal probability"
        prompt = (
            f"Write a circuit on {n} qubits, starting from |{'0' * n}>, that gives {want} (qubit 0 is the "
            "leftmost bit). Use gates H, X, Z, CNOT, one per line, like `H 0` or `CNOT 0 1`. "
            f"{ANSWER_RULE} Then the gates."
        )
        return BenchTask(tid, DOMAIN, kind, prompt, {"n": n, "target": target})
    raise ValueError(f"unknown task type {kind!r}")


_GATE_LINE = re.compile(
    r"\b(CNOT|CX|CZ|H|X|Y|Z|S|T)\b[\s(]*(?:q(?:ubit)?\s*)?\[?(\d+)\]?(?:[\s,]+(?:q(?:ubit)?\s*)?\[?(\d+)\]?)?",
    re.IGNORECASE,
)


def parse_circuit(text: str, n: int) -> list[Gate] | str:
    """The gates of an answer, or why they cannot be read."""
    gates: list[Gate] = []
    for match in _GATE_LINE.finditer(text):
        name = match.group(1).upper()
        name = "CNOT" if name == "CX" else name
        a, b = int(match.group(2)), match.group(3)
        if name in TWO_QUBIT:
            if b is None or int(b) == a:
                return f"{name} needs two different qubits"
            qubits: tuple[int, ...] = (a, int(b))
        else:
            qubits = (a,)
        if any(q >= n for q in qubits):
            return f"qubit {max(qubits)} does not exist (there are {n})"
        gates.append((name, qubits, 0.0))
        if len(gates) > MAX_GATES:
            return f"more than {MAX_GATES} gates"
    return gates or "no gates in the answer"


def grade(task: BenchTask, text: str) -> Grade:
    exp = task.expected
    answer = final_answer(text)
    if task.type == "solving":
        value = _probability(answer)
        if value is None:
            return fail("no number in the answer")
        return (
            CORRECT if abs(value - exp["p"]) <= 0.02 else fail(f"answered {value:g}, expected {exp['p']:.3f}")
        )
    if task.type == "analysis" and "curve" in exp:
        k = first_integer(answer)
        curve = exp["curve"]
        if k is None:
            return fail("no number in the answer")
        if not 0 <= k < len(curve):
            return fail(f"{k} iterations is out of range")
        best = max(curve)
        return (
            CORRECT
            if curve[k] >= best - 1e-6
            else fail(f"{k} iterations is not optimal ({curve.index(best)} is)")
        )
    if task.type == "analysis":
        value = first_number(answer)
        if value is None:
            return fail("no number in the answer")
        off = abs((value - exp["degrees"] + 180) % 360 - 180)
        return CORRECT if off <= 1 else fail(f"answered {value:g} degrees, expected {exp['degrees']:g}")
    if task.type == "optimisation":
        value = first_number(answer)
        if value is None:
            return fail("no angle in the answer")
        return (
            CORRECT
            if value == exp["theta"]
            else fail(f"answered {value:g}, the minimum is at {exp['theta']}")
        )
    if task.type == "generation":
        gates = parse_circuit(text, exp["n"])
        if isinstance(gates, str):
            return fail(gates)
        got = probabilities(exp["n"], gates)
        target = exp["target"]
        worst = max(abs(got[k] - target.get(k, 0.0)) for k in got)
        return (
            CORRECT if worst <= 0.01 else fail("the circuit's outcome probabilities differ from the target")
        )
    return fail(f"unknown task type {task.type!r}")


def _probability(answer: str) -> float | None:
    value = first_number(answer)
    if value is None:
        return None
    percent = re.search(r"\d\s*%", answer)
    return value / 100 if percent else value


def reference(task: BenchTask) -> str:
    """A known-good answer (for tests and calibration)."""
    exp = task.expected
    if task.type == "solving":
        return f"ANSWER: {exp['p']:.3f}"
    if task.type == "analysis" and "curve" in exp:
        return f"ANSWER: {exp['curve'].index(max(exp['curve']))}"
    if task.type == "analysis":
        return f"ANSWER: {exp['degrees']:g}"
    if task.type == "optimisation":
        return f"ANSWER: {exp['theta']}"
    n, target = exp["n"], exp["target"]
    if len(target) == 1:
        (bits,) = target
        gates = [f"X {q}" for q, b in enumerate(bits) if b == "1"]
    elif len(target) == 2:
        gates = ["H 0", *(f"CNOT 0 {q}" for q in range(1, n))]
    else:
        gates = [f"H {q}" for q in range(n)]
    return "ANSWER:\n" + "\n".join(gates)
