"""Synthetic retailer data with planted store types, for demos, tests and benchmarks.

The generator produces the three pipeline inputs of the data contracts (internal sales, the
need-state map, external store features) and, separately, the truth the pipeline should
recover: per category each store belongs to one of 3-5 *internal* types that shop the category
differently (distinct need-state share profiles), and each store belongs to one of 4 *external*
types (urban, suburban family, rural, retirement) with well separated feature means.

Everything is pure: no file I/O (``clustering.sample.files`` writes the files). Generation is
split so that sales can be streamed one category at a time:

1. ``plan_sample_data`` draws everything that is small (stores, catalogue, profiles, types);
2. ``category_sales`` expands one category of the plan into sales rows (an Arrow table);
3. ``need_state_map``, ``external_features``, ``internal_truth``, ``external_truth`` and
   ``truth_summary`` render the rest of the plan.

Every random draw comes from a generator seeded with ``(seed, stream, index)``, so one category's
data depends only on the seed and its position, never on how many categories came before it or
in which order the parts are rendered: the same seed always gives byte-identical data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa
from numpy.typing import NDArray

from clustering.core.errors import ConfigError

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True)
class SamplePreset:
    """Size of a generated data set: number of stores and of product categories."""

    name: str
    stores: int
    categories: int


PRESETS: dict[str, SamplePreset] = {
    "small": SamplePreset("small", stores=200, categories=4),
    "medium": SamplePreset("medium", stores=2_000, categories=20),
    "large": SamplePreset("large", stores=10_000, categories=100),
    # About 106 million sales rows: the memory benchmark of make bench (2 GB for the process tree).
    "xlarge": SamplePreset("xlarge", stores=50_000, categories=100),
}


MIN_TYPE_SHARE: Final = 0.15


@dataclass(frozen=True)
class Difficulty:
    """How hard the planted internal store types are to find.

    ``classic`` is the original generator (3-5 well separated types of at least 15 % of the
    stores each). The ladder rungs, from ``separated`` to ``overlapping``, plant 2-8 types of
    unequal size whose need-state profiles come closer and closer, with stores that lean towards
    a second type and a share of noise stores that follow no type (their truth is -1). Even
    categories get "focus" profiles (each type over-weights its own need states by
    ``focus_boost``), odd ones random profiles (each need state scaled by exp(N(0,
    ``profile_sigma``))), so some pairs of types are much closer than others.
    """

    name: str
    # A type's focus need states get this many times their base weight: classic profiles then
    # differ by an L1 distance of roughly 0.7-1.0, while store noise moves a share by ~0.02.
    focus_boost: float = 4.0
    profile_sigma: float | None = None  # None: every category gets focus profiles
    concentration: float = 300.0  # Dirichlet concentration of a store's shares around its type
    concentration_spread: float = 0.0  # per-type concentration varies by exp(U(-s, s))
    types: tuple[int, int] = (3, 5)
    need_states: tuple[int, int] = (5, 12)
    min_type_share: float = MIN_TYPE_SHARE
    min_type_stores: int = 0
    size_concentration: float = 1.0  # Dirichlet concentration of type sizes (lower: more unequal)
    lean_share: float = 0.0  # stores pulled towards a second type by a weight of up to lean_max
    lean_max: float = 0.0
    noise_share: float = 0.0  # stores with a random need-state mix, belonging to no type


DIFFICULTIES: dict[str, Difficulty] = {
    "classic": Difficulty("classic"),
    **{
        name: Difficulty(
            name,
            focus_boost=boost,
            profile_sigma=sigma,
            concentration=concentration,
            concentration_spread=0.4,
            types=(2, 8),
            need_states=(5, 25),
            min_type_share=0.03,
            min_type_stores=30,
            size_concentration=1.5,
            lean_share=0.1,
            lean_max=0.35,
            noise_share=noise,
        )
        for name, boost, sigma, concentration, noise in (
            ("separated", 4.0, 1.0, 300.0, 0.03),
            ("clear", 3.0, 0.7, 200.0, 0.05),
            ("moderate", 2.2, 0.5, 175.0, 0.05),
            ("overlapping", 2.0, 0.4, 150.0, 0.05),
        )
    },
}
LADDER: Final = ("separated", "clear", "moderate", "overlapping")
"""The difficulty ladder ``make quality`` runs, from clearly separated to overlapping types."""

NOISE_TYPE: Final = -1
"""Truth label of a noise store (it follows no store type)."""

# Below this the "every type has at least 15 % of the stores" promise cannot hold for 5 types.
MIN_STORES: Final = 20

SALES_SCHEMA: Final = pa.schema(
    [
        ("SKU_NBR", pa.int64()),
        ("STORE_NBR", pa.int64()),
        ("CAT_DSC", pa.string()),
        ("TOTAL_SALES", pa.float64()),
    ]
)
NEED_STATE_COLUMNS: Final = (
    "PRODUCT_ID",
    "CATEGORY",
    "NEED_STATE",
    "CDT",
    "ATTRIBUTE_1",
    "ATTRIBUTE_2",
    "ATTRIBUTE_3",
    "ATTRIBUTE_4",
    "ATTRIBUTE_5",
    "ATTRIBUTE_6",
    "PLANOGRAM_DSC",
    "PLANOGRAM_NBR",
    "NEW_ITEM",
    "TO_BE_DROPPED",
)
# Text and id columns of the external file that must never be used as features.
EXTERNAL_ID_COLUMNS: Final = ("STORE_NAME", "REGION", "DISTRICT_ID")

# --- planted structure -------------------------------------------------------------------------
SKUS_RANGE: Final = (25, 40)
# With the one SKU per need state every store is given, stores carry about 60 % of the SKUs
# (about 20 million sales rows for the large preset).
CARRY_PROBABILITY: Final = 0.5
# Quirk SKUs sell little so that they cannot blur the planted need-state shares.
DUAL_SKU_WEIGHT: Final = 0.02
UNMAPPED_SALES_SHARE: Final = 0.002
DUPLICATE_ROW_SHARE: Final = 0.01
EXTERNAL_ABSENT_SHARE: Final = 0.03
EXTERNAL_NAN_SHARE: Final = 0.02

EXTERNAL_TYPE_NAMES: Final = ("URBAN", "SUBURBAN FAMILY", "RURAL", "RETIREMENT")
REGIONS: Final = ("NORTHEAST", "SOUTHEAST", "MIDWEST", "SOUTHWEST", "WEST")


@dataclass(frozen=True)
class _Feature:
    name: str
    means: tuple[float, float, float, float]  # one per external type, EXTERNAL_TYPE_NAMES order
    sd: float
    decimals: int
    upper: float = math.inf


# Means are several standard deviations apart on most features, so four k-means clusters on
# standardised features recover the types; STORE_AGE_YEARS is deliberately unrelated noise.
EXTERNAL_FEATURES: Final = (
    _Feature("POP_DENSITY", (9_000, 4_000, 400, 2_800), 1_200, 0),
    _Feature("MEDIAN_INCOME", (68_000, 98_000, 45_000, 76_000), 6_000, 0),
    _Feature("PCT_SENIOR", (11, 13, 17, 34), 2.5, 1, 100),
    _Feature("PCT_FAMILIES", (22, 42, 32, 14), 3.5, 1, 100),
    _Feature("PCT_COLLEGE_GRAD", (45, 52, 20, 40), 5, 1, 100),
    _Feature("AVG_HOUSEHOLD_SIZE", (2.1, 3.1, 2.7, 1.8), 0.2, 2),
    _Feature("COMPETITOR_COUNT_1MI", (8, 3, 0.5, 2.5), 1.5, 0),
    _Feature("COMPETITOR_COUNT_5MI", (36, 18, 3, 14), 4, 0),
    _Feature("FOOT_TRAFFIC_WEEKLY", (22_000, 11_000, 4_500, 9_000), 2_000, 0),
    _Feature("SELLING_SQ_FT", (9_000, 14_500, 11_000, 12_000), 900, 0),
    _Feature("PARKING_SPACES", (15, 120, 60, 75), 12, 0),
    _Feature("STORE_AGE_YEARS", (20, 20, 20, 20), 9, 0),
)
_SQ_FT_COLUMN: Final = [f.name for f in EXTERNAL_FEATURES].index("SELLING_SQ_FT")

_BASE_CATEGORY_NAMES: Final = (
    "HEALTH & WELLNESS",
    "CANDY/SNACKS",
    "ANTI-AGING SKIN CARE",
    "VITAMINS & SUPPLEMENTS",
    "COLD/FLU & ALLERGY",
    "BEVERAGES",
    "BABY CARE",
    "PET FOOD & SUPPLIES",
    "HAIR CARE",
    "ORAL CARE",
    "FIRST AID",
    "HOUSEHOLD CLEANING",
    "PAPER GOODS",
    "FROZEN FOODS",
    "DAIRY & EGGS",
    "BAKERY/BREAD",
    "COSMETICS",
    "FRAGRANCES",
    "SHAVING & GROOMING",
    "FEMININE CARE",
    "PAIN RELIEF",
    "DIGESTIVE HEALTH",
    "EYE/EAR CARE",
    "FOOT CARE",
    "SUN CARE",
    "BATH & BODY",
    "DEODORANT",
    "ADULT INCONTINENCE",
    "DIET & NUTRITION",
    "SPORTS NUTRITION",
    "GREETING CARDS",
    "PHOTO/ELECTRONICS",
    "SEASONAL DECOR",
    "TOYS & GAMES",
    "OFFICE/SCHOOL SUPPLIES",
    "LIGHT BULBS & BATTERIES",
    "COFFEE & TEA",
    "CEREAL & BREAKFAST",
    "SOFT DRINKS",
    "WATER & SPORTS DRINKS",
    "SALTY SNACKS",
    "COOKIES & CRACKERS",
    "HOME HEALTH CARE",
    "NAIL CARE",
    "HAIR COLOR",
    "CONTACT LENS CARE",
    "SMOKING CESSATION",
    "SLEEP AIDS",
)
_CATEGORY_QUALIFIERS: Final = ("PREMIUM", "VALUE", "ORGANIC", "KIDS", "TRAVEL-SIZE", "MULTI-PACK")
_NEED_STATE_WORDS: Final = (
    "IMMUNITY",
    "ENERGY",
    "SLEEP",
    "VALUE",
    "PREMIUM",
    "KIDS",
    "ON THE GO",
    "FAMILY SIZE",
    "NATURAL",
    "EVERYDAY",
    "INDULGENCE",
    "SENSITIVE",
    "TRAVEL",
    "SEASONAL",
    "CLASSIC",
    "GIFTING",
    "PERFORMANCE",
    "BASICS",
    "SPECIALTY",
    "REFILL",
    "SHARING",
    "SINGLE SERVE",
    "ORGANIC",
    "PROFESSIONAL",
    "INTENSIVE",
)
_CDT_NODES: Final = ("CORE", "PREMIUM", "SPECIALTY")
_ATTRIBUTE_VALUES: Final = (
    ("NATIONAL BRAND", "PRIVATE LABEL"),
    ("SMALL", "MEDIUM", "LARGE", "FAMILY"),
    ("TABLET", "LIQUID", "POWDER", "BAR", "SPRAY", "PACK"),
    ("VALUE", "MID", "PREMIUM"),
    ("UNSCENTED", "CITRUS", "MINT", "BERRY", "ORIGINAL"),
    ("LIMITED EDITION", "BONUS PACK"),
)
# Share of empty cells per attribute column: the later attributes are sparsely filled, as in
# real product masters.
_ATTRIBUTE_EMPTY_SHARE: Final = (0.0, 0.0, 0.05, 0.1, 0.3, 0.85)

# Random streams: (seed, stream, index) seeds one generator per independent part.
_STREAM_STORES: Final = 0
_STREAM_CATEGORY: Final = 1
_STREAM_SALES: Final = 2
_STREAM_MAP: Final = 3


def _rng(seed: int, stream: int, index: int) -> np.random.Generator:
    # Fixed-length keys so that no two (stream, index) pairs can share a seed sequence.
    return np.random.default_rng([seed, stream, index])


def resolve_preset(
    preset: str, stores: int | None = None, categories: int | None = None
) -> SamplePreset:
    """Return the named preset with the optional store and category counts overriding it.

    Raises ``ConfigError`` with one sentence for an unknown preset name or a count that is too
    small to plant the promised structure.
    """
    base = PRESETS.get(preset)
    if base is None:
        raise ConfigError(f"unknown preset '{preset}'; expected one of: {', '.join(PRESETS)}.")
    n_stores = base.stores if stores is None else stores
    n_categories = base.categories if categories is None else categories
    if n_stores < MIN_STORES:
        raise ConfigError(f"stores must be at least {MIN_STORES}; got {n_stores}.")
    if n_categories < 1:
        raise ConfigError(f"categories must be at least 1; got {n_categories}.")
    return SamplePreset(base.name, stores=n_stores, categories=n_categories)


def resolve_difficulty(difficulty: str | Difficulty) -> Difficulty:
    """The named difficulty (``classic`` or a ladder rung); one sentence for an unknown name."""
    if isinstance(difficulty, Difficulty):
        return difficulty
    level = DIFFICULTIES.get(difficulty)
    if level is None:
        raise ConfigError(
            f"unknown difficulty '{difficulty}'; expected one of: {', '.join(DIFFICULTIES)}."
        )
    return level


def category_names(count: int) -> list[str]:
    """Deterministic, unique category names with spaces and symbols (``&``, ``/``, ``-``)."""
    names = list(_BASE_CATEGORY_NAMES)
    names += [f"{base} - {q}" for q in _CATEGORY_QUALIFIERS for base in _BASE_CATEGORY_NAMES]
    if count > len(names):
        # Beyond the curated combinations only a number keeps names unique.
        names += [f"GENERAL MERCHANDISE #{i}" for i in range(1, count - len(names) + 1)]
    return names[:count]


@dataclass(frozen=True, eq=False)
class CategoryPlan:
    """The planted catalogue and store types of one category.

    SKU arrays are aligned: position ``i`` describes the ``i``-th mapped SKU. Dual SKUs are
    positions whose SKU also has a second need-state map row (``dual_second_need_state``).
    """

    index: int
    name: str
    need_states: tuple[str, ...]
    need_state_cdt: IntArray  # CDT node (index into _CDT_NODES) per need state
    sku_nbrs: IntArray
    sku_need_state: IntArray  # primary need state per SKU
    sku_weight: FloatArray  # popularity inside its need state
    dual_skus: IntArray  # positions into the SKU arrays
    dual_second_need_state: IntArray
    unmapped_sku_nbrs: IntArray  # sold but absent from the need-state map
    profiles: FloatArray  # internal type x need state, rows sum to 1
    store_type: IntArray  # internal type per store (plan store order); NOISE_TYPE for noise
    sales_scale: float  # typical category sales of an average-sized store
    type_concentration: FloatArray  # Dirichlet concentration of each type's stores
    lean_partner: IntArray  # second type a store leans towards, -1 for none
    lean_weight: FloatArray  # weight of that second type in the store's profile


@dataclass(frozen=True, eq=False)
class SamplePlan:
    """Everything drawn up front; sales rows are expanded from it one category at a time."""

    preset: SamplePreset
    seed: int
    store_nbrs: IntArray  # sorted, unique, non-contiguous
    store_size: FloatArray  # relative selling size, drives category sales
    external_type: IntArray
    external_values: FloatArray  # store x EXTERNAL_FEATURES, before quirks
    external_nan: BoolArray  # cells blanked in the external file
    external_absent: BoolArray  # stores left out of the external file
    region: IntArray
    district_id: IntArray
    categories: tuple[CategoryPlan, ...]
    difficulty: Difficulty = DIFFICULTIES["classic"]


def plan_sample_data(
    preset: SamplePreset, seed: int = 0, difficulty: str | Difficulty = "classic"
) -> SamplePlan:
    """Draw stores, external features, and every category's catalogue, profiles and types."""
    level = resolve_difficulty(difficulty)
    if seed < 0:
        raise ConfigError(f"seed must be zero or positive; got {seed}.")
    rng = _rng(seed, _STREAM_STORES, 0)
    n = preset.stores
    # Random unique store numbers; the range grows with the chain so ids stay sparse.
    high = max(99_999, 20 * n)
    store_nbrs = np.sort(rng.choice(high - 999, size=n, replace=False)).astype(np.int64) + 1000
    external_type = _assign_types(rng, n, len(EXTERNAL_TYPE_NAMES))
    external_values = _external_values(rng, external_type)
    # Bigger stores sell more in every category; 11,600 sq ft is about the mean over types.
    store_size = external_values[:, _SQ_FT_COLUMN] / 11_600.0
    region = rng.integers(0, len(REGIONS), n).astype(np.int64)
    district_id = (region + 1) * 100 + rng.integers(1, 21, n)
    absent = np.zeros(n, dtype=np.bool_)
    absent[rng.choice(n, size=max(1, round(EXTERNAL_ABSENT_SHARE * n)), replace=False)] = True
    nan_cells = rng.random(external_values.shape) < EXTERNAL_NAN_SHARE
    names = category_names(preset.categories)
    categories = tuple(_plan_category(seed, i, name, n, level) for i, name in enumerate(names))
    return SamplePlan(
        preset=preset,
        seed=seed,
        store_nbrs=store_nbrs,
        store_size=store_size,
        external_type=external_type,
        external_values=external_values,
        external_nan=nan_cells,
        external_absent=absent,
        region=region,
        district_id=district_id.astype(np.int64),
        categories=categories,
        difficulty=level,
    )


