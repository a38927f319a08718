"""Generate the example's data: one year of a (synthetic) city bike-share scheme.

    python make_data.py          # writes trips.csv and weather.csv next to this file

Deterministic (a fixed seed, the standard library's generator, no numpy), so the committed
CSV files are exactly what this script writes. The data carry real signals that the
analyses recover:

* daily demand is Poisson with log-mean 4.4 + 0.045 * temperature - 0.5 * rainy
  - 0.15 * weekend (a Poisson GLM on the daily counts gets these coefficients back);
* weekday trips peak at 8 h and 17.5 h (commuters), weekend trips around 14 h;
* members ride faster than casual riders (16 vs 12.5 km/h) and everybody is 12 % slower
  in the rain, so duration depends on distance, membership and rain.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import random
from pathlib import Path

SEED = 2024
YEAR = 2024
# name -> (x, y) in km on the city grid
STATIONS = {
    "Central Station": (0.0, 0.0),
    "Harbour Square": (2.1, -1.4),
    "Old Town": (-0.8, 0.9),
    "University": (1.6, 2.8),
    "City Hospital": (-2.4, 2.2),
    "Riverside Park": (3.3, 0.6),
    "Market Hall": (0.7, -0.5),
    "Science Park": (4.2, 3.1),
    "West End": (-3.6, -0.4),
    "Stadium": (-1.9, -2.7),
    "Museum Quarter": (0.2, 1.8),
    "North Gate": (0.9, 4.3),
}
INTERCEPT, B_TEMP, B_RAIN, B_WEEKEND = 4.4, 0.045, -0.5, -0.15


def weather(rng: random.Random, day: dt.date) -> tuple[float, float]:
    doy = day.timetuple().tm_yday
    temp = 11.0 + 10.0 * math.sin(2 * math.pi * (doy - 110) / 366) + rng.gauss(0, 3)
    wet = rng.random() < (0.38 if day.month in (1, 2, 3, 10, 11, 12) else 0.25)
    precip = round(rng.expovariate(1 / 4.0) + 0.2, 1) if wet else 0.0
    return round(temp, 1), precip


def n_trips(rng: random.Random, lam: float) -> int:
    """A Poisson draw: the arrivals of a rate-lam process in one unit of time (bounded by
    the time axis, about lam steps)."""
    t, n = rng.expovariate(lam), 0
    while t < 1.0:
        n += 1
        t += rng.expovariate(lam)
    return n


def start_hour(rng: random.Random, weekend: bool) -> float:
    if weekend:
        h = rng.gauss(14.0, 3.0)
    else:
        u = rng.random()
        h = (
            rng.gauss(8.2, 1.0)
            if u < 0.35
            else rng.gauss(17.5, 1.3)
            if u < 0.7
            else rng.uniform(6, 23)
        )
    return min(max(h, 5.5), 23.95)


def main(folder: Path = Path(__file__).resolve().parent) -> None:
    rng = random.Random(SEED)
    names = list(STATIONS)
    trip_id = 0
    with (
        open(folder / "trips.csv", "w", newline="") as ft,
        open(folder / "weather.csv", "w", newline="") as fw,
    ):
        trips, days = csv.writer(ft, lineterminator="\n"), csv.writer(fw, lineterminator="\n")
        trips.writerow(["trip_id", "start_time", "start_station", "end_station", "distance_km",
                        "duration_min", "member"])  # fmt: skip
        days.writerow(["date", "temperature_c", "precip_mm"])
        day = dt.date(YEAR, 1, 1)
        while day.year == YEAR:
            temp, precip = weather(rng, day)
            rainy, weekend = precip > 0, day.weekday() >= 5
            days.writerow([day.isoformat(), temp, precip])
            lam = math.exp(INTERCEPT + B_TEMP * temp + B_RAIN * rainy + B_WEEKEND * weekend)
            rows = []
            for _ in range(n_trips(rng, lam)):
                start = dt.datetime.combine(day, dt.time()) + dt.timedelta(
                    hours=start_hour(rng, weekend)
                )
                a, b = rng.sample(names, 2)
                (x1, y1), (x2, y2) = STATIONS[a], STATIONS[b]
                distance = 1.25 * math.hypot(x2 - x1, y2 - y1) + 0.3
                member = rng.random() < (0.4 if weekend else 0.7)
                speed = (16.0 if member else 12.5) * (0.88 if rainy else 1.0)
                speed *= math.exp(rng.gauss(0, 0.12))
                minutes = distance / speed * 60 + 1.5
                rows.append((start, a, b, round(distance, 2), round(minutes, 1), member))
            for start, a, b, distance, minutes, member in sorted(rows):
                trip_id += 1
                trips.writerow([trip_id, start.strftime("%Y-%m-%d %H:%M:%S"), a, b, distance,
                                minutes, "true" if member else "false"])  # fmt: skip
            day += dt.timedelta(days=1)
    print(f"wrote {trip_id} trips over {YEAR} to {folder}")


if __name__ == "__main__":
    main()
