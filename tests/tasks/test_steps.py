"""What the step checkers share: the boxed line and the token maps of a label's spans."""

from eurus_prime.tasks.steps import boxed_line, span_tokens, token_steps


def test_token_maps():
    pieces = ["4", " +", " 1", " =", " 5", "\n", "5", " -"]
    assert span_tokens(pieces, (0, 9)) == [0, 1, 2, 3, 4]
    assert token_steps(pieces, ((0, 9), (10, 15))) == [0, 0, 0, 0, 0, -1, 1, 1]


def test_boxed_line_is_the_line_of_the_last_box():
    text = "a \\boxed{1}\nThe answer is \\boxed{2}\nbye"
    boxed, span = boxed_line(text)
    assert [m.group(1) for m in boxed] == ["1", "2"]
    assert text[span[0] : span[1]] == "The answer is \\boxed{2}"
    assert boxed_line("no box") == ([], None)
