"""The recipient import: one rulebook for every file, small or large.

A file becomes an ImportJob (``jobs``); its shape is sniffed and its columns mapped
(``files``, ``workbook`` for .xlsx); the parser checks each row (``parser``); valid rows are
staged in temporary tables (``staging``) and merged into recipients and subscriptions with a
few set-based statements in one transaction (``merge``); rejected rows become a downloadable
report (``report``). A small file runs in the request that starts it, a large one on the
``imports`` queue: the same code either way. So a file that turns out to be malformed half-way,
a cancel, or an all-or-nothing import with invalid rows leaves the recipients exactly as they
were. Read-only views of a job are in campaigns.selectors.imports.
"""

from __future__ import annotations

from campaigns.services.imports.base import ImportCancelled, ImportCounts, ImportFileError
from campaigns.services.imports.files import (
    TARGET_ATTRIBUTE,
    TARGET_EMAIL,
    TARGET_FIRST_NAME,
    TARGET_IGNORE,
    TARGET_LAST_NAME,
    TARGETS,
    FileShape,
    file_encoding_detect,
    file_inspect,
    mapping_guess,
    mapping_validate,
)
from campaigns.services.imports.jobs import (
    import_job_cancel,
    import_job_create,
    import_job_run,
    import_job_runs_in_background,
    import_job_start,
)
from campaigns.services.imports.parser import (
    CSV_DEFAULT_FIELD_LIMIT,
    EMAIL_MAX_LENGTH,
    NAME_MAX_LENGTH,
    address_with_name,
    email_normalise,
)

__all__ = [
    "CSV_DEFAULT_FIELD_LIMIT",
    "EMAIL_MAX_LENGTH",
    "NAME_MAX_LENGTH",
    "TARGETS",
    "TARGET_ATTRIBUTE",
    "TARGET_EMAIL",
    "TARGET_FIRST_NAME",
    "TARGET_IGNORE",
    "TARGET_LAST_NAME",
    "FileShape",
    "ImportCancelled",
    "ImportCounts",
    "ImportFileError",
    "address_with_name",
    "email_normalise",
    "file_encoding_detect",
    "file_inspect",
    "import_job_cancel",
    "import_job_create",
    "import_job_run",
    "import_job_runs_in_background",
    "import_job_start",
    "mapping_guess",
    "mapping_validate",
]
