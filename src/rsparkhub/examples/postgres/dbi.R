# Your own PostgreSQL database: the session's environment has PGHOST, PGPORT, PGUSER,
# PGPASSWORD and PGDATABASE, so DBI connects with no arguments.
library(DBI)
con <- dbConnect(RPostgreSQL::PostgreSQL())

dbWriteTable(con, "cars_r", mtcars, overwrite = TRUE, row.names = FALSE)
dbGetQuery(con, "SELECT cyl, count(*) AS n, round(avg(mpg)::numeric, 2) AS mean_mpg
                 FROM cars_r GROUP BY cyl ORDER BY cyl")

# The same with dplyr verbs, translated to SQL by dbplyr and run in the database.
suppressPackageStartupMessages(library(dplyr))
by_gear <- tbl(con, "cars_r") %>%
  group_by(gear) %>%
  summarise(n = n(), mean_hp = mean(hp, na.rm = TRUE)) %>%
  arrange(gear)
show_query(by_gear)
collect(by_gear)

dbDisconnect(con)
