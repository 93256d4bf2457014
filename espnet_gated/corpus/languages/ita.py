"""Italian: il/lo/l'/la, i/gli/le, un/uno/una/un' chosen by the noun's first sounds; bare indefinite plurals."""

from typing import Optional

from espnet_gated.corpus.grammar import RomanceGrammar

VOWELS = tuple("aeiouàèéìòù")


def _takes_lo(noun: str) -> bool:
    """s + consonant, z, gn, ps: "lo zaino", "lo studente" (not "il")."""
    return noun.startswith(("z", "gn", "ps", "x")) or (noun[0] == "s" and noun[1:2] not in VOWELS)


class Italian(RomanceGrammar):
    code = "ita"
    pronouns = {"i": "io", "you": "tu", "he": "lui", "she": "lei", "we": "noi", "they": "loro"}
    nouns = {
        "man": "m uomo uomini",
        "woman": "f donna donne",
        "boy": "m ragazzo ragazzi",
        "girl": "f ragazza ragazze",
        "child": "m bambino bambini",
        "father": "m padre padri",
        "mother": "f madre madri",
        "teacher_m": "m maestro maestri",
        "teacher_f": "f maestra maestre",
        "doctor_m": "m medico medici",
        "doctor_f": "f dottoressa dottoresse",
        "neighbor_m": "m vicino vicini",
        "neighbor_f": "f vicina vicine",
        "friend_m": "m amico amici",
        "friend_f": "f amica amiche",
        "farmer": "m contadino contadini",
        "cook": "m cuoco cuochi",
        "apple": "f mela mele",
        "tomato": "m pomodoro pomodori",
        "orange": "f arancia arance",
        "banana": "f banana banane",
        "bread": "m pane pani",
        "cake": "f torta torte",
        "cheese": "m formaggio formaggi",
        "egg": "m/f uovo uova",
        "fish": "m pesce pesci",
        "book": "m libro libri",
        "letter": "f lettera lettere",
        "newspaper": "m giornale giornali",
        "map": "f mappa mappe",
        "key": "f chiave chiavi",
        "bag": "f borsa borse",
        "cup": "f tazza tazze",
        "glass": "m bicchiere bicchieri",
        "bottle": "f bottiglia bottiglie",
        "box": "f scatola scatole",
        "ball": "f palla palle",
        "hat": "m cappello cappelli",
        "coat": "m cappotto cappotti",
        "clock": "m orologio orologi",
        "picture": "m quadro quadri",
        "chair": "f sedia sedie",
        "table": "m tavolo tavoli",
        "door": "f porta porte",
        "window": "f finestra finestre",
        "dog": "m cane cani",
        "cat": "m gatto gatti",
        "horse": "m cavallo cavalli",
        "bird": "m uccello uccelli",
        "car": "f macchina macchine",
        "bicycle": "f bicicletta biciclette",
        "boat": "f barca barche",
    }
    # io tu lui/lei noi loro
    verbs = {
        "see": "vedo vedi vede vediamo vedono",
        "buy": "compro compri compra compriamo comprano",
        "sell": "vendo vendi vende vendiamo vendono",
        "have": "ho hai ha abbiamo hanno",
        "want": "voglio vuoi vuole vogliamo vogliono",
        "find": "trovo trovi trova troviamo trovano",
        "lose": "perdo perdi perde perdiamo perdono",
        "eat": "mangio mangi mangia mangiamo mangiano",
        "read": "leggo leggi legge leggiamo leggono",
        "write": "scrivo scrivi scrive scriviamo scrivono",
        "carry": "trasporto trasporti trasporta trasportiamo trasportano",
        "open": "apro apri apre apriamo aprono",
        "clean": "pulisco pulisci pulisce puliamo puliscono",
        "paint": "dipingo dipingi dipinge dipingiamo dipingono",
        "wash": "lavo lavi lava laviamo lavano",
        "feed": "nutro nutri nutre nutriamo nutrono",
        "bring": "porto porti porta portiamo portano",
        "take": "prendo prendi prende prendiamo prendono",
        "love": "amo ami ama amiamo amano",
        "draw": "disegno disegni disegna disegniamo disegnano",
        "search": "cerco cerchi cerca cerchiamo cercano",
        "order": "ordino ordini ordina ordiniamo ordinano",
        "cut": "taglio tagli taglia tagliamo tagliano",
        "hear": "sento senti sente sentiamo sentono",
        "repair": "riparo ripari ripara ripariamo riparano",
    }
    adjectives = {
        "red": "rosso rossa rossi rosse",
        "green": "verde verde verdi verdi",
        "yellow": "giallo gialla gialli gialle",
        "blue": "blu blu blu blu",
        "black": "nero nera neri nere",
        "white": "bianco bianca bianchi bianche",
        "new": "nuovo nuova nuovi nuove",
        "heavy": "pesante pesante pesanti pesanti",
        "fresh": "fresco fresca freschi fresche",
        "clean": "pulito pulita puliti pulite",
        "broken": "rotto rotta rotti rotte",
    }
    places = {
        "garden": "in giardino",
        "kitchen": "in cucina",
        "market": "al mercato",
        "park": "al parco",
        "school": "a scuola",
        "home": "a casa",
        "city": "in città",
        "station": "alla stazione",
        "shop": "al negozio",
        "work": "al lavoro",
    }
    times = {
        "today": "oggi",
        "tomorrow": "domani",
        "every_day": "ogni giorno",
        "morning": "la mattina",
        "evening": "la sera",
        "sunday": "domenica",
        "saturday": "sabato",
        "tonight": "stasera",
        "next_week": "la prossima settimana",
        "noon": "a mezzogiorno",
    }

    def article(self, gender: str, plural: bool, definite: bool, noun: str) -> Optional[str]:
        vowel, lo = noun.startswith(VOWELS), _takes_lo(noun)
        if gender == "f":
            if definite:
                return "le" if plural else ("l'" if vowel else "la")
            return None if plural else ("un'" if vowel else "una")
        if plural:
            return ("gli" if vowel or lo else "i") if definite else None
        if definite:
            return "l'" if vowel else ("lo" if lo else "il")
        return "uno" if lo else "un"


GRAMMAR = Italian()
