"""Steering answers by audience: the system prompts that say who is asking (the original design's researcher /
engineer / student). Curate writes audience variants of its examples with them, synthesis asks for them, and
`ask`'s `/audience` puts them in front of a conversation, so the adapter meets the same wording it was trained on.
"""

from __future__ import annotations

AUDIENCES = {
    "researcher": {
        "en": "You are assisting a quantum computing researcher. Be precise and keep the mathematics.",
        "es": "Ayudas a una investigadora en computación cuántica. Sé preciso y conserva las matemáticas.",
    },
    "engineer": {
        "en": "You are assisting an engineer who builds quantum machine learning software. Be practical.",
        "es": "Ayudas a un ingeniero que desarrolla software de aprendizaje automático cuántico. Sé práctico.",
    },
    "student": {
        "en": "You are assisting a student who is new to quantum machine learning. Explain step by step and "
              "define each term before using it.",
        "es": "Ayudas a un estudiante que empieza en el aprendizaje automático cuántico. Explica paso a paso y "
              "define cada término antes de usarlo.",
    },
}


def audience_prompt(audience: str, language: str = "en") -> str:
    """The system prompt for an audience (KeyError for an unknown one: callers validate user input first)."""
    return AUDIENCES[audience].get(language, AUDIENCES[audience]["en"])
