"""Outputs that say nothing: empty, whitespace, only punctuation, or a loop repeated until the output ends.

Such an output is never a correct answer, nor a correct refusal: a model that answers "" to every
question must not earn the refusal accuracy of one that says "资料中没有相关信息，无法回答". The scorers
score a degenerate output 0 on every task type and record the reason, and ``results.json`` counts them.

No library recognises degenerate generations (repetition penalties act while decoding; they judge
nothing afterwards), so this is hand-written. It only looks at the end of the output: a model stuck in a
loop repeats until ``max_new_tokens`` cuts it off, so the loop is what the output ends with.
"""

from __future__ import annotations

import re
import unicodedata

# Reasons, fixed strings so that they can be counted.
EMPTY, WHITESPACE, PUNCTUATION, REPEATED_TOKEN, REPEATED_PHRASE = (
    "empty", "whitespace", "punctuation only", "repeated token", "repeated phrase")
# The two reasons that mean "nothing at all was said" (``results.json`` counts them as ``empty``).
NOTHING = (EMPTY, WHITESPACE)

# --- Thresholds, and why they are what they are --------------------------------------------------
# A loop is a unit of 1..MAX_PERIOD characters (whitespace collapsed) repeated to the end of the output.
# 40 characters covers a stuck token ("的", "好的", "A "), a word, and a short sentence
# ("年费为100元。" repeated); a longer unit repeated is rare and is cut off by max_new_tokens first.
MAX_PERIOD = 40
# Repetitions needed. One character 8 times: real Chinese and English never repeat a character 8 times
# at the end of an answer (laughter "哈哈哈哈" and "......" stay below it), while a loop cut off at even 12
# new tokens repeats it 12 times or more. Longer units need fewer repetitions, because two to four
# characters repeated 4 times ("好的好的好的好的", "A A A A A") is already no sentence of any language.
MIN_REPEATS_CHAR = 8
MIN_REPEATS_UNIT = 4
# ... and the loop must fill at least half of the output: a long, real answer that happens to end with
# "……" or "!!!!" is not a loop. A unit repeated LONG_LOOP times or more is a loop whatever came before
# it (a real answer followed by "的" × 16 was cut off mid-loop, not finished).
MIN_SHARE = 0.5
LONG_LOOP = 16
# Numbers legitimately end in runs of the same digit (1000000000, 0.3333333333333333 has 16 threes,
# 1/11 = 0.09090909090909091), so a unit made only of digits must run longer than any number a model
# writes as an answer.
MIN_DIGIT_RUN = 24

_SPACE = re.compile(r"\s+")


def _is_space(ch: str) -> bool:
    # Zero-width and control characters (U+200B, U+FEFF, \x00) show nothing either.
    return ch.isspace() or unicodedata.category(ch) in ("Zs", "Zl", "Zp", "Cc", "Cf")


def _has_content(text: str) -> bool:
    """A letter (any script, CJK included) or a digit; punctuation, symbols and marks alone are not content."""
    return any(unicodedata.category(ch)[0] in "LN" for ch in text)


def _periodic_run(text: str, period: int) -> int:
    """Length of the longest suffix of ``text`` with this period (text[i] == text[i + period] throughout).

    Compared character by character, a loop cut off mid-unit ("好的好的好的好") still counts. For a
    normal text the first comparison already fails, so checking every period is cheap."""
    n = len(text)
    if n < 2 * period:
        return 0
    i = n - period - 1
    while i >= 0 and text[i] == text[i + period]:
        i -= 1
    run = n - i - 1  # characters from i + 1 to the end
    return run if run >= 2 * period else 0


def _loop(text: str) -> str | None:
    """REPEATED_TOKEN / REPEATED_PHRASE when ``text`` ends in a loop that the thresholds call degenerate."""
    n = len(text)
    for period in range(1, min(MAX_PERIOD, n // 2) + 1):
        run = _periodic_run(text, period)
        if not run:
            continue
        repeats = run / period
        unit = text[n - period :]
        if unit.isdigit():
            if run >= MIN_DIGIT_RUN and run >= MIN_SHARE * n:
                return REPEATED_TOKEN
            continue
        needed = MIN_REPEATS_CHAR if period == 1 else MIN_REPEATS_UNIT
        if repeats >= LONG_LOOP or (repeats >= needed and run >= MIN_SHARE * n):
            # Up to 4 characters is a token or a short word ("的", "好的", "A ", "the "); longer is a phrase.
            return REPEATED_TOKEN if len(unit.strip()) <= 4 else REPEATED_PHRASE
    return None


def degenerate_reason(output: str | None) -> str | None:
    """Why ``output`` says nothing ("empty", "whitespace", "punctuation only", "repeated token",
    "repeated phrase"), or None for a real output, however short ("B", "是", "3年", "{}", "[]")."""
    if output is None or output == "":
        return EMPTY
    if not isinstance(output, str):
        output = str(output)
    if all(_is_space(ch) for ch in output):
        return WHITESPACE
    if not _has_content(output):
        # An empty JSON list or object is an answer ("no entities", "no fields"), fenced or not.
        if re.sub(r"[\s`]", "", output) in ("[]", "{}"):
            return None
        return PUNCTUATION
    text = _SPACE.sub(" ", "".join(" " if _is_space(ch) else ch for ch in output)).strip()
    # The loop may be of punctuation ("答案是B。。。。。。。。。。"), or of words followed by one closing mark
    # ("好好好好好好好好好好！"): look at the text as it is, then without its closing punctuation.
    found = _loop(text)
    if found:
        return found
    trimmed = text
    while trimmed and not _has_content(trimmed[-1]):
        trimmed = trimmed[:-1].rstrip()
    if trimmed != text:
        return _loop(trimmed)
    return None
