"""A probabilistic sentence grammar for the synthetic corpus.

Sentences are statements, yes/no and wh-questions, imperatives, existentials and copular sentences, with
relative clauses, prepositional phrases, time adverbials, coordination, subordinate clauses, clause complements
(``she said that ...``) and numbers written as words (counts, clock times, years, dates, prices, digit codes).
Verbs agree with their subjects and are chosen to fit them (people read texts and eat food; animals run and
hide), across seven tenses, modals and negation. Every choice is a weighted draw from one ``random.Random``,
so a seed fixes the sentence stream. Sentences have 3 to 25 words (longer or shorter draws are rejected).

:meth:`Grammar.sentence` returns the text espeak reads (capitalised, punctuated, so that prosody follows the
clauses); :func:`s3l.manifest.normalize_transcript` turns it into the upper-case transcript.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from s3l.synth import numbers as num
from s3l.synth import vocab as V
from s3l.synth.lexicon import Noun, Verb, article, nouns, verbs

MIN_WORDS, MAX_WORDS = 3, 25


@dataclass
class NP:
    words: list[str]
    plural: bool = False
    person: int = 3  # 1, 2 or 3 (agreement)


PRONOUNS = (("i", False, 1), ("you", True, 2), ("he", False, 3), ("she", False, 3), ("we", True, 1),
            ("they", True, 3))  # fmt: skip
OBJECT_PRONOUNS = ("me", "you", "him", "her", "us", "them")
POSSESSIVES = ("my", "your", "his", "her", "our", "their")
MODALS = (("can", "cannot", "can't"), ("could", "could not", "couldn't"), ("should", "should not", "shouldn't"),
          ("might", "might not", "might not"), ("must", "must not", "mustn't"), ("would", "would not", "wouldn't"))
SUBORDINATORS = ("when", "because", "after", "before", "while", "although", "if", "as soon as", "until", "since")
TENSES = (("past", 30), ("present", 18), ("future", 10), ("modal", 10), ("prog", 10), ("past_prog", 8),
          ("perfect", 8), ("going_to", 6))  # fmt: skip


class Grammar:
    """The sentence generator; one instance can be shared (all randomness comes from the ``rng`` argument)."""

    def __init__(self) -> None:
        self.people, self.jobs = nouns(V.PEOPLE), nouns(V.JOBS)
        self.animals, self.objects, self.texts = nouns(V.ANIMALS), nouns(V.OBJECTS), nouns(V.TEXTS)
        self.food, self.places, self.vehicles = nouns(V.FOOD_COUNT), nouns(V.PLACES), nouns(V.VEHICLES)
        self.events = nouns(V.EVENTS)
        self.v_object, self.v_text, self.v_food = verbs(V.V_OBJECT), verbs(V.V_TEXT), verbs(V.V_FOOD)
        self.v_person, self.v_animal, self.v_place = verbs(V.V_PERSON), verbs(V.V_ANIMAL), verbs(V.V_PLACE)
        self.v_intrans, self.v_motion = verbs(V.V_INTRANS), verbs(V.V_MOTION)
        self.v_animal_intrans, self.v_clause = verbs(V.V_ANIMAL_INTRANS), verbs(V.V_CLAUSE)
        self.v_percept = verbs(V.V_PERCEPT)

    def sentence(self, rng: random.Random) -> str:
        """One sentence of 3-25 words, capitalised and punctuated."""
        while True:
            words, end = _Draw(self, rng).sentence()
            n = sum(len(w.split()) for w in words if w != ",")
            if MIN_WORDS <= n <= MAX_WORDS:
                return _render(words, end)


def _render(words: list[str], end: str) -> str:
    text = " ".join(words).replace(" ,", ",")
    text = " ".join("I" if w == "i" else ("I'm" if w == "i'm" else w) for w in text.split(" "))
    return text[0].upper() + text[1:] + end


class _Draw:
    """The random choices for one sentence."""

    def __init__(self, g: Grammar, rng: random.Random) -> None:
        self.g, self.r = g, rng

    # ------------------------------------------------------------------------------------------- helpers
    def pick(self, seq: Sequence):
        return seq[self.r.randrange(len(seq))]

    def p(self, prob: float) -> bool:
        return self.r.random() < prob

    def weighted(self, options: Sequence[tuple]):
        total = sum(w for _, w in options)
        x = self.r.random() * total
        for value, w in options:
            x -= w
            if x < 0:
                return value
        return options[-1][0]

    # ---------------------------------------------------------------------------------------- noun phrases
    def det_np(self, n: Noun, adjs: Sequence[str] = (), adj_prob: float = 0.35, pl_prob: float = 0.3,
               indefinite: bool = False) -> NP:
        plural = self.p(pl_prob)
        head = [self.pick(adjs)] if adjs and self.p(adj_prob) else []
        if head and self.p(0.15):
            head.insert(0, self.pick(("very", "rather", "really", "quite")))
        if plural:
            det = self.weighted(((["the"], 35), (["some"], 12), ("num", 22), ([self.pick(POSSESSIVES)], 12),
                                 ([self.pick(("these", "those"))], 6), ([self.pick(("many", "few", "several"))], 8),
                                 ([], 5)))  # fmt: skip
            if indefinite and det and det[0] not in ("some", "many", "few", "several"):
                det = "num" if self.p(0.6) else []
            if det == "num":
                det = [num.random_quantity(self.r)[0]]
            return NP([*det, *head, n.pl], plural=True)
        det = self.weighted(((None, 32), (["the"], 50), ([self.pick(POSSESSIVES)], 12),
                             ([self.pick(("this", "that"))], 6)))  # fmt: skip
        if det is None or indefinite:
            det = [article((head or [n.sg])[0])]
        return NP([*det, *head, n.sg])

    def person(self, depth: int = 1, pronoun: float = 0.2) -> NP:
        r = self.r.random()
        if r < pronoun:
            w, pl, person = self.pick(PRONOUNS)
            return NP([w], pl, person)
        if r < pronoun + 0.25:
            return NP([self.pick(V.NAMES)])
        np = self.det_np(self.pick(self.g.people), V.PERSON_ADJ)
        if depth > 0 and self.p(0.12):
            np.words += ["who", *self.predicate(np, depth - 1, simple=True)]
        elif self.p(0.08):
            np.words += ["from", self.pick(V.CITIES)]
        return np

    def object_pronoun(self) -> NP:
        return NP([self.pick(OBJECT_PRONOUNS)])

    def thing(self, depth: int = 1, indefinite: bool = False) -> NP:
        np = self.det_np(self.pick(self.g.objects), V.THING_ADJ + V.COLOURS, indefinite=indefinite)
        if depth > 0 and self.p(0.1):
            subj = self.person(0)
            np.words += [self.pick(("that", "which")), *subj.words, *self.vgroup(self.pick(self.g.v_object), subj,
                                                                                  "past")]
        elif self.p(0.1):
            np.words += [self.pick(V.LOCATIVE_PREPS), *self.place().words]
        return np

    def food(self) -> NP:
        if self.p(0.4):
            mass = self.pick(V.FOOD_MASS)
            det = self.weighted(((["the"], 4), (["some"], 3), ([], 2), ([self.pick(POSSESSIVES)], 1)))
            adj = [self.pick(V.FOOD_ADJ)] if self.p(0.3) else []
            return NP([*det, *adj, mass])
        return self.det_np(self.pick(self.g.food), V.FOOD_ADJ)

    def place(self) -> NP:
        if self.p(0.1):
            return NP([self.pick(V.CITIES)])
        return self.det_np(self.pick(self.g.places), V.PLACE_ADJ, adj_prob=0.25, pl_prob=0.05)

    def animal(self, indefinite: bool = False) -> NP:
        adjs = V.COLOURS + ("big", "small", "old", "young", "hungry")
        return self.det_np(self.pick(self.g.animals), adjs, indefinite=indefinite)

    # -------------------------------------------------------------------------------------- verb groups
    def vgroup(self, v: Verb, subj: NP, tense: str, neg: bool = False) -> list[str]:
        """Finite verb words for a statement: ``["did", "not", "see"]``, ``["has", "seen"]``, ``["sees"]``."""
        return sum(self.vgroup_split(v, subj, tense, neg, question=False), [])

    def vgroup_split(self, v: Verb, subj: NP, tense: str, neg: bool, question: bool) -> tuple[list[str], list[str]]:
        """(words before the subject, words after it); only questions put anything before the subject."""
        third = subj.person == 3 and not subj.plural
        be_now = "am" if subj.person == 1 and not subj.plural else ("is" if third else "are")
        be_then = "was" if not subj.plural and subj.person != 2 else "were"
        short = self.p(0.5)
        if tense in ("past", "present") and not neg and not question:
            return [], [v.past if tense == "past" else (v.s if third else v.base)]
        if tense == "past":
            aux, form = "did", v.base
        elif tense == "present":
            aux, form = ("does" if third else "do"), v.base
        elif tense == "future":
            aux, form = "will", v.base
        elif tense == "modal":
            aux, form = self.pick(MODALS)[0], v.base
        elif tense == "prog":
            aux, form = be_now, v.ing
        elif tense == "past_prog":
            aux, form = be_then, v.ing
        elif tense == "perfect":
            aux, form = ("has" if third else "have"), v.pp
        else:  # going_to
            aux, form = be_now, f"going to {v.base}"
        if neg:
            neg_aux = _negate(aux, short or question)
            return ([neg_aux], [form]) if question else ([], [neg_aux, form])
        return ([aux], [form]) if question else ([], [aux, form])

    def tense(self) -> str:
        return self.weighted(TENSES)

    # ---------------------------------------------------------------------------------------- predicates
    def predicate(self, subj: NP, depth: int, simple: bool = False, tense: str | None = None,
                  neg: bool | None = None) -> list[str]:
        """Verb group plus complements for a person subject."""
        tense = tense or ("past" if simple and self.p(0.5) else self.tense())
        neg = self.p(0.12) if neg is None else neg
        verb, rest = self.verb_and_complement(depth)
        return [*self.vgroup(verb, subj, tense, neg), *rest]

    def verb_and_complement(self, depth: int) -> tuple[Verb, list[str]]:
        g = self.g
        kind = self.weighted((("object", 20), ("text", 8), ("food", 10), ("person", 12), ("animal", 5),
                              ("place", 6), ("intrans", 10), ("motion", 12), ("clause", 6 if depth > 0 else 0),
                              ("percept", 4)))  # fmt: skip
        if kind == "object":
            v, rest = self.pick(g.v_object), self.thing(depth).words
        elif kind == "text":
            v, rest = self.pick(g.v_text), self.det_np(self.pick(g.texts), V.THING_ADJ).words
            if self.p(0.2):
                rest += ["to", *self.person(0, pronoun=0).words]
        elif kind == "food":
            v, rest = self.pick(g.v_food), self.food().words
        elif kind == "person":
            v = self.pick(g.v_person)
            rest = (self.object_pronoun() if self.p(0.25) else self.person(0, pronoun=0)).words
        elif kind == "animal":
            v, rest = self.pick(g.v_animal), self.animal().words
        elif kind == "place":
            v, rest = self.pick(g.v_place), self.place().words
        elif kind == "intrans":
            v, rest = self.pick(g.v_intrans), ([self.pick(V.ADVERBS)] if self.p(0.3) else [])
        elif kind == "motion":
            v = self.pick(g.v_motion)
            rest = self.weighted(((["to", *self.place().words], 6), (["home"], 1), (["to", "work"], 1),
                                  ([self.pick(V.MOTION_PREPS), *self.place().words], 3),
                                  (["by", self.pick(V.VEHICLES)], 1)))  # fmt: skip
        elif kind == "clause":
            v = self.pick(g.v_clause)
            rest = ["that", *self.clause(depth - 1)] if self.p(0.7) else self.clause(depth - 1)
        else:
            v = self.pick(g.v_percept)
            target = self.animal() if self.p(0.5) else self.person(0, pronoun=0)
            rest = [*target.words, self.pick(g.v_animal_intrans).ing] if self.p(0.4) else target.words
        if kind != "clause" and self.p(0.25):
            rest = rest + [self.pick(V.LOCATIVE_PREPS), *self.place().words]
        return v, rest

    # ----------------------------------------------------------------------------------------- clauses
    def clause(self, depth: int = 1) -> list[str]:
        kind = self.weighted((("person", 55), ("animal", 8), ("copula", 12), ("there", 5), ("number", 10),
                              ("have", 5)))  # fmt: skip
        if kind == "person":
            subj = self.person(depth)
            words = [*subj.words, *self.predicate(subj, depth)]
        elif kind == "animal":
            subj = self.animal()
            v = self.pick(self.g.v_animal_intrans)
            words = [*subj.words, *self.vgroup(v, subj, self.tense(), self.p(0.1))]
            if self.p(0.5):
                words += [self.pick(V.LOCATIVE_PREPS), *self.place().words]
        elif kind == "copula":
            words = self.copula()
        elif kind == "there":
            np = self.thing(0, indefinite=True) if self.p(0.6) else self.animal(indefinite=True)
            be = self.pick(("are", "were")) if np.plural else self.pick(("is", "was"))
            words = ["there", be, *np.words, self.pick(V.LOCATIVE_PREPS), *self.place().words]
        elif kind == "have":
            subj = self.person(0)
            third = subj.person == 3 and not subj.plural
            have = self.pick(("had", "has" if third else "have"))
            words = [*subj.words, have, *self.weighted(((self.thing, 3), (self.animal, 1), (self.food, 1)))().words]
        else:
            words = self.number_clause()
        if self.p(0.2):
            time = self.pick(V.TIME_ADVERBIALS).split()
            words = [*time, ","] + words if self.p(0.3) else words + time
        return words

    def copula(self) -> list[str]:
        kind = self.weighted((("person", 4), ("job", 2), ("thing", 2), ("food", 1), ("place", 2)))
        if kind in ("person", "job"):
            subj = self.person(0)
            if kind == "job":
                job = self.pick(self.g.jobs)
                comp = [job.pl] if subj.plural else [article(job.sg), job.sg]
            else:
                comp = [self.pick(V.PERSON_ADJ)]
        else:
            subj, adjs = {"thing": (self.thing(0), V.THING_ADJ), "food": (self.food(), V.FOOD_ADJ),
                          "place": (self.place(), V.PLACE_ADJ)}[kind]  # fmt: skip
            comp = [self.pick(adjs)]
        if len(comp) == 1 and self.p(0.25):
            comp.insert(0, self.pick(("very", "too", "so", "quite", "not")))
        be = self.weighted(((None, 6), (["will", "be"], 1), (["might", "be"], 1)))
        if be is None:
            third = subj.person == 3 and not subj.plural
            now = "am" if subj.person == 1 and not subj.plural else ("is" if third else "are")
            then = "was" if not subj.plural and subj.person != 2 else "were"
            be = [self.pick((now, then))]
        return [*subj.words, *be, *comp]

    def number_clause(self) -> list[str]:
        r = self.r
        kind = self.weighted((("time", 3), ("year", 2), ("date", 2), ("price", 2), ("count", 3), ("code", 1)))
        if kind == "time":
            vehicle = self.pick(self.g.vehicles).sg
            v = self.pick(("leaves", "arrives", "left", "arrived", "will leave", "will arrive"))
            return ["the", vehicle, *v.split(), "at", *num.random_time(r).split()]
        if kind == "year":
            subj = self.person(0, pronoun=0.3)
            what = self.pick((["was", "born"] if not subj.plural else ["were", "born"], ["moved", "to",
                              self.pick(V.CITIES)], ["visited", self.pick(V.CITIES)], ["left", "school"]))
            return [*subj.words, *what, "in", *num.random_year(r).split()]
        if kind == "date":
            event = self.pick(self.g.events).sg
            return ["the", event, self.pick(("is", "was", "will be")), "on", *num.random_date(r).split()]
        if kind == "price":
            return [*self.thing(0).words, self.pick(("costs", "cost", "will cost")), *num.random_price(r).split()]
        if kind == "code":
            what = self.pick((["her", "phone", "number", "is"], ["the", "code", "is"], ["my", "room", "is"],
                              ["the", "flight", "number", "is"]))  # fmt: skip
            return [*what, *num.random_digits(r, r.randint(3, 6)).split()]
        count, n = num.random_quantity(r)
        what = self.pick(self.g.people + self.g.animals + self.g.objects)
        return ["there", "were" if self.p(0.5) else "are", *count.split(), what.pl, "in", *self.place().words]

    # --------------------------------------------------------------------------------------- sentences
    def sentence(self) -> tuple[list[str], str]:
        kind = self.weighted((("statement", 42), ("coord", 9), ("subord", 11), ("yesno", 12), ("wh", 12),
                              ("imperative", 6), ("complement", 8)))  # fmt: skip
        if kind == "statement":
            return self.clause(), "."
        if kind == "coord":
            conj = self.pick((["and"], [",", "and"], [",", "but"], [",", "so"], ["and", "then"], ["or"]))
            return [*self.clause(0), *conj, *self.clause(0)], "."
        if kind == "subord":
            sub = [self.pick(SUBORDINATORS), *self.clause(0)]
            return ([*sub, ",", *self.clause(0)] if self.p(0.5) else [*self.clause(0), *sub]), "."
        if kind == "complement":
            subj = self.person(0, pronoun=0.4)
            v = self.pick(self.g.v_clause)
            return [*subj.words, *self.vgroup(v, subj, "past", self.p(0.1)), "that", *self.clause(0)], "."
        if kind == "imperative":
            v, rest = self.verb_and_complement(0)
            head = ["please"] if self.p(0.3) else (["don't"] if self.p(0.15) else [])
            return [*head, v.base, *rest], self.pick((".", "!"))
        if kind == "yesno":
            return self.yesno(), "?"
        return self.wh(), "?"

    def question_parts(self, depth: int = 0) -> tuple[NP, Verb, list[str], str, bool]:
        subj = self.person(depth, pronoun=0.35)
        verb, rest = self.verb_and_complement(0)
        tense = self.weighted(tuple((t, w) for t, w in TENSES if t != "going_to"))
        return subj, verb, rest, tense, self.p(0.1)

    def yesno(self) -> list[str]:
        if self.p(0.15):  # copular question
            cop = self.copula()
            for i, w in enumerate(cop):
                if w in ("is", "are", "was", "were", "am"):
                    return [w, *cop[:i], *cop[i + 1 :]]
        subj, verb, rest, tense, neg = self.question_parts()
        pre, post = self.vgroup_split(verb, subj, tense, neg, question=True)
        return [*pre, *subj.words, *post, *rest]

    def wh(self) -> list[str]:
        kind = self.weighted((("where", 3), ("when", 2), ("why", 2), ("how", 2), ("who", 3), ("what", 3),
                              ("how_many", 2), ("which", 2), ("what_time", 1)))  # fmt: skip
        subj, verb, rest, tense, neg = self.question_parts()
        neg = neg and kind == "why"
        if kind == "who":  # subject question: no inversion
            tense = self.pick(("past", "future", "perfect", "modal"))
            return ["who", *self.vgroup(verb, NP(["who"]), tense, neg), *rest]
        if kind in ("what", "how_many", "which"):  # object question: the object moves to the front
            obj_verbs = ((self.g.v_object, self.g.objects), (self.g.v_food, self.g.food), (self.g.v_text, self.g.texts))
            verbs, nouns = self.pick(obj_verbs)
            verb = self.pick(verbs)
            n = self.pick(nouns)
            front = {"what": ["what"], "how_many": ["how", "many", n.pl], "which": ["which", n.sg]}[kind]
            pre, post = self.vgroup_split(verb, subj, tense, neg, question=True)
            return [*front, *pre, *subj.words, *post]
        if kind == "what_time":
            v = self.pick(self.g.v_motion + self.g.v_intrans)
            pre, post = self.vgroup_split(v, subj, self.pick(("past", "present", "future")), False, question=True)
            return ["what", "time", *pre, *subj.words, *post]
        pre, post = self.vgroup_split(verb, subj, tense, neg, question=True)
        return [kind, *pre, *subj.words, *post, *rest]


def _negate(aux: str, short: bool) -> str:
    for modal, long_form, short_form in MODALS:
        if aux == modal:
            return short_form if short else long_form
    if aux == "am":
        return "am not"
    if aux == "will":
        return "won't" if short else "will not"
    return f"{aux}n't" if short else f"{aux} not"


def vocabulary_sample(grammar: Grammar, rng: random.Random, n: int,
                      normalize: Callable[[str], str] | None = None) -> set[str]:
    """Distinct transcript words in ``n`` sampled sentences (for checks and the corpus summary)."""
    from s3l.manifest import normalize_transcript

    norm = normalize or normalize_transcript
    out: set[str] = set()
    for _ in range(n):
        out.update(norm(grammar.sentence(rng)).split())
    return out
