"""Sentence pairs from shared semantic frames, rendered by small per-language grammars.

A :class:`Frame` says *who does what to what, where and when* in concept ids that no
language owns ("man", "buy", "apple", "market", "tomorrow"). Every language renders the
same frame with its own lexicon and morphology (articles, case, gender and number
agreement, conjugation, word order), so the English rendering of a frame is a natural
translation of any other language's rendering. The concept inventory below decides which
combinations make sense (you eat food, read texts, feed animals), so the sentences stay
plausible while thousands of distinct ones exist per language.
"""

import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Set, Tuple, Union

#: grammatical persons a subject can have (no plural "you": one "you" keeps translations unambiguous)
PERSONS = ("1sg", "2sg", "3sg", "1pl", "3pl")
PRONOUNS = {"i": "1sg", "you": "2sg", "he": "3sg", "she": "3sg", "we": "1pl", "they": "3pl"}

#: people that can be subjects
SUBJECTS = (
    "man", "woman", "boy", "girl", "child", "father", "mother", "teacher_m", "teacher_f",
    "doctor_m", "doctor_f", "neighbor_m", "neighbor_f", "friend_m", "friend_f", "farmer", "cook",
)  # fmt: skip

#: things that can be objects, with the semantic classes verbs and adjectives select
OBJECTS: Dict[str, Set[str]] = {
    "apple": {"food", "fruit", "wash", "cut"},
    "tomato": {"food", "fruit", "wash", "cut"},
    "orange": {"food", "fruit", "cut"},
    "banana": {"food", "fruit"},
    "bread": {"food", "cut"},
    "cake": {"food", "cut"},
    "cheese": {"food", "cut"},
    "egg": {"food"},
    "fish": {"food", "wash", "cut"},
    "book": {"thing", "read", "write", "open"},
    "letter": {"thing", "read", "write", "open"},
    "newspaper": {"thing", "read"},
    "map": {"thing", "read"},
    "key": {"thing"},
    "bag": {"thing", "open"},
    "cup": {"thing", "wash"},
    "glass": {"thing", "wash"},
    "bottle": {"thing", "open", "wash"},
    "box": {"thing", "open", "paint"},
    "ball": {"thing"},
    "hat": {"thing"},
    "coat": {"thing", "wash"},
    "clock": {"thing", "fix"},
    "picture": {"thing", "paint"},
    "chair": {"furniture", "paint", "fix"},
    "table": {"furniture", "paint", "fix"},
    "door": {"fixture", "open", "paint", "fix"},
    "window": {"fixture", "open", "fix"},
    "dog": {"animal", "wash"},
    "cat": {"animal"},
    "horse": {"animal", "wash"},
    "bird": {"animal"},
    "car": {"vehicle", "wash", "fix", "paint"},
    "bicycle": {"vehicle", "fix", "paint"},
    "boat": {"vehicle", "fix", "paint"},
}

_GOODS = {"food", "thing", "furniture", "animal", "vehicle"}
#: transitive verbs and the object classes each one takes
VERBS: Dict[str, Set[str]] = {
    "see": _GOODS | {"fixture"},
    "buy": _GOODS,
    "sell": _GOODS,
    "have": _GOODS - {"food"},
    "want": _GOODS,
    "find": {"thing", "animal"},
    "lose": {"thing"},
    "eat": {"food"},
    "read": {"read"},
    "write": {"write"},
    "carry": {"food", "thing", "furniture"},
    "open": {"open"},
    "clean": {"furniture", "fixture", "vehicle"},
    "paint": {"paint"},
    "wash": {"wash"},
    "feed": {"animal"},
    "bring": {"food", "thing", "furniture"},
    "take": {"food", "thing"},
    "love": {"animal", "vehicle"},
    "draw": {"animal", "vehicle", "furniture", "fruit"},
    "search": {"thing", "animal"},
    "order": {"food", "thing", "furniture", "vehicle"},
    "cut": {"cut"},
    "hear": {"animal"},
    "repair": {"fix"},
}

_OBJECTS_THAT_HAVE_COLOURS = {"thing", "furniture", "fixture", "vehicle"}
#: adjectives and the object classes each one describes
ADJECTIVES: Dict[str, Set[str]] = {
    "red": _OBJECTS_THAT_HAVE_COLOURS | {"fruit"},
    "green": _OBJECTS_THAT_HAVE_COLOURS | {"fruit"},
    "yellow": _OBJECTS_THAT_HAVE_COLOURS | {"fruit"},
    "blue": _OBJECTS_THAT_HAVE_COLOURS,
    "black": _OBJECTS_THAT_HAVE_COLOURS | {"animal"},
    "white": _OBJECTS_THAT_HAVE_COLOURS | {"animal"},
    "new": _OBJECTS_THAT_HAVE_COLOURS,
    "heavy": {"thing", "furniture"},
    "fresh": {"food"},
    "clean": _OBJECTS_THAT_HAVE_COLOURS,
    "broken": _OBJECTS_THAT_HAVE_COLOURS,
}

