"""A synthetic home-improvement catalogue for the demo project (no external data needed).

Five in-distribution segments share a short, catalogue-style vocabulary; ``appliances`` is the shifted
segment: its own product types, brands and long spec-sheet titles with model numbers, almost all of it
unlabelled pool, so DASA has something real to find. Grades follow rules close to real raters':
- strong: the product is the queried type and matches every attribute the query names;
- weak: the queried type with a mismatched attribute, or a closely related type of the same segment;
- irrelevant: another type of a different segment, or an accessory of the queried type.
Deterministic for a seed.
"""

from __future__ import annotations

import random

import pandas as pd

SEGMENTS: dict[str, dict[str, list[str]]] = {
    "bath": {"types": ["faucet", "shower head", "toilet", "vanity sink", "towel bar"],
             "brands": ["Delta", "Moen", "Kohler", "Glacier Bay"],
             "materials": ["brushed nickel", "chrome", "porcelain", "stainless steel"]},
    "lighting": {"types": ["pendant light", "ceiling fan", "led bulb", "wall sconce", "flood light"],
                 "brands": ["Hampton Bay", "Philips", "Commercial Electric", "Progress"],
                 "materials": ["bronze", "glass", "matte black", "brushed nickel"]},
    "paint": {"types": ["interior paint", "primer", "paint roller", "deck stain", "spray paint"],
              "brands": ["BEHR", "Rust-Oleum", "Glidden", "KILZ"],
              "materials": ["semi-gloss", "flat", "satin", "oil-based"]},
    "garden": {"types": ["garden hose", "lawn mower", "planter", "leaf blower", "hedge trimmer"],
               "brands": ["Ryobi", "Greenworks", "Suncast", "Husqvarna"],
               "materials": ["cordless", "resin", "gas", "rubber"]},
    "hardware": {"types": ["door knob", "deadbolt", "cabinet hinge", "wood screw", "shelf bracket"],
                 "brands": ["Kwikset", "Schlage", "Everbilt", "Liberty"],
                 "materials": ["satin nickel", "brass", "zinc", "steel"]},
    "appliances": {"types": ["french door refrigerator", "front load washer", "dishwasher",
                             "over-the-range microwave", "electric dryer"],
                   "brands": ["Whirlpool", "Samsung", "LG", "GE Profile", "Frigidaire Gallery"],
                   "materials": ["fingerprint resistant stainless", "black stainless", "white", "slate"]},
}
SHIFTED = "appliances"
COLORS = ["white", "black", "gray", "almond", "red", "blue"]
SIZES = ["small", "2-pack", "24 in.", "30 in.", "1 gal.", "5 ft.", "heavy duty"]
ACCESSORY = {"faucet": "faucet aerator", "lawn mower": "mower blade", "dishwasher": "dishwasher rack",
             "ceiling fan": "fan pull chain", "toilet": "toilet seat bolt"}
GUIDELINES = """\
# Demo guidelines: rate how well the product answers the search

Grade the **product title** against the **search query**. Think about what the customer wanted.

| grade | when |
|---|---|
| **strong** | The product *is* what the query asks for: same product type, and every attribute the query names (brand, material/finish, color, size) matches. |
| **weak** | Right product type but an attribute differs (other brand, color, finish), or a closely related product of the same department that partly answers the need. |
| **irrelevant** | A different kind of product, or only an accessory/part *for* the queried product. |

Tips
- Brand matters as much as function: "Moen faucet" -> a Delta faucet is **weak**.
- Typos do not matter: "refridgerator" means refrigerator.
- When unsure between two grades, pick the lower one and flag the card with a comment.
"""


def _title(rng: random.Random, seg: str, ptype: str, brand: str, material: str, color: str) -> str:
    if seg == SHIFTED:
        model = f"{brand[:2].upper()}{rng.randint(100, 999)}{rng.choice('ABCDX')}{rng.randint(10, 99)}"
        cap = rng.choice(["25.2 cu. ft.", "4.5 cu. ft.", "24 in. 52 dBA", "1.9 cu. ft. 1000-Watt",
                          "7.4 cu. ft. 240-Volt"])
        return f"{brand} {cap} {ptype} in {material.title()} with Smart Sensor, ENERGY STAR, Model {model}"
    size = rng.choice(SIZES)
    return f"{brand} {size} {ptype.title()} in {color.title() if rng.random() < 0.5 else material.title()}"


