"""Token-level views of a response: the text piece each token adds (the rollout report colours them,
the step checkers map steps to tokens with them)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _decode(tokenizer: Any, ids: Sequence[int]) -> str:
    return tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)


def token_pieces(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """The text each token adds, one string per id: ``"".join(pieces) == tokenizer.decode(ids)``.

    Decoding tokens one by one breaks characters that byte-level BPE splits over several tokens
    (``é``, emoji) and words whose leading space a SentencePiece decoder drops. So each piece is the
    growth of the decoded text over a short window of preceding tokens; a token that ends inside a
    character gets ``""`` and the one that completes it carries the character. Special tokens
    (the end-of-turn token) are kept: they are scored like any other."""
    ids = [int(i) for i in ids]
    pieces: list[str] = []
    start, done = 0, 0  # ids[start:done] is already emitted context; ids[done:] is not
    for i in range(len(ids)):
        before = _decode(tokenizer, ids[start:done])
        after = _decode(tokenizer, ids[start : i + 1])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            pieces.append(after[len(before) :])
            start, done = done, i + 1
        else:
            pieces.append("")
    if done < len(ids):  # the response stops inside a character: its replacement text
        pieces[-1] = _decode(tokenizer, ids[start:])[len(_decode(tokenizer, ids[start:done])) :]
    return pieces
