"""The stage-2 mix (`imp_1m`) as conversations of realistic length, per source, at its real counts.

Why: how much padding a sampler leaves depends on the spread of sample lengths, and the synthetic sources
(bench/synth_sources.py) hold the real record counts and per-image question counts but one fixed sentence
per record kind. So the counts and groupings come from there (and from manifests/imp_1m.yaml's takes),
and the text of every turn is drawn from a per-source model of its length in words, each from what the
source publishes: LLaVA-1.5's Table 7 split of the 665K mix (COCO 364,100 = LLaVA-Instruct 158K +
VQAv2 83K + OK-VQA 9K + A-OKVQA 66K + RefCOCO; GQA 72,140; OCR-VQA 80,000; VG 86,417; ShareGPT text-only
40,688; TextCaps dropped), the file sizes of LLaVA-Instruct's parts (conversation_58k 126 MB ~ 3 rounds of
~55-word answers, detail_23k ~ 105 words, complex_reasoning_77k ~ 110 words), VQA questions of a few
words with one- to three-word answers and LLaVA's answer-format suffix, ShareGPT-4V's ~942-character
captions, LAION-GPT-V's similar GPT-4V captions, ALLaVA's long GPT-4V answers. These are models, not
measurements of the real files (none are on this machine); `imp-data build` on the real sources writes
the true `text_words` into index.parquet.

Numpy and the standard library only: bench/gpu_check.py uses it on a machine without polars.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.synth_sources import COUNTS

VQA_SUFFIX = "Answer the question using a single word or phrase."
LETTER_SUFFIX = "Answer with the option's letter from the given choices directly."
WORDS = ("the a of and to in is on with what this that image for are there it as at by from how many color "
         "which who where man woman person people table chart value year figure shown left right top bottom "
         "red blue green white black small large two three building street car sign text title label number "
         "percentage total increase between describe detail region picture photo scene background water sky "
         "tree dog cat food plate book author genre answer option document page date name city country game "
         "player wearing holding sitting standing next behind front near under several various suggests likely "
         "because however overall visible appears indicates provides important feature information question "
         "0.12 0.34 0.56 0.78 [0.21, 0.45, 0.63, 0.88] 1990 2010 25% 3.5 A. B. C. D.").split()
CDF = np.cumsum(1.0 / np.arange(1, len(WORDS) + 1))
CDF /= CDF[-1]  # Zipf-like word frequencies: the common words are short, as in real text


@dataclass(frozen=True)
class Part:
    """One kind of record: how many in the mix, image or not, and its length model in words.

    rounds: mean question-answer rounds (1 + Poisson(rounds - 1)), or exact when `fixed_rounds`.
    question / answer: (median words, lognormal sigma) per turn; suffix: appended to the first question.
    """

    source: str
    name: str
    count: int
    image: bool
    rounds: float
    question: tuple[float, float]
    answer: tuple[float, float]
    suffix: str = ""
    fixed_rounds: bool = False


def stage2_parts() -> list[Part]:
    """imp_1m's record kinds at their counts in the mix (takes of manifests/imp_1m.yaml)."""
    coco = {"llava_conversation": 58_000, "llava_detail": 23_000, "llava_complex": 77_000, "vqav2": 83_000,
            "okvqa": 9_000, "aokvqa": 66_000}
    refcoco = COUNTS["llava_665k"] - COUNTS["textcaps"] - COUNTS["sharegpt_text"] - 86_417 - 72_140 - 80_000 \
        - sum(coco.values())  # COCO's 364,100 less the parts above
    llava = "llava_665k"
    return [
        Part(llava, "llava_conversation", coco["llava_conversation"], True, 3.3, (10, 0.35), (55, 0.6)),
        Part(llava, "llava_detail", coco["llava_detail"], True, 1, (9, 0.2), (105, 0.3)),
        Part(llava, "llava_complex", coco["llava_complex"], True, 1, (18, 0.4), (110, 0.35)),
        Part(llava, "vqav2", coco["vqav2"], True, 5.4, (6, 0.3), (1, 0.3), VQA_SUFFIX),
        Part(llava, "okvqa", coco["okvqa"], True, 1, (8, 0.3), (1, 0.3), VQA_SUFFIX),
        Part(llava, "aokvqa", coco["aokvqa"], True, 1, (20, 0.25), (1, 0.0), LETTER_SUFFIX),
        Part(llava, "refcoco", refcoco, True, 4, (14, 0.2), (4, 0.5)),
        Part(llava, "gqa", 72_140, True, 10, (8, 0.35), (1, 0.3), VQA_SUFFIX),
        Part(llava, "ocr_vqa", 80_000, True, 5, (7, 0.3), (3, 0.6), VQA_SUFFIX),
        Part(llava, "vg", 86_417, True, 8, (14, 0.2), (4, 0.5)),
        Part(llava, "sharegpt_text", COUNTS["sharegpt_text"], False, 2.5, (45, 1.0), (220, 0.8)),
        # the grouped VQA sources: one record per image, its questions as rounds (synth_sources' groupings)
        Part("dvqa", "dvqa", 10_000, True, COUNTS["dvqa_per_image"], (9, 0.25), (1, 0.3)),
        Part("chartqa", "chartqa", 4_000, True, 1.15, (12, 0.3), (1, 0.4), VQA_SUFFIX),
        Part("docvqa", "docvqa", 10_000, True, 4, (9, 0.3), (2, 0.6), VQA_SUFFIX, fixed_rounds=True),
        Part("ai2d", "ai2d", 4_000, True, 2, (18, 0.25), (1, 0.0), LETTER_SUFFIX, fixed_rounds=True),
        Part("infographicvqa", "infographicvqa", 4_000, True, 4, (12, 0.3), (2, 0.6), VQA_SUFFIX, fixed_rounds=True),
        Part("sharegpt4v", "sharegpt4v", 20_000, True, 1, (8, 0.3), (160, 0.3)),
        Part("laion_gpt4v", "laion_gpt4v", 10_000, True, 1, (8, 0.3), (170, 0.45)),
        Part("allava", "allava", 300_000, True, 1, (22, 0.4), (120, 0.4)),
    ]


