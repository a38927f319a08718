# Spark from R: a year of bike-share trips (trips.csv, weather.csv; see README.md).
# The rspark_* functions are loaded in every R session; they connect to this session's
# Spark (SPARK_REMOTE) on first use. Reference: docs/spark.md of the hub.
library(ggplot2)

# 1. Load the CSV files into Spark as temporary views (the Spark server reads them).
trips <- rspark_read_csv("trips.csv", view = "trips")          # header + schema inference
weather <- rspark_read_csv("weather.csv", view = "weather",
                           schema = "date DATE, temperature_c DOUBLE, precip_mm DOUBLE")
trips                        # a handle: the columns and a preview of the first rows
rspark_count(trips)

# 2. SQL in Spark: one row per day (trips joined with the day's weather), and the hourly
#    profile of weekdays and weekends. Only the small results come back to R.
daily <- rspark_sql("
  SELECT w.date, w.temperature_c, w.precip_mm > 0 AS rainy,
         dayofweek(w.date) IN (1, 7) AS weekend,
         count(t.trip_id) AS trips, round(avg(t.duration_min), 2) AS mean_minutes
  FROM weather w LEFT JOIN trips t ON to_date(t.start_time) = w.date
  GROUP BY w.date, w.temperature_c, w.precip_mm
  ORDER BY w.date")
rspark_view(daily, "daily")

hourly <- rspark_collect(rspark_sql("
  SELECT hour(start_time) AS hour,
         CASE WHEN dayofweek(start_time) IN (1, 7) THEN 'weekend' ELSE 'weekday' END AS day_type,
         count(*) / count(DISTINCT to_date(start_time)) AS trips_per_day
  FROM trips GROUP BY 1, 2 ORDER BY 2, 1"))

speed <- rspark_collect(rspark_sql("
  SELECT d.rainy, t.member, count(*) AS trips,
         round(avg(t.distance_km / (t.duration_min / 60)), 2) AS mean_kmh
  FROM trips t JOIN daily d ON to_date(t.start_time) = d.date
  GROUP BY d.rainy, t.member ORDER BY d.rainy, t.member"))
speed

# 3. A model in Spark ML: Poisson regression of the daily number of trips on the weather.
fit <- rspark_glm(daily, trips ~ temperature_c + rainy + weekend, family = "poisson")
fit
round(exp(coef(fit))[-1], 3)  # multiplicative effects: per degree C, rain, weekend

# 4. Bring the (366-row) daily table and the model's predictions to R and plot them.
days <- rspark_collect(predict(fit, daily))
str(days)
print(
  ggplot(days, aes(temperature_c, trips, colour = rainy)) +
    geom_point(alpha = 0.6) +
    geom_line(aes(y = prediction, linetype = weekend), linewidth = 0.9) +
    labs(title = "Daily bike trips and the weather",
         subtitle = "points: days of 2024; lines: Poisson GLM fitted in Spark ML",
         x = "temperature (\u00b0C)", y = "trips per day", colour = "rain", linetype = "weekend")
)
print(
  ggplot(hourly, aes(hour, trips_per_day, colour = day_type)) +
    geom_line(linewidth = 1) + geom_point() +
    labs(title = "When people ride", x = "hour of the day", y = "trips per day", colour = NULL)
)

# 5. Keep the daily table: saved in your own database, it survives the session.
rspark_save_table(daily, "bike_daily", mode = "overwrite")
rspark_tables()
