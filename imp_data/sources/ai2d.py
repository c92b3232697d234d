"""AI2D diagrams (`questions/<imageName>.json`, allenai.org/data/diagrams), docs/sources.md §8.

One small JSON file per diagram: `questions` is a dict keyed by the question text; `correctAnswer`
indexes `answerTexts` (one mirror stores it as a string such as "1": coerced with `int`); `abcLabel`
picks `abc_images/` (letter-labelled diagram) or `images/`. Questions become lettered multiple choice
with LLaVA-1.5's A-OKVQA suffix, answered by the letter. Grouping is per image *path*, so the
letter-labelled and the plain rendering of one diagram are separate records.

A diagram file past a cap (larger than `limits.max_record_bytes`, nested deeper than the parser can go)
is one reject named `@questions/<file>`; the other diagrams go on.

AI2D's test split is a list of question ids, not files: `exclude_file` names one (question ids or image
names, one per line) and each excluded question is a `Problem` with reason `excluded`, so it is counted
rather than silently lost.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from imp_data.core.errors import SourceFormatError
from imp_data.core.source_options import AI2DOptions
from imp_data.sources.base import Adapter, Problem, Record, lettered_options, resolve_files
from imp_data.sources.jsoncaps import BadRecord, read_record
from imp_data.sources.vqa import QA, read_fields, to_records


def read_exclusions(path: Path) -> set[str]:
    """Ids in an exclusion file: one per line, blank lines and `#` comments ignored."""
    if not path.is_file():
        raise SourceFormatError(f"{path}: exclusion file not found — fix `exclude_file` in the recipe")
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return {line for line in lines if line}


def read_question(text: str, q: Any, image_name: str, name: str) -> QA | Problem:
    """One entry of a diagram's `questions` dict as a multiple-choice QA."""
    where = f"{name} question {text!r}"
    if not isinstance(q, dict):
        return Problem(f"@{name}:{text}", "bad_type", f"{where}: not an object")
    qid = read_fields(q, {"questionId": "id"}, f"@{name}:{text}", where)
    if isinstance(qid, Problem):
        return qid
    qid = qid[0]
    options, correct, abc = q.get("answerTexts"), q.get("correctAnswer"), q.get("abcLabel", False)
    if options is None or correct is None:
        return Problem(qid, "missing_field", f"{where}: no {'answerTexts' if options is None else 'correctAnswer'!r}")
    if not isinstance(options, list) or not options or len(options) > 26:
        return Problem(qid, "bad_type", f"{where}: 'answerTexts' must be a list of 1-26 options")
    try:
        if isinstance(correct, bool):
            raise ValueError
        index = int(correct)  # "1" -> 1 (one mirror stores strings); 1.5 and "b" are errors
        if index != correct and str(index) != str(correct).strip():
            raise ValueError
    except (TypeError, ValueError):
        return Problem(qid, "bad_type", f"{where}: 'correctAnswer' {correct!r} is not an index")
    if not 0 <= index < len(options):
        return Problem(qid, "bad_answer", f"{where}: 'correctAnswer' {index} is outside the {len(options)} options")
    if not isinstance(abc, bool):
        return Problem(qid, "bad_type", f"{where}: 'abcLabel' must be true or false")
    if not text.strip():
        return Problem(qid, "empty_question", f"{where}: blank question text")
    question = f"{text}\n{lettered_options([str(o) for o in options])}"
    image = f"{'abc_images' if abc else 'images'}/{image_name}"
    return QA(qid, image, question, chr(ord("A") + index), {"abc_label": abc}, where)


class AI2DAdapter(Adapter):
    name = "ai2d"
    description = "AI2D science diagrams, multiple choice"
    default_files = ["questions/*.json"]
    Options = AI2DOptions

    def _items(self, root: Path, files: list[str], excluded: set[str]) -> Iterator[QA | Problem]:
        for path in resolve_files(root, files):
            name = path.relative_to(root).as_posix()
            doc = read_record(path)  # one small file per diagram
            if isinstance(doc, BadRecord):
                yield Problem(f"@{name}", doc.reason, f"{name}: {doc.detail}")
                continue
            if not isinstance(doc, dict):
                raise SourceFormatError(f"{path}: expected a JSON object {{imageName, questions}}, "
                                        f"found a {type(doc).__name__}")
            image_name, questions = doc.get("imageName"), doc.get("questions")
            if not isinstance(image_name, str) or not image_name.strip():
                yield Problem(f"@{name}", "missing_field" if image_name is None else "bad_type",
                              f"{name}: 'imageName' must be a file name")
                continue
            if not isinstance(questions, dict):
                yield Problem(image_name, "missing_field" if questions is None else "bad_type",
                              f"{name}: 'questions' must be an object keyed by question text")
                continue
            if not questions:
                yield Problem(image_name, "no_questions", f"{name}: 'questions' is empty")
                continue
            for text, q in questions.items():
                qa = read_question(text, q, image_name, name)
                if isinstance(qa, QA) and (qa.qid in excluded or image_name in excluded):
                    yield Problem(qa.qid, "excluded", f"{qa.where}: listed in the exclusion file")
                    continue
                yield qa

    def read(self, root: Path, files: list[str], options: AI2DOptions) -> Iterator[Record]:
        excluded = read_exclusions(root / options.exclude_file) if options.exclude_file else set()
        yield from to_records(self._items(root, files, excluded), options)