def _assign_types(
    rng: np.random.Generator,
    n: int,
    k: int,
    min_share: float = MIN_TYPE_SHARE,
    min_stores: int = 0,
    size_concentration: float = 1.0,
) -> IntArray:
    """Shuffled type labels in which every type holds at least ``min_share`` of the stores (and
    ``min_stores``), the rest spread by a Dirichlet draw."""
    floor = max(math.ceil(min_share * n), min_stores)
    if floor * k > n:
        floor = n // k
    counts = np.full(k, floor, dtype=np.int64)
    counts += rng.multinomial(n - floor * k, rng.dirichlet(np.full(k, size_concentration)))
    labels = np.repeat(np.arange(k, dtype=np.int64), counts)
    rng.shuffle(labels)
    return labels


def _external_values(rng: np.random.Generator, external_type: IntArray) -> FloatArray:
    means = np.array([f.means for f in EXTERNAL_FEATURES], dtype=np.float64)  # feature x type
    sds = np.array([f.sd for f in EXTERNAL_FEATURES], dtype=np.float64)
    values = means[:, external_type].T + rng.normal(size=(len(external_type), len(sds))) * sds
    for j, feature in enumerate(EXTERNAL_FEATURES):
        values[:, j] = np.round(np.clip(values[:, j], 0.0, feature.upper), feature.decimals)
    # A store always has some selling space; the floor keeps sales scales positive.
    values[:, _SQ_FT_COLUMN] = np.maximum(values[:, _SQ_FT_COLUMN], 2_000.0)
    return values


