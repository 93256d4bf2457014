"""Dutch: de/het, adjective -e except after "een" with a het-noun, verb second ("Vandaag koop jij ...")."""

from typing import List

from espnet_gated.corpus.grammar import Frame, Grammar, NounPhrase


class Dutch(Grammar):
    code = "nld"
    verb_second = True
    pronouns = {"i": "ik", "you": "jij", "he": "hij", "she": "zij", "we": "wij", "they": "zij"}
    # article singular plural
    nouns = {
        "man": "de man mannen",
        "woman": "de vrouw vrouwen",
        "boy": "de jongen jongens",
        "girl": "het meisje meisjes",
        "child": "het kind kinderen",
        "father": "de vader vaders",
        "mother": "de moeder moeders",
        "teacher_m": "de leraar leraren",
        "teacher_f": "de lerares leraressen",
        "doctor_m": "de dokter dokters",
        "doctor_f": "de arts artsen",
        "neighbor_m": "de buurman buren",
        "neighbor_f": "de buurvrouw buurvrouwen",
        "friend_m": "de vriend vrienden",
        "friend_f": "de vriendin vriendinnen",
        "farmer": "de boer boeren",
        "cook": "de kok koks",
        "apple": "de appel appels",
        "tomato": "de tomaat tomaten",
        "orange": "de sinaasappel sinaasappels",
        "banana": "de banaan bananen",
        "bread": "het brood broden",
        "cake": "de taart taarten",
        "cheese": "de kaas kazen",
        "egg": "het ei eieren",
        "fish": "de vis vissen",
        "book": "het boek boeken",
        "letter": "de brief brieven",
        "newspaper": "de krant kranten",
        "map": "de kaart kaarten",
        "key": "de sleutel sleutels",
        "bag": "de tas tassen",
        "cup": "het kopje kopjes",
        "glass": "het glas glazen",
        "bottle": "de fles flessen",
        "box": "de doos dozen",
        "ball": "de bal ballen",
        "hat": "de hoed hoeden",
        "coat": "de jas jassen",
        "clock": "de klok klokken",
        "picture": "het schilderij schilderijen",
        "chair": "de stoel stoelen",
        "table": "de tafel tafels",
        "door": "de deur deuren",
        "window": "het raam ramen",
        "dog": "de hond honden",
        "cat": "de kat katten",
        "horse": "het paard paarden",
        "bird": "de vogel vogels",
        "car": "de auto auto's",
        "bicycle": "de fiets fietsen",
        "boat": "de boot boten",
    }
    # ik jij hij/zij wij zij
    verbs = {
        "see": "zie ziet ziet zien zien",
        "buy": "koop koopt koopt kopen kopen",
        "sell": "verkoop verkoopt verkoopt verkopen verkopen",
        "have": "heb hebt heeft hebben hebben",
        "want": "wil wilt wil willen willen",
        "find": "vind vindt vindt vinden vinden",
        "lose": "verlies verliest verliest verliezen verliezen",
        "eat": "eet eet eet eten eten",
        "read": "lees leest leest lezen lezen",
        "write": "schrijf schrijft schrijft schrijven schrijven",
        "carry": "draag draagt draagt dragen dragen",
        "open": "open opent opent openen openen",
        "clean": "reinig reinigt reinigt reinigen reinigen",
        "paint": "schilder schildert schildert schilderen schilderen",
        "wash": "was wast wast wassen wassen",
        "feed": "voer voert voert voeren voeren",
        "bring": "breng brengt brengt brengen brengen",
        "take": "neem neemt neemt nemen nemen",
        "love": "hou houdt houdt houden houden",
        "draw": "teken tekent tekent tekenen tekenen",
        "search": "zoek zoekt zoekt zoeken zoeken",
        "order": "bestel bestelt bestelt bestellen bestellen",
        "cut": "snijd snijdt snijdt snijden snijden",
        "hear": "hoor hoort hoort horen horen",
        "repair": "repareer repareert repareert repareren repareren",
    }
    #: verbs whose object follows a preposition ("houden van")
    object_prepositions = {"love": "van"}
    # base form (after "een" with a het-noun), inflected form
    adjectives = {
        "red": "rood rode",
        "green": "groen groene",
        "yellow": "geel gele",
        "blue": "blauw blauwe",
        "black": "zwart zwarte",
        "white": "wit witte",
        "new": "nieuw nieuwe",
        "heavy": "zwaar zware",
        "fresh": "vers verse",
        "clean": "schoon schone",
        "broken": "kapot kapotte",
    }
    places = {
        "garden": "in de tuin",
        "kitchen": "in de keuken",
        "market": "op de markt",
        "park": "in het park",
        "school": "op school",
        "home": "thuis",
        "city": "in de stad",
        "station": "op het station",
        "shop": "in de winkel",
        "work": "op het werk",
    }
    times = {
        "today": "vandaag",
        "tomorrow": "morgen",
        "every_day": "elke dag",
        "morning": "in de ochtend",
        "evening": "in de avond",
        "sunday": "op zondag",
        "saturday": "op zaterdag",
        "tonight": "vanavond",
        "next_week": "volgende week",
        "noon": "om twaalf uur",
    }

    def verb_form(self, frame: Frame, inverted: bool) -> List[str]:
        """An inverted "jij" drops the -t: "Vandaag koop jij", "Morgen heb jij"."""
        if inverted and frame.subject == "you":
            return [self.verbs[frame.verb].split()[0]]
        return super().verb_form(frame, inverted)

    def object_phrase(self, frame: Frame) -> List[str]:
        words = super().object_phrase(frame)
        preposition = self.object_prepositions.get(frame.verb)
        return [preposition] + words if preposition else words

    def noun_phrase(self, phrase: NounPhrase, is_subject: bool) -> List[str]:
        article, singular, plural = self.nouns[phrase.noun].split()
        words = [plural if phrase.plural else singular]
        if phrase.adjective:
            base, inflected = self.adjectives[phrase.adjective].split()
            bare_het = article == "het" and not phrase.definite and not phrase.plural
            words.insert(0, base if bare_het else inflected)
        if phrase.definite:
            words.insert(0, "de" if phrase.plural else article)
        elif not phrase.plural:
            words.insert(0, "een")
        return words


GRAMMAR = Dutch()
