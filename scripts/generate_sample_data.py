"""Generate synthetic store-clustering inputs with planted store types.

    python scripts/generate_sample_data.py --preset small --out data/raw

The same command as ``python -m clustering generate-data`` (same options, same exit codes):
writes internal_sales.parquet, need_state.csv and external_sales.parquet into --out and the
planted truth into <out>/truth/. A user error ends in one sentence on stderr and exit code 2.
"""

from __future__ import annotations

import sys

from clustering.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["generate-data", *sys.argv[1:]]))
