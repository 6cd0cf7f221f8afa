"""The ground floor: settings, the one error tree, clock, logs, signed tokens. Imports nothing of digest."""
