"""The example's metric: the output names the expected language, and no other.

Why not the built-in ``contains``: a prompt that makes the model list every label ("English, French, Spanish
or German") would contain every answer. Counting an answer right only when it names one language keeps the
optimizer from finding that.
"""

import re

LANGUAGES = ("english", "french", "spanish", "german")


def names_one_language(output: str, example: dict) -> float:
    """1.0 when the expected language is the only one of the four the output names."""
    named = {language for language in LANGUAGES if re.search(rf"\b{language}\b", output.casefold())}
    return float(named == {example["expected"]})
