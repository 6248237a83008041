"""An aligned English/Spanish lexicon of everyday words, shipped as Python data for ``grammar.py``.

Every entry is a hand-checked translation with the forms the templates need: plurals in both languages and
the Spanish gender of nouns, the four Spanish forms of adjectives (masculine/feminine, singular/plural),
English and Spanish verb forms, names and cities as each language writes them. The lexicon is hand-written
because no library ships aligned bilingual entries with these forms; keeping it small, concrete and
everyday keeps the sentences easy for a speech synthesizer to say.

Rules the data keeps, so that the templates can render every combination correctly and unambiguously:

* no synonyms: each English and each Spanish noun form belongs to one entry (a template must never render
  two different slot choices as the same sentence);
* no noun whose English plural equals its singular ("sheep", "fish"): such a noun phrase would not show
  its number in English;
* no feminine noun that takes "el" (agua, aula, águila): the article rules in ``grammar.py`` are the
  regular ones;
* ``kind`` and ``tags`` say what a noun is and what can be done with it, so that adjectives, verbs and
  places combine only sensibly ("the broken lamp", "fold the towels", "the plane is at the airport").
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, TypeVar

Gender = Literal["m", "f"]


@dataclass(frozen=True)
class Noun:
    """A countable noun.

    Attributes:
        en, en_pl: English singular and plural ("mouse", "mice").
        es, es_pl: Spanish singular and plural ("ratón", "ratones").
        gender: Spanish grammatical gender, "m" or "f".
        kind: semantic class ("pet", "fruit", "object", "room", ...).
        tags: extra properties that verbs, adjectives and places look for ("open", "wash", "station").
        colours: English names of the colour adjectives that fit this noun.
    """

    en: str
    en_pl: str
    es: str
    es_pl: str
    gender: Gender
    kind: str = ""
    tags: frozenset[str] = frozenset()
    colours: frozenset[str] = frozenset()

    def fits(self, wanted: frozenset[str]) -> bool:
        """Whether this noun's kind or one of its tags is in ``wanted``."""
        return self.kind in wanted or not wanted.isdisjoint(self.tags)


@dataclass(frozen=True)
class Place(Noun):
    """A room, building or outdoor place: a noun that can also hold things.

    Attributes:
        prep: the English preposition for being there ("in the kitchen", "at the bank", "on the farm");
            Spanish always says "en".
        holds: noun kinds and tags that can sensibly be there.
    """

    prep: str = "in"
    holds: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Adjective:
    """An adjective with its four Spanish forms, indexed by ``forms[(f) + 2 * (plural)]``.

    Attributes:
        en: English form.
        forms: Spanish (masculine singular, feminine singular, masculine plural, feminine plural).
        fits: noun kinds and tags the adjective describes sensibly (unused for colours, see ``Noun.colours``).
        after: whether the Spanish adjective follows the noun (the normal case) or precedes it.
        en_cmp: English comparative ("taller", "more serious"); empty when no template needs it.
        estar: whether "is <adjective>" takes "estar" (a state: "está limpio") rather than "ser".
    """

    en: str
    forms: tuple[str, str, str, str]
    fits: frozenset[str] = frozenset()
    after: bool = True
    en_cmp: str = ""
    estar: bool = False

    def es(self, gender: Gender, plural: bool) -> str:
        """The Spanish form that agrees with a noun of ``gender`` and number."""
        return self.forms[(gender == "f") + 2 * plural]


@dataclass(frozen=True)
class Verb:
    """A transitive verb: English base/3rd person/past, Spanish infinitive, present and preterite.

    Attributes:
        objects: noun kinds and tags it takes as object.
    """

    en: str
    en_3sg: str
    en_past: str
    es_inf: str
    yo: str
    el: str
    nos: str
    ellos: str
    pret_el: str
    objects: frozenset[str] = frozenset()

    def present(self, person: str) -> str:
        """Spanish present tense for ``person`` in {"yo", "el", "nos", "ellos"}."""
        return {"yo": self.yo, "el": self.el, "nos": self.nos, "ellos": self.ellos}[person]


@dataclass(frozen=True)
class Name:
    """A person's name as each language writes it, and its gender for Spanish agreement."""

    en: str
    es: str
    gender: Gender


@dataclass(frozen=True)
class MassNoun:
    """An uncountable food or drink; ``es_def`` carries its definite article ("el agua" is feminine)."""

    en: str
    es: str
    es_def: str
    tags: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Unit:
    """A unit of quantity ("two kilos of ...") and the kinds/tags of goods it measures."""

    en: str
    en_pl: str
    es: str
    es_pl: str
    gender: Gender
    goods: frozenset[str]


@dataclass(frozen=True)
class Weather:
    """A weather expression now and in the past; the English takes its own subject ("it", "the weather")."""

    en_now: str
    es_now: str
    en_past: str
    es_past: str


def _set(words: str) -> frozenset[str]:
    return frozenset(words.split())


def _n(en: str, en_pl: str, es: str, es_pl: str, gender: Gender, tags: str = "", colours: str = "") -> Noun:
    cols = COLOUR_NAMES if colours == "*" else _set(colours)
    return Noun(en, en_pl, es, es_pl, gender, "", _set(tags), cols)


_N = TypeVar("_N", bound=Noun)


def _kind(kind: str, *nouns: _N) -> tuple[_N, ...]:
    return tuple(replace(n, kind=kind) for n in nouns)


def _o(
    en: str, stem: str, fits: str = "", en_cmp: str = "", after: bool = True, estar: bool = False
) -> Adjective:
    """A regular Spanish adjective in -o/-a/-os/-as, given its stem ("roj" for "rojo")."""
    forms = (stem + "o", stem + "a", stem + "os", stem + "as")
    return Adjective(en, forms, _set(fits), after, en_cmp, estar)


def _inv(en: str, sg: str, pl: str, fits: str = "", en_cmp: str = "") -> Adjective:
    """A Spanish adjective with one form per number for both genders ("verde"/"verdes", "azul"/"azules")."""
    return Adjective(en, (sg, sg, pl, pl), _set(fits), True, en_cmp)