def _plan_category(
    seed: int, index: int, name: str, n_stores: int, level: Difficulty
) -> CategoryPlan:
    rng = _rng(seed, _STREAM_CATEGORY, index)
    k = int(rng.integers(level.types[0], level.types[1] + 1))
    if level.min_type_stores:
        # Every type keeps its minimum number of stores with room to spare.
        k = max(2, min(k, n_stores // (level.min_type_stores + 10)))
    m = max(k, int(rng.integers(level.need_states[0], level.need_states[1] + 1)))
    n_skus = int(rng.integers(SKUS_RANGE[0], SKUS_RANGE[1] + 1))
    n_unmapped = int(rng.integers(1, 3))

    # "HEALTH & WELLNESS - KIDS" -> "HEALTH": need states read like "HEALTH-IMMUNITY".
    stem = name.split(" - ")[0].split(" ")[0].split("/")[0]
    words = rng.choice(len(_NEED_STATE_WORDS), size=m, replace=False)
    need_states = tuple(f"{stem}-{_NEED_STATE_WORDS[w]}" for w in words)
    n_nodes = 2 if m < 8 else 3
    need_state_cdt = (np.arange(m) % n_nodes).astype(np.int64)

    # SKU numbers carry a category prefix (as in many product masters) and are unique overall.
    ids = rng.choice(100_000, size=n_skus + n_unmapped, replace=False).astype(np.int64)
    ids += (index + 10) * 100_000
    sku_nbrs, unmapped = np.sort(ids[:n_skus]), np.sort(ids[n_skus:])
    # Every need state gets at least one SKU, the rest land at random.
    sku_need_state = np.concatenate([np.arange(m), rng.integers(0, m, n_skus - m)])
    rng.shuffle(sku_need_state)
    sku_weight = rng.lognormal(0.0, 0.6, n_skus)

    # Dual SKUs come from need states that keep at least one ordinary SKU, one per need state.
    sizes = np.bincount(sku_need_state, minlength=m)
    eligible = np.flatnonzero(sizes >= 2)
    dual_states = rng.choice(
        eligible, size=min(int(rng.integers(1, 3)), len(eligible)), replace=False
    )
    dual_skus = np.array(
        [rng.choice(np.flatnonzero(sku_need_state == j)) for j in dual_states], dtype=np.int64
    )
    dual_second = (sku_need_state[dual_skus] + rng.integers(1, m, len(dual_skus))) % m
    sku_weight[dual_skus] = DUAL_SKU_WEIGHT * float(np.median(sku_weight))

    # Each type concentrates on its own group of need states (groups partition them), so every
    # need-state column separates at least one type from the others.
    group = np.empty(m, dtype=np.int64)
    group[rng.permutation(m)] = np.arange(m) % k
    base = rng.dirichlet(np.full(m, 5.0))
    focus = group[None, :] == np.arange(k)[:, None]
    if level.profile_sigma is not None and index % 2 == 1:
        # Random profiles: some pairs of types end up much closer than others.
        profiles = base[None, :] * np.exp(level.profile_sigma * rng.normal(size=(k, m)))
    else:
        profiles = base[None, :] * np.where(focus, level.focus_boost, 1.0)
    profiles /= profiles.sum(axis=1, keepdims=True)

    return CategoryPlan(
        index=index,
        name=name,
        need_states=need_states,
        need_state_cdt=need_state_cdt,
        sku_nbrs=sku_nbrs,
        sku_need_state=sku_need_state.astype(np.int64),
        sku_weight=sku_weight,
        dual_skus=dual_skus,
        dual_second_need_state=dual_second.astype(np.int64),
        unmapped_sku_nbrs=unmapped,
        profiles=profiles,
        **_plan_stores(rng, n_stores, k, level),
    )


def _plan_stores(rng: np.random.Generator, n: int, k: int, level: Difficulty) -> dict[str, Any]:
    """Store types, sales scale and the ladder's per-store quirks of one category."""
    store_type = _assign_types(
        rng, n, k, level.min_type_share, level.min_type_stores, level.size_concentration
    )
    sales_scale = float(40_000.0 * rng.lognormal(0.0, 0.5))
    type_concentration = np.full(k, level.concentration)
    lean_partner = np.full(n, -1, dtype=np.int64)
    lean_weight = np.zeros(n)
    # The classic generator draws nothing more, so its data stay byte-identical.
    if level.concentration_spread:
        spread = level.concentration_spread
        type_concentration = level.concentration * np.exp(rng.uniform(-spread, spread, k))
    if level.lean_share:
        leaning = rng.random(n) < level.lean_share
        partner = (store_type + rng.integers(1, max(k, 2), n)) % k
        lean_partner = np.where(leaning, partner, -1).astype(np.int64)
        lean_weight = np.where(leaning, rng.uniform(0.0, level.lean_max, n), 0.0)
    if level.noise_share:
        noise = rng.random(n) < level.noise_share
        store_type = np.where(noise, NOISE_TYPE, store_type).astype(np.int64)
    return {
        "store_type": store_type,
        "sales_scale": sales_scale,
        "type_concentration": type_concentration,
        "lean_partner": lean_partner,
        "lean_weight": lean_weight,
    }


def store_need_state_means(
    category: CategoryPlan, rng: np.random.Generator
) -> tuple[FloatArray, FloatArray]:
    """Each store's expected need-state mix (rows sum to 1) and its Dirichlet concentration.

    A store of a type follows that type's profile, moved towards its lean partner's by its lean
    weight; a noise store gets a uniformly random mix.
    """
    typed = category.store_type >= 0
    types = np.where(typed, category.store_type, 0)
    means = category.profiles[types]
    leaning = category.lean_partner >= 0
    if leaning.any():
        weight = category.lean_weight[leaning, None]
        partner = category.profiles[category.lean_partner[leaning]]
        means[leaning] = (1.0 - weight) * means[leaning] + weight * partner
    concentration = category.type_concentration[types]
    if not typed.all():
        m = category.profiles.shape[1]
        means[~typed] = rng.dirichlet(np.ones(m), size=int((~typed).sum()))
    return means, concentration


def category_shares(plan: SamplePlan, category: CategoryPlan) -> pd.DataFrame:
    """The store × need-state share matrix (in %) the category's sales are drawn from.

    Aggregating :func:`category_sales` by need state gives these shares back (up to the dual and
    unmapped SKUs); the quality benchmark uses them directly to skip the sales rows.
    """
    rng = _rng(plan.seed, _STREAM_SALES, category.index)
    shares = _draw_shares(category, rng)
    return pd.DataFrame(
        100.0 * shares,
        index=pd.Index(plan.store_nbrs, name="STORE_NBR"),
        columns=list(category.need_states),
    )


def _draw_shares(category: CategoryPlan, rng: np.random.Generator) -> FloatArray:
    means, concentration = store_need_state_means(category, rng)
    shares = rng.gamma(concentration[:, None] * means)
    return np.asarray(shares / shares.sum(axis=1, keepdims=True))


def category_sales(plan: SamplePlan, category: CategoryPlan) -> pa.Table:
    """Sales rows of one category (``SALES_SCHEMA``), ordered by store.

    A store's category total (lognormal, proportional to store size) is spread over need states
    by its shares (type profile plus Dirichlet noise) and inside a need state over the SKUs it
    carries. Unmapped SKUs add a little extra, and about 1 % of rows are split in two rows for
    the same store and SKU, as when an extract spans two weeks.
    """
    rng = _rng(plan.seed, _STREAM_SALES, category.index)
    n, n_skus = len(plan.store_nbrs), len(category.sku_nbrs)
    m = len(category.need_states)
    ns = category.sku_need_state

    shares = _draw_shares(category, rng)
    totals = category.sales_scale * plan.store_size * rng.lognormal(0.0, 0.3, n)

    carried = rng.random((n, n_skus)) < CARRY_PROBABILITY
    ordinary = np.ones(n_skus, dtype=np.bool_)
    ordinary[category.dual_skus] = False
    stores = np.arange(n)
    for j in range(m):  # a handful of need states; each store carries an ordinary SKU of each
        candidates = np.flatnonzero((ns == j) & ordinary)
        carried[stores, candidates[rng.integers(0, len(candidates), n)]] = True

    weight = np.where(carried, category.sku_weight * rng.lognormal(0.0, 0.4, (n, n_skus)), 0.0)
    need_state_weight = weight @ (ns[:, None] == np.arange(m)[None, :]).astype(np.float64)
    sku_sales = totals[:, None] * shares[:, ns] * weight / need_state_weight[:, ns]
    store_idx, sku_idx = np.nonzero(carried)
    sales = sku_sales[store_idx, sku_idx]
    sku_nbr = category.sku_nbrs[sku_idx]

    n_unmapped = len(category.unmapped_sku_nbrs)
    unmapped_carried = rng.random((n, n_unmapped)) < 0.5
    unmapped_sales = (
        totals[:, None] * UNMAPPED_SALES_SHARE * rng.lognormal(0.0, 0.5, (n, n_unmapped))
    )
    u_store, u_sku = np.nonzero(unmapped_carried)
    store_idx = np.concatenate([store_idx, u_store])
    sku_nbr = np.concatenate([sku_nbr, category.unmapped_sku_nbrs[u_sku]])
    sales = np.concatenate([sales, unmapped_sales[u_store, u_sku]])

    split = np.flatnonzero(rng.random(len(sales)) < DUPLICATE_ROW_SHARE)
    fraction = rng.uniform(0.3, 0.7, len(split))
    second_part = sales[split] * (1.0 - fraction)
    sales[split] *= fraction
    store_idx = np.concatenate([store_idx, store_idx[split]])
    sku_nbr = np.concatenate([sku_nbr, sku_nbr[split]])
    sales = np.concatenate([sales, second_part])

    order = np.argsort(store_idx, kind="stable")
    n_rows = len(order)
    cat_dsc = pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(n_rows, dtype=np.int32)), pa.array([category.name])
    ).dictionary_decode()
    return pa.Table.from_arrays(
        [
            pa.array(sku_nbr[order], type=pa.int64()),
            pa.array(plan.store_nbrs[store_idx[order]], type=pa.int64()),
            cat_dsc,
            pa.array(np.round(sales[order], 2), type=pa.float64()),
        ],
        schema=SALES_SCHEMA,
    )


