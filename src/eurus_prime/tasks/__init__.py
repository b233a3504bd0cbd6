"""Tasks and prompts: the chat prompt (``prompting``), the data contract, benchmark suites, the
tiny, chains and countdown worlds."""
