"""Process plumbing shared by every stage: a child's environment, kept child processes, folder locks, the CLI
prologue and epilogue, and a card's memory. Nothing here prepares data; it sits in data_prep because training and
eval both stand on it and neither imports the other."""
