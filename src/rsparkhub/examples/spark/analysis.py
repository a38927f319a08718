"""Spark from Python: a year of bike-share trips (trips.csv, weather.csv; see README.md).

The session's SPARK_REMOTE names your Spark Connect session, so getOrCreate() needs no
arguments. The Spark server reads files itself: give it absolute paths."""

import os

import matplotlib.pyplot as plt
from pyspark.ml.feature import VectorAssembler
from pyspark.ml.regression import GeneralizedLinearRegression
from pyspark.sql import SparkSession

spark = SparkSession.builder.getOrCreate()
print("Spark", spark.version, "- current database:", spark.catalog.currentDatabase())

# 1. Load the CSV files into Spark as temporary views.
trips = spark.read.csv(os.path.abspath("trips.csv"), header=True, inferSchema=True)
weather = spark.read.csv(
    os.path.abspath("weather.csv"),
    header=True,
    schema="date DATE, temperature_c DOUBLE, precip_mm DOUBLE",
)
trips.createOrReplaceTempView("trips")
weather.createOrReplaceTempView("weather")
trips.printSchema()
print("trips:", trips.count())

# 2. SQL in Spark: one row per day with its weather, and the hourly profile.
daily = spark.sql("""
  SELECT w.date, w.temperature_c, w.precip_mm > 0 AS rainy,
         dayofweek(w.date) IN (1, 7) AS weekend,
         count(t.trip_id) AS trips, round(avg(t.duration_min), 2) AS mean_minutes
  FROM weather w LEFT JOIN trips t ON to_date(t.start_time) = w.date
  GROUP BY w.date, w.temperature_c, w.precip_mm
  ORDER BY w.date""")
daily.createOrReplaceTempView("daily")
daily.show(5)

hourly = spark.sql("""
  SELECT hour(start_time) AS hour,
         CASE WHEN dayofweek(start_time) IN (1, 7) THEN 'weekend' ELSE 'weekday' END AS day_type,
         count(*) / count(DISTINCT to_date(start_time)) AS trips_per_day
  FROM trips GROUP BY 1, 2 ORDER BY 2, 1""").collect()

spark.sql("""
  SELECT d.rainy, t.member, count(*) AS trips,
         round(avg(t.distance_km / (t.duration_min / 60)), 2) AS mean_kmh
  FROM trips t JOIN daily d ON to_date(t.start_time) = d.date
  GROUP BY d.rainy, t.member ORDER BY d.rainy, t.member""").show()

# 3. Spark ML: a Poisson GLM of the daily number of trips on the weather.
features = ["temperature_c", "rainy", "weekend"]
assembled = VectorAssembler(inputCols=features, outputCol="features").transform(
    daily.selectExpr(
        "date",
        "temperature_c",
        "cast(rainy AS double) AS rainy",
        "cast(weekend AS double) AS weekend",
        "cast(trips AS double) AS trips",
    )
)
glm = GeneralizedLinearRegression(family="poisson", link="log", labelCol="trips")
model = glm.fit(assembled)
summary = model.summary
names = ["(Intercept)", *features]
coefs = [model.intercept, *model.coefficients]
errors = summary.coefficientStandardErrors  # Spark lists the intercept last
errors = [errors[-1], *errors[:-1]]
print(f"Poisson GLM on {summary.numInstances} days, AIC {summary.aic:.1f}")
for name, coef, err in zip(names, coefs, errors, strict=True):
    print(f"  {name:14s} {coef:9.4f}  (std. error {err:.4f})")

# 4. Predictions and plots (only the 366 daily rows come back to Python).
rows = model.transform(assembled).select(*features, "trips", "prediction").collect()
fig, ax = plt.subplots(figsize=(8, 5))
for rainy, colour in ((0.0, "tab:orange"), (1.0, "tab:blue")):
    sel = [r for r in rows if r.rainy == rainy]
    label = "rain" if rainy else "dry"
    ax.scatter([r.temperature_c for r in sel], [r.trips for r in sel], s=12, alpha=0.5,
               color=colour, label=f"{label} days")  # fmt: skip
    for weekend, style in ((0.0, "-"), (1.0, "--")):
        line = sorted((r.temperature_c, r.prediction) for r in sel if r.weekend == weekend)
        ax.plot(*zip(*line, strict=True), style, color=colour,
                label=f"fit, {label}, {'weekend' if weekend else 'weekday'}")  # fmt: skip
ax.set(title="Daily bike trips and the weather (Poisson GLM in Spark ML)",
       xlabel="temperature (°C)", ylabel="trips per day")  # fmt: skip
ax.legend(fontsize=8)
plt.show()

fig, ax = plt.subplots(figsize=(8, 4))
for day_type in ("weekday", "weekend"):
    pts = [(r.hour, r.trips_per_day) for r in hourly if r.day_type == day_type]
    ax.plot(*zip(*pts, strict=True), marker="o", label=day_type)
ax.set(title="When people ride", xlabel="hour of the day", ylabel="trips per day")
ax.legend()
plt.show()

# 5. Keep the daily table in your own database (it survives the session).
daily.write.mode("overwrite").saveAsTable("bike_daily_py")
print([t.name for t in spark.catalog.listTables() if not t.isTemporary])