def stage1_parts() -> list[Part]:
    """LCS-558K (stage 1): one BLIP caption per image, ~10 words (the plain template drops the question)."""
    return [Part("llava_pretrain", "llava_pretrain", 558_128, True, 1, (4, 0.2), (10, 0.35))]


def _words(rng: np.random.Generator, median: float, sigma: float) -> str:
    n = max(1, int(round(median * np.exp(sigma * rng.standard_normal()))))
    return " ".join([WORDS[i] for i in np.searchsorted(CDF, rng.random(n)).tolist()])


def conversation(part: Part, rng: np.random.Generator) -> list[dict]:
    """One record's turns in LLaVA's format (`<image>` in the first human turn when it has an image)."""
    rounds = int(part.rounds) if part.fixed_rounds else 1 + rng.poisson(part.rounds - 1)
    if part.name == "dvqa":  # synth_sources: int(11.65) questions per chart, one more for every third
        rounds = int(part.rounds) + (rng.random() < 1 / 3)
    turns = []
    for r in range(rounds):
        q = _words(rng, *part.question) + (f"\n{part.suffix}" if part.suffix and r == 0 else "")
        turns += [{"from": "human", "value": ("<image>\n" if part.image and r == 0 else "") + q},
                  {"from": "gpt", "value": _words(rng, *part.answer)}]
    return turns


def sample_records(parts: list[Part], n: int | None, seed: int = 0) -> list[dict]:
    """`n` records drawn across the parts in proportion to their counts (all of them when n is None),
    in a seeded random order: {"key", "source", "part", "image" (a name or None), "conversations"}."""
    rng = np.random.default_rng(seed)
    total = sum(p.count for p in parts)
    take = [p.count if n is None else max(1, round(n * p.count / total)) for p in parts]
    records = [{"key": f"{p.name}_{i:07d}", "source": p.source, "part": p.name,
                "image": f"{p.name}/{i}.jpg" if p.image else None, "conversations": conversation(p, rng)}
               for p, k in zip(parts, take) for i in range(k)]
    return [records[i] for i in rng.permutation(len(records))]


def text_words(record: dict) -> int:
    """Words of all turns, as the index's `text_words` (`\\S+` runs, `<image>` included, as LLaVA's split)."""
    return sum(len(t["value"].split()) for t in record["conversations"])
