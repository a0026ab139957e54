"""Search: the regressor over every round's proxy runs, the next round's configs and the optimum."""