def need_state_map(plan: SamplePlan) -> pd.DataFrame:
    """The product -> need-state map: one row per mapped SKU, two rows for each dual SKU."""
    frames = [_category_map(plan.seed, category) for category in plan.categories]
    return pd.concat(frames, ignore_index=True)


def _category_map(seed: int, category: CategoryPlan) -> pd.DataFrame:
    rng = _rng(seed, _STREAM_MAP, category.index)
    n_skus = len(category.sku_nbrs)
    need_states = np.array(category.need_states, dtype=object)
    cdt = np.array([f"{category.name} > {node}" for node in _CDT_NODES], dtype=object)
    columns: dict[str, Any] = {
        "PRODUCT_ID": category.sku_nbrs,
        "CATEGORY": np.full(n_skus, category.name, dtype=object),
        "NEED_STATE": need_states[category.sku_need_state],
        "CDT": cdt[category.need_state_cdt[category.sku_need_state]],
    }
    for a, (values, empty_share) in enumerate(
        zip(_ATTRIBUTE_VALUES, _ATTRIBUTE_EMPTY_SHARE, strict=True), start=1
    ):
        picked = np.array(values, dtype=object)[rng.integers(0, len(values), n_skus)]
        picked[rng.random(n_skus) < empty_share] = None
        columns[f"ATTRIBUTE_{a}"] = picked
    planogram = rng.integers(0, 2, n_skus)
    columns["PLANOGRAM_DSC"] = np.array(
        [f"{category.name} {feet}FT" for feet in (4, 8)], dtype=object
    )[planogram]
    columns["PLANOGRAM_NBR"] = (10_000 + 10 * category.index + planogram).astype(np.int64)
    columns["NEW_ITEM"] = np.where(rng.random(n_skus) < 0.05, "Y", "N")
    columns["TO_BE_DROPPED"] = np.where(rng.random(n_skus) < 0.03, "Y", "N")
    primary = pd.DataFrame(columns)

    second = primary.iloc[category.dual_skus].copy()
    second_states = category.dual_second_need_state
    second["NEED_STATE"] = need_states[second_states]
    second["CDT"] = cdt[category.need_state_cdt[second_states]]
    # Stable sort keeps each dual SKU's second row right after its first.
    both = pd.concat([primary, second], ignore_index=True)
    return both.sort_values("PRODUCT_ID", kind="stable", ignore_index=True)