# --- Colours ------------------------------------------------------------------------------------------
# Pink and orange are left out: "rosa" and "naranja" are invariable in careful Spanish but often pluralized.
COLOURS: tuple[Adjective, ...] = (
    _o("red", "roj"),
    _inv("blue", "azul", "azules"),
    _inv("green", "verde", "verdes"),
    _o("yellow", "amarill"),
    _o("black", "negr"),
    _o("white", "blanc"),
    _inv("brown", "marrón", "marrones"),
    _inv("gray", "gris", "grises"),
    _o("purple", "morad"),
)
COLOUR_NAMES: frozenset[str] = frozenset(c.en for c in COLOURS)

# --- Nouns --------------------------------------------------------------------------------------------
# "sg_only": the plural would be ambiguous or odd as a subject ("padres" is "parents", "abuelos" is
# "grandparents"); those plurals come from PLURAL_PEOPLE instead.
FAMILY = _kind(
    "family",
    _n("brother", "brothers", "hermano", "hermanos", "m", "human"),
    _n("sister", "sisters", "hermana", "hermanas", "f", "human"),
    _n("mother", "mothers", "madre", "madres", "f", "human sg_only"),
    _n("father", "fathers", "padre", "padres", "m", "human sg_only"),
    _n("son", "sons", "hijo", "hijos", "m", "human"),
    _n("daughter", "daughters", "hija", "hijas", "f", "human"),
    _n("grandmother", "grandmothers", "abuela", "abuelas", "f", "human sg_only"),
    _n("grandfather", "grandfathers", "abuelo", "abuelos", "m", "human sg_only"),
    _n("uncle", "uncles", "tío", "tíos", "m", "human"),
    _n("aunt", "aunts", "tía", "tías", "f", "human"),
    _n("cousin", "cousins", "primo", "primos", "m", "human"),
    _n("wife", "wives", "esposa", "esposas", "f", "human sg_only"),
    _n("husband", "husbands", "esposo", "esposos", "m", "human sg_only"),
    _n("friend", "friends", "amigo", "amigos", "m", "human"),
    _n("neighbor", "neighbors", "vecino", "vecinos", "m", "human"),
    _n("boss", "bosses", "jefe", "jefes", "m", "human"),
    _n("baby", "babies", "bebé", "bebés", "m", "human"),
)
PEOPLE = _kind(
    "person",
    _n("boy", "boys", "niño", "niños", "m", "human"),
    _n("girl", "girls", "niña", "niñas", "f", "human"),
    _n("man", "men", "hombre", "hombres", "m", "human"),
    _n("woman", "women", "mujer", "mujeres", "f", "human"),
    _n("teacher", "teachers", "profesor", "profesores", "m", "human"),
    _n("doctor", "doctors", "médico", "médicos", "m", "human"),
    _n("nurse", "nurses", "enfermera", "enfermeras", "f", "human"),
    _n("waiter", "waiters", "camarero", "camareros", "m", "human"),
    _n("student", "students", "estudiante", "estudiantes", "m", "human"),
    _n("farmer", "farmers", "granjero", "granjeros", "m", "human"),
    _n("cook", "cooks", "cocinero", "cocineros", "m", "human"),
    _n("driver", "drivers", "conductor", "conductores", "m", "human"),
    _n("pilot", "pilots", "piloto", "pilotos", "m", "human"),
    _n("baker", "bakers", "panadero", "panaderos", "m", "human"),
    _n("gardener", "gardeners", "jardinero", "jardineros", "m", "human"),
)
PETS = _kind(
    "pet",
    _n("dog", "dogs", "perro", "perros", "m", "wash animal", "black white brown gray"),
    _n("cat", "cats", "gato", "gatos", "m", "wash animal", "black white brown gray"),
    _n("bird", "birds", "pájaro", "pájaros", "m", "animal", "*"),
    _n("rabbit", "rabbits", "conejo", "conejos", "m", "animal", "black white brown gray"),
    _n("mouse", "mice", "ratón", "ratones", "m", "animal", "white brown gray"),
    _n("turtle", "turtles", "tortuga", "tortugas", "f", "animal", "green brown"),
    _n("parrot", "parrots", "loro", "loros", "m", "animal", "red blue green yellow"),
    _n("frog", "frogs", "rana", "ranas", "f", "animal", "green brown"),
)
FARM_ANIMALS = _kind(
    "farm",
    _n("horse", "horses", "caballo", "caballos", "m", "animal", "black white brown gray"),
    _n("cow", "cows", "vaca", "vacas", "f", "animal", "black white brown"),
    _n("pig", "pigs", "cerdo", "cerdos", "m", "animal"),
    _n("goat", "goats", "cabra", "cabras", "f", "animal", "black white brown"),
    _n("duck", "ducks", "pato", "patos", "m", "animal", "white brown"),
    _n("hen", "hens", "gallina", "gallinas", "f", "animal", "black white brown"),
    _n("donkey", "donkeys", "burro", "burros", "m", "animal", "brown gray"),
    _n("lamb", "lambs", "cordero", "corderos", "m", "animal", "black white"),
)
WILD_ANIMALS = _kind(
    "wild",
    _n("lion", "lions", "león", "leones", "m", "animal"),
    _n("tiger", "tigers", "tigre", "tigres", "m", "animal"),
    _n("bear", "bears", "oso", "osos", "m", "animal", "black white brown"),
    _n("monkey", "monkeys", "mono", "monos", "m", "animal", "brown"),
    _n("elephant", "elephants", "elefante", "elefantes", "m", "animal", "gray"),
    _n("giraffe", "giraffes", "jirafa", "jirafas", "f", "animal"),
    _n("zebra", "zebras", "cebra", "cebras", "f", "animal"),
    _n("snake", "snakes", "serpiente", "serpientes", "f", "animal", "green black yellow"),
    _n("wolf", "wolves", "lobo", "lobos", "m", "animal", "black white gray"),
    _n("fox", "foxes", "zorro", "zorros", "m", "animal", "red white"),
    _n("penguin", "penguins", "pingüino", "pingüinos", "m", "animal"),
    _n("dolphin", "dolphins", "delfín", "delfines", "m", "animal", "gray"),
    _n("whale", "whales", "ballena", "ballenas", "f", "animal", "blue gray white"),
    _n("owl", "owls", "búho", "búhos", "m", "animal", "white brown"),
    _n("kangaroo", "kangaroos", "canguro", "canguros", "m", "animal"),
)
BUGS = _kind(
    "bug",
    _n("spider", "spiders", "araña", "arañas", "f", "animal", "black"),
    _n("bee", "bees", "abeja", "abejas", "f", "animal"),
    _n("butterfly", "butterflies", "mariposa", "mariposas", "f", "animal", "*"),
    _n("ant", "ants", "hormiga", "hormigas", "f", "animal", "black red"),
)
FRUIT = _kind(
    "fruit",
    _n("apple", "apples", "manzana", "manzanas", "f", "eat cut wash box", "red green yellow"),
    _n("pear", "pears", "pera", "peras", "f", "eat cut wash", "green yellow"),
    _n("grape", "grapes", "uva", "uvas", "f", "eat wash", "green purple"),
    _n("banana", "bananas", "plátano", "plátanos", "m", "eat cut", "yellow green"),
    _n("orange", "oranges", "naranja", "naranjas", "f", "eat cut"),
    _n("lemon", "lemons", "limón", "limones", "m", "cut", "yellow green"),
    _n("strawberry", "strawberries", "fresa", "fresas", "f", "eat wash box"),
    _n("cherry", "cherries", "cereza", "cerezas", "f", "eat wash box"),
    _n("peach", "peaches", "melocotón", "melocotones", "m", "eat cut wash"),
    _n("plum", "plums", "ciruela", "ciruelas", "f", "eat wash", "red purple yellow"),
    _n("melon", "melons", "melón", "melones", "m", "eat cut"),
    _n("watermelon", "watermelons", "sandía", "sandías", "f", "eat cut"),
    _n("pineapple", "pineapples", "piña", "piñas", "f", "eat cut"),
    _n("mango", "mangoes", "mango", "mangos", "m", "eat cut"),
)
VEGETABLES = _kind(
    "vegetable",
    _n("tomato", "tomatoes", "tomate", "tomates", "m", "eat cook cut wash ripe", "red green yellow"),
    _n("potato", "potatoes", "patata", "patatas", "f", "cook cut wash"),
    _n("carrot", "carrots", "zanahoria", "zanahorias", "f", "eat cook cut wash"),
    _n("onion", "onions", "cebolla", "cebollas", "f", "cook cut", "red white"),
    _n("cucumber", "cucumbers", "pepino", "pepinos", "m", "eat cut wash"),
    _n("pepper", "peppers", "pimiento", "pimientos", "m", "cook cut wash", "red green yellow"),
    _n("mushroom", "mushrooms", "champiñón", "champiñones", "m", "cook cut wash"),
)
FOOD = _kind(
    "food",
    _n("egg", "eggs", "huevo", "huevos", "m", "cook box", "white brown"),
    _n("cake", "cakes", "pastel", "pasteles", "m", "eat cut sweet"),
    _n("cookie", "cookies", "galleta", "galletas", "f", "eat sweet box snack"),
    _n("sandwich", "sandwiches", "bocadillo", "bocadillos", "m", "eat cut"),
    _n("pizza", "pizzas", "pizza", "pizzas", "f", "eat cook cut"),
    _n("hamburger", "hamburgers", "hamburguesa", "hamburguesas", "f", "eat cook"),
    _n("sausage", "sausages", "salchicha", "salchichas", "f", "eat cook cut"),
    _n("ice cream", "ice creams", "helado", "helados", "m", "eat sweet"),
    _n("muffin", "muffins", "magdalena", "magdalenas", "f", "eat sweet box snack"),
)
OBJECTS = _kind(
    "object",
    _n("book", "books", "libro", "libros", "m", "read write open close carry lose", "*"),
    _n("pen", "pens", "bolígrafo", "bolígrafos", "m", "lose", "red blue green black"),
    _n("pencil", "pencils", "lápiz", "lápices", "m", "lose", "*"),
    _n("table", "tables", "mesa", "mesas", "f", "clean paint fix carry long outside", "*"),
    _n("chair", "chairs", "silla", "sillas", "f", "clean paint fix carry comfy outside", "*"),
    _n("bed", "beds", "cama", "camas", "f", "clean fix comfy", "*"),
    _n("lamp", "lamps", "lámpara", "lámparas", "f", "clean fix", "*"),
    _n("cup", "cups", "taza", "tazas", "f", "wash container", "*"),
    _n("glass", "glasses", "vaso", "vasos", "m", "wash container"),
    _n("plate", "plates", "plato", "platos", "m", "wash", "*"),
    _n("spoon", "spoons", "cuchara", "cucharas", "f", "wash lose"),
    _n("fork", "forks", "tenedor", "tenedores", "m", "wash lose"),
    _n("knife", "knives", "cuchillo", "cuchillos", "m", "wash lose"),
    _n("key", "keys", "llave", "llaves", "f", "lose"),
    _n("clock", "clocks", "reloj", "relojes", "m", "clean fix", "*"),
    _n("phone", "phones", "teléfono", "teléfonos", "m", "lose fix", "black white gray"),
    _n("computer", "computers", "ordenador", "ordenadores", "m", "clean fix", "black white gray"),
    _n("television", "televisions", "televisor", "televisores", "m", "clean fix", "black white gray"),
    _n("box", "boxes", "caja", "cajas", "f", "open close carry container paint wrap send", "*"),
    _n("bag", "bags", "bolsa", "bolsas", "f", "open close carry container lose", "*"),
    _n("ball", "balls", "pelota", "pelotas", "f", "lose outside beach", "*"),
    _n("bottle", "bottles", "botella", "botellas", "f", "open close carry container", "green white blue"),
    _n("mirror", "mirrors", "espejo", "espejos", "m", "clean"),
    _n("painting", "paintings", "cuadro", "cuadros", "m", "carry"),
    _n("umbrella", "umbrellas", "paraguas", "paraguas", "m", "open close lose beach", "*"),
    _n("letter", "letters", "carta", "cartas", "f", "read write send open fold"),
    _n("postcard", "postcards", "postal", "postales", "f", "read write send"),
    _n("package", "packages", "paquete", "paquetes", "m", "open send carry wrap"),
    _n("gift", "gifts", "regalo", "regalos", "m", "open carry wrap"),
    _n("newspaper", "newspapers", "periódico", "periódicos", "m", "read fold"),
    _n("magazine", "magazines", "revista", "revistas", "f", "read fold"),
    _n("dictionary", "dictionaries", "diccionario", "diccionarios", "m", "lose carry"),
    _n("ticket", "tickets", "billete", "billetes", "m", "lose"),
    _n("map", "maps", "mapa", "mapas", "m", "read fold lose"),
    _n("candle", "candles", "vela", "velas", "f", "", "red white yellow blue"),
    _n("toy", "toys", "juguete", "juguetes", "m", "lose outside", "*"),
    _n("basket", "baskets", "cesta", "cestas", "f", "carry container outside"),
    _n("pillow", "pillows", "almohada", "almohadas", "f", "wash comfy", "*"),
    _n("blanket", "blankets", "manta", "mantas", "f", "wash fold", "*"),
    _n("towel", "towels", "toalla", "toallas", "f", "wash fold beach", "*"),
    _n("camera", "cameras", "cámara", "cámaras", "f", "lose fix", "black gray"),
    _n("guitar", "guitars", "guitarra", "guitarras", "f", "carry", "black brown red"),
    _n("notebook", "notebooks", "cuaderno", "cuadernos", "m", "lose", "*"),
    _n("backpack", "backpacks", "mochila", "mochilas", "f", "open close carry lose container", "*"),
    _n("wallet", "wallets", "cartera", "carteras", "f", "lose", "black brown"),
    _n("sofa", "sofas", "sofá", "sofás", "m", "clean comfy", "*"),
)
FIXTURES = _kind(
    "fixture",
    _n("door", "doors", "puerta", "puertas", "f", "open close clean paint fix", "*"),
    _n("window", "windows", "ventana", "ventanas", "f", "open close clean paint fix"),
)
PLANTS = _kind(
    "plant",
    _n("flower", "flowers", "flor", "flores", "f", "houseplant grow", "red white yellow blue purple"),
    _n("plant", "plants", "planta", "plantas", "f", "houseplant"),
    _n("tree", "trees", "árbol", "árboles", "m", "grow"),
)
VEHICLES = _kind(
    "vehicle",
    _n("car", "cars", "coche", "coches", "m", "car wash", "*"),
    _n("bicycle", "bicycles", "bicicleta", "bicicletas", "f", "car wash", "*"),
    _n("motorcycle", "motorcycles", "moto", "motos", "f", "car wash", "*"),
    _n("truck", "trucks", "camión", "camiones", "m", "car wash", "*"),
    _n("van", "vans", "furgoneta", "furgonetas", "f", "car wash", "*"),
    _n("taxi", "taxis", "taxi", "taxis", "m", "car wash", "yellow black white"),
    _n("bus", "buses", "autobús", "autobuses", "m", "station transport container", "*"),
    _n("train", "trains", "tren", "trenes", "m", "station transport long container", "*"),
    _n("plane", "planes", "avión", "aviones", "m", "airport transport container", "white blue red"),
    _n("helicopter", "helicopters", "helicóptero", "helicópteros", "m", "airport", "*"),
    _n("boat", "boats", "barco", "barcos", "m", "port transport beach", "*"),
    _n("tractor", "tractors", "tractor", "tractores", "m", "farmyard", "red green yellow"),
)
CLOTHES = _kind(
    "clothes",
    _n("shirt", "shirts", "camisa", "camisas", "f", "wash fold iron", "*"),
    _n("dress", "dresses", "vestido", "vestidos", "m", "wash fold iron long", "*"),
    _n("hat", "hats", "sombrero", "sombreros", "m", "lose", "*"),
    _n("shoe", "shoes", "zapato", "zapatos", "m", "lose comfy", "*"),
    _n("sock", "socks", "calcetín", "calcetines", "m", "wash fold lose", "*"),
    _n("coat", "coats", "abrigo", "abrigos", "m", "lose long", "*"),
    _n("skirt", "skirts", "falda", "faldas", "f", "wash fold iron long", "*"),
    _n("jacket", "jackets", "chaqueta", "chaquetas", "f", "wash lose", "*"),
    _n("scarf", "scarves", "bufanda", "bufandas", "f", "wash fold lose long", "*"),
    _n("glove", "gloves", "guante", "guantes", "m", "wash lose", "*"),
    _n("sweater", "sweaters", "jersey", "jerséis", "m", "wash fold comfy", "*"),
    _n("boot", "boots", "bota", "botas", "f", "lose comfy", "*"),
    _n("belt", "belts", "cinturón", "cinturones", "m", "lose", "black brown"),
    _n("tie", "ties", "corbata", "corbatas", "f", "iron lose", "*"),
    _n("cap", "caps", "gorra", "gorras", "f", "wash lose", "*"),
    _n("blouse", "blouses", "blusa", "blusas", "f", "wash fold iron", "*"),
)
EVENTS = _kind(
    "event",
    _n("meeting", "meetings", "reunión", "reuniones", "f", "timed"),
    _n("party", "parties", "fiesta", "fiestas", "f", "timed"),
    _n("exam", "exams", "examen", "exámenes", "m", "timed"),
    _n("concert", "concerts", "concierto", "conciertos", "m", "timed"),
    _n("wedding", "weddings", "boda", "bodas", "f", "timed"),
    _n("appointment", "appointments", "cita", "citas", "f", ""),
    _n("match", "matches", "partido", "partidos", "m", "timed"),
    _n("trip", "trips", "viaje", "viajes", "m", ""),
    _n("class", "classes", "clase", "clases", "f", "timed"),
    _n("interview", "interviews", "entrevista", "entrevistas", "f", "timed"),
    _n("dinner", "dinners", "cena", "cenas", "f", "timed"),
    _n("festival", "festivals", "festival", "festivales", "m", "timed"),
    _n("presentation", "presentations", "presentación", "presentaciones", "f", "timed"),
    _n("film", "films", "película", "películas", "f", "timed"),
    _n("show", "shows", "espectáculo", "espectáculos", "m", "timed"),
)


