"""ImageNet-1k class names and the everyday words people use for them.

A person asks "what animal is this?" and expects "cat", not "Egyptian cat": `everyday_name`
maps the fine ImageNet classes to the common word (ranges follow the standard class order).
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

# (first index, last index, everyday word) over the standard ImageNet-1k class order.
# fmt: off
_EVERYDAY_RANGES: tuple[tuple[int, int, str], ...] = (
    (0, 6, "fish"), (7, 8, "chicken"), (9, 24, "bird"), (25, 29, "salamander"),
    (30, 32, "frog"), (33, 37, "turtle"), (38, 48, "lizard"), (49, 50, "crocodile"),
    (51, 51, "dinosaur"), (52, 68, "snake"), (69, 69, "trilobite"), (70, 77, "spider"),
    (78, 78, "tick"), (79, 79, "centipede"), (80, 83, "bird"), (84, 84, "peacock"),
    (85, 86, "bird"), (87, 90, "parrot"), (91, 96, "bird"), (97, 98, "duck"), (99, 99, "goose"),
    (100, 100, "swan"), (101, 101, "elephant"), (102, 102, "echidna"), (103, 103, "platypus"),
    (104, 104, "kangaroo"), (105, 105, "koala"), (106, 106, "wombat"), (107, 107, "jellyfish"),
    (108, 109, "coral"), (110, 111, "worm"), (112, 117, "snail"), (118, 121, "crab"),
    (122, 124, "lobster"), (125, 125, "crab"), (126, 126, "isopod"), (127, 144, "bird"),
    (145, 145, "penguin"), (146, 146, "bird"), (147, 148, "whale"), (149, 149, "dugong"),
    (150, 150, "sea lion"), (151, 268, "dog"), (269, 271, "wolf"), (272, 272, "coyote"),
    (273, 275, "wild dog"), (276, 276, "hyena"), (277, 280, "fox"), (281, 285, "cat"),
    (286, 286, "cougar"), (287, 287, "lynx"), (288, 289, "leopard"), (290, 290, "jaguar"),
    (291, 291, "lion"), (292, 292, "tiger"), (293, 293, "cheetah"), (294, 297, "bear"),
    (298, 299, "mongoose"), (300, 307, "beetle"), (308, 308, "fly"), (309, 309, "bee"),
    (310, 310, "ant"), (311, 312, "grasshopper"), (313, 318, "insect"), (319, 320, "dragonfly"),
    (321, 326, "butterfly"), (327, 327, "starfish"), (328, 329, "sea urchin"),
    (330, 332, "rabbit"), (333, 333, "hamster"), (334, 334, "porcupine"),
    (335, 335, "squirrel"), (336, 336, "marmot"), (337, 337, "beaver"),
    (338, 338, "guinea pig"), (339, 339, "horse"), (340, 340, "zebra"), (341, 343, "pig"),
    (344, 344, "hippopotamus"), (345, 347, "cow"), (348, 350, "sheep"), (351, 353, "antelope"),
    (354, 354, "camel"), (355, 355, "llama"), (356, 359, "weasel"), (360, 360, "otter"),
    (361, 361, "skunk"), (362, 362, "badger"), (363, 363, "armadillo"), (364, 364, "sloth"),
    (365, 369, "ape"), (370, 382, "monkey"), (383, 384, "lemur"), (385, 386, "elephant"),
    (387, 387, "red panda"), (388, 388, "panda"), (389, 397, "fish"),
)
# fmt: on
ANIMAL_LAST_INDEX = 397  # classes 0..397 are animals; the rest are objects and scenes


@cache
def class_names() -> tuple[str, ...]:
    """The 1000 class names in model output order (first WordNet lemma of each synset)."""
    text = files("sensorium.tools").joinpath("data/imagenet_classes.txt").read_text("utf-8")
    lines = [line.split("\t", 1)[1] for line in text.splitlines() if line.strip()]
    return tuple(line.split(",")[0].strip() for line in lines)


@cache
def _everyday_by_index() -> dict[int, str]:
    table: dict[int, str] = {}
    for first, last, word in _EVERYDAY_RANGES:
        for index in range(first, last + 1):
            table[index] = word
    return table


def everyday_name(index: int) -> str:
    """The everyday word for class `index` ("cat" for "Egyptian cat")."""
    return _everyday_by_index().get(index) or class_names()[index].lower()


def is_animal(index: int) -> bool:
    """True for the animal classes of ImageNet-1k."""
    return index <= ANIMAL_LAST_INDEX
