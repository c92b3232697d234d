"""The contracts floor: what every layer above shares and nothing here depends on.

Errors, atomic I/O, progress, the sample schema, the recipe, limits, the data-root layout (every path and
name a build writes), table schemas, fingerprints and stamps, the build context, and the one test of
"is this location a URL". Modules here import nothing else from `imp_data` (pyproject's import-linter
contracts enforce it); see docs/design.md §9.
"""