def _p(
    en: str, en_pl: str, es: str, es_pl: str, gender: Gender, prep: str, holds: str, tags: str = ""
) -> Place:
    return Place(en, en_pl, es, es_pl, gender, "", _set(tags), frozenset(), prep, _set(holds))


_HOME = "family person pet bug object"
_PEOPLE = "family person"
ROOMS = _kind(
    "room",
    _p("kitchen", "kitchens", "cocina", "cocinas", "f", "in", f"{_HOME} fruit vegetable food houseplant"),
    _p("bedroom", "bedrooms", "dormitorio", "dormitorios", "m", "in", f"{_HOME} clothes houseplant"),
    _p("bathroom", "bathrooms", "baño", "baños", "m", "in", f"{_HOME} clothes"),
    _p("living room", "living rooms", "salón", "salones", "m", "in", f"{_HOME} houseplant"),
    _p("dining room", "dining rooms", "comedor", "comedores", "m", "in", f"{_HOME} fruit food houseplant"),
    _p("garage", "garages", "garaje", "garajes", "m", "in", f"{_PEOPLE} pet object car"),
    _p("office", "offices", "oficina", "oficinas", "f", "in", f"{_PEOPLE} object houseplant"),
)
BUILDINGS = _kind(
    "building",
    _p("school", "schools", "escuela", "escuelas", "f", "at", _PEOPLE, "landmark"),
    _p("library", "libraries", "biblioteca", "bibliotecas", "f", "at", _PEOPLE, "landmark opens"),
    _p("hospital", "hospitals", "hospital", "hospitales", "m", "at", _PEOPLE, "landmark"),
    _p("bank", "banks", "banco", "bancos", "m", "at", _PEOPLE, "landmark opens"),
    _p("museum", "museums", "museo", "museos", "m", "at", _PEOPLE, "landmark opens"),
    _p("station", "stations", "estación", "estaciones", "f", "at", f"{_PEOPLE} station", "landmark"),
    _p("airport", "airports", "aeropuerto", "aeropuertos", "m", "at", f"{_PEOPLE} airport", "landmark"),
    _p("port", "ports", "puerto", "puertos", "m", "at", f"{_PEOPLE} port", "landmark"),
    _p("market", "markets", "mercado", "mercados", "m", "at", f"{_PEOPLE} fruit vegetable", "landmark opens"),
    _p("supermarket", "supermarkets", "supermercado", "supermercados", "m", "at",
       f"{_PEOPLE} fruit vegetable food", "landmark opens"),
    _p("restaurant", "restaurants", "restaurante", "restaurantes", "m", "at", _PEOPLE, "landmark opens"),
    _p("hotel", "hotels", "hotel", "hoteles", "m", "at", _PEOPLE, "landmark"),
    _p("church", "churches", "iglesia", "iglesias", "f", "at", _PEOPLE, "landmark"),
    _p("pharmacy", "pharmacies", "farmacia", "farmacias", "f", "at", _PEOPLE, "landmark opens"),
    _p("bakery", "bakeries", "panadería", "panaderías", "f", "at", f"{_PEOPLE} sweet", "landmark opens"),
    _p("cinema", "cinemas", "cine", "cines", "m", "at", _PEOPLE, "landmark opens"),
    _p("theater", "theaters", "teatro", "teatros", "m", "at", _PEOPLE, "landmark"),
    _p("bookstore", "bookstores", "librería", "librerías", "f", "at", f"{_PEOPLE} read", "landmark opens"),
    _p("stadium", "stadiums", "estadio", "estadios", "m", "at", _PEOPLE, "landmark"),
    _p("zoo", "zoos", "zoológico", "zoológicos", "m", "at", f"{_PEOPLE} wild", "landmark opens"),
    _p("university", "universities", "universidad", "universidades", "f", "at", _PEOPLE, "landmark"),
    _p("swimming pool", "swimming pools", "piscina", "piscinas", "f", "at", _PEOPLE, "landmark opens"),
    _p("gym", "gyms", "gimnasio", "gimnasios", "m", "at", _PEOPLE, "landmark opens"),
)
OUTDOORS = _kind(
    "outdoor",
    _p("garden", "gardens", "jardín", "jardines", "m", "in", f"{_PEOPLE} pet bug plant outside"),
    _p("park", "parks", "parque", "parques", "m", "in", f"{_PEOPLE} pet bug plant", "landmark"),
    _p("beach", "beaches", "playa", "playas", "f", "at", f"{_PEOPLE} pet beach", "landmark"),
    _p("street", "streets", "calle", "calles", "f", "on", f"{_PEOPLE} pet car"),
    _p("square", "squares", "plaza", "plazas", "f", "in", f"{_PEOPLE} pet", "landmark"),
    _p("farm", "farms", "granja", "granjas", "f", "on", f"{_PEOPLE} pet farm farmyard"),
    _p("forest", "forests", "bosque", "bosques", "m", "in", f"{_PEOPLE} wild bug"),
)

