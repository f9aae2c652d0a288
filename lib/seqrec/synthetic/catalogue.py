"""The catalogue behind the synthetic data: what the shop sells and how it is worded.

A fixed three-level category tree (department > family > leaf, e.g. ``Beauty>Makeup>Lipstick``;
49 leaves). Each department has brands, adjectives and variants (colours, roasts, bindings),
each leaf its nouns, sizes and a base price, so titles read like "Lumière matte lipstick, ruby
red, 4 g". Below the tree come the tables derived from it that the generator picks from: word
lists by department and by leaf, search queries by leaf, and 64 prices per leaf.

Pure data, no Spark: :mod:`seqrec.synthetic.items` places items in it and
:mod:`seqrec.synthetic.events` draws searches from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist


@dataclass(frozen=True)
class Leaf:
    """A leaf category: what its items are called, their sizes and its base price."""

    path: str  # "family>leaf" under its department
    nouns: tuple[str, ...]
    sizes: tuple[str, ...]
    base_price: float


@dataclass(frozen=True)
class Department:
    """A top-level category: its brands and the words of its titles, and its leaves."""

    name: str
    brands: tuple[str, ...]
    adjectives: tuple[str, ...]
    variants: tuple[str, ...]
    leaves: tuple[Leaf, ...]


CATALOG: tuple[Department, ...] = (
    Department(
        "Beauty",
        ("Lumière", "Velvetine", "Petalia", "Aurora Skin", "Noir & Co", "Mira Botanica"),
        ("matte", "satin", "hydrating", "long-lasting", "vegan", "fragrance-free", "waterproof"),
        ("ruby red", "nude beige", "coral", "rosewood", "plum", "berry", "ivory"),
        (
            Leaf("Makeup>Lipstick", ("lipstick", "lip colour", "lip crayon"), ("3.5 g", "4 g"), 18),
            Leaf("Makeup>Mascara", ("mascara", "lash primer"), ("8 ml", "10 ml"), 22),
            Leaf("Makeup>Foundation", ("foundation", "BB cream"), ("30 ml", "40 ml"), 29),
            Leaf("Skincare>Moisturizers", ("face cream", "night cream"), ("50 ml", "75 ml"), 26),
            Leaf("Skincare>Serums", ("serum", "vitamin C serum"), ("15 ml", "30 ml"), 34),
            Leaf("Skincare>Sunscreen", ("sunscreen SPF 50", "sun lotion"), ("100 ml",), 15),
            Leaf("Fragrance>Perfume", ("eau de parfum", "eau de toilette"), ("50 ml",), 65),
        ),
    ),
    Department(
        "Electronics",
        ("Voltix", "Nordwave", "Kestrel", "Sonora", "Pixelon", "Arcflux"),
        ("wireless", "compact", "fast-charging", "noise-cancelling", "ultra-slim", "smart"),
        ("matte black", "white", "silver", "midnight blue", "graphite", "rose gold"),
        (
            Leaf("Audio>Headphones", ("over-ear headphones", "headset"), ("40 h battery",), 89),
            Leaf("Audio>Earbuds", ("earbuds", "sport earbuds"), ("24 h battery",), 59),
            Leaf("Audio>Speakers", ("bluetooth speaker", "soundbar"), ("10 W", "40 W"), 79),
            Leaf("Phones>Smartphones", ("smartphone", "5G phone"), ("128 GB", "256 GB"), 499),
            Leaf("Phones>Cases", ("phone case", "flip cover"), ("6.1 inch", "6.7 inch"), 15),
            Leaf("Phones>Chargers", ("USB-C charger", "power bank"), ("20 W", "65 W"), 25),
            Leaf("Computers>Laptops", ("laptop", "ultrabook"), ("13 inch", "16 inch"), 899),
            Leaf("Computers>Keyboards", ("mechanical keyboard",), ("US layout", "UK layout"), 69),
            Leaf("Computers>Monitors", ("monitor", "4K monitor"), ("24 inch", "27 inch"), 249),
        ),
    ),
    Department(
        "Home & Kitchen",
        ("Hearthly", "Casa Nova", "Oakridge", "Kitchora", "Lindqvist", "Maison Pell"),
        ("stainless steel", "non-stick", "ceramic", "dishwasher-safe", "handmade", "cast-iron"),
        ("charcoal", "cream", "sage green", "terracotta", "natural oak", "copper"),
        (
            Leaf("Cookware>Frying Pans", ("frying pan", "skillet", "wok"), ("24 cm", "28 cm"), 39),
            Leaf("Cookware>Saucepans", ("saucepan", "stockpot"), ("16 cm", "20 cm"), 45),
            Leaf("Cookware>Knives", ("chef's knife", "knife set"), ("20 cm", "5-piece"), 55),
            Leaf("Appliances>Coffee Makers", ("espresso machine",), ("1.2 L", "1.5 L"), 129),
            Leaf("Appliances>Kettles", ("electric kettle", "gooseneck kettle"), ("1.7 L",), 35),
            Leaf("Decor>Candles", ("scented candle", "pillar candle"), ("200 g", "400 g"), 19),
            Leaf("Decor>Cushions", ("cushion cover", "throw pillow"), ("45 x 45 cm",), 22),
        ),
    ),
    Department(
        "Fashion",
        ("Marlowe", "Tidewear", "Urbane", "Kinfolk", "Sartoria", "Northfold"),
        ("slim-fit", "organic cotton", "oversized", "linen", "recycled", "merino"),
        ("navy", "olive", "black", "beige", "burgundy", "heather grey"),
        (
            Leaf("Women>Dresses", ("midi dress", "wrap dress"), ("size S", "size M"), 59),
            Leaf("Women>Jeans", ("high-rise jeans", "straight jeans"), ("W26", "W28"), 65),
            Leaf("Men>T-Shirts", ("t-shirt", "polo shirt"), ("size M", "size L"), 25),
            Leaf("Men>Jackets", ("rain jacket", "puffer jacket"), ("size M", "size L"), 119),
            Leaf("Shoes>Sneakers", ("sneakers", "running shoes"), ("EU 40", "EU 42"), 89),
            Leaf("Shoes>Boots", ("chelsea boots", "hiking boots"), ("EU 38", "EU 43"), 129),
        ),
    ),
    Department(
        "Sports & Outdoors",
        ("Summit", "Stride", "Aquaterra", "Peakform", "Trailcraft"),
        ("lightweight", "breathable", "insulated", "foldable", "ergonomic", "non-slip"),
        ("red", "black", "lime", "orange", "slate grey", "ocean blue"),
        (
            Leaf("Fitness>Yoga Mats", ("yoga mat", "exercise mat"), ("4 mm", "6 mm"), 29),
            Leaf("Fitness>Dumbbells", ("dumbbell set", "kettlebell"), ("10 kg", "20 kg"), 49),
            Leaf("Camping>Tents", ("dome tent", "backpacking tent"), ("2-person",), 149),
            Leaf("Camping>Backpacks", ("hiking backpack", "daypack"), ("20 L", "35 L"), 79),
            Leaf("Cycling>Helmets", ("bike helmet", "MIPS helmet"), ("size M", "size L"), 59),
        ),
    ),
    Department(
        "Grocery",
        ("Green Valley", "Nonna's", "Harvest Moon", "Bean & Leaf", "Salty Cove"),
        ("organic", "fair-trade", "gluten-free", "roasted", "extra virgin", "wholegrain"),
        ("classic", "dark roast", "spicy", "vanilla", "sea salt", "lemon"),
        (
            Leaf("Beverages>Coffee", ("coffee beans", "ground coffee"), ("250 g", "1 kg"), 12),
            Leaf("Beverages>Tea", ("green tea", "herbal tea"), ("20 bags", "50 bags"), 6),
            Leaf("Pantry>Olive Oil", ("olive oil",), ("500 ml", "750 ml", "1 L"), 11),
            Leaf("Pantry>Pasta", ("spaghetti", "penne", "fusilli"), ("500 g", "1 kg"), 3),
            Leaf("Snacks>Chocolate", ("dark chocolate bar", "truffles"), ("100 g",), 4),
        ),
    ),
    Department(
        "Toys & Games",
        ("Brightbox", "Tinkertoy", "Meeple House", "Cosmo Kids"),
        ("educational", "wooden", "cooperative", "rechargeable", "family"),
        ("rainbow", "pastel", "classic", "glow-in-the-dark"),
        (
            Leaf("Board Games>Strategy", ("strategy game",), ("2-4 players",), 45),
            Leaf("Board Games>Party", ("party game", "trivia game"), ("4-10 players",), 25),
            Leaf("Puzzles>Jigsaw", ("jigsaw puzzle", "3D puzzle"), ("1000 pieces",), 19),
            Leaf("Building>Blocks", ("building blocks set",), ("250 pieces", "600 pieces"), 39),
            Leaf("Building>Robot Kits", ("robot kit", "coding robot"), ("ages 8+",), 79),
        ),
    ),
    Department(
        "Books",
        ("Penrose Press", "Northlight", "Quill & Ink", "Marginalia"),
        ("bestselling", "illustrated", "award-winning", "annotated", "pocket"),
        ("paperback", "hardcover", "large print", "special edition"),
        (
            Leaf("Fiction>Mystery", ("mystery novel", "thriller"), ("320 pages",), 14),
            Leaf("Fiction>Science Fiction", ("space opera",), ("384 pages", "512 pages"), 15),
            Leaf("Fiction>Romance", ("romance novel", "romantic comedy"), ("288 pages",), 11),
            Leaf("Non-fiction>Cookbooks", ("cookbook", "baking book"), ("256 pages",), 25),
            Leaf("Non-fiction>Travel Guides", ("travel guide", "city guide"), ("240 pages",), 18),
        ),
    ),
)
LEAVES: tuple[tuple[int, Leaf], ...] = tuple(
    (d, leaf) for d, dept in enumerate(CATALOG) for leaf in dept.leaves
)

# Word lists by department and by leaf, the rows `columns.pick` chooses from.
BRANDS = tuple(dept.brands for dept in CATALOG)
ADJECTIVES = tuple(dept.adjectives for dept in CATALOG)
VARIANTS = tuple(dept.variants for dept in CATALOG)
NOUNS = tuple(leaf.nouns for _, leaf in LEAVES)
SIZES = tuple(leaf.sizes for _, leaf in LEAVES)

# What shoppers type, by leaf: the noun alone, with an adjective, a brand, a variant or a budget.
QUERIES = tuple(
    tuple(
        query.lower()
        for noun in leaf.nouns
        for query in (
            noun,
            f"{noun} under {math.ceil(leaf.base_price * 1.2)}",
            *(f"{adjective} {noun}" for adjective in CATALOG[d].adjectives),
            *(f"{brand} {noun}" for brand in CATALOG[d].brands),
            *(f"{noun} {variant}" for variant in CATALOG[d].variants),
        )
    )
    for d, leaf in LEAVES
)

PRICE_LEVELS = 64  # distinct prices per leaf


def _price_cents() -> tuple[int, ...]:
    """``PRICE_LEVELS`` prices per leaf (leaf-major): log-normal quantiles (sigma 0.5) around
    the leaf's base price, ending in .99 as shop prices do."""
    quantiles = [NormalDist().inv_cdf((k + 0.5) / PRICE_LEVELS) for k in range(PRICE_LEVELS)]
    return tuple(
        max(math.floor(leaf.base_price * math.exp(0.5 * z)), 1) * 100 - 1
        for _, leaf in LEAVES
        for z in quantiles
    )


PRICE_CENTS = _price_cents()
PRICE_TEXTS = tuple(f"{cents // 100}.{cents % 100:02d}" for cents in PRICE_CENTS)
