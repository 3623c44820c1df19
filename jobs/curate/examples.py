"""Instruction examples in the chat format, from selected paragraphs.

Templates (spec `curate.templates`): explain, define, relate (two concepts), researcher and engineer (audience
variants). Every assistant answer is made of the source's own sentences (the paragraph, its context, its
equations or code), never invented text; each example carries its provenance.
"""

from __future__ import annotations

import re

from jobs.core.spec.audiences import audience_prompt
from jobs.core.store.dataset_folder import example_id
from jobs.core.text.prose import language, phrasing
from jobs.core.text.prose import sentences as split_sentences
from jobs.curate.select import Selected

QUESTIONS = {
    "en": {
        "explain": ["Explain the role of {c} in \"{t}\".", "What does the material on \"{t}\" say about {c}?",
                    "Summarise what \"{t}\" explains about {c}."],
        "define": ["What is meant by {c}?", "Define {c}.", "Give a definition of {c}."],
        "relate": ["How are {c} and {d} related?", "What is the connection between {c} and {d}?"],
        "researcher": ["From a research perspective, what does \"{t}\" establish about {c}? Keep the "
                       "mathematical details.", "State the formal content on {c} in \"{t}\", with the equations."],
        "engineer": ["How do I work with {c} in practice? Show the relevant code.",
                     "As an engineer, how is {c} implemented in \"{t}\"?"],
    },
    "es": {
        "explain": ["Explica {c} tal como se describe en \"{t}\".", "¿Qué dice el apartado \"{t}\" sobre {c}?"],
        "define": ["¿Qué es {c}?", "Define {c}."],
        "relate": ["¿Qué relación hay entre {c} y {d}?"],
        "researcher": ["Desde el punto de vista de la investigación, ¿qué establece \"{t}\" sobre {c}? "
                       "Conserva los detalles matemáticos."],
        "engineer": ["¿Cómo se trabaja con {c} en la práctica? Muestra el código relevante."],
    },
}
# "A quantum kernel is ...", "Variational Quantum Algorithms (VQA) are ...": the subject is what gets defined.
SUBJECT = re.compile(r"^(?:(?:the|a|an|el|la|los|las|un|una)\s+)?(?P<subj>[\w][\w\s()-]{1,80}?)\s+(?:is|are|refers to|"
                     r"denotes|es|son|se define como|se denomina)\s", re.I)
NOT_A_SUBJECT = re.compile(r"^(if|since|when|while|one|this|these|that|those|it|its|their|our|we|there|here|such|"
                           r"each|every|both|all|some|key|main|este|esta|estos|estas|esto|en|si|para|por|cuando|"
                           r"donde|como|nuestro|nuestra)\b", re.I)


def _join(sentences: list[str]) -> str:
    return "".join(s if not i or sentences[i - 1].endswith("\n") else " " + s
                   for i, s in enumerate(sentences)).strip()


def _prose(paragraphs) -> list:
    return [p for p in paragraphs if p.kind in ("prose", "caption")]


def _row(sel: Selected, template: str, messages: list[dict], paragraphs) -> dict:
    p = sel.paragraph
    return {"id": example_id(messages), "messages": messages, "template": template, "origin": "template",
            "writer": "", "source_path": p.file,
            "source_sha256": p.file_sha256, "section": p.section, "paragraph_ids": [q.id for q in paragraphs],
            "keywords": list(sel.keywords)}


def make_examples(sel: Selected, templates: tuple[str, ...], system_prompt: str | None, seed: int) -> list[dict]:
    """The examples one selected paragraph yields (a template is skipped when the text cannot ground it)."""
    p = sel.paragraph
    lang = language(p.text)
    q = QUESTIONS[lang]
    title = p.section.split(" > ")[-1] if p.section else p.doc.rsplit("/", 1)[-1]
    concepts = list(sel.keywords)
    concept = concepts[0] if concepts else title
    key = f"{seed}:{p.id}"
    rows = []

    def chat(question, answer, system=None):
        messages = []
        sys_text = " ".join(s for s in (system_prompt, system) if s)
        if sys_text:
            messages.append({"role": "system", "content": sys_text})
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer.strip()}]
        return messages

    context = sel.before + [p] + sel.after
    for template in templates:
        if template == "explain":
            used = _prose(sel.before) + [p] + _prose(sel.after)
            answer = "\n\n".join(x.text for x in used)
            question = phrasing(q["explain"], key + template).format(c=concept, t=title)
            rows.append(_row(sel, template, chat(question, answer), used))
        elif template == "define" and concepts:
            sentences = split_sentences(p.text)
            subject = None
            for sentence in sentences:
                m = SUBJECT.match(sentence)
                if m and any(re.search(r"(?<!\w)" + re.escape(k), m.group("subj"), re.I) for k in concepts) \
                        and len(m.group("subj").split()) <= 8 and not NOT_A_SUBJECT.match(m.group("subj")):
                    subject, defining = m.group("subj").strip(), [sentence]
                    if subject[1:2].islower():  # "Noise" -> "noise"; acronyms and names keep their case
                        subject = subject[0].lower() + subject[1:]
                    break
            if subject:
                rest = [s for s in sentences if s not in defining]
                answer = _join(defining) + ("\n\n" + _join(rest) if rest else "")
                question = phrasing(q["define"], key + template).format(c=subject)
                rows.append(_row(sel, template, chat(question, answer), [p]))
        elif template == "relate":
            pair = [k for k in concepts if not any(k.lower() in o.lower() for o in concepts if o != k)]
            if len(pair) >= 2:
                a, b = pair[0], pair[1]
                sentences = split_sentences(p.text)
                both = [s for s in sentences if a.lower() in s.lower() or b.lower() in s.lower()]
                answer = _join(both) if len(_join(both)) >= 80 else p.text
                question = phrasing(q["relate"], key + template).format(c=a, d=b)
                rows.append(_row(sel, template, chat(question, answer), [p]))
        elif template == "researcher":
            used = [x for x in context if x is p or (x.kind == "prose" and "$" in x.text)]
            if any("$" in x.text for x in used):
                answer = "\n\n".join(x.text for x in used)
                question = phrasing(q["researcher"], key + template).format(c=concept, t=title)
                system = audience_prompt("researcher", lang)
                rows.append(_row(sel, template, chat(question, answer, system), used))
        elif template == "engineer":
            used = [x for x in context if x is p or x.kind == "code"]
            if len(used) > 1:
                answer = "\n\n".join(x.text for x in used)
                question = phrasing(q["engineer"], key + template).format(c=concept, t=title)
                system = audience_prompt("engineer", lang)
                rows.append(_row(sel, template, chat(question, answer, system), used))
    return rows
