"""The command line: parse, call the library, turn MeshdropError into a line and an exit code."""
