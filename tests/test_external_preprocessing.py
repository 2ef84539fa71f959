"""Combining external store features: numeric features kept, everything else reported."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clustering.core.errors import ConfigError, InputContractError
from clustering.core.external_preprocessing import (
    ExternalFeatures,
    combine_external_sources,
    external_coverage,
)
from clustering.core.params import ExternalParams

DEMOGRAPHICS = pd.DataFrame(
    {
        "STORE_NBR": [3, 1, 2, 2],  # store 2 appears twice with identical values
        "POPULATION": [300, 100, 200, 200],
        "INCOME": [3.5, 1.5, 2.5, 2.5],
        "REGION": ["N", "S", None, None],
        "DISTRICT_ID": [7, 8, 9, 9],
        "HAS_PARKING": [True, False, True, True],
        "NOTES": ["a", "b", "c", "c"],
        "EMPTY": [np.nan] * 4,
    }
)
COMPETITION = pd.DataFrame({"STORE_NBR": [2, 4], "COMPETITORS": [5, 0]})


def combine(params: ExternalParams | None = None) -> ExternalFeatures:
    return combine_external_sources(
        [("demographics.parquet", DEMOGRAPHICS), ("competition.csv", COMPETITION)],
        params or ExternalParams(),
    )


def test_sources_are_outer_joined_on_store_with_numeric_float_features() -> None:
    result = combine()
    features = result.features
    assert features.index.tolist() == [1, 2, 3, 4]
    assert features.index.name == "STORE_NBR"
    assert features.index.dtype == np.int64
    assert list(features.columns) == ["POPULATION", "INCOME", "HAS_PARKING", "COMPETITORS"]
    assert (features.dtypes == np.float64).all()
    assert features.loc[2].tolist() == [200.0, 2.5, 1.0, 5.0]
    assert features.loc[4, "COMPETITORS"] == 0.0
    assert np.isnan(features.loc[4, "POPULATION"])  # store 4 is only in the competition source
    assert np.isnan(features.loc[1, "COMPETITORS"])
    assert result.sources == ["demographics.parquet", "competition.csv"]
    assert result.duplicate_rows_dropped == 1


def test_dropped_columns_are_reported_with_their_reason() -> None:
    assert combine().dropped_columns == {
        "REGION": "text",
        "DISTRICT_ID": "identifier",
        "NOTES": "text",
        "EMPTY": "all missing",
    }


def test_configured_text_columns_become_indicators() -> None:
    result = combine(ExternalParams(one_hot_columns=["REGION"]))
    features = result.features
    assert [c for c in features.columns if c.startswith("REGION")] == ["REGION=N", "REGION=S"]
    assert features.loc[3, ["REGION=N", "REGION=S"]].tolist() == [1.0, 0.0]
    assert features.loc[1, ["REGION=N", "REGION=S"]].tolist() == [0.0, 1.0]
    assert features.loc[2, ["REGION=N", "REGION=S"]].isna().all()  # unknown stays unknown
    assert "REGION" not in result.dropped_columns


def test_an_unknown_one_hot_column_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="REGON is in no external source"):
        combine(ExternalParams(one_hot_columns=["REGON"]))


def test_identifier_pattern_comes_from_the_parameters() -> None:
    result = combine(ExternalParams(id_column_pattern=r"^INCOME$"))
    assert "DISTRICT_ID" in result.features.columns
    assert result.dropped_columns["INCOME"] == "identifier"


def test_a_column_in_two_sources_is_merged_when_they_agree() -> None:
    census = pd.DataFrame({"STORE_NBR": [1, 2, 9], "POPULATION": [100, 200, 900]})
    result = combine_external_sources(
        [("demographics.parquet", DEMOGRAPHICS), ("census.csv", census)], ExternalParams()
    )
    assert result.features["POPULATION"].to_dict() == {1: 100.0, 2: 200.0, 3: 300.0, 9: 900.0}
    assert any("POPULATION is in several sources" in w for w in result.warnings)


def test_every_disagreement_between_sources_is_listed_in_one_sentence() -> None:
    census = pd.DataFrame(
        {"STORE_NBR": [1, 2], "POPULATION": [101, 200], "INCOME": [1.5, 9.9], "HAS_PARKING": [1, 1]}
    )
    with pytest.raises(InputContractError) as info:
        combine_external_sources(
            [("demographics.parquet", DEMOGRAPHICS), ("census.csv", census)], ExternalParams()
        )
    assert str(info.value) == (
        "external features: sources disagree on 3 shared columns: "
        "POPULATION ('demographics.parquet' vs 'census.csv': 1 stores differ, e.g. store 1: "
        "100 vs 101); INCOME ('demographics.parquet' vs 'census.csv': 1 stores differ, e.g. "
        "store 2: 2.5 vs 9.9); HAS_PARKING ('demographics.parquet' vs 'census.csv': 1 stores "
        "differ, e.g. store 1: 0 vs 1); keep each column in one source or make the values agree."
    )


def test_two_different_rows_for_one_store_are_refused() -> None:
    frame = pd.DataFrame({"STORE_NBR": [1, 2, 2], "A": [1, 2, 2], "B": [1.0, 2.0, 2.5]})
    with pytest.raises(InputContractError) as info:
        combine_external_sources([("traffic.parquet", frame)], ExternalParams())
    assert str(info.value) == (
        "external features 'traffic.parquet': store 2 has 2 rows with different values of "
        "feature B (2.0 vs 2.5); keep one row per store."
    )


def test_rows_differing_only_in_a_dropped_text_column_are_one_store_row() -> None:
    frame = pd.DataFrame(
        {"STORE_NBR": [1, 2, 2], "A": [1.0, 2.0, 2.0], "MANAGER": ["Ann", "Bo", "Bob"]}
    )
    result = combine_external_sources([("vendor.csv", frame)], ExternalParams())
    assert result.features["A"].to_dict() == {1: 1.0, 2: 2.0}
    assert result.duplicate_rows_dropped == 1
    assert result.warnings == [
        "external features 'vendor.csv': 1 store has several rows (equal in every feature, "
        "different only in columns that are left out); one row per store kept, 1 removed."
    ]


def test_vendor_names_ids_zip_codes_and_coordinates_are_not_features() -> None:
    frame = pd.DataFrame(
        {
            "\ufeffstore_nbr ": [1, 2, 3],
            " CVS ID": [11, 12, 13],
            "ZIP_CD": [10001, 10002, 10003],
            "LATITUDE": [40.1, 40.2, 40.3],
            "LONGITUDE": [-73.1, -73.2, -73.3],
            "2024 Median Age": [38.0, 41.5, 29.0],
        }
    )
    result = combine_external_sources([("vendor.csv", frame)], ExternalParams())
    assert list(result.features.columns) == ["2024 Median Age"]
    assert result.dropped_columns == {
        "CVS ID": "identifier",
        "ZIP_CD": "identifier",
        "LATITUDE": "coordinates",
        "LONGITUDE": "coordinates",
    }
    kept = combine_external_sources(
        [("vendor.csv", frame)], ExternalParams(include_columns=["latitude", "zip_cd"])
    )
    assert list(kept.features.columns) == ["ZIP_CD", "LATITUDE", "2024 Median Age"]


def test_no_usable_numeric_feature_is_one_sentence() -> None:
    frame = pd.DataFrame({"STORE_NBR": [1, 2], "NAME": ["a", "b"], "STORE_ID": [7, 8]})
    with pytest.raises(InputContractError) as info:
        combine_external_sources([("names.csv", frame)], ExternalParams())
    assert str(info.value) == (
        "external features (names.csv): no usable numeric feature; every column besides "
        "STORE_NBR was left out: NAME (text), STORE_ID (identifier). Add numeric store "
        "features, or keep a column with external.include_columns."
    )


def test_missing_or_bad_store_numbers_are_refused() -> None:
    with pytest.raises(InputContractError, match="missing column STORE_NBR"):
        combine_external_sources([("x", pd.DataFrame({"A": [1]}))], ExternalParams())
    bad = pd.DataFrame({"STORE_NBR": [1.0, np.nan], "A": [1, 2]})
    with pytest.raises(InputContractError, match=r"1 row is not, first: \(STORE_NBR=NULL\)"):
        combine_external_sources([("x", bad)], ExternalParams())


def test_booleans_with_gaps_are_numbers() -> None:
    frame = pd.DataFrame({"STORE_NBR": [1, 2, 3], "OPEN_SUNDAY": [True, None, False]})
    features = combine_external_sources([("x", frame)], ExternalParams()).features
    assert features["OPEN_SUNDAY"].tolist()[::2] == [1.0, 0.0]
    assert np.isnan(features.loc[2, "OPEN_SUNDAY"])


def test_coverage_counts_stores_with_and_without_features() -> None:
    coverage = external_coverage(combine().features, [1, 2, 3, 5, 6])
    assert coverage.stores_total == 5
    assert coverage.stores_with_features == 3
    assert coverage.stores_without_features == [5, 6]
    assert coverage.external_only_stores == 1  # store 4
    text = coverage.describe()
    assert "3 of the 5 stores with mapped sales (60.0%)" in text
    assert "without: 5, 6" in text
    assert "1 store in the external data has no mapped sales in any category" in text


def test_a_store_whose_features_are_all_missing_is_not_covered() -> None:
    frame = pd.DataFrame({"STORE_NBR": [1, 2], "A": [1.0, np.nan], "B": [2.0, 3.0]})
    combined = combine_external_sources([("x", frame)], ExternalParams()).features
    combined.loc[2] = np.nan
    coverage = external_coverage(combined, [1, 2])
    assert coverage.stores_without_features == [2]