PLACES: tuple[Place, ...] = ROOMS + BUILDINGS + OUTDOORS
NOUNS: tuple[Noun, ...] = (
    FAMILY + PEOPLE + PETS + FARM_ANIMALS + WILD_ANIMALS + BUGS + FRUIT + VEGETABLES + FOOD + OBJECTS
    + FIXTURES + PLANTS + VEHICLES + CLOTHES + EVENTS + PLACES
)

# --- Adjectives ---------------------------------------------------------------------------------------
_THINGS = "object fixture vehicle clothes"
_ANIMALS = "pet farm wild"
ADJECTIVES: tuple[Adjective, ...] = (
    _o("small", "pequeñ", f"{_THINGS} {_ANIMALS} bug fruit vegetable food room building plant"),
    _inv("big", "grande", "grandes", f"{_THINGS} {_ANIMALS} fruit vegetable food room building plant"),
    _o("old", "viej", f"{_THINGS} building {_ANIMALS}"),
    _o("new", "nuev", f"{_THINGS} building room"),
    _o("clean", "limpi", f"{_THINGS} room", estar=True),
    _o("dirty", "suci", f"{_THINGS} room pet farm", estar=True),
    _o("cheap", "barat", "object vehicle clothes fruit vegetable food plant"),
    _o("expensive", "car", "object vehicle clothes fruit food plant"),
    _o("beautiful", "bonit", f"{_THINGS} room building outdoor plant pet bug"),
    _o("modern", "modern", "building room vehicle"),
    _o("fast", "rápid", f"vehicle {_ANIMALS}"),
    _o("slow", "lent", f"vehicle {_ANIMALS}"),
    _o("fresh", "fresc", "fruit vegetable food", estar=True),
    _o("ripe", "madur", "fruit ripe", estar=True),
    _inv("sweet", "dulce", "dulces", "fruit sweet"),
    _inv("young", "joven", "jóvenes", _ANIMALS),
    _o("quiet", "tranquil", f"{_ANIMALS} room building outdoor", estar=True),
    _o("empty", "vací", "container room building", estar=True),
    _o("full", "llen", "container building", estar=True),
    _o("long", "larg", "long"),
    _o("heavy", "pesad", "carry"),
    _o("famous", "famos", "building"),
    _o("broken", "rot", "fix", estar=True),
    _o("comfortable", "cómod", "comfy"),
    # A prenominal adjective ("el último tren"); the templates use it only with "the".
    _o("last", "últim", "transport fruit food", after=False),
)
# Adjectives for people with "ser" (lasting traits); English comparatives for "taller than".
TRAITS: tuple[Adjective, ...] = (
    _o("tall", "alt", en_cmp="taller"),
    _o("short", "baj", en_cmp="shorter"),
    _inv("young", "joven", "jóvenes", en_cmp="younger"),
    _inv("strong", "fuerte", "fuertes", en_cmp="stronger"),
    _inv("kind", "amable", "amables", en_cmp="kinder"),
    _o("funny", "divertid", en_cmp="funnier"),
    _inv("smart", "inteligente", "inteligentes", en_cmp="smarter"),
    _o("shy", "tímid", en_cmp="shyer"),
    _o("friendly", "simpátic", en_cmp="friendlier"),
    _o("quiet", "tranquil", en_cmp="quieter"),
    _o("serious", "seri", en_cmp="more serious"),
    _o("lazy", "perezos", en_cmp="lazier"),
    _o("generous", "generos", en_cmp="more generous"),
    _inv("patient", "paciente", "pacientes", en_cmp="more patient"),
    _o("polite", "educad", en_cmp="more polite"),
    _o("honest", "sincer", en_cmp="more honest"),
    _inv("brave", "valiente", "valientes", en_cmp="braver"),
)
# Adjectives for people with "estar" (passing states).
STATES: tuple[Adjective, ...] = (
    _o("tired", "cansad"),
    _o("happy", "content"),
    _inv("sad", "triste", "tristes"),
    _o("busy", "ocupad"),
    _o("sick", "enferm"),
    _o("bored", "aburrid"),
    _o("ready", "list"),
    _o("nervous", "nervios"),
    _o("angry", "enfadad"),
    _o("worried", "preocupad"),
    _o("calm", "tranquil"),
    _o("surprised", "sorprendid"),
    _o("excited", "emocionad"),
)

