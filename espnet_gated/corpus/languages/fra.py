"""French: le/la/l'/les, un/une/des, adjectives after the noun, elision of "je" and the article."""

from typing import List, Optional

from espnet_gated.corpus.grammar import RomanceGrammar

VOWELS = tuple("aeiouyàâéèêëîïôœùûh")  # every h-initial noun here has a mute h (l'homme, l'horloge)


class French(RomanceGrammar):
    code = "fra"
    pronouns = {"i": "je", "you": "tu", "he": "il", "she": "elle", "we": "nous", "they": "ils"}
    nouns = {
        "man": "m homme hommes",
        "woman": "f femme femmes",
        "boy": "m garçon garçons",
        "girl": "f fille filles",
        "child": "m enfant enfants",
        "father": "m père pères",
        "mother": "f mère mères",
        "teacher_m": "m professeur professeurs",
        "teacher_f": "f professeure professeures",
        "doctor_m": "m médecin médecins",
        "doctor_f": "f médecin médecins",
        "neighbor_m": "m voisin voisins",
        "neighbor_f": "f voisine voisines",
        "friend_m": "m ami amis",
        "friend_f": "f amie amies",
        "farmer": "m fermier fermiers",
        "cook": "m cuisinier cuisiniers",
        "apple": "f pomme pommes",
        "tomato": "f tomate tomates",
        "orange": "f orange oranges",
        "banana": "f banane bananes",
        "bread": "m pain pains",
        "cake": "m gâteau gâteaux",
        "cheese": "m fromage fromages",
        "egg": "m œuf œufs",
        "fish": "m poisson poissons",
        "book": "m livre livres",
        "letter": "f lettre lettres",
        "newspaper": "m journal journaux",
        "map": "f carte cartes",
        "key": "f clé clés",
        "bag": "m sac sacs",
        "cup": "f tasse tasses",
        "glass": "m verre verres",
        "bottle": "f bouteille bouteilles",
        "box": "f boîte boîtes",
        "ball": "m ballon ballons",
        "hat": "m chapeau chapeaux",
        "coat": "m manteau manteaux",
        "clock": "f horloge horloges",
        "picture": "m tableau tableaux",
        "chair": "f chaise chaises",
        "table": "f table tables",
        "door": "f porte portes",
        "window": "f fenêtre fenêtres",
        "dog": "m chien chiens",
        "cat": "m chat chats",
        "horse": "m cheval chevaux",
        "bird": "m oiseau oiseaux",
        "car": "f voiture voitures",
        "bicycle": "m vélo vélos",
        "boat": "m bateau bateaux",
    }
    # je tu il/elle nous ils
    verbs = {
        "see": "vois vois voit voyons voient",
        "buy": "achète achètes achète achetons achètent",
        "sell": "vends vends vend vendons vendent",
        "have": "ai as a avons ont",
        "want": "veux veux veut voulons veulent",
        "find": "trouve trouves trouve trouvons trouvent",
        "lose": "perds perds perd perdons perdent",
        "eat": "mange manges mange mangeons mangent",
        "read": "lis lis lit lisons lisent",
        "write": "écris écris écrit écrivons écrivent",
        "carry": "porte portes porte portons portent",
        "open": "ouvre ouvres ouvre ouvrons ouvrent",
        "clean": "nettoie nettoies nettoie nettoyons nettoient",
        "paint": "peins peins peint peignons peignent",
        "wash": "lave laves lave lavons lavent",
        "feed": "nourris nourris nourrit nourrissons nourrissent",
        "bring": "apporte apportes apporte apportons apportent",
        "take": "prends prends prend prenons prennent",
        "love": "aime aimes aime aimons aiment",
        "draw": "dessine dessines dessine dessinons dessinent",
        "search": "cherche cherches cherche cherchons cherchent",
        "order": "commande commandes commande commandons commandent",
        "cut": "coupe coupes coupe coupons coupent",
        "hear": "entends entends entend entendons entendent",
        "repair": "répare répares répare réparons réparent",
    }
    adjectives = {
        "red": "rouge rouge rouges rouges",
        "green": "vert verte verts vertes",
        "yellow": "jaune jaune jaunes jaunes",
        "blue": "bleu bleue bleus bleues",
        "black": "noir noire noirs noires",
        "white": "blanc blanche blancs blanches",
        "new": "neuf neuve neufs neuves",
        "heavy": "lourd lourde lourds lourdes",
        "fresh": "frais fraîche frais fraîches",
        "clean": "propre propre propres propres",
        "broken": "cassé cassée cassés cassées",
    }
    places = {
        "garden": "dans le jardin",
        "kitchen": "dans la cuisine",
        "market": "au marché",
        "park": "au parc",
        "school": "à l'école",
        "home": "à la maison",
        "city": "en ville",
        "station": "à la gare",
        "shop": "au magasin",
        "work": "au travail",
    }
    times = {
        "today": "aujourd'hui",
        "tomorrow": "demain",
        "every_day": "chaque jour",
        "morning": "le matin",
        "evening": "le soir",
        "sunday": "dimanche",
        "saturday": "samedi",
        "tonight": "ce soir",
        "next_week": "la semaine prochaine",
        "noon": "à midi",
    }

    def article(self, gender: str, plural: bool, definite: bool, noun: str) -> Optional[str]:
        if plural:
            return "les" if definite else "des"
        if definite:
            return "l'" if noun.startswith(VOWELS) else ("le" if gender == "m" else "la")
        return "un" if gender == "m" else "une"

    def finish(self, words: List[str]) -> List[str]:
        following = words[1:] + [""]
        return [
            "j'" if word == "je" and after.startswith(VOWELS) else word
            for word, after in zip(words, following, strict=True)
        ]


GRAMMAR = French()
