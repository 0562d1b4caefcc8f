"""Date and time formats for the admin, by language (Django's FORMAT_MODULE_PATH)."""
