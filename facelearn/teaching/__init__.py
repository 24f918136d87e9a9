"""Teaching material generated from the chapters (book: "For instructors"): student notebooks and the
autograder that runs their self-checks."""