# --- Verbs --------------------------------------------------------------------------------------------
_GOODS = "object clothes fruit vegetable food plant"


def _v(en: str, en_3sg: str, en_past: str, es: str, objects: str) -> Verb:
    """``es`` is "infinitive yo él nosotros ellos preterite-él"."""
    inf, yo, el, nos, ellos, pret = es.split()
    return Verb(en, en_3sg, en_past, inf, yo, el, nos, ellos, pret, _set(objects))


VERBS: tuple[Verb, ...] = (
    _v("buy", "buys", "bought", "comprar compro compra compramos compran compró", f"{_GOODS} car"),
    _v("sell", "sells", "sold", "vender vendo vende vendemos venden vendió", f"{_GOODS} vehicle farm"),
    _v("need", "needs", "needed", "necesitar necesito necesita necesitamos necesitan necesitó",
       "object clothes fruit vegetable"),
    _v("choose", "chooses", "chose", "elegir elijo elige elegimos eligen eligió",
       "object clothes fruit plant pet"),
    _v("bring", "brings", "brought", "traer traigo trae traemos traen trajo",
       "object food fruit vegetable plant"),
    _v("eat", "eats", "ate", "comer como come comemos comen comió", "eat"),
    _v("cook", "cooks", "cooked", "cocinar cocino cocina cocinamos cocinan cocinó", "cook"),
    _v("cut", "cuts", "cut", "cortar corto corta cortamos cortan cortó", "cut"),
    _v("wash", "washes", "washed", "lavar lavo lava lavamos lavan lavó", "wash"),
    _v("clean", "cleans", "cleaned", "limpiar limpio limpia limpiamos limpian limpió", "clean car room"),
    _v("find", "finds", "found", "encontrar encuentro encuentra encontramos encuentran encontró", "lose pet"),
    _v("lose", "loses", "lost", "perder pierdo pierde perdemos pierden perdió", "lose"),
    _v("hide", "hides", "hid", "esconder escondo esconde escondemos esconden escondió", "lose gift"),
    _v("read", "reads", "read", "leer leo lee leemos leen leyó", "read"),
    _v("write", "writes", "wrote", "escribir escribo escribe escribimos escriben escribió", "write"),
    _v("send", "sends", "sent", "enviar envío envía enviamos envían envió", "send"),
    _v("open", "opens", "opened", "abrir abro abre abrimos abren abrió", "open"),
    _v("close", "closes", "closed", "cerrar cierro cierra cerramos cierran cerró", "close"),
    _v("carry", "carries", "carried", "llevar llevo lleva llevamos llevan llevó", "carry"),
    _v("paint", "paints", "painted", "pintar pinto pinta pintamos pintan pintó", "paint car"),
    _v("draw", "draws", "drew", "dibujar dibujo dibuja dibujamos dibujan dibujó",
       "pet farm wild bug fruit vehicle plant"),
    _v("fix", "fixes", "fixed", "reparar reparo repara reparamos reparan reparó", "fix car"),
    _v("see", "sees", "saw", "ver veo ve vemos ven vio", "pet farm wild bug vehicle"),
    _v("order", "orders", "ordered", "pedir pido pide pedimos piden pidió", "food"),
    _v("fold", "folds", "folded", "doblar doblo dobla doblamos doblan dobló", "fold"),
    _v("iron", "irons", "ironed", "planchar plancho plancha planchamos planchan planchó", "iron"),
    _v("plant", "plants", "planted", "plantar planto planta plantamos plantan plantó", "grow"),
    _v("wrap", "wraps", "wrapped", "envolver envuelvo envuelve envolvemos envuelven envolvió", "wrap"),
)
WANT = _v("want", "wants", "wanted", "querer quiero quiere queremos quieren quiso", "")

