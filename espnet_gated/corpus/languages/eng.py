"""English: the translation target of every frame, and a source language for ASR.

Future time phrases ("tomorrow", "tonight", "next week") take "will", as a natural
translation of the present tense that the other languages use for them.
"""

from typing import List

from espnet_gated.corpus.grammar import Frame, Grammar, NounPhrase

FUTURE_TIMES = {"tomorrow", "tonight", "next_week"}


class English(Grammar):
    code = "eng"
    pronouns = {"i": "I", "you": "you", "he": "he", "she": "she", "we": "we", "they": "they"}
    # (singular, plural)
    nouns = {
        "man": ("man", "men"),
        "woman": ("woman", "women"),
        "boy": ("boy", "boys"),
        "girl": ("girl", "girls"),
        "child": ("child", "children"),
        "father": ("father", "fathers"),
        "mother": ("mother", "mothers"),
        "teacher_m": ("teacher", "teachers"),
        "teacher_f": ("teacher", "teachers"),
        "doctor_m": ("doctor", "doctors"),
        "doctor_f": ("doctor", "doctors"),
        "neighbor_m": ("neighbor", "neighbors"),
        "neighbor_f": ("neighbor", "neighbors"),
        "friend_m": ("friend", "friends"),
        "friend_f": ("friend", "friends"),
        "farmer": ("farmer", "farmers"),
        "cook": ("cook", "cooks"),
        "apple": ("apple", "apples"),
        "tomato": ("tomato", "tomatoes"),
        "orange": ("orange", "oranges"),
        "banana": ("banana", "bananas"),
        "bread": ("loaf of bread", "loaves of bread"),
        "cake": ("cake", "cakes"),
        "cheese": ("cheese", "cheeses"),
        "egg": ("egg", "eggs"),
        "fish": ("fish", "fish"),
        "book": ("book", "books"),
        "letter": ("letter", "letters"),
        "newspaper": ("newspaper", "newspapers"),
        "map": ("map", "maps"),
        "key": ("key", "keys"),
        "bag": ("bag", "bags"),
        "cup": ("cup", "cups"),
        "glass": ("glass", "glasses"),
        "bottle": ("bottle", "bottles"),
        "box": ("box", "boxes"),
        "ball": ("ball", "balls"),
        "hat": ("hat", "hats"),
        "coat": ("coat", "coats"),
        "clock": ("clock", "clocks"),
        "picture": ("picture", "pictures"),
        "chair": ("chair", "chairs"),
        "table": ("table", "tables"),
        "door": ("door", "doors"),
        "window": ("window", "windows"),
        "dog": ("dog", "dogs"),
        "cat": ("cat", "cats"),
        "horse": ("horse", "horses"),
        "bird": ("bird", "birds"),
        "car": ("car", "cars"),
        "bicycle": ("bicycle", "bicycles"),
        "boat": ("boat", "boats"),
    }
    # (base form, third person singular)
    verbs = {
        "see": ("see", "sees"),
        "buy": ("buy", "buys"),
        "sell": ("sell", "sells"),
        "have": ("have", "has"),
        "want": ("want", "wants"),
        "find": ("find", "finds"),
        "lose": ("lose", "loses"),
        "eat": ("eat", "eats"),
        "read": ("read", "reads"),
        "write": ("write", "writes"),
        "carry": ("carry", "carries"),
        "open": ("open", "opens"),
        "clean": ("clean", "cleans"),
        "paint": ("paint", "paints"),
        "wash": ("wash", "washes"),
        "feed": ("feed", "feeds"),
        "bring": ("bring", "brings"),
        "take": ("take", "takes"),
        "love": ("love", "loves"),
        "draw": ("draw", "draws"),
        "search": ("look for", "looks for"),
        "order": ("order", "orders"),
        "cut": ("cut", "cuts"),
        "hear": ("hear", "hears"),
        "repair": ("repair", "repairs"),
    }
    adjectives = {
        "red": "red",
        "green": "green",
        "yellow": "yellow",
        "blue": "blue",
        "black": "black",
        "white": "white",
        "new": "new",
        "heavy": "heavy",
        "fresh": "fresh",
        "clean": "clean",
        "broken": "broken",
    }
    places = {
        "garden": "in the garden",
        "kitchen": "in the kitchen",
        "market": "at the market",
        "park": "in the park",
        "school": "at school",
        "home": "at home",
        "city": "in the city",
        "station": "at the station",
        "shop": "in the shop",
        "work": "at work",
    }
    times = {
        "today": "today",
        "tomorrow": "tomorrow",
        "every_day": "every day",
        "morning": "in the morning",
        "evening": "in the evening",
        "sunday": "on Sunday",
        "saturday": "on Saturday",
        "tonight": "tonight",
        "next_week": "next week",
        "noon": "at noon",
    }

    def verb_form(self, frame: Frame, inverted: bool) -> List[str]:
        base, third_singular = self.verbs[frame.verb]
        if frame.time in FUTURE_TIMES:
            return ["will", base]
        return [third_singular if frame.person == "3sg" else base]

    def noun_phrase(self, phrase: NounPhrase, is_subject: bool) -> List[str]:
        words = [self.nouns[phrase.noun][phrase.plural]]
        if phrase.adjective:
            words.insert(0, self.adjectives[phrase.adjective])
        if phrase.definite:
            words.insert(0, "the")
        elif not phrase.plural:
            words.insert(0, "an" if words[0][0] in "aeiou" else "a")
        return words


GRAMMAR = English()