def _typo(rng: random.Random, text: str) -> str:
    if len(text) < 6 or rng.random() > 0.12:
        return text
    i = rng.randrange(1, len(text) - 2)
    return text[:i] + text[i + 1] + text[i] + text[i + 2:]


def generate(seed: int = 7, queries_per_segment: int = 60, items_per_type: int = 12,
             pairs_per_query: int = 9) -> pd.DataFrame:
    """Return the demo pairs: query, title, text, grade (name or ''), segment, split."""
    rng = random.Random(seed)
    catalogue: list[dict[str, str]] = []
    for seg, spec in SEGMENTS.items():
        for ptype in spec["types"]:
            for _ in range(items_per_type):
                brand, material, color = rng.choice(spec["brands"]), rng.choice(spec["materials"]), rng.choice(COLORS)
                catalogue.append({"segment": seg, "type": ptype, "brand": brand, "material": material,
                                  "color": color, "title": _title(rng, seg, ptype, brand, material, color)})
        for ptype, acc in ACCESSORY.items():
            if ptype in spec["types"]:
                catalogue.append({"segment": seg, "type": acc, "brand": rng.choice(spec["brands"]),
                                  "material": "", "color": "", "accessory_of": ptype,
                                  "title": f"{rng.choice(spec['brands'])} Replacement {acc.title()}"})
    by_type: dict[str, list[dict[str, str]]] = {}
    for item in catalogue:
        by_type.setdefault(item["type"], []).append(item)
    rows = []
    for seg, spec in SEGMENTS.items():
        for _ in range(queries_per_segment):
            ptype = rng.choice(spec["types"])
            want = {k: rng.choice(spec[k + "s"]) if rng.random() < 0.45 else "" for k in ("brand", "material")}
            parts = [want["brand"], want["material"], ptype]
            query = _typo(rng, " ".join(p for p in parts if p).lower())
            same_type = rng.sample(by_type[ptype], k=min(4, len(by_type[ptype])))
            related = [i for i in catalogue if i["segment"] == seg and i["type"] != ptype]
            other = [i for i in catalogue if i["segment"] != seg]
            picks = same_type + rng.sample(related, 3) + rng.sample(other, pairs_per_query - len(same_type) - 3)
            for item in picks:
                rows.append({"query": query, "title": item["title"], "segment": seg,
                             "grade": _grade(rng, item, ptype, want, seg)})
    frame = pd.DataFrame(rows).drop_duplicates(subset=["query", "title"]).reset_index(drop=True)
    frame["text"] = ""
    # Splits are decided per query (never per pair), so no query is both trained on and tested.
    frame["split"] = [_split(random.Random(f"{seed}:{q}"), seg) for q, seg in zip(frame["query"], frame["segment"], strict=True)]
    hidden = frame["split"] == "pool"
    frame["hidden_grade"] = frame["grade"]  # kept for demos of the annotators' accuracy; not imported
    frame.loc[hidden, "grade"] = ""
    return frame[["query", "title", "text", "grade", "segment", "split", "hidden_grade"]]


def _grade(rng: random.Random, item: dict[str, str], ptype: str, want: dict[str, str], seg: str) -> str:
    if item.get("accessory_of") == ptype or (item["segment"] != seg):
        grade = "irrelevant"
    elif item["type"] == ptype:
        ok = all(not v or v == item[k] for k, v in want.items())
        grade = "strong" if ok else "weak"
    else:
        grade = "weak" if rng.random() < 0.35 else "irrelevant"
    if rng.random() < 0.06:  # raters disagree sometimes; the labels are not a clean function
        grade = rng.choice(["irrelevant", "weak", "strong"])
    return grade


def _split(rng: random.Random, seg: str) -> str:
    r = rng.random()
    if seg == SHIFTED:
        return "test_ood" if r < 0.25 else "pool"
    if r < 0.50:
        return "train"
    if r < 0.60:
        return "val"
    if r < 0.75:
        return "test_id"
    return "pool"
