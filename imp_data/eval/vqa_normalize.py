"""The answer normalisation of the official VQAv2 evaluator (`vqaEval.py`) and of LLaVA's EvalAI
answer processor (`m4c_evaluator.py`), quirks included (docs/eval.md §3.3-§3.4, §4.1): the 21-character
punctuation list with its "original string has a space next to it" test, the digit-comma-digit trigger,
the period rule whose look-behind typo makes only "not followed by a digit" count and whose `count`
argument caps removals at 32, number words, articles, and the contraction table with its oddities.
"""

from __future__ import annotations

import re

PUNCT = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]
COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")  # the official typo: the first group never matches
NUMBERS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
           "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
ARTICLES = {"a", "an", "the"}
CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't", "dont": "don't",
    "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
    "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd", "howll": "how'll",
    "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've", "isnt": "isn't", "itd": "it'd",
    "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't",
    "mustve": "must've", "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've",
    "she'dve": "she'd've", "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've", "somebodyll": "somebody'll",
    "somebodys": "somebody's", "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've", "somethingll": "something'll",
    "thats": "that's", "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've",
    "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas", "wasnt": "wasn't",
    "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll",
    "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've",
    "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're", "whys": "why's",
    "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd",
    "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're", "youve": "you've",
}


def process_punctuation(text: str, *, comma_trigger: bool = True) -> str:
    """vqaEval's processPunctuation (docs/eval.md §3.3).

    Each listed character is deleted when the *original* text has it next to a space (or the digit-comma-digit
    trigger fires), else replaced by a space; then at most 32 periods not followed by a digit are removed.

    Args:
        text: The pre-stepped answer.
        comma_trigger: False for the EvalAI processor, whose trigger can never fire (commas already deleted).

    Example:
        >>> process_punctuation("1,000 t-shirts"), process_punctuation("t-shirt")
        ('1000 tshirts', 't shirt')
    """
    out = text
    trigger = comma_trigger and COMMA_STRIP.search(text) is not None
    for p in PUNCT:
        if (p + " " in text or " " + p in text) or trigger:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return PERIOD_STRIP.sub("", out, 32)  # 32 = re.UNICODE passed positionally as `count` upstream


def process_digit_article(text: str) -> str:
    """vqaEval's processDigitArticle (docs/eval.md §3.4): lowercase, whitespace split, number words, drop articles,
    contractions, single-space join.

    Example:
        >>> process_digit_article("No one  dont"), process_digit_article("Im")
        ("no 1 don't", 'im')
    """
    words = []
    for word in text.lower().split():
        word = NUMBERS.get(word, word)
        if word not in ARTICLES:
            words.append(word)
    return " ".join(CONTRACTIONS.get(w, w) for w in words)


def pre_step(text: str) -> str:
    """vqaEval's whitespace pre-step (docs/eval.md §3.2 step 1): tab and newline to space, then Unicode strip."""
    return text.replace("\n", " ").replace("\t", " ").strip()