def external_features(plan: SamplePlan) -> pd.DataFrame:
    """External store features: ids, text columns and numeric features, with the quirks.

    About 3 % of stores are absent, about 2 % of feature cells are NaN, and rows come in a
    shuffled order so that nothing downstream can rely on row position.
    """
    values = plan.external_values.copy()
    values[plan.external_nan] = np.nan
    region_names = pd.Series(np.array(REGIONS, dtype=object)[plan.region])
    store_names = region_names.str.title() + " #" + pd.Series(plan.store_nbrs).astype(str)
    frame = pd.DataFrame(
        {
            "STORE_NBR": plan.store_nbrs,
            "STORE_NAME": store_names.to_numpy(dtype=object),
            "REGION": region_names.to_numpy(dtype=object),
            "DISTRICT_ID": plan.district_id,
        }
    )
    for j, feature in enumerate(EXTERNAL_FEATURES):
        frame[feature.name] = values[:, j]
    present = frame[~plan.external_absent]
    order = _rng(plan.seed, _STREAM_STORES, 1).permutation(len(present))
    return present.iloc[order].reset_index(drop=True)


def internal_truth(plan: SamplePlan) -> pd.DataFrame:
    """Planted internal type of every store in every category (STORE_NBR, CATEGORY, STORE_TYPE)."""
    n = len(plan.store_nbrs)
    names = np.array([c.name for c in plan.categories], dtype=object)
    return pd.DataFrame(
        {
            "STORE_NBR": np.tile(plan.store_nbrs, len(plan.categories)),
            "CATEGORY": np.repeat(names, n),
            "STORE_TYPE": np.concatenate([c.store_type for c in plan.categories]),
        }
    )


