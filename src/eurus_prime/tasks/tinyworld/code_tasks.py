"""Small Python function tasks with hidden tests, and their (imperfect) demonstrator.

Each template is a one-line function: a description the user reads ("returns x times 3 plus 2"),
the correct body, and the hidden tests computed by running that body. The ground truth uses the
Eurus-2-RL-Data code shape: JSON ``{"fn_name", "inputs", "outputs"}`` where ``inputs[i]`` is the
argument list of test i and ``outputs[i]`` its return value (call-based, APPS style).

Six templates carry a systematic misconception of the demonstrator (``a - x`` for "x minus a",
``x * (a + b)`` for "x times a plus b", ``>=`` for "greater than", ascending for "largest to
smallest", a lost pair of brackets for "plus a, all times b"). As in
``math_tasks``, the demonstrator writes the wrong body with probability ``misconception_rate``, and
the hidden tests include the boundary cases that the wrong body fails.
"""

from __future__ import annotations

import json
import random
import string
from collections.abc import Callable
from dataclasses import dataclass

FN_NAMES = (
    "f",
    "g",
    "h",
    "calc",
    "solve",
    "compute",
    "answer",
    "result",
    "work",
    "apply",
    "run",
    "go",
)


@dataclass(frozen=True)
class CodeTemplate:
    """One family of function tasks."""

    difficulty: int
    kind: str  #: argument kind: "int", "list" or "str"
    description: str  #: with {arg} and constants {a} {b} {k} {t} {c}
    body: str  #: correct return expression
    wrong_body: str | None = None  #: the misconception's return expression


# Every template has a constant, so that each has hundreds of distinct prompts (names x argument
# names x constants) and a split of a few thousand code tasks is not dominated by a few templates.
TEMPLATES: tuple[CodeTemplate, ...] = (
    CodeTemplate(1, "int", "{arg} plus {a}", "{arg} + {a}"),
    CodeTemplate(1, "int", "{arg} times {a}", "{arg} * {a}"),
    CodeTemplate(1, "int", "{arg} minus {a}", "{arg} - {a}", "{a} - {arg}"),
    CodeTemplate(1, "list", "the sum of {arg} plus {a}", "sum({arg}) + {a}"),
    CodeTemplate(1, "list", "the largest item of {arg} minus {a}", "max({arg}) - {a}"),
    CodeTemplate(1, "list", "the smallest item of {arg} plus {a}", "min({arg}) + {a}"),
    CodeTemplate(1, "list", "the length of {arg} times {a}", "len({arg}) * {a}"),
    CodeTemplate(1, "str", "{arg} followed by {c}", "{arg} + {c}"),
    CodeTemplate(2, "int", "{arg} times {a} plus {b}", "{arg} * {a} + {b}", "{arg} * ({a} + {b})"),
    CodeTemplate(2, "list", "{arg} with every item times {k}", "[v * {k} for v in {arg}]"),
    CodeTemplate(2, "list", "the even items of {arg}, each plus {a}", "[v + {a} for v in {arg} if v % 2 == 0]"),
    CodeTemplate(2, "str", "{arg} repeated {k} times", "{arg} * {k}"),
    CodeTemplate(
        2,
        "list",
        "the number of items of {arg} greater than {t}",
        "len([v for v in {arg} if v > {t}])",
        "len([v for v in {arg} if v >= {t}])",
    ),
    CodeTemplate(
        2,
        "list",
        "{arg} sorted from largest to smallest, each plus {a}",
        "[v + {a} for v in sorted({arg}, reverse=True)]",
        "[v + {a} for v in sorted({arg})]",
    ),
    CodeTemplate(
        3,
        "int",
        "{arg} plus {a}, all times {b}",
        "({arg} + {a}) * {b}",
        "{arg} + {a} * {b}",
    ),
    CodeTemplate(
        3,
        "list",
        "the sum of the items of {arg} greater than {t}",
        "sum(v for v in {arg} if v > {t})",
        "sum(v for v in {arg} if v >= {t})",
    ),
)

