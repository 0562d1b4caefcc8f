"""English formats: Django's own, with the time zone's abbreviation after every date and time.

Staff in other zones read times the admin shows (created, started, finished, last login…)
without knowing which zone the server runs in: "Nov. 25, 2026, 6:52 p.m. UTC".
"""

DATETIME_FORMAT = "N j, Y, P T"
SHORT_DATETIME_FORMAT = "m/d/Y P T"
