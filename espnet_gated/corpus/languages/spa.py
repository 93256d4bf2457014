"""Spanish: el/la/los/las, un/una, bare indefinite plurals, personal "a" (al/a la) before known animals."""

from typing import List, Optional

from espnet_gated.corpus.grammar import OBJECTS, Frame, RomanceGrammar


class Spanish(RomanceGrammar):
    code = "spa"
    pronouns = {"i": "yo", "you": "tú", "he": "él", "she": "ella", "we": "nosotros", "they": "ellos"}
    nouns = {
        "man": "m hombre hombres",
        "woman": "f mujer mujeres",
        "boy": "m chico chicos",
        "girl": "f chica chicas",
        "child": "m niño niños",
        "father": "m padre padres",
        "mother": "f madre madres",
        "teacher_m": "m maestro maestros",
        "teacher_f": "f maestra maestras",
        "doctor_m": "m médico médicos",
        "doctor_f": "f médica médicas",
        "neighbor_m": "m vecino vecinos",
        "neighbor_f": "f vecina vecinas",
        "friend_m": "m amigo amigos",
        "friend_f": "f amiga amigas",
        "farmer": "m granjero granjeros",
        "cook": "m cocinero cocineros",
        "apple": "f manzana manzanas",
        "tomato": "m tomate tomates",
        "orange": "f naranja naranjas",
        "banana": "m plátano plátanos",
        "bread": "m pan panes",
        "cake": "m pastel pasteles",
        "cheese": "m queso quesos",
        "egg": "m huevo huevos",
        "fish": "m pescado pescados",
        "book": "m libro libros",
        "letter": "f carta cartas",
        "newspaper": "m periódico periódicos",
        "map": "m mapa mapas",
        "key": "f llave llaves",
        "bag": "m bolso bolsos",
        "cup": "f taza tazas",
        "glass": "m vaso vasos",
        "bottle": "f botella botellas",
        "box": "f caja cajas",
        "ball": "f pelota pelotas",
        "hat": "m sombrero sombreros",
        "coat": "m abrigo abrigos",
        "clock": "m reloj relojes",
        "picture": "m cuadro cuadros",
        "chair": "f silla sillas",
        "table": "f mesa mesas",
        "door": "f puerta puertas",
        "window": "f ventana ventanas",
        "dog": "m perro perros",
        "cat": "m gato gatos",
        "horse": "m caballo caballos",
        "bird": "m pájaro pájaros",
        "car": "m coche coches",
        "bicycle": "f bicicleta bicicletas",
        "boat": "m barco barcos",
    }
    # yo tú él/ella nosotros ellos
    verbs = {
        "see": "veo ves ve vemos ven",
        "buy": "compro compras compra compramos compran",
        "sell": "vendo vendes vende vendemos venden",
        "have": "tengo tienes tiene tenemos tienen",
        "want": "quiero quieres quiere queremos quieren",
        "find": "encuentro encuentras encuentra encontramos encuentran",
        "lose": "pierdo pierdes pierde perdemos pierden",
        "eat": "como comes come comemos comen",
        "read": "leo lees lee leemos leen",
        "write": "escribo escribes escribe escribimos escriben",
        "carry": "llevo llevas lleva llevamos llevan",
        "open": "abro abres abre abrimos abren",
        "clean": "limpio limpias limpia limpiamos limpian",
        "paint": "pinto pintas pinta pintamos pintan",
        "wash": "lavo lavas lava lavamos lavan",
        "feed": "alimento alimentas alimenta alimentamos alimentan",
        "bring": "traigo traes trae traemos traen",
        "take": "tomo tomas toma tomamos toman",
        "love": "amo amas ama amamos aman",
        "draw": "dibujo dibujas dibuja dibujamos dibujan",
        "search": "busco buscas busca buscamos buscan",
        "order": "pido pides pide pedimos piden",
        "cut": "corto cortas corta cortamos cortan",
        "hear": "oigo oyes oye oímos oyen",
        "repair": "reparo reparas repara reparamos reparan",
    }
    adjectives = {
        "red": "rojo roja rojos rojas",
        "green": "verde verde verdes verdes",
        "yellow": "amarillo amarilla amarillos amarillas",
        "blue": "azul azul azules azules",
        "black": "negro negra negros negras",
        "white": "blanco blanca blancos blancas",
        "new": "nuevo nueva nuevos nuevas",
        "heavy": "pesado pesada pesados pesadas",
        "fresh": "fresco fresca frescos frescas",
        "clean": "limpio limpia limpios limpias",
        "broken": "roto rota rotos rotas",
    }
    places = {
        "garden": "en el jardín",
        "kitchen": "en la cocina",
        "market": "en el mercado",
        "park": "en el parque",
        "school": "en la escuela",
        "home": "en casa",
        "city": "en la ciudad",
        "station": "en la estación",
        "shop": "en la tienda",
        "work": "en el trabajo",
    }
    times = {
        "today": "hoy",
        "tomorrow": "mañana",
        "every_day": "cada día",
        "morning": "por la mañana",
        "evening": "por la tarde",
        "sunday": "el domingo",
        "saturday": "el sábado",
        "tonight": "esta noche",
        "next_week": "la próxima semana",
        "noon": "al mediodía",
    }

    def article(self, gender: str, plural: bool, definite: bool, noun: str) -> Optional[str]:
        if definite:
            return {("m", False): "el", ("f", False): "la", ("m", True): "los", ("f", True): "las"}[gender, plural]
        return None if plural else ("un" if gender == "m" else "una")

    def object_phrase(self, frame: Frame) -> List[str]:
        words = super().object_phrase(frame)
        if frame.obj.definite and "animal" in OBJECTS[frame.obj.noun]:
            return ["al"] + words[1:] if words[0] == "el" else ["a"] + words
        return words


GRAMMAR = Spanish()