# --- Names, places, time --------------------------------------------------------------------------------
_NAME_ROWS: tuple[tuple[str, str, Gender], ...] = (
    ("Maria", "María", "f"), ("Carlos", "Carlos", "m"), ("Ana", "Ana", "f"), ("David", "David", "m"),
    ("Laura", "Laura", "f"), ("Daniel", "Daniel", "m"), ("Lucia", "Lucía", "f"), ("Pablo", "Pablo", "m"),
    ("Elena", "Elena", "f"), ("Javier", "Javier", "m"), ("Sofia", "Sofía", "f"), ("Diego", "Diego", "m"),
    ("Marta", "Marta", "f"), ("Pedro", "Pedro", "m"), ("Sara", "Sara", "f"), ("Miguel", "Miguel", "m"),
    ("Paula", "Paula", "f"), ("Jorge", "Jorge", "m"), ("Irene", "Irene", "f"), ("Mario", "Mario", "m"),
    ("Clara", "Clara", "f"), ("Andres", "Andrés", "m"), ("Julia", "Julia", "f"), ("Hugo", "Hugo", "m"),
    ("Alba", "Alba", "f"), ("Victor", "Víctor", "m"), ("Eva", "Eva", "f"), ("Adrian", "Adrián", "m"),
    ("Nora", "Nora", "f"), ("Raul", "Raúl", "m"), ("Isabel", "Isabel", "f"), ("Sergio", "Sergio", "m"),
    ("Carmen", "Carmen", "f"), ("Luis", "Luis", "m"), ("Teresa", "Teresa", "f"), ("Manuel", "Manuel", "m"),
    ("Ines", "Inés", "f"), ("Alberto", "Alberto", "m"), ("Alicia", "Alicia", "f"), ("Oscar", "Óscar", "m"),
)
NAMES: tuple[Name, ...] = tuple(Name(en, es, g) for en, es, g in _NAME_ROWS)
# Parents and grandparents exist only in the plural here ("mis padres", "mis abuelos").
PLURAL_PEOPLE: tuple[Noun, ...] = _kind(
    "family",
    _n("parent", "parents", "padre", "padres", "m", "human"),
    _n("grandparent", "grandparents", "abuelo", "abuelos", "m", "human"),
)
CITIES: tuple[tuple[str, str], ...] = (
    ("Madrid", "Madrid"), ("Barcelona", "Barcelona"), ("Valencia", "Valencia"), ("Seville", "Sevilla"),
    ("Bilbao", "Bilbao"), ("Granada", "Granada"), ("Toledo", "Toledo"), ("Malaga", "Málaga"),
    ("Salamanca", "Salamanca"), ("Cordoba", "Córdoba"), ("Paris", "París"), ("London", "Londres"),
    ("Rome", "Roma"), ("Lisbon", "Lisboa"), ("Berlin", "Berlín"), ("Athens", "Atenas"), ("Dublin", "Dublín"),
    ("Vienna", "Viena"), ("Prague", "Praga"), ("Venice", "Venecia"), ("Florence", "Florencia"),
    ("Milan", "Milán"), ("Naples", "Nápoles"), ("Brussels", "Bruselas"), ("Amsterdam", "Ámsterdam"),
    ("Geneva", "Ginebra"), ("Moscow", "Moscú"), ("Tokyo", "Tokio"), ("Mexico City", "Ciudad de México"),
    ("Buenos Aires", "Buenos Aires"), ("Lima", "Lima"), ("Bogota", "Bogotá"), ("Santiago", "Santiago"),
    ("Quito", "Quito"), ("Caracas", "Caracas"), ("Montevideo", "Montevideo"), ("New York", "Nueva York"),
    ("Miami", "Miami"), ("Chicago", "Chicago"), ("Boston", "Boston"), ("Toronto", "Toronto"),
    ("Sydney", "Sídney"),
)
# (English, Spanish singular, Spanish plural): "todos los sábados".
DAYS: tuple[tuple[str, str, str], ...] = (
    ("Monday", "lunes", "lunes"), ("Tuesday", "martes", "martes"), ("Wednesday", "miércoles", "miércoles"),
    ("Thursday", "jueves", "jueves"), ("Friday", "viernes", "viernes"), ("Saturday", "sábado", "sábados"),
    ("Sunday", "domingo", "domingos"),
)
# (English, Spanish, days): February has 28 days here, so every date is valid in every year.
MONTHS: tuple[tuple[str, str, int], ...] = (
    ("January", "enero", 31), ("February", "febrero", 28), ("March", "marzo", 31), ("April", "abril", 30),
    ("May", "mayo", 31), ("June", "junio", 30), ("July", "julio", 31), ("August", "agosto", 31),
    ("September", "septiembre", 30), ("October", "octubre", 31), ("November", "noviembre", 30),
    ("December", "diciembre", 31),
)
# When something usually happens (present tense), happened (preterite) or will happen.
HABITUAL: tuple[tuple[str, str], ...] = (
    ("every day", "todos los días"), ("every week", "todas las semanas"), ("every month", "todos los meses"),
    ("every morning", "todas las mañanas"), ("every weekend", "todos los fines de semana"),
) + tuple((f"every {en}", f"todos los {es_pl}") for en, _, es_pl in DAYS)
PAST_TIMES: tuple[tuple[str, str], ...] = (
    ("yesterday", "ayer"), ("last night", "anoche"), ("last week", "la semana pasada"),
    ("last month", "el mes pasado"), ("last year", "el año pasado"),
    ("last weekend", "el fin de semana pasado"),
    ("two days ago", "hace dos días"), ("three days ago", "hace tres días"),
) + tuple((f"last {en}", f"el {es} pasado") for en, es, _ in DAYS)
FUTURE_TIMES: tuple[tuple[str, str], ...] = (
    ("tomorrow", "mañana"), ("next week", "la próxima semana"), ("next month", "el próximo mes"),
    ("next year", "el próximo año"), ("this summer", "este verano"), ("this weekend", "este fin de semana"),
) + tuple((f"in {en}", f"en {es}") for en, es, _ in MONTHS) + tuple(
    (f"on {en}", f"el {es}") for en, es, _ in DAYS
)

