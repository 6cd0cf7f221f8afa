"""Message bytes -> SMTP server: connections, the pool of lanes, the local sink. Knows no rows."""
