"""Your own PostgreSQL database from Python: libpq reads PGHOST, PGUSER, … from the
session's environment, so psycopg and SQLAlchemy connect with no arguments."""

import pandas as pd
import psycopg
from sqlalchemy import create_engine

with psycopg.connect() as conn:
    conn.execute("DROP TABLE IF EXISTS measurements")
    conn.execute("CREATE TABLE measurements (sensor text, value double precision)")
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO measurements VALUES (%s, %s)",
            [("a", 1.5), ("a", 2.5), ("b", 10.0), ("b", 14.0), ("b", 12.0)],
        )
    print(conn.execute("SELECT current_user, current_database()").fetchone())

engine = create_engine("postgresql+psycopg://")
summary = pd.read_sql(
    "SELECT sensor, count(*) AS n, avg(value) AS mean FROM measurements "
    "GROUP BY sensor ORDER BY sensor",
    engine,
)
print(summary.to_string(index=False))