PLACES = ("garden", "kitchen", "market", "park", "school", "home", "city", "station", "shop", "work")
TIMES = ("today", "tomorrow", "every_day", "morning", "evening", "sunday", "saturday", "tonight", "next_week", "noon")

#: how often each optional part of a frame is present (tuned for ~4-9 word sentences)
P_PRONOUN_SUBJECT = 0.35
P_PLURAL = 0.3
P_DEFINITE = 0.6
P_ADJECTIVE = 0.5
P_PLACE = 0.45
P_TIME = 0.45
P_TIME_FIRST = 0.4
#: sampling attempts per wanted pair before giving up (duplicates and lengths are rejected)
MAX_TRIES_PER_PAIR = 50


@dataclass(frozen=True)
class NounPhrase:
    noun: str
    plural: bool = False
    definite: bool = True
    adjective: Optional[str] = None


@dataclass(frozen=True)
class Frame:
    """One sentence meaning: ``subject`` is a key of :data:`PRONOUNS` or a noun phrase."""

    subject: Union[str, NounPhrase]
    verb: str
    obj: NounPhrase
    place: Optional[str] = None
    time: Optional[str] = None
    time_first: bool = False  # the time phrase opens the sentence ("Tomorrow the man ...")

    @property
    def person(self) -> str:
        if isinstance(self.subject, str):
            return PRONOUNS[self.subject]
        return "3pl" if self.subject.plural else "3sg"


def _compatible(classes: Mapping[str, Set[str]], wanted: Set[str]) -> Tuple[str, ...]:
    return tuple(sorted(name for name, own in classes.items() if own & wanted))


_PRONOUN_NAMES = tuple(sorted(PRONOUNS))
_VERB_NAMES = tuple(sorted(VERBS))
_OBJECTS_OF = {verb: _compatible(OBJECTS, wanted) for verb, wanted in VERBS.items()}
_ADJECTIVES_OF = {noun: _compatible(ADJECTIVES, own) for noun, own in OBJECTS.items()}


def sample_frame(rng: random.Random) -> Frame:
    """A random plausible frame; indefinite plural subjects ("Some men ...") are left out
    because several languages cannot say them briefly."""
    if rng.random() < P_PRONOUN_SUBJECT:
        subject: Union[str, NounPhrase] = rng.choice(_PRONOUN_NAMES)
    else:
        plural = rng.random() < P_PLURAL
        definite = plural or rng.random() < P_DEFINITE
        subject = NounPhrase(rng.choice(SUBJECTS), plural=plural, definite=definite)
    verb = rng.choice(_VERB_NAMES)
    noun = rng.choice(_OBJECTS_OF[verb])
    adjectives = _ADJECTIVES_OF[noun]
    adjective = rng.choice(adjectives) if adjectives and rng.random() < P_ADJECTIVE else None
    obj = NounPhrase(noun, plural=rng.random() < P_PLURAL, definite=rng.random() < P_DEFINITE, adjective=adjective)
    place = rng.choice(PLACES) if rng.random() < P_PLACE else None
    time = rng.choice(TIMES) if rng.random() < P_TIME else None
    return Frame(subject, verb, obj, place, time, time_first=time is not None and rng.random() < P_TIME_FIRST)


def join_words(words: Sequence[str]) -> str:
    """Space-separated, except after an elided article or pronoun ("l'", "j'", "un'")."""
    return " ".join(words).replace("' ", "'")


