"""The vocabulary every stage shares; imports nothing else of sce.

- labels          the classes, label scopes and option letters (prompts, parsing, labeling)
- choices         Literal-typed options checked the same way in the parser and in Python
- known_warnings  warnings and log lines sce knows to be harmless, silenced by every entry point
- files           files written whole or not at all (temporary beside the target, then rename)
- versions        the locked releases (requirements.lock): write it, compare an install to it
"""