# --- Food and drink, units ------------------------------------------------------------------------------
MASS_NOUNS: tuple[MassNoun, ...] = tuple(
    MassNoun(en, es, es_def, _set(tags))
    for en, es, es_def, tags in (
        ("water", "agua", "el agua", "drink"),  # feminine, but "el" before stressed a-
        ("milk", "leche", "la leche", "drink hot"),
        ("juice", "zumo", "el zumo", "drink"),
        ("wine", "vino", "el vino", "drink"),
        ("lemonade", "limonada", "la limonada", "drink"),
        ("oil", "aceite", "el aceite", "oil"),
        ("coffee", "café", "el café", "hot"),
        ("tea", "té", "el té", "hot"),
        ("soup", "sopa", "la sopa", "hot"),
        ("cheese", "queso", "el queso", "bulk slice"),
        ("bread", "pan", "el pan", "slice"),
        ("rice", "arroz", "el arroz", "bulk bag"),
        ("sugar", "azúcar", "el azúcar", "bulk bag"),
        ("flour", "harina", "la harina", "bulk bag"),
        ("meat", "carne", "la carne", "bulk slice"),
        ("chicken", "pollo", "el pollo", "bulk"),
        ("fish", "pescado", "el pescado", "bulk slice"),
        ("ham", "jamón", "el jamón", "bulk slice"),
        ("pasta", "pasta", "la pasta", "bulk bag"),
        ("butter", "mantequilla", "la mantequilla", ""),
        ("honey", "miel", "la miel", ""),
        ("chocolate", "chocolate", "el chocolate", "slice"),
    )
)
UNITS: tuple[Unit, ...] = (
    Unit("kilo", "kilos", "kilo", "kilos", "m", _set("bulk fruit vegetable")),
    Unit("bag", "bags", "bolsa", "bolsas", "f", _set("bag snack fruit vegetable")),
    Unit("box", "boxes", "caja", "cajas", "f", _set("box")),
    Unit("bottle", "bottles", "botella", "botellas", "f", _set("drink oil")),
    Unit("liter", "liters", "litro", "litros", "m", _set("drink oil")),
    Unit("glass", "glasses", "vaso", "vasos", "m", _set("drink")),
    Unit("cup", "cups", "taza", "tazas", "f", _set("hot")),
    Unit("piece", "pieces", "trozo", "trozos", "m", _set("slice")),
)
# (English singular, English plural, Spanish singular, Spanish plural, Spanish gender).
CURRENCIES: tuple[tuple[str, str, str, str, Gender], ...] = (
    ("euro", "euros", "euro", "euros", "m"),
    ("dollar", "dollars", "dólar", "dólares", "m"),
    ("pound", "pounds", "libra", "libras", "f"),
    ("peso", "pesos", "peso", "pesos", "m"),
)

