"""Reference point for the benchmark: the same cleaning in DuckDB SQL into the same partitioned
snappy Parquet layout. Not part of the product (single machine, no incremental state)."""

from __future__ import annotations

import sys

import duckdb

CLEAN_SQL = """
with raw as (
    select * from read_json('{bronze}/**/*.jsonl', format = 'newline_delimited', ignore_errors = true,
        columns = {{event_id: 'VARCHAR', device_id: 'VARCHAR', event_time: 'VARCHAR',
                   location: 'STRUCT(city VARCHAR, country VARCHAR, lat VARCHAR, lon VARCHAR)',
                   temperature_c: 'VARCHAR', humidity_pct: 'VARCHAR', battery_pct: 'VARCHAR', firmware: 'VARCHAR'}})
), typed as (
    select trim(event_id) as event_id, trim(device_id) as device_id,
        try_strptime(trim(event_time), '%Y-%m-%dT%H:%M:%S.%gZ') as event_time,
        try_cast(trim(temperature_c) as double) as temperature_c,
        try_cast(trim(humidity_pct) as double) as humidity_pct,
        try_cast(trim(battery_pct) as double) as battery,
        trim(firmware) as firmware, upper(trim(location.country)) as location_country,
        try_cast(location.lat as double) as location_lat, try_cast(location.lon as double) as location_lon,
        list_aggregate(list_transform(string_split(trim(regexp_replace(location.city, '\\s+', ' ', 'g')), ' '),
            lambda w: upper(w[1]) || lower(w[2:])), 'string_agg', ' ') as location_city
    from raw
), valid as (
    select * from typed
    where event_id <> '' and device_id <> '' and event_time is not null
      and temperature_c between -40 and 85 and humidity_pct between 0 and 100
      and (battery is null or battery between 0 and 100)
      and location_lat between -90 and 90 and location_lon between -180 and 180 and location_city <> ''
)
select any_value(columns(* exclude (event_id, battery))), event_id, any_value(battery)::int as battery_pct,
    cast(any_value(event_time) as date) as date
from valid group by event_id
"""


def main(bronze: str, gold: str) -> None:
    connection = duckdb.connect()
    connection.execute(
        f"copy ({CLEAN_SQL.format(bronze=bronze)}) to '{gold}' "
        "(format parquet, compression snappy, partition_by (date, location_city), overwrite_or_ignore true)"
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