def external_truth(plan: SamplePlan) -> pd.DataFrame:
    """Planted external type of every store, including those absent from the external file."""
    return pd.DataFrame({"STORE_NBR": plan.store_nbrs, "STORE_TYPE": plan.external_type})


def truth_summary(plan: SamplePlan) -> dict[str, Any]:
    """JSON-ready description of the planted structure and of every deliberate quirk."""
    return {
        "preset": plan.preset.name,
        "seed": plan.seed,
        "difficulty": plan.difficulty.name,
        "stores": plan.preset.stores,
        "categories": plan.preset.categories,
        "external_k": len(EXTERNAL_TYPE_NAMES),
        "external_type_names": list(EXTERNAL_TYPE_NAMES),
        "external_features": [f.name for f in EXTERNAL_FEATURES],
        "external_id_columns": list(EXTERNAL_ID_COLUMNS),
        "internal_k": {c.name: len(c.profiles) for c in plan.categories},
        "need_states": {c.name: list(c.need_states) for c in plan.categories},
        "min_profile_l1": {c.name: round(min_profile_distance(c), 4) for c in plan.categories},
        "quirks": {
            "dual_need_state_skus": {
                c.name: c.sku_nbrs[c.dual_skus].tolist() for c in plan.categories
            },
            "unmapped_skus": {c.name: c.unmapped_sku_nbrs.tolist() for c in plan.categories},
            "stores_missing_external": plan.store_nbrs[plan.external_absent].tolist(),
            "external_nan_cells": int(plan.external_nan[~plan.external_absent].sum()),
            "noise_stores": {
                c.name: int((c.store_type == NOISE_TYPE).sum()) for c in plan.categories
            },
            "leaning_stores": {c.name: int((c.lean_partner >= 0).sum()) for c in plan.categories},
        },
    }


