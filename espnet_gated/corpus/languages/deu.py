"""German: nominative subjects, accusative objects, weak/mixed/strong adjective endings, verb second."""

from typing import List

from espnet_gated.corpus.grammar import Grammar, NounPhrase

# (definite, indefinite) articles by case and gender; plural indefinite is bare ("rote Äpfel")
ARTICLES = {
    ("nom", "m"): ("der", "ein"),
    ("nom", "f"): ("die", "eine"),
    ("nom", "n"): ("das", "ein"),
    ("acc", "m"): ("den", "einen"),
    ("acc", "f"): ("die", "eine"),
    ("acc", "n"): ("das", "ein"),
}
# adjective endings after the definite article (weak) and after "ein" (mixed)
WEAK = {
    ("nom", "m"): "e",
    ("nom", "f"): "e",
    ("nom", "n"): "e",
    ("acc", "m"): "en",
    ("acc", "f"): "e",
    ("acc", "n"): "e",
}
MIXED = {
    ("nom", "m"): "er",
    ("nom", "f"): "e",
    ("nom", "n"): "es",
    ("acc", "m"): "en",
    ("acc", "f"): "e",
    ("acc", "n"): "es",
}


class German(Grammar):
    code = "deu"
    verb_second = True
    pronouns = {"i": "ich", "you": "du", "he": "er", "she": "sie", "we": "wir", "they": "sie"}
    # gender singular plural
    nouns = {
        "man": "m Mann Männer",
        "woman": "f Frau Frauen",
        "boy": "m Junge Jungen",
        "girl": "n Mädchen Mädchen",
        "child": "n Kind Kinder",
        "father": "m Vater Väter",
        "mother": "f Mutter Mütter",
        "teacher_m": "m Lehrer Lehrer",
        "teacher_f": "f Lehrerin Lehrerinnen",
        "doctor_m": "m Arzt Ärzte",
        "doctor_f": "f Ärztin Ärztinnen",
        "neighbor_m": "m Nachbar Nachbarn",
        "neighbor_f": "f Nachbarin Nachbarinnen",
        "friend_m": "m Freund Freunde",
        "friend_f": "f Freundin Freundinnen",
        "farmer": "m Bauer Bauern",
        "cook": "m Koch Köche",
        "apple": "m Apfel Äpfel",
        "tomato": "f Tomate Tomaten",
        "orange": "f Orange Orangen",
        "banana": "f Banane Bananen",
        "bread": "n Brot Brote",
        "cake": "m Kuchen Kuchen",
        "cheese": "m Käse Käse",
        "egg": "n Ei Eier",
        "fish": "m Fisch Fische",
        "book": "n Buch Bücher",
        "letter": "m Brief Briefe",
        "newspaper": "f Zeitung Zeitungen",
        "map": "f Karte Karten",
        "key": "m Schlüssel Schlüssel",
        "bag": "f Tasche Taschen",
        "cup": "f Tasse Tassen",
        "glass": "n Glas Gläser",
        "bottle": "f Flasche Flaschen",
        "box": "f Kiste Kisten",
        "ball": "m Ball Bälle",
        "hat": "m Hut Hüte",
        "coat": "m Mantel Mäntel",
        "clock": "f Uhr Uhren",
        "picture": "n Bild Bilder",
        "chair": "m Stuhl Stühle",
        "table": "m Tisch Tische",
        "door": "f Tür Türen",
        "window": "n Fenster Fenster",
        "dog": "m Hund Hunde",
        "cat": "f Katze Katzen",
        "horse": "n Pferd Pferde",
        "bird": "m Vogel Vögel",
        "car": "n Auto Autos",
        "bicycle": "n Fahrrad Fahrräder",
        "boat": "n Boot Boote",
    }
    # ich du er/sie wir sie
    verbs = {
        "see": "sehe siehst sieht sehen sehen",
        "buy": "kaufe kaufst kauft kaufen kaufen",
        "sell": "verkaufe verkaufst verkauft verkaufen verkaufen",
        "have": "habe hast hat haben haben",
        "want": "will willst will wollen wollen",
        "find": "finde findest findet finden finden",
        "lose": "verliere verlierst verliert verlieren verlieren",
        "eat": "esse isst isst essen essen",
        "read": "lese liest liest lesen lesen",
        "write": "schreibe schreibst schreibt schreiben schreiben",
        "carry": "trage trägst trägt tragen tragen",
        "open": "öffne öffnest öffnet öffnen öffnen",
        "clean": "putze putzt putzt putzen putzen",
        "paint": "male malst malt malen malen",
        "wash": "wasche wäschst wäscht waschen waschen",
        "feed": "füttere fütterst füttert füttern füttern",
        "bring": "bringe bringst bringt bringen bringen",
        "take": "nehme nimmst nimmt nehmen nehmen",
        "love": "liebe liebst liebt lieben lieben",
        "draw": "zeichne zeichnest zeichnet zeichnen zeichnen",
        "search": "suche suchst sucht suchen suchen",
        "order": "bestelle bestellst bestellt bestellen bestellen",
        "cut": "schneide schneidest schneidet schneiden schneiden",
        "hear": "höre hörst hört hören hören",
        "repair": "repariere reparierst repariert reparieren reparieren",
    }
    # stems; the endings come from the article and case
    adjectives = {
        "red": "rot",
        "green": "grün",
        "yellow": "gelb",
        "blue": "blau",
        "black": "schwarz",
        "white": "weiß",
        "new": "neu",
        "heavy": "schwer",
        "fresh": "frisch",
        "clean": "sauber",
        "broken": "kaputt",
    }
    places = {
        "garden": "im Garten",
        "kitchen": "in der Küche",
        "market": "auf dem Markt",
        "park": "im Park",
        "school": "in der Schule",
        "home": "zu Hause",
        "city": "in der Stadt",
        "station": "am Bahnhof",
        "shop": "im Laden",
        "work": "bei der Arbeit",
    }
    times = {
        "today": "heute",
        "tomorrow": "morgen",
        "every_day": "jeden Tag",
        "morning": "am Morgen",
        "evening": "am Abend",
        "sunday": "am Sonntag",
        "saturday": "am Samstag",
        "tonight": "heute Abend",
        "next_week": "nächste Woche",
        "noon": "mittags",
    }

    def noun_phrase(self, phrase: NounPhrase, is_subject: bool) -> List[str]:
        gender, singular, plural = self.nouns[phrase.noun].split()
        case = "nom" if is_subject else "acc"
        if phrase.plural:
            article = "die" if phrase.definite else None
            ending = "en" if phrase.definite else "e"
        else:
            definite, indefinite = ARTICLES[case, gender]
            article = definite if phrase.definite else indefinite
            ending = (WEAK if phrase.definite else MIXED)[case, gender]
        words = [plural if phrase.plural else singular]
        if phrase.adjective:
            words.insert(0, self.adjectives[phrase.adjective] + ending)
        if article:
            words.insert(0, article)
        return words


GRAMMAR = German()
