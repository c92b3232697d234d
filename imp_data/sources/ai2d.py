"""AI2D diagrams (`questions/<imageName>.json`, allenai.org/data/diagrams), SOURCES §8.

`questions` is a dict keyed by the question text; `correctAnswer` indexes `answerTexts` (one mirror
stores it as a string: coerced); `abcLabel` picks `abc_images/` (letter-labelled) or `images/`. Questions
become lettered multiple choice with the LLaVA-1.5 A-OKVQA suffix; the answer is the letter. Test
questions can be excluded by id (`exclude_question_ids_file`, one id per line).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pydantic import Field

from imp_data.sources.base import MULTIPLE_CHOICE_PROMPT, Adapter, Problem, Record, lettered_options, resolve_files
from imp_data.sources.jsonstream import read_json
from imp_data.sources.vqa import QA, VQAOptions, to_records


class AI2DOptions(VQAOptions):
    prompt: str | None = Field(
        default=MULTIPLE_CHOICE_PROMPT,
        description="Suffix after the lettered options (LLaVA-1.5 A-OKVQA / lmms-eval multiple-choice prompt).")
    exclude_question_ids_file: str | None = Field(
        default=None, description="Text file (relative to the location) of questionIds to skip, e.g. test ids.")


class AI2DAdapter(Adapter):
    name = "ai2d"
    description = "AI2D science diagrams, multiple choice"
    default_files = ["questions/*.json"]
    Options = AI2DOptions

    def _items(self, root: Path, files: list[str], excluded: set[str]) -> Iterator[QA | Problem]:
        for path in resolve_files(root, files):
            name = str(path.relative_to(root))
            doc = read_json(path)
            image_name = doc.get("imageName") if isinstance(doc, dict) else None
            questions = doc.get("questions") if isinstance(doc, dict) else None
            if not isinstance(image_name, str) or not isinstance(questions, dict):
                yield Problem(f"@{name}", "bad_type", f"{name}: expected {{imageName, questions: {{...}}}}")
                continue
            if not questions:
                yield Problem(image_name, "no_questions", f"{name}: no questions")
                continue
            for text, q in questions.items():
                qid = str(q.get("questionId", f"{image_name}-?")) if isinstance(q, dict) else f"{image_name}-?"
                if qid in excluded:
                    continue
                try:
                    options = [str(o) for o in q["answerTexts"]]
                    answer = int(q["correctAnswer"])
                    abc = bool(q.get("abcLabel", False))
                    options[answer]
                except (KeyError, TypeError, ValueError, IndexError) as err:
                    yield Problem(qid, "bad_type", f"{name} question {text!r}: {type(err).__name__} {err}")
                    continue
                image = f"{'abc_images' if abc else 'images'}/{image_name}"
                question = f"{text}\n{lettered_options(options)}"
                yield QA(qid, image, question, chr(ord("A") + answer), {"abc_label": abc}, f"{name} {text!r}")

    def read(self, root: Path, files: list[str], options: AI2DOptions) -> Iterator[Record]:
        excluded: set[str] = set()
        if options.exclude_question_ids_file:
            excluded = set((root / options.exclude_question_ids_file).read_text().split())
        yield from to_records(self._items(root, files, excluded), options)
