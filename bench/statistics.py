"""Statistics at demo scale: how long a query takes end to end (gateway in-process, agencies
counting in PostgreSQL and over HTTP) and how many cells are suppressed.

    .venv/bin/python -m bench.statistics [--residents 2000] [--repeat 21]

Seeds a scratch database on $GATEWAY_TEST_DSN or the machine's PostgreSQL, starts the nts and
mma demo agencies, prints one line per query (median latency of --repeat runs, suppressed
cells), and drops the database.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

from gateway.config import PolicyConfig
from gateway.demo.processes import AgencyProcess
from gateway.demo.seed import seed
from gateway.runtime import DEMO_POLICY
from tests.conftest import (
    MACHINE_DSN,
    create_database,
    drop_database,
    gateway_client,
    make_config,
    token,
)

QUERY = """query($m: Measure!, $by: [Dimension!]!) {
  statistics(measure: $m, by: $by) { cells { count suppressed } total { count } } }"""
CASES = [
    ("RESIDENTS", []),
    ("RESIDENTS", ["SEX"]),
    ("RESIDENTS", ["REGION"]),
    ("RESIDENTS", ["AGE_BAND", "SEX"]),
    ("RESIDENTS", ["REGION", "AGE_BAND"]),
    ("HOUSEHOLDS", ["HOUSEHOLD_SIZE", "REGION"]),
    ("INSURED", ["INSURED_TYPE"]),
    ("PENSION", ["SUBSCRIBER_TYPE"]),
    ("MILITARY_SERVICE", ["SERVICE_STATUS"]),
    ("TAX_FILERS", ["INCOME_BAND"]),
]


async def run(residents: int, repeat: int) -> None:
    db = await create_database(os.environ.get("GATEWAY_TEST_DSN", MACHINE_DSN), "gwbench")
    try:
        await seed(db.dsn, residents, progress=False)
        with AgencyProcess("nts", db.dsn) as nts, AgencyProcess("mma", db.dsn) as mma:
            config = make_config(
                db.dsn,
                {"nts": nts.url, "mma": mma.url},
                policy=PolicyConfig(file=str(DEMO_POLICY)),
            )
            analyst = token("analyst", agency="statistics")
            async with gateway_client(config, analyst) as client:
                print(f"{residents} residents, k = {config.statistics.k}, {repeat} runs each")
                print(f"{'measure':<17} {'by':<26} {'median ms':>9}  suppressed")
                for measure, by in CASES:
                    took = []
                    for _ in range(repeat):
                        start = time.perf_counter()
                        body = await client.query(QUERY, {"m": measure, "by": by})
                        took.append((time.perf_counter() - start) * 1000)
                    assert "errors" not in body, body
                    cells = body["data"]["statistics"]["cells"]
                    hidden = sum(c["suppressed"] for c in cells)
                    print(
                        f"{measure:<17} {','.join(by) or '-':<26} "
                        f"{statistics.median(took):>9.1f}  {hidden}/{len(cells)}"
                    )
    finally:
        await drop_database(db)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--residents", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=21)
    args = parser.parse_args()
    asyncio.run(run(args.residents, args.repeat))


if __name__ == "__main__":
    main()