# --- Everyday expressions -------------------------------------------------------------------------------
WEATHER: tuple[Weather, ...] = (
    Weather("it is sunny", "hace sol", "it was sunny", "hizo sol"),
    Weather("it is hot", "hace calor", "it was hot", "hizo calor"),
    Weather("it is cold", "hace frío", "it was cold", "hizo frío"),
    Weather("it is windy", "hace viento", "it was windy", "hizo viento"),
    Weather("it is raining", "está lloviendo", "it rained", "llovió"),
    Weather("it is snowing", "está nevando", "it snowed", "nevó"),
    Weather("it is cloudy", "está nublado", "it was cloudy", "estuvo nublado"),
    Weather("it is foggy", "hay niebla", "it was foggy", "hubo niebla"),
    Weather("there is a storm", "hay tormenta", "there was a storm", "hubo tormenta"),
    Weather("the weather is nice", "hace buen tiempo", "the weather was nice", "hizo buen tiempo"),
    Weather("the weather is bad", "hace mal tiempo", "the weather was bad", "hizo mal tiempo"),
)
WEATHER_NOW_TIMES: tuple[tuple[str, str], ...] = (
    ("today", "hoy"), ("this morning", "esta mañana"), ("this afternoon", "esta tarde"),
    ("tonight", "esta noche"), ("right now", "ahora mismo"),
)
WEATHER_PAST_TIMES: tuple[tuple[str, str], ...] = (
    ("yesterday", "ayer"), ("last night", "anoche"), ("last week", "la semana pasada"),
    ("last weekend", "el fin de semana pasado"),
) + tuple((f"on {en}", f"el {es}") for en, es, _ in DAYS)
# Infinitive phrases for "likes to ..." / "le gusta ...".
ACTIVITIES: tuple[tuple[str, str], ...] = (
    ("swim", "nadar"), ("dance", "bailar"), ("sing", "cantar"), ("read", "leer"), ("cook", "cocinar"),
    ("run", "correr"), ("travel", "viajar"), ("draw", "dibujar"), ("paint", "pintar"), ("study", "estudiar"),
    ("sleep", "dormir"), ("ski", "esquiar"), ("play the guitar", "tocar la guitarra"),
    ("play the piano", "tocar el piano"), ("play football", "jugar al fútbol"),
    ("play tennis", "jugar al tenis"),
    ("play chess", "jugar al ajedrez"), ("ride a bike", "montar en bicicleta"),
    ("walk in the park", "pasear por el parque"), ("watch movies", "ver películas"),
    ("listen to music", "escuchar música"), ("write letters", "escribir cartas"),
    ("work in the garden", "trabajar en el jardín"), ("go to the beach", "ir a la playa"),
    ("go to the cinema", "ir al cine"), ("take photos", "hacer fotos"), ("visit museums", "visitar museos"),
    ("learn languages", "aprender idiomas"), ("speak Spanish", "hablar español"),
    ("play with the dog", "jugar con el perro"), ("go shopping", "ir de compras"),
    ("drive", "conducir"), ("drink coffee", "tomar café"), ("eat fruit", "comer fruta"),
)
# "by train" / "en tren".
TRANSPORT_MODES: tuple[tuple[str, str], ...] = (
    ("train", "tren"), ("bus", "autobús"), ("plane", "avión"), ("car", "coche"), ("boat", "barco"),
)

NOUN_BY_EN: dict[str, Noun] = {n.en: n for n in NOUNS}
PLACE_BY_EN: dict[str, Place] = {p.en: p for p in PLACES}
ADJ_BY_EN: dict[str, Adjective] = {a.en: a for a in COLOURS + ADJECTIVES}
TRAIT_BY_EN: dict[str, Adjective] = {a.en: a for a in TRAITS}
STATE_BY_EN: dict[str, Adjective] = {a.en: a for a in STATES}
VERB_BY_EN: dict[str, Verb] = {v.en: v for v in VERBS + (WANT,)}
NAME_BY_EN: dict[str, Name] = {n.en: n for n in NAMES}
CITY_ES: dict[str, str] = dict(CITIES)
MASS_BY_EN: dict[str, MassNoun] = {m.en: m for m in MASS_NOUNS}
UNIT_BY_EN: dict[str, Unit] = {u.en: u for u in UNITS}


def adjective_fits(adj: Adjective, noun: Noun) -> bool:
    """Whether ``adj`` sensibly describes ``noun`` (colours by the noun's list, others by kind/tags)."""
    if adj.en in COLOUR_NAMES:
        return adj.en in noun.colours
    return noun.fits(adj.fits)