class Grammar(ABC):
    """Renders frames in one language.

    Subclasses give the lexicon (one entry per concept of the inventory) and the noun
    phrase morphology; the word order is subject-verb-object with place and time at the
    end, or verb-second (German, Dutch) where a fronted time phrase moves the verb before
    the subject and an unfronted one stands before the object.
    """

    code: str  # ISO-639-3
    pronouns: Mapping[str, str]
    nouns: Mapping[str, object]  # concept -> the language's forms (see the subclass)
    verbs: Mapping[str, object]  # concept -> forms for PERSONS, space-separated (see the subclass)
    adjectives: Mapping[str, object]
    places: Mapping[str, str]
    times: Mapping[str, str]
    verb_second = False
    comma_after_fronted_time = False

    def lexicons(self) -> Dict[str, Tuple[Mapping, Sequence[str]]]:
        """Each lexicon with the concepts it must cover."""
        return {
            "pronouns": (self.pronouns, tuple(PRONOUNS)),
            "nouns": (self.nouns, SUBJECTS + tuple(OBJECTS)),
            "verbs": (self.verbs, tuple(VERBS)),
            "adjectives": (self.adjectives, tuple(ADJECTIVES)),
            "places": (self.places, PLACES),
            "times": (self.times, TIMES),
        }

    def check_lexicon(self) -> None:
        """Raise ValueError naming every missing or unknown concept, so a new language
        fails when it is registered instead of in the middle of a corpus."""
        problems = []
        for name, (lexicon, concepts) in self.lexicons().items():
            missing = sorted(set(concepts) - set(lexicon))
            unknown = sorted(set(lexicon) - set(concepts))
            if missing:
                problems.append(f"{name} lacks {missing}")
            if unknown:
                problems.append(f"{name} has unknown concepts {unknown}")
        if problems:
            raise ValueError(f"grammar '{self.code}': " + "; ".join(problems))

    @abstractmethod
    def noun_phrase(self, phrase: NounPhrase, is_subject: bool) -> List[str]:
        """Words of a noun phrase (article, adjective and noun in agreement)."""

    def verb_form(self, frame: Frame, inverted: bool) -> List[str]:
        """Words of the conjugated verb; ``inverted``: it stands before the subject."""
        return [self.verbs[frame.verb].split()[PERSONS.index(frame.person)]]

    def object_phrase(self, frame: Frame) -> List[str]:
        return self.noun_phrase(frame.obj, is_subject=False)

    def subject_phrase(self, frame: Frame) -> List[str]:
        if isinstance(frame.subject, str):
            return [self.pronouns[frame.subject]]
        return self.noun_phrase(frame.subject, is_subject=True)

    def finish(self, words: List[str]) -> List[str]:
        """Last touches on the word sequence (e.g. French elision of "je")."""
        return words

    def render(self, frame: Frame) -> str:
        """The sentence, capitalized and with a full stop."""
        subject, obj = self.subject_phrase(frame), self.object_phrase(frame)
        place = [self.places[frame.place]] if frame.place else []
        time = [self.times[frame.time]] if frame.time else []
        if frame.time_first:
            opening = [time[0] + ("," if self.comma_after_fronted_time else "")]
            if self.verb_second:
                words = opening + self.verb_form(frame, inverted=True) + subject + obj + place
            else:
                words = opening + subject + self.verb_form(frame, inverted=False) + obj + place
        elif self.verb_second:
            words = subject + self.verb_form(frame, inverted=False) + time + obj + place
        else:
            words = subject + self.verb_form(frame, inverted=False) + obj + place + time
        sentence = join_words(self.finish(words))
        return sentence[0].upper() + sentence[1:] + "."


class RomanceGrammar(Grammar):
    """Article + noun + adjective, all agreeing in gender and number.

    ``nouns``: concept -> "gender singular plural", gender ``m``/``f``, or ``m/f`` for a
    noun whose plural is feminine (Italian "l'uovo", "le uova"). ``adjectives``: concept ->
    "masc.sg fem.sg masc.pl fem.pl".
    """

    nouns: Mapping[str, str]
    adjectives: Mapping[str, str]
    comma_after_fronted_time = True

    @abstractmethod
    def article(self, gender: str, plural: bool, definite: bool, noun: str) -> Optional[str]:
        """The article before ``noun`` (None: a bare plural)."""

    def noun_phrase(self, phrase: NounPhrase, is_subject: bool) -> List[str]:
        genders, singular, plural = self.nouns[phrase.noun].split()
        gender = genders.split("/")[-1] if phrase.plural else genders.split("/")[0]
        noun = plural if phrase.plural else singular
        words = [noun]
        article = self.article(gender, phrase.plural, phrase.definite, noun)
        if article:
            words.insert(0, article)
        if phrase.adjective:
            forms = self.adjectives[phrase.adjective].split()
            words.append(forms[(gender == "f") + 2 * phrase.plural])
        return words


def distinct_pairs(
    source: Grammar, target: Grammar, count: int, seed: int, min_words: int = 4, max_words: int = 9
) -> List[Tuple[str, str]]:
    """``count`` (sentence, translation) pairs whose sentences are distinct and ``min_words``
    to ``max_words`` long, in an order fixed by ``seed`` and the language: asking for more
    pairs only appends, so the first pairs (a test set) stay the same."""
    rng = random.Random(f"{seed}:{source.code}")
    pairs: List[Tuple[str, str]] = []
    seen: Set[str] = set()
    for _ in range(count * MAX_TRIES_PER_PAIR):
        if len(pairs) == count:
            break
        frame = sample_frame(rng)
        sentence = source.render(frame)
        if sentence not in seen and min_words <= len(sentence.split()) <= max_words:
            seen.add(sentence)
            pairs.append((sentence, target.render(frame)))
    if len(pairs) < count:
        raise ValueError(
            f"grammar '{source.code}': found only {len(pairs)} of {count} distinct sentences of "
            f"{min_words}-{max_words} words; ask for fewer sentences or allow other lengths"
        )
    return pairs