def min_profile_distance(category: CategoryPlan) -> float:
    """Smallest L1 distance between two internal type profiles of a category."""
    p = category.profiles
    distances = np.abs(p[:, None, :] - p[None, :, :]).sum(axis=2)
    return float(distances[np.triu_indices(len(p), k=1)].min())


@dataclass(frozen=True, eq=False)
class SampleData:
    """A whole generated data set in memory (for tests and small presets)."""

    plan: SamplePlan
    internal_sales: pd.DataFrame
    need_state_map: pd.DataFrame
    external_features: pd.DataFrame
    internal_truth: pd.DataFrame
    external_truth: pd.DataFrame
    truth: dict[str, Any]


def generate_sample_data(
    preset: str = "small",
    seed: int = 0,
    stores: int | None = None,
    categories: int | None = None,
) -> SampleData:
    """Generate a whole data set in memory; use ``clustering.sample.files`` for large ones."""
    plan = plan_sample_data(resolve_preset(preset, stores, categories), seed)
    tables = [category_sales(plan, category) for category in plan.categories]
    return SampleData(
        plan=plan,
        internal_sales=pa.concat_tables(tables).to_pandas(),
        need_state_map=need_state_map(plan),
        external_features=external_features(plan),
        internal_truth=internal_truth(plan),
        external_truth=external_truth(plan),
        truth=truth_summary(plan),
    )