#: Templates held out of sft/train/val: the tiny world's *novel* test functions (``world``). Each
#: composes parts that the training templates teach ("minus", "all times", "the largest item",
#: "greater than", "sorted from largest to smallest", "followed by") into a function no training
#: template asks for; the first four reuse a part that the demonstrator misconceives, so a policy
#: that unlearned the misconception in training should carry that over.
NOVEL_TEMPLATES: tuple[CodeTemplate, ...] = (
    CodeTemplate(2, "int", "{arg} minus {a}, all times {b}", "({arg} - {a}) * {b}"),
    CodeTemplate(2, "list", "the number of items of {arg} smaller than {t}", "len([v for v in {arg} if v < {t}])"),
    CodeTemplate(2, "list", "the largest item of {arg} minus {a}, all times {b}", "(max({arg}) - {a}) * {b}"),
    CodeTemplate(2, "list", "{arg} sorted from largest to smallest", "sorted({arg}, reverse=True)"),
    CodeTemplate(1, "list", "the largest item of {arg} plus {a}", "max({arg}) + {a}"),
    CodeTemplate(1, "list", "the smallest item of {arg} times {a}", "min({arg}) * {a}"),
    CodeTemplate(2, "list", "the odd items of {arg}, each plus {a}", "[v + {a} for v in {arg} if v % 2 == 1]"),
    CodeTemplate(1, "str", "{c} followed by {arg}", "{c} + {arg}"),
)

ARG_NAMES = {"int": ("x", "n", "m"), "list": ("xs", "nums", "items"), "str": ("s", "word", "text")}


@dataclass(frozen=True)
class CodeTask:
    template: CodeTemplate
    fn_name: str
    arg: str
    constants: dict
    tests: tuple  #: argument lists, one per hidden test

    @property
    def difficulty(self) -> int:
        return self.template.difficulty

    @property
    def question(self) -> str:
        what = self.template.description.format(arg=self.arg, **self.constants)
        return f"Write a function {self.fn_name}({self.arg}) that returns {what}."

    def source(self, body: str) -> str:
        expr = body.format(arg=self.arg, **self.constants)
        return f"def {self.fn_name}({self.arg}):\n    return {expr}"

    @property
    def solution(self) -> str:
        return self.source(self.template.body)

    @property
    def ground_truth(self) -> str:
        """Eurus-2 code ground truth: call-based hidden tests as JSON."""
        fn = _compile(self.solution, self.fn_name)
        outputs = [fn(*args) for args in self.tests]
        return json.dumps({"fn_name": self.fn_name, "inputs": [list(a) for a in self.tests], "outputs": outputs})


def _compile(source: str, fn_name: str) -> Callable:
    # Only ever called on the generator's own templates, never on model output.
    namespace: dict = {}
    exec(source, namespace)  # noqa: S102
    return namespace[fn_name]


def _sample_tests(rng: random.Random, kind: str, threshold: int | None, n_tests: int) -> tuple:
    tests = []
    for i in range(n_tests):
        if kind == "int":
            tests.append((rng.randint(-5, 20),))
        elif kind == "list":
            values = rng.sample(range(0, 13), rng.randint(3, 6))  # distinct: order is testable
            if threshold is not None and i < n_tests - 1 and threshold not in values:
                values[rng.randrange(len(values))] = threshold  # the boundary case
            tests.append((values,))
        else:
            tests.append(("".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 5))),))
    return tuple(tests)


def sample_code_task(rng: random.Random, template: CodeTemplate, n_tests: int = 6) -> CodeTask:
    # Single-digit constants: copying them is one token, so a tiny model masters the mechanics
    # quickly and its accuracy is limited by the misconceptions, not by unfinished training.
    constants = {
        "a": rng.randint(1, 9),
        "b": rng.randint(1, 9),
        "k": rng.randint(2, 9),  # a multiplier or repeat count
        "t": rng.randint(1, 9),  # a threshold, drawn inside the lists' value range
        "c": repr("".join(rng.choices(string.ascii_lowercase, k=rng.randint(1, 2)))),
    }
    used = {c: v for c, v in constants.items() if "{" + c + "}" in template.body}
    return CodeTask(
        template=template,
        fn_name=rng.choice(FN_NAMES),
        arg=rng.choice(ARG_NAMES[template.kind]),
        constants=used,
        tests=_sample_tests(rng, template.kind, used.get("t"), n_tests),
    )


def demonstrate_code(task: CodeTask, rng: random.Random, misconception_rate: float) -> str:
    """The demonstrator's action trace: restate the contract, then write the function."""
    body = task.template.body
    if task.template.wrong_body is not None and rng.random() < misconception_rate:
        body = task.template.wrong_body
    expr = body.format(arg=task.arg, **task.constants)
    return (
        f"[ASSESS]\n\nInput: {task.arg}. Output: {expr}.\n\nNext action: [OUTPUT]\n\n"
        f"[OUTPUT]\n\n```python\n{task.source(body)}\n```"
    )
