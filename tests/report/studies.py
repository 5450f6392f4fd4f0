"""The studies the report tests draw: a prompt-tuning study as a user's looks (a log-scaled float, an integer, a
choice and a prompt, tuned by a scripted optimizer and scored by a scripted task model, with enqueued, random
and failed trials among them), and the studies with nothing to draw yet."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from agent import Categorical, Float, Int, Space, Text, create_study
from agent.study import Study
from agent.testing.scripted import ScriptedClient, ScriptedRequest
from tests.tools.test_prompt_eval import REVIEWS, write_jsonl
from tools.prompt_eval import DevSetEvaluator

#: User text where it can hurt a page: in the study's name, a choice, the prompts.
NAME = 'reviews <v2> & "friends"'
START = "Read this review.\nThen answer."
#: What the scripted optimizer writes, in turn: the last is the best (it asks for one word).
REWRITES = (
    "Read this review.\nSay if it is good.",
    "Read this review closely.\nSay if it is good or bad.",
    "Read this review closely.\nAnswer with one word: positive or negative.\n</pre><script>alert('<x> & y')</script>",
)
SPACE = Space(
    instructions=Text(START),
    temperature=Float(0.01, 1.0, log=True),
    shots=Int(0, 4),
    style=Categorical(["plain", "<b>bold</b>", "$5 & up"]),
)
TEMPLATE = "{instructions}\nStyle: {style}. Shots: {shots}.\nReview: {input}\nSentiment:"
#: Dollars per million (prompt, completion) tokens, so that the cost plot has money to show.
PRICES = {"optimizer": (3.0, 15.0), "task": (0.5, 1.5)}


def task_model(request: ScriptedRequest) -> str:
    """A task model whose score moves with every parameter: it answers in one word only when told to (for
    positive reviews only when asked "good or bad"), and gets more reviews wrong the hotter it runs and the
    fewer examples (shots) it is shown."""
    prompt = request.messages[-1]["content"]
    review = prompt.rsplit("Review:", 1)[-1].split("\n")[0].strip()
    position = [text for text, _ in REVIEWS].index(review)
    label = "positive" if "good" in review else "negative"
    shots = int(prompt.split("Shots: ")[1].split(".")[0])
    if position < round(8 * request.temperature) - shots:
        label = "negative" if label == "positive" else "positive"
    if "one word" in prompt or ("good or bad" in prompt and label == "positive"):
        return f"{label.capitalize()}."
    return f"Well, I would say this review is {label} overall."


def optimizer() -> ScriptedClient:
    """An optimizer that writes :data:`REWRITES` in turn, with numbers that change each time."""
    count = itertools.count()

    def reply(request: ScriptedRequest) -> str:
        n = next(count)
        params = {
            "instructions": REWRITES[min(n, len(REWRITES) - 1)] + ("" if n < len(REWRITES) else f" ({n})"),
            "temperature": round(0.02 * 1.9**n, 4) if n < 6 else 0.5,
            "shots": n % 5,
            "style": SPACE["style"].choices[n % 3],  # type: ignore[union-attr]
        }
        return json.dumps({"candidates": [{"params": params, "rationale": f"rewrite {n}"}]})

    return ScriptedClient(default=reply, model="optimizer")


def prompt_study(folder: Path, trials: int = 7) -> Study:
    """The realistic study: an enqueued baseline, ``trials`` of the prompt proposer, two random ones, one
    failure; model calls of both kinds (the optimizer's and the task model's), priced."""
    study = create_study(
        NAME,
        SPACE,
        direction="maximize",
        metric="exact_match",
        storage="memory:",
        proposer="prompt",
        model=optimizer(),
        seed=3,
        proposer_options={"numeric": 0.0},
        prices=PRICES,
    )
    study.enqueue({"instructions": START, "temperature": 0.7, "shots": 2, "style": "plain"})
    task = ScriptedClient(default=task_model, model="task")
    evaluator = DevSetEvaluator(write_jsonl(folder / "dev.jsonl", REVIEWS), prompt=TEMPLATE, task_model=task)
    study.optimize(evaluator, n_trials=trials + 1)
    randomly = create_study(
        NAME,
        SPACE,
        direction="maximize",
        metric="exact_match",
        storage=study.storage,
        proposer="random",
        model=optimizer(),
        seed=4,
        prices=PRICES,
        load_if_exists=True,
    )
    randomly.optimize(evaluator, n_trials=2)
    failing = randomly.ask()
    randomly.tell(failing, state="failed", error="TimeoutError: the task model took <longer> than 30 s & gave up")
    return randomly


def empty_study(space: Space | None = None, name: str = "empty") -> Study:
    """A study with no trial (and no model): every plot has nothing to draw."""
    return create_study(name, space or SPACE, storage="memory:", proposer="random")


def failing_study(n: int = 3) -> Study:
    """A study whose every trial failed."""
    study = create_study("failing", SPACE, storage="memory:", proposer="random", seed=1)
    for _ in range(n):
        study.tell(study.ask(), state="failed", error="ValueError: <boom>")
    return study


def numeric_study(n: int = 12, storage: str = "memory:") -> Study:
    """Numbers only, no model: a quadratic bowl minimized by random search."""
    space = Space(x=Float(-2.0, 2.0), lr=Float(1e-4, 1.0, log=True), depth=Int(1, 6), act=Categorical(["relu", "tanh"]))
    study = create_study("bowl", space, storage=storage, proposer="random", seed=0)
    study.optimize(lambda p: p["x"] ** 2 + (0.5 if p["act"] == "tanh" else 0.0) + 0.1 * p["depth"], n_trials=n)
    return study
