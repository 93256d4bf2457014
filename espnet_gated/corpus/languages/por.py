"""European Portuguese: o/a/os/as, um/uma, bare indefinite plurals, adjectives after the noun."""

from typing import Optional

from espnet_gated.corpus.grammar import RomanceGrammar


class Portuguese(RomanceGrammar):
    code = "por"
    pronouns = {"i": "eu", "you": "tu", "he": "ele", "she": "ela", "we": "nós", "they": "eles"}
    nouns = {
        "man": "m homem homens",
        "woman": "f mulher mulheres",
        "boy": "m rapaz rapazes",
        "girl": "f menina meninas",
        "child": "f criança crianças",
        "father": "m pai pais",
        "mother": "f mãe mães",
        "teacher_m": "m professor professores",
        "teacher_f": "f professora professoras",
        "doctor_m": "m médico médicos",
        "doctor_f": "f médica médicas",
        "neighbor_m": "m vizinho vizinhos",
        "neighbor_f": "f vizinha vizinhas",
        "friend_m": "m amigo amigos",
        "friend_f": "f amiga amigas",
        "farmer": "m agricultor agricultores",
        "cook": "m cozinheiro cozinheiros",
        "apple": "f maçã maçãs",
        "tomato": "m tomate tomates",
        "orange": "f laranja laranjas",
        "banana": "f banana bananas",
        "bread": "m pão pães",
        "cake": "m bolo bolos",
        "cheese": "m queijo queijos",
        "egg": "m ovo ovos",
        "fish": "m peixe peixes",
        "book": "m livro livros",
        "letter": "f carta cartas",
        "newspaper": "m jornal jornais",
        "map": "m mapa mapas",
        "key": "f chave chaves",
        "bag": "m saco sacos",
        "cup": "f chávena chávenas",
        "glass": "m copo copos",
        "bottle": "f garrafa garrafas",
        "box": "f caixa caixas",
        "ball": "f bola bolas",
        "hat": "m chapéu chapéus",
        "coat": "m casaco casacos",
        "clock": "m relógio relógios",
        "picture": "m quadro quadros",
        "chair": "f cadeira cadeiras",
        "table": "f mesa mesas",
        "door": "f porta portas",
        "window": "f janela janelas",
        "dog": "m cão cães",
        "cat": "m gato gatos",
        "horse": "m cavalo cavalos",
        "bird": "m pássaro pássaros",
        "car": "m carro carros",
        "bicycle": "f bicicleta bicicletas",
        "boat": "m barco barcos",
    }
    # eu tu ele/ela nós eles
    verbs = {
        "see": "vejo vês vê vemos veem",
        "buy": "compro compras compra compramos compram",
        "sell": "vendo vendes vende vendemos vendem",
        "have": "tenho tens tem temos têm",
        "want": "quero queres quer queremos querem",
        "find": "encontro encontras encontra encontramos encontram",
        "lose": "perco perdes perde perdemos perdem",
        "eat": "como comes come comemos comem",
        "read": "leio lês lê lemos leem",
        "write": "escrevo escreves escreve escrevemos escrevem",
        "carry": "carrego carregas carrega carregamos carregam",
        "open": "abro abres abre abrimos abrem",
        "clean": "limpo limpas limpa limpamos limpam",
        "paint": "pinto pintas pinta pintamos pintam",
        "wash": "lavo lavas lava lavamos lavam",
        "feed": "alimento alimentas alimenta alimentamos alimentam",
        "bring": "trago trazes traz trazemos trazem",
        "take": "pego pegas pega pegamos pegam",
        "love": "adoro adoras adora adoramos adoram",
        "draw": "desenho desenhas desenha desenhamos desenham",
        "search": "procuro procuras procura procuramos procuram",
        "order": "encomendo encomendas encomenda encomendamos encomendam",
        "cut": "corto cortas corta cortamos cortam",
        "hear": "ouço ouves ouve ouvimos ouvem",
        "repair": "reparo reparas repara reparamos reparam",
    }
    adjectives = {
        "red": "vermelho vermelha vermelhos vermelhas",
        "green": "verde verde verdes verdes",
        "yellow": "amarelo amarela amarelos amarelas",
        "blue": "azul azul azuis azuis",
        "black": "preto preta pretos pretas",
        "white": "branco branca brancos brancas",
        "new": "novo nova novos novas",
        "heavy": "pesado pesada pesados pesadas",
        "fresh": "fresco fresca frescos frescas",
        "clean": "limpo limpa limpos limpas",
        "broken": "partido partida partidos partidas",
    }
    places = {
        "garden": "no jardim",
        "kitchen": "na cozinha",
        "market": "no mercado",
        "park": "no parque",
        "school": "na escola",
        "home": "em casa",
        "city": "na cidade",
        "station": "na estação",
        "shop": "na loja",
        "work": "no trabalho",
    }
    times = {
        "today": "hoje",
        "tomorrow": "amanhã",
        "every_day": "todos os dias",
        "morning": "de manhã",
        "evening": "à noite",
        "sunday": "no domingo",
        "saturday": "no sábado",
        "tonight": "esta noite",
        "next_week": "na próxima semana",
        "noon": "ao meio-dia",
    }

    def article(self, gender: str, plural: bool, definite: bool, noun: str) -> Optional[str]:
        if definite:
            return ("a" if gender == "f" else "o") + ("s" if plural else "")
        return None if plural else ("uma" if gender == "f" else "um")


GRAMMAR = Portuguese()
