# Enzyme kinetics: reaction velocity against substrate concentration, for cells treated
# with Puromycin and untreated ones. The Michaelis-Menten model
#     rate = Vm * conc / (K + conc)
# is fitted with nls() for each group, then with a shared K and a treatment effect on Vm.

data(Puromycin)
puro <- Puromycin
str(puro)

treated <- subset(puro, state == "treated")
fit_treated <- nls(rate ~ Vm * conc / (K + conc), data = treated,
                   start = list(Vm = 200, K = 0.05))
summary(fit_treated)

# One model for both groups: Vm differs by state, K is shared.
fit_both <- nls(rate ~ (Vm + delV * (state == "treated")) * conc / (K + conc),
                data = puro, start = list(Vm = 160, delV = 40, K = 0.05))
summary(fit_both)
confint.default(fit_both)

# The fits over the data.
grid <- expand.grid(conc = seq(0.01, 1.2, length.out = 100),
                    state = levels(puro$state))
grid$rate <- predict(fit_both, newdata = grid)
plot(rate ~ conc, data = puro, pch = ifelse(state == "treated", 19, 1),
     xlab = "Substrate concentration (ppm)", ylab = "Initial velocity (counts/min/min)",
     main = "Puromycin: Michaelis-Menten fits")
for (s in levels(puro$state)) {
  g <- grid[grid$state == s, ]
  lines(g$conc, g$rate, lty = if (s == "treated") 1 else 2)
}
legend("bottomright", legend = levels(puro$state), pch = c(19, 1), lty = c(1, 2))

# Residuals against fitted values.
plot(fitted(fit_both), residuals(fit_both), xlab = "Fitted", ylab = "Residual",
     main = "Residuals of the shared-K model")
abline(h = 0, lty = 3)

results <- data.frame(
  parameter = names(coef(fit_both)),
  estimate = unname(coef(fit_both)),
  std_error = unname(summary(fit_both)$coefficients[, "Std. Error"])
)
results
