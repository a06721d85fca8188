"""The run record's one owner: its schema (version, sections, header, failed record), the
catalogue of the figures it carries, and the results store (results.jsonl)."""
