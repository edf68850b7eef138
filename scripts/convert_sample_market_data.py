"""Convert the daily series the ``arch`` package ships into aimm's sample market data.

Run once (the output is kept in the repository, ``arch`` is not a dependency):

    pip download --no-deps arch -d /tmp/arch && cd /tmp/arch && unzip -o arch-*.whl 'arch/*'
    .venv/bin/python scripts/convert_sample_market_data.py /tmp/arch/arch/data

Writes ``data/sample/<TICKER>.csv.gz`` with ``date,open,high,low,close,volume`` (ISO
dates, the source's values unchanged). Rows that break aimm's bar rules (high < low,
open or close outside [low, high], negative volume) are dropped and counted: the
sample must import cleanly.
"""

from __future__ import annotations

import csv
import gzip
import io
import sys
from datetime import datetime
from pathlib import Path

SOURCES = {"SP500": "sp500/sp500.csv.gz", "NASDAQ": "nasdaq/nasdaq.csv.gz"}
OUT = Path(__file__).resolve().parent.parent / "data" / "sample"


def convert(source: Path, target: Path) -> tuple[int, int]:
    kept, dropped = [], 0
    with gzip.open(source, "rt", newline="") as handle:
        for row in csv.DictReader(handle):
            day = datetime.strptime(row["Date"], "%m/%d/%Y").date().isoformat()
            o, h, lo, c = (float(row[k]) for k in ("Open", "High", "Low", "Close"))
            volume = float(row["Volume"])
            if h < lo or not lo <= o <= h or not lo <= c <= h or volume < 0:
                dropped += 1
                continue
            kept.append([day, row["Open"], row["High"], row["Low"], row["Close"], row["Volume"]])
    kept.sort(key=lambda r: r[0])
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["date", "open", "high", "low", "close", "volume"])
    writer.writerows(kept)
    # mtime=0: the same input always gives the same bytes
    target.write_bytes(gzip.compress(text.getvalue().encode(), mtime=0))
    return len(kept), dropped


def main(data_dir: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for ticker, relative in SOURCES.items():
        kept, dropped = convert(Path(data_dir) / relative, OUT / f"{ticker}.csv.gz")
        print(f"{ticker}: {kept} rows written, {dropped} dropped")


if __name__ == "__main__":
    main(sys.argv[1])
